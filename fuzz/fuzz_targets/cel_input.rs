//! CEL input building: a request body turned into an Action by the extractors, then every
//! `request.*` and `user.*` field handed to compiled rules that read them all.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::TimeZone;
use inferguard::domain::{AuthMethod, Principal, PrincipalKind, Request, RoleSource};
use inferguard::inference::{ApiSet, RouteTable, understand};
use inferguard::policy::{Effect, RuleInput, RuleSet, RuleSpec};
use libfuzzer_sys::fuzz_target;

fn rules() -> &'static (RouteTable, RuleSet) {
    static R: OnceLock<(RouteTable, RuleSet)> = OnceLock::new();
    R.get_or_init(|| {
        let table = RouteTable::new(&[ApiSet::FooocusApi, ApiSet::OpenAi, ApiSet::Tgi], vec![]);
        let when = [
            r#"request.prompt.contains("x") || request.negative_prompt.size() > 3"#,
            r#"request.prompts.exists(p, p.matches("[0-9]{4}")) && request.image_number > 2"#,
            r#"request.loras.size() > 1 || request.model == "m" || request.preset == "Quality""#,
            r#"request.width * request.height > 1000000 || request.max_tokens > 100 || request.upscale"#,
            r#"("department" in user.attributes && user.attributes.department == user.subject) || "g" in user.groups || user.mfa"#,
        ];
        let specs = when
            .iter()
            .enumerate()
            .map(|(i, w)| RuleSpec {
                name: format!("r{i}"),
                when: (*w).to_string(),
                effect: Effect::Deny,
                message: None,
            })
            .collect();
        (table, RuleSet::compile(specs).expect("rules compile"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (table, set) = rules();
    let routes: Vec<_> = table.routes().iter().filter(|r| r.body.is_some()).collect();
    let route = routes[usize::from(pick) % routes.len()];
    let mut req = Request {
        method: "POST".into(),
        path: route.path.to_string().replace('*', "x"),
        body: body.to_vec(),
        ..Request::default()
    };
    req.headers
        .insert("content-type".into(), "application/json".into());
    let Ok(action) = understand(route, &req) else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    let mut attributes = BTreeMap::new();
    attributes.insert("department".to_string(), text.chars().take(40).collect());
    let principal = Principal {
        subject: text.chars().take(20).collect(),
        kind: PrincipalKind::User,
        email: None,
        groups: vec![text.chars().rev().take(10).collect()],
        role: "r".into(),
        role_source: RoleSource::Default,
        auth: AuthMethod::ApiKey,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: false,
        attributes,
    };
    let _ = set.evaluate(&RuleInput {
        principal: &principal,
        action: &action,
        method: &req.method,
        path: &req.path,
        permission: route.permission,
        pii: &[],
        now: chrono::Utc
            .with_ymd_and_hms(2026, 11, 23, 14, 30, 0)
            .unwrap(),
    });
});
