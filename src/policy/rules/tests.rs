use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;
use crate::domain::{AuthMethod, PrincipalKind, RoleSource};

fn spec(name: &str, when: &str, effect: Effect) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        when: when.into(),
        effect,
        message: None,
    }
}

fn compile(rules: &[(&str, &str, Effect)]) -> RuleSet {
    RuleSet::compile(rules.iter().map(|(n, w, e)| spec(n, w, *e)).collect())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn compile_err(when: &str) -> RuleError {
    RuleSet::compile(vec![spec("r", when, Effect::Deny)]).expect_err(when)
}

fn user(role: &str, attrs: &[(&str, &str)]) -> Principal {
    Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        role: role.into(),
        role_source: RoleSource::Binding,
        auth: AuthMethod::Jwt,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn image(preset: &str, negative: Option<&str>) -> Action {
    Action {
        permissions: vec![Permission::GenerationCreate],
        api: Some(ApiKind::Image),
        name: "text-to-image".into(),
        preset: Some(preset.into()),
        image_number: Some(2),
        prompt: Some("a red bicycle".into()),
        negative_prompt: negative.map(str::to_string),
        prompts: vec!["a red bicycle".into()],
        ..Action::default()
    }
}

fn eval(set: &RuleSet, p: &Principal, a: &Action, pii: &[&'static str]) -> RuleOutcome {
    set.evaluate(&RuleInput {
        principal: p,
        action: a,
        method: "POST",
        path: "/v1/generation/text-to-image",
        permission: Permission::GenerationCreate,
        pii,
        now: Utc.with_ymd_and_hms(2026, 11, 23, 14, 30, 0).unwrap(),
    })
}

/// The three ABAC examples of the seed, as one policy.
fn seed_rules() -> RuleSet {
    compile(&[
        (
            "cost_control",
            r#"user.department == "marketing" && request.preset == "Quality""#,
            Effect::RequireApproval,
        ),
        (
            "brand_safety",
            r#"user.role == "designer_basic" && request.negative_prompt == """#,
            Effect::Deny,
        ),
        (
            "data_classification",
            "int(user.clearance_level) < 3 && request.contains_pii",
            Effect::Deny,
        ),
    ])
}

#[test]
fn cost_control_requires_approval_for_marketing_quality() {
    let set = seed_rules();
    let marketing = user("designer_advanced", &[("department", "marketing")]);
    match eval(&set, &marketing, &image("Quality", Some("blurry")), &[]) {
        RuleOutcome::RequireApproval { rule, message } => {
            assert_eq!(rule, "cost_control");
            assert!(message.contains("cost_control"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        eval(&set, &marketing, &image("Speed", Some("blurry")), &[]),
        RuleOutcome::NoMatch
    );
    let sales = user("designer_advanced", &[("department", "sales")]);
    assert_eq!(
        eval(&set, &sales, &image("Quality", Some("blurry")), &[]),
        RuleOutcome::NoMatch
    );
    // No department at all: null, never equal, no error.
    let nobody = user("designer_advanced", &[]);
    assert_eq!(
        eval(&set, &nobody, &image("Quality", Some("blurry")), &[]),
        RuleOutcome::NoMatch
    );
}

#[test]
fn brand_safety_denies_basic_designers_without_a_negative_prompt() {
    let set = seed_rules();
    let basic = user("designer_basic", &[]);
    for negative in [None, Some("")] {
        let RuleOutcome::Deny(d) = eval(&set, &basic, &image("Speed", negative), &[]) else {
            panic!("expected a denial for {negative:?}");
        };
        assert_eq!(d.error, "rule_denied");
        assert_eq!(d.kind, DenyKind::Forbidden);
        assert_eq!(d.rule.as_deref(), Some("rules.brand_safety"));
    }
    assert_eq!(
        eval(&set, &basic, &image("Speed", Some("nsfw, gore")), &[]),
        RuleOutcome::NoMatch
    );
}

#[test]
fn data_classification_uses_clearance_and_pii() {
    let set = seed_rules();
    let low = user("designer_advanced", &[("clearance_level", "2")]);
    let high = user("designer_advanced", &[("clearance_level", "3")]);
    let a = image("Speed", Some("x"));
    assert!(matches!(
        eval(&set, &low, &a, &["email"]),
        RuleOutcome::Deny(d) if d.rule.as_deref() == Some("rules.data_classification")
    ));
    assert_eq!(eval(&set, &low, &a, &[]), RuleOutcome::NoMatch);
    assert_eq!(eval(&set, &high, &a, &["email"]), RuleOutcome::NoMatch);
    // The typed form works too: integer attributes are ints.
    let typed = compile(&[(
        "typed",
        "user.clearance_level < 3 && request.contains_pii",
        Effect::Deny,
    )]);
    assert!(matches!(
        eval(&typed, &low, &a, &["credit_card"]),
        RuleOutcome::Deny(_)
    ));
    assert_eq!(
        eval(&typed, &high, &a, &["credit_card"]),
        RuleOutcome::NoMatch
    );
    // No clearance attribute, PII present: the comparison fails, and the rule fails closed.
    let unknown = user("designer_advanced", &[]);
    assert!(matches!(
        eval(&typed, &unknown, &a, &["email"]),
        RuleOutcome::Deny(d) if d.error == "rule_error"
    ));
    // …but without PII, `false && error` is false (CEL's commutative `&&`).
    assert_eq!(eval(&typed, &unknown, &a, &[]), RuleOutcome::NoMatch);
}

#[test]
fn the_first_matching_rule_decides_in_file_order() {
    let set = compile(&[
        ("vip", r#""vip" in user.groups"#, Effect::Allow),
        ("no_quality", r#"request.preset == "Quality""#, Effect::Deny),
        ("never", "1 / 0 == 1", Effect::Deny),
    ]);
    let mut vip = user("designer_advanced", &[]);
    vip.groups.push("vip".into());
    assert_eq!(
        eval(&set, &vip, &image("Quality", None), &[]),
        RuleOutcome::Allow { rule: "vip".into() },
        "an allow match skips the later rules, the broken one included"
    );
    let plain = user("designer_advanced", &[]);
    assert!(matches!(
        eval(&set, &plain, &image("Quality", None), &[]),
        RuleOutcome::Deny(d) if d.error == "rule_denied"
    ));
    // No earlier match: the broken rule is reached and fails closed.
    assert!(matches!(
        eval(&set, &plain, &image("Speed", None), &[]),
        RuleOutcome::Deny(d) if d.error == "rule_error" && d.rule.as_deref() == Some("rules.never")
    ));
    assert_eq!(
        eval(&RuleSet::default(), &plain, &image("Speed", None), &[]),
        RuleOutcome::NoMatch
    );
}

#[test]
fn evaluation_errors_and_non_booleans_deny() {
    let p = user("designer_basic", &[("team", "blue")]);
    let a = image("Speed", Some("x"));
    for when in [
        "user.team < 3",                // string < int
        "int(user.team) > 1",           // int("blue")
        "request.prompt",               // not a bool
        "user.attributes.missing == 1", // no such key
        "request.loras[3] == \"x\"",    // out of bounds
    ] {
        let set = compile(&[("r", when, Effect::Allow)]);
        let RuleOutcome::Deny(d) = eval(&set, &p, &a, &[]) else {
            panic!("{when} should fail closed");
        };
        assert_eq!(d.error, "rule_error", "{when}");
        assert!(
            !d.reason.contains("bicycle"),
            "the reason never echoes the prompt"
        );
    }
}

#[test]
fn messages_are_shown_on_deny() {
    let mut s = spec("night", "now.getHours(\"UTC\") >= 14", Effect::Deny);
    s.message = Some("generation is closed in the afternoon".into());
    let set = RuleSet::compile(vec![s]).unwrap();
    let RuleOutcome::Deny(d) = eval(&set, &user("x", &[]), &image("Speed", None), &[]) else {
        panic!()
    };
    assert_eq!(d.reason, "generation is closed in the afternoon");
}

#[test]
fn every_variable_is_defined() {
    const ALL: &str = r#"user.subject == "alice" && user.email == "alice@example.com" && user.kind == "user"
            && user.auth == "jwt" && user.key_id == "" && !user.mfa && "designers" in user.groups
            && user.attributes == {} && request.method == "POST"
            && request.path.startsWith("/v1/") && request.permission == "generation:create"
            && request.permissions == ["generation:create"] && request.action == "text-to-image"
            && request.api == "image" && request.loras == [] && request.image_number == 2
            && request.model == "" && request.refiner_model == "" && request.width == 0
            && request.height == 0 && !request.upscale && request.max_tokens == 0
            && request.prompt.contains("bicycle") && request.negative_prompt == ""
            && size(request.prompts) == 1 && !request.contains_pii && request.pii == []
            && now > timestamp("2026-01-01T00:00:00Z") && now.getHours() == 14"#;
    // Bound with only the fields the rule reads…
    let set = compile(&[("all", ALL, Effect::Allow)]);
    // …and whole, as an earlier rule uses `user` and `request` themselves.
    let whole = compile(&[
        ("whole", "size(request) < 0 || size(user) < 0", Effect::Deny),
        ("all", ALL, Effect::Allow),
    ]);
    assert!(whole.reads.whole_request && whole.reads.whole_user);
    for set in [set, whole] {
        assert_eq!(
            eval(
                &set,
                &user("designer_basic", &[]),
                &image("Speed", None),
                &[]
            ),
            RuleOutcome::Allow { rule: "all".into() }
        );
    }
}

#[test]
fn attributes_are_typed_by_a_clear_rule() {
    assert_eq!(attribute_value("2"), Value::Int(2));
    assert_eq!(attribute_value("-7"), Value::Int(-7));
    assert_eq!(attribute_value("0"), Value::Int(0));
    for s in [
        "02",
        "+2",
        "-0",
        "2.5",
        " 2",
        "",
        "99999999999999999999",
        "marketing",
    ] {
        assert_eq!(attribute_value(s), Value::from(s), "{s:?} stays a string");
    }
    // The raw strings stay reachable.
    let set = compile(&[(
        "raw",
        r#"user.attributes.cost_center == "1234" && user.cost_center == 1234"#,
        Effect::Allow,
    )]);
    let p = user("x", &[("cost_center", "1234")]);
    assert!(matches!(
        eval(&set, &p, &image("Speed", None), &[]),
        RuleOutcome::Allow { .. }
    ));
}

#[test]
fn broken_rules_are_refused_at_load() {
    let cases: [(&str, &str); 10] = [
        ("user.department == ", "does not parse"),
        ("usr.department == \"x\"", "unknown variable `usr`"),
        (
            "request.presett == \"Quality\"",
            "unknown field `request.presett`",
        ),
        (
            "request.preset.lowerAscii() == \"x\"",
            "unknown function `lowerAscii`",
        ),
        (
            "frobnicate(request.preset)",
            "unknown function `frobnicate`",
        ),
        ("user.cost_center == \"1234\"", "never equal"),
        ("user.team in [\"7\", \"x\"]", "never equal"),
        ("has(user.department)", "always true"),
        ("now.hour > 3", "no fields"),
        ("   ", "empty"),
    ];
    for (when, expected) in cases {
        let e = compile_err(when);
        assert_eq!(e.rule, "r");
        assert!(e.problem.contains(expected), "{when}: {}", e.problem);
    }
    // Fine: comprehension variables, namespaced and member functions, type names.
    compile(&[(
        "ok",
        r#"request.loras.exists(l, l.startsWith("x")) && [1, 2].all(x, x > 0)
           && optional.of(1).hasValue() && type(request.image_number) == int
           && request.prompt.matches("^a") && has(user.attributes.team) && user.team == "blue""#,
        Effect::Deny,
    )]);
    let dup = RuleSet::compile(vec![
        spec("same", "true", Effect::Allow),
        spec("same", "false", Effect::Deny),
    ])
    .unwrap_err();
    assert_eq!(dup.index, 1);
    assert!(dup.problem.contains("earlier rule"), "{}", dup.problem);
}

#[test]
fn the_set_knows_whether_rules_read_pii() {
    assert!(seed_rules().uses_pii());
    assert!(!compile(&[("r", "request.preset == \"x\"", Effect::Deny)]).uses_pii());
}

#[test]
fn only_what_the_rules_read_is_bound() {
    let set = compile(&[
        (
            "a",
            r#"request.preset == "x" && user.role == "y" && user.team == "z""#,
            Effect::Deny,
        ),
        // A comprehension variable named like a root is not the root.
        (
            "b",
            "[1].exists(user, user > 0) && has(request.prompt)",
            Effect::Deny,
        ),
    ]);
    let preset = REQUEST_FIELDS.iter().position(|f| *f == "preset").unwrap();
    let prompt = REQUEST_FIELDS.iter().position(|f| *f == "prompt").unwrap();
    let role = USER_FIELDS.iter().position(|f| *f == "role").unwrap();
    assert_eq!(
        set.reads,
        Reads {
            request: 1 << preset | 1 << prompt,
            user: 1 << role,
            whole_request: false,
            whole_user: false,
        }
    );
    assert!(set.attribute_names.contains("team"));
    for (when, whole_request, whole_user) in [
        ("size(request) > 0", true, false),
        (r#""preset" in request"#, true, false),
        (r#"request["preset"] == "x""#, true, false),
        ("user.exists(k, k == \"team\")", false, true),
        ("size(user) > 0 && request.method == \"GET\"", false, true),
    ] {
        let reads = compile(&[("r", when, Effect::Deny)]).reads;
        assert_eq!(
            (reads.whole_request, reads.whole_user),
            (whole_request, whole_user),
            "{when}"
        );
    }
}

#[test]
fn a_rule_that_uses_a_root_itself_sees_all_of_it() {
    // Every request field, every standard user field, the principal's attributes, and the
    // attributes other rules name (null when absent), as when everything was always bound.
    let set = compile(&[
        ("names_team", r#"user.team == "red""#, Effect::Deny),
        (
            "whole",
            r#"size(request) == 20 && "prompt" in request && request["preset"] == "Speed"
               && size(user) == 11 && user["department"] == "design" && user.exists(k, k == "team")
               && user["team"] == null && user["mfa"] == false && size(user["attributes"]) == 1"#,
            Effect::Allow,
        ),
    ]);
    let p = user("designer_basic", &[("department", "design")]);
    assert_eq!(
        eval(&set, &p, &image("Speed", None), &[]),
        RuleOutcome::Allow {
            rule: "whole".into()
        }
    );
    // Standard fields still win over an attribute of the same name, whole or not.
    let set = compile(&[(
        "role",
        r#"user.role == "designer_basic" && user["role"] == "designer_basic"
           && user.attributes.role == "admin""#,
        Effect::Allow,
    )]);
    let p = user("designer_basic", &[("role", "admin")]);
    assert!(matches!(
        eval(&set, &p, &image("Speed", None), &[]),
        RuleOutcome::Allow { .. }
    ));
}

#[test]
fn variables_only_some_requests_have() {
    let set = compile(&[
        ("long_answers", "request.max_tokens > 1000", Effect::Deny),
        ("red_team", r#"user.team == "red""#, Effect::Deny),
        (
            "keys_need_a_team",
            r#"user.key_id != "" && !has(user.attributes.team)"#,
            Effect::RequireApproval,
        ),
    ]);
    let image_request = image("Speed", None);
    let chat = Action {
        permissions: vec![Permission::GenerationCreate],
        api: Some(ApiKind::Llm),
        name: "llm-chat".into(),
        max_tokens: Some(4096),
        ..Action::default()
    };
    let plain = user("designer_basic", &[]);
    let red = user("designer_basic", &[("team", "red")]);
    let mut keyed = user("designer_basic", &[]);
    keyed.key_id = Some("k1".into());
    let mut keyed_blue = user("designer_basic", &[("team", "blue")]);
    keyed_blue.key_id = Some("k2".into());

    // Absent: max_tokens is 0, team is null, key_id is "".
    assert_eq!(
        eval(&set, &plain, &image_request, &[]),
        RuleOutcome::NoMatch
    );
    assert!(matches!(
        eval(&set, &plain, &chat, &[]),
        RuleOutcome::Deny(d) if d.rule.as_deref() == Some("rules.long_answers")
    ));
    assert!(matches!(
        eval(&set, &red, &image_request, &[]),
        RuleOutcome::Deny(d) if d.rule.as_deref() == Some("rules.red_team")
    ));
    assert!(matches!(
        eval(&set, &keyed, &image_request, &[]),
        RuleOutcome::RequireApproval { rule, .. } if rule == "keys_need_a_team"
    ));
    assert_eq!(
        eval(&set, &keyed_blue, &image_request, &[]),
        RuleOutcome::NoMatch
    );
}
