use std::path::Path;

use super::*;

const POLICY: &str = r#"
apis: [fooocus-api]
default_role: viewer
groups: {fooocus_designers_basic: designer_basic, fooocus_admins: admin}
roles:
  viewer:
    permissions: [generation:view]
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed, Lightning, Extreme Speed]
    loras: []
    models: ["juggernautXL_v8Rundiffusion.safetensors"]
    max_images: 4
    max_pixels: 1048576
    daily_images: 50
  admin:
    permissions: ["*"]
routes:
  - {method: POST, path: /v1/custom/*, permission: generation:create, body: fooocus}
"#;

fn compile(text: &str) -> Result<crate::policy::Policy, ConfigError> {
    compile_policy(Path::new("policy.yaml"), text)
}

#[test]
fn the_design_example_compiles() {
    let p = compile(POLICY).expect("valid policy");
    assert_eq!(p.default_role.as_deref(), Some("viewer"));
    let basic = &p.roles["designer_basic"];
    assert!(basic.presets.allows("Speed") && !basic.presets.allows("Quality"));
    assert!(!basic.loras.allows("anything"));
    assert_eq!(basic.max_images, Some(4));
    assert_eq!(
        p.roles["admin"].permissions.len(),
        crate::domain::ALL_PERMISSIONS.len()
    );
    assert!(p.routes.find("POST", "/v1/custom/x").is_some());
    assert_eq!(p.version.len(), 12);
}

#[test]
fn unknown_keys_are_located() {
    let text = POLICY.replace("    max_images: 4", "    max_image: 4");
    let e = compile(&text).unwrap_err();
    assert_eq!(e.line, Some(13), "{e}");
    assert!(e.problem.contains("unknown field `max_image`"), "{e}");
    assert!(e.to_string().starts_with("policy.yaml:13: "), "{e}");
}

#[test]
fn unknown_permissions_are_located() {
    let text = POLICY.replace("[generation:view]", "[generation:veiw]");
    let e = compile(&text).unwrap_err();
    assert_eq!(e.line, Some(7), "{e}");
    assert!(
        e.problem.contains("unknown permission `generation:veiw`"),
        "{e}"
    );
}

#[test]
fn bad_role_references_name_the_place_and_fix() {
    let e = compile(&POLICY.replace("default_role: viewer", "default_role: nobody")).unwrap_err();
    assert_eq!(e.line, Some(3));
    assert!(e.fix.as_deref().unwrap().contains("viewer"));
    let e = compile(&POLICY.replace("fooocus_admins: admin", "fooocus_admins: root")).unwrap_err();
    assert!(e.problem.contains("undefined role `root`"), "{e}");
    assert_eq!(e.line, Some(4));
}

#[test]
fn bad_routes_are_refused() {
    let e = compile(&POLICY.replace("path: /v1/custom/*", "path: v1/custom")).unwrap_err();
    assert!(e.problem.starts_with("routes[0]"), "{e}");
    assert_eq!(e.line, Some(19));
    let e = compile(&POLICY.replace("method: POST", "method: FETCH")).unwrap_err();
    assert!(e.problem.contains("unknown method"), "{e}");
    let e = compile(&POLICY.replace("body: fooocus", "body: dalle")).unwrap_err();
    assert_eq!(e.line, Some(19), "{e}");
}

/// The design example extended with templates, content filters and the seed's ABAC rules.
const FULL: &str = r#"
apis: [fooocus-api]
default_role: viewer
roles:
  viewer:
    permissions: [generation:view]
  designer_basic:
    permissions: [generation:create, generation:view]
    templates_only: true
  designer_advanced:
    permissions: [generation:create, generation:view]
templates:
  - {name: product-shot, text: "a photo of {subject} on a white background"}
  - name: banner
    text: "{headline} banner in {color}"
    max_words: 3
content:
  forbidden_terms: [evil corp, gore]
  pii: {email: redact, credit_card: deny, us_ssn: deny}
rules:
  - {name: cost_control, when: 'user.department == "marketing" && request.preset == "Quality"', effect: require_approval}
  - name: brand_safety
    when: >
      user.role == "designer_basic" && request.negative_prompt == ""
    effect: deny
    message: designer_basic generations need a negative prompt
  - {name: data_classification, when: 'int(user.clearance_level) < 3 && request.contains_pii', effect: deny}
"#;

fn principal(role: &str, attrs: &[(&str, &str)]) -> crate::domain::Principal {
    use crate::domain::{AuthMethod, Principal, PrincipalKind, RoleSource};
    Principal {
        subject: "bob".into(),
        kind: PrincipalKind::User,
        email: None,
        groups: vec![],
        role: role.into(),
        role_source: RoleSource::Binding,
        auth: AuthMethod::ApiKey,
        key_id: Some("k1".into()),
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn generation(prompt: &str, negative: &str) -> crate::domain::Action {
    crate::domain::Action {
        permissions: vec![crate::domain::Permission::GenerationCreate],
        name: "text-to-image".into(),
        preset: Some("Speed".into()),
        prompt: Some(prompt.into()),
        negative_prompt: Some(negative.into()),
        prompts: vec![prompt.into()],
        ..Default::default()
    }
}

fn rules_say(
    p: &crate::policy::Policy,
    who: &crate::domain::Principal,
    a: &crate::domain::Action,
) -> crate::policy::RuleOutcome {
    let findings = crate::policy::check_content_and_templates(p, who, a, &[]).unwrap();
    p.rules.evaluate(&crate::policy::RuleInput {
        principal: who,
        action: a,
        method: "POST",
        path: "/v1/generation/text-to-image",
        permission: crate::domain::Permission::GenerationCreate,
        pii: &findings.pii,
        now: chrono::Utc::now(),
    })
}

#[test]
fn rules_content_and_templates_compile_and_apply() {
    use crate::policy::{RuleOutcome, check_content_and_templates};
    let p = compile(FULL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.rules.rules().len(), 3);
    assert_eq!(p.templates.len(), 2);
    assert_eq!(p.templates[1].max_words, 3);
    assert!(p.roles["designer_basic"].templates_only);
    assert!(!p.roles["designer_advanced"].templates_only);

    // templates_only: off-template prompts are refused, template prompts pass.
    let basic = principal("designer_basic", &[]);
    let d = check_content_and_templates(&p, &basic, &generation("anything goes", "blur"), &[])
        .unwrap_err();
    assert_eq!(d.error, "template_required");
    assert_eq!(
        d.rule.as_deref(),
        Some("roles.designer_basic.templates_only")
    );
    let on_template = generation("a photo of red shoes on a white background", "blur");
    check_content_and_templates(&p, &basic, &on_template, &[]).unwrap();
    let dynamic = [crate::policy::Template::new("approved-later", "anything goes").unwrap()];
    check_content_and_templates(&p, &basic, &generation("anything goes", "blur"), &dynamic)
        .unwrap();

    // Content: forbidden terms and PII deny with 400 naming the category only.
    let adv = principal("designer_advanced", &[("clearance_level", "5")]);
    let d =
        check_content_and_templates(&p, &adv, &generation("Evil-Corp logo", ""), &[]).unwrap_err();
    assert_eq!(
        (d.error, d.reason.as_str()),
        ("content_blocked", "the prompt contains a forbidden term")
    );
    let d =
        check_content_and_templates(&p, &adv, &generation("ssn 123-45-6789", ""), &[]).unwrap_err();
    assert_eq!(d.reason, "the prompt contains PII: us_ssn");
    let f =
        check_content_and_templates(&p, &adv, &generation("mail a@example.com", ""), &[]).unwrap();
    assert_eq!(f.pii, ["email"]);
    assert_eq!(
        p.content.redact("mail a@example.com"),
        "mail [REDACTED:email]"
    );

    // Rules, in order.
    let mut quality = generation("a cat", "blur");
    quality.preset = Some("Quality".into());
    let marketing = principal(
        "designer_advanced",
        &[("department", "marketing"), ("clearance_level", "5")],
    );
    assert!(
        matches!(rules_say(&p, &marketing, &quality), RuleOutcome::RequireApproval { rule, .. } if rule == "cost_control")
    );
    let no_negative = generation("a photo of a cat on a white background", "");
    match rules_say(&p, &basic, &no_negative) {
        RuleOutcome::Deny(d) => {
            assert_eq!(
                d.reason,
                "designer_basic generations need a negative prompt"
            )
        }
        other => panic!("{other:?}"),
    }
    let low = principal("designer_advanced", &[("clearance_level", "2")]);
    assert!(matches!(
        rules_say(&p, &low, &generation("mail a@example.com", "x")),
        RuleOutcome::Deny(_)
    ));
    assert_eq!(
        rules_say(&p, &low, &generation("a cat", "x")),
        RuleOutcome::NoMatch
    );
}

#[test]
fn broken_rules_are_refused_with_name_and_line() {
    let e = compile(&FULL.replace(
        "int(user.clearance_level) < 3 &&",
        "int(user.clearance_level) < &&",
    ))
    .unwrap_err();
    assert!(e.problem.contains("rule `data_classification`"), "{e}");
    assert!(e.problem.contains("does not parse"), "{e}");
    assert!(
        e.to_string().starts_with("policy.yaml:27: rules[2]: "),
        "{e}"
    );

    let e = compile(&FULL.replace("request.negative_prompt ==", "request.negativ_prompt =="))
        .unwrap_err();
    assert!(
        e.problem
            .contains("rule `brand_safety`: unknown field `request.negativ_prompt`"),
        "{e}"
    );
    assert_eq!(e.line, Some(22), "{e}");
    assert!(e.fix.as_deref().unwrap().contains("negative_prompt"), "{e}");

    let e = compile(&FULL.replace("effect: require_approval", "effect: approve")).unwrap_err();
    assert!(e.problem.contains("unknown variant `approve`"), "{e}");
    assert_eq!(e.line, Some(21), "{e}");

    let e = compile(&FULL.replace("name: data_classification", "name: cost_control")).unwrap_err();
    assert!(e.problem.contains("earlier rule"), "{e}");
    assert_eq!(e.line, Some(27), "{e}");
}

#[test]
fn content_and_template_errors_are_located() {
    let e = compile(&FULL.replace("us_ssn: deny", "passport: deny")).unwrap_err();
    assert!(e.problem.contains("unknown detector `passport`"), "{e}");
    assert_eq!(e.line, Some(19), "{e}");
    assert!(e.fix.as_deref().unwrap().contains("credit_card"), "{e}");

    let e = compile(&FULL.replace("email: redact", "email: mask")).unwrap_err();
    assert!(e.problem.contains("`deny` or `redact`"), "{e}");

    let list = FULL.replace(
        "pii: {email: redact, credit_card: deny, us_ssn: deny}",
        "pii: [email, iban]",
    );
    let p = compile(&list).unwrap();
    assert!(p.content.detects_pii());

    let e = compile(&FULL.replace("on a white background", "on {a white} background")).unwrap_err();
    assert!(
        e.problem
            .starts_with("templates[0] `product-shot`: placeholder"),
        "{e}"
    );
    assert_eq!(e.line, Some(13), "{e}");
    let e = compile(&FULL.replace("max_words: 3", "max_words: 0")).unwrap_err();
    assert_eq!(e.line, Some(14), "{e}");

    let e = compile(&FULL.replace(
        "forbidden_terms: [evil corp, gore]",
        "forbidden_terms: [\"...\"]",
    ))
    .unwrap_err();
    assert!(e.problem.contains("forbidden_terms[0]"), "{e}");
    assert_eq!(e.line, Some(18), "{e}");

    let dlp = FULL.replace(
        "  forbidden_terms:",
        "  dlp: {url: \"ftp://dlp\"}\n  forbidden_terms:",
    );
    let e = compile(&dlp).unwrap_err();
    assert!(e.problem.contains("dlp.url"), "{e}");
    let dlp = FULL.replace(
        "  forbidden_terms:",
        "  dlp: {url: \"http://127.0.0.1:8000/scan\", timeout_ms: 250}\n  forbidden_terms:",
    );
    assert!(compile(&dlp).unwrap().content.has_dlp());
}

#[test]
fn rules_reading_pii_need_a_detector() {
    let text = FULL.replace(
        "  pii: {email: redact, credit_card: deny, us_ssn: deny}\n",
        "",
    );
    let e = compile(&text).unwrap_err();
    assert!(e.problem.contains("content.pii enables no detector"), "{e}");
}

#[test]
fn policy_without_routes_is_refused() {
    let e = compile("roles: {viewer: {permissions: []}}\n").unwrap_err();
    assert!(e.problem.contains("no routes"), "{e}");
}

#[test]
fn server_config_defaults_and_paths() {
    let cfg = ServerConfig::parse(
        Path::new("/etc/ig/inferguard.yaml"),
        "policy: {file: policy.yaml}\n",
    )
    .unwrap();
    assert_eq!(cfg.listen.ext_authz.to_string(), "127.0.0.1:9191");
    assert_eq!(cfg.listen.http.to_string(), "0.0.0.0:8181");
    assert_eq!(cfg.policy_path(), Path::new("/etc/ig/policy.yaml"));
    assert_eq!(cfg.store_url(), "sqlite:///etc/ig/inferguard.db?mode=rwc");
    assert_eq!(cfg.upstream.header, "x-api-key");
}

#[test]
fn server_config_errors() {
    let e = ServerConfig::parse(
        Path::new("ig.yaml"),
        "policy: {file: p.yaml}\nlisten: {ext_authz: nowhere}\n",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = ServerConfig::parse(
        Path::new("ig.yaml"),
        "policy: {file: p.yaml}\nstore: {url: mysql://x}\n",
    )
    .unwrap_err();
    assert!(e.problem.contains("unsupported store url"), "{e}");
    let e = ServerConfig::parse(Path::new("ig.yaml"), "polcy: {file: p.yaml}\n").unwrap_err();
    assert!(e.problem.contains("unknown field `polcy`"), "{e}");
}

#[test]
fn files_are_told_apart() {
    assert_eq!(
        detect_kind(Path::new("a"), POLICY).unwrap(),
        FileKind::Policy
    );
    assert_eq!(
        detect_kind(Path::new("a"), "policy: {file: p}\n").unwrap(),
        FileKind::Server
    );
    assert!(detect_kind(Path::new("a"), "- 1\n").is_err());
}
