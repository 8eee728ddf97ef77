//! The fixtures of `benches/stages.rs`, shared with `examples/cel_rules.rs` (which counts the
//! CEL stage's instructions under callgrind): the policy with its two rules, the request bodies,
//! a request and a principal. Each user takes what it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;

use inferguard::domain::{AuthMethod, Principal, PrincipalKind, Request, RoleSource};

pub const POLICY: &str = r#"
apis: [fooocus-api, openai]
default_role: viewer
roles:
  viewer: {permissions: [generation:view]}
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed, Lightning, Extreme Speed]
    loras: []
    models: ["juggernautXL_v8Rundiffusion.safetensors"]
    max_images: 4
    max_pixels: 1048576
rules:
  - name: no-night-batches
    when: 'request.image_number > 2 && user.department == "night"'
    effect: deny
    message: no large batches at night
  - name: no-secret-words
    when: 'request.prompts.exists(p, p.contains("confidential"))'
    effect: deny
"#;

/// The Fooocus text-to-image body of scripts/bench-check (~2 KB).
pub fn fooocus_body() -> Vec<u8> {
    let prompt = "a lighthouse on a rocky coast at dusk, dramatic clouds, volumetric light, \
                  highly detailed, 35mm photograph, golden hour, waves crashing, seagulls"
        .repeat(8);
    serde_json::to_vec(&serde_json::json!({
        "prompt": prompt,
        "negative_prompt": "blurry, low quality, watermark, text, signature",
        "style_selections": ["Fooocus V2", "Fooocus Enhance", "Fooocus Sharp"],
        "performance_selection": "Speed",
        "aspect_ratios_selection": "1024*1024",
        "image_number": 1,
        "image_seed": 12345,
        "sharpness": 2.0,
        "guidance_scale": 4.0,
        "base_model_name": "juggernautXL_v8Rundiffusion.safetensors",
        "refiner_model_name": "None",
        "refiner_switch": 0.5,
        "loras": [{"enabled": false, "model_name": "None", "weight": 1.0}],
        "advanced_params": {"overwrite_width": -1, "overwrite_height": -1, "adm_scaler_positive": 1.5},
        "require_base64": false,
        "async_process": false
    }))
    .expect("json")
}

pub fn chat_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "mistral",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant.".repeat(10)},
            {"role": "user", "content": [{"type": "text", "text": "Summarise the attached report.".repeat(20)}]}
        ],
        "max_tokens": 512,
        "temperature": 0.2
    }))
    .expect("json")
}

pub fn request(path: &str, body: Vec<u8>) -> Request {
    let mut req = Request {
        id: "bench".into(),
        method: "POST".into(),
        path: path.into(),
        body,
        ..Request::default()
    };
    req.headers
        .insert("content-type".into(), "application/json".into());
    req
}

pub fn principal(auth: AuthMethod) -> Principal {
    Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        role: "designer_basic".into(),
        role_source: RoleSource::Binding,
        auth,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: BTreeMap::from([("department".to_string(), "design".to_string())]),
    }
}
