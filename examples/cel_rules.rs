//! Evaluates the two CEL rules of `benches/stages.rs` (`policy/cel_rules_2`) N times on the
//! same ~2 KB Fooocus text-to-image request, for an instruction count that does not move with
//! the machine's load:
//!
//! ```sh
//! cargo build --release --example cel_rules
//! for n in 0 10000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cel.$n target/release/examples/cel_rules $n
//! done
//! # instructions per evaluation = (Ir of 10000 - Ir of 0) / 10000
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use inferguard::config::compile_policy;
use inferguard::domain::{Action, AuthMethod, Principal, PrincipalKind, Request, RoleSource};
use inferguard::inference::{ApiSet, RouteTable, understand};
use inferguard::policy::{RuleInput, RuleOutcome};

/// The rules of `benches/stages.rs`.
const POLICY: &str = r#"
apis: [fooocus-api]
default_role: viewer
roles:
  viewer: {permissions: [generation:view]}
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
rules:
  - name: no-night-batches
    when: 'request.image_number > 2 && user.department == "night"'
    effect: deny
    message: no large batches at night
  - name: no-secret-words
    when: 'request.prompts.exists(p, p.contains("confidential"))'
    effect: deny
"#;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of evaluations"))
        .unwrap_or(10_000);
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).expect("policy");
    let table = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
    let prompt = "a lighthouse on a rocky coast at dusk, dramatic clouds, volumetric light, \
                  highly detailed, 35mm photograph, golden hour, waves crashing, seagulls"
        .repeat(8);
    let body = serde_json::to_vec(&serde_json::json!({
        "prompt": prompt,
        "negative_prompt": "blurry, low quality, watermark, text, signature",
        "style_selections": ["Fooocus V2", "Fooocus Enhance", "Fooocus Sharp"],
        "performance_selection": "Speed",
        "aspect_ratios_selection": "1024*1024",
        "image_number": 1,
        "base_model_name": "juggernautXL_v8Rundiffusion.safetensors",
        "refiner_model_name": "None",
        "loras": [{"enabled": false, "model_name": "None", "weight": 1.0}],
    }))
    .expect("json");
    let mut req = Request {
        id: "cel".into(),
        method: "POST".into(),
        path: "/v1/generation/text-to-image".into(),
        body,
        ..Request::default()
    };
    req.headers
        .insert("content-type".into(), "application/json".into());
    let route = table.find("POST", &req.path).expect("route");
    let action: Action = understand(route, &req).expect("action");
    let who = Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        role: "designer_basic".into(),
        role_source: RoleSource::Binding,
        auth: AuthMethod::ApiKey,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: BTreeMap::from([("department".to_string(), "design".to_string())]),
    };
    let now = chrono::Utc::now();
    for _ in 0..n {
        let outcome = policy.rules.evaluate(&RuleInput {
            principal: &who,
            action: black_box(&action),
            method: "POST",
            path: &req.path,
            permission: route.permission,
            pii: &[],
            now,
        });
        assert_eq!(outcome, RuleOutcome::NoMatch);
    }
    println!("{n} evaluations");
}
