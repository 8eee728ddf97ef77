use crate::domain::{Action, ApiKind, Permission, Request};
use crate::inference::InferenceError;

use super::understand;

const JUGGERNAUT: &str = "juggernautXL_v8Rundiffusion.safetensors";

fn json_req(path_and_query: &str, body: &str) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut r = Request {
        method: "POST".into(),
        path: path.into(),
        query: query.into(),
        body: body.as_bytes().to_vec(),
        ..Request::default()
    };
    r.headers
        .insert("content-type".into(), "application/json".into());
    r
}

fn run(path_and_query: &str, body: &str) -> Result<Action, InferenceError> {
    let r = json_req(path_and_query, body);
    understand(&r.path.clone(), &r)
}

fn ok(path_and_query: &str, body: &str) -> Action {
    run(path_and_query, body).unwrap_or_else(|e| panic!("{e}"))
}

fn invalid_field(result: Result<Action, InferenceError>) -> String {
    match result {
        Err(InferenceError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// A multipart/form-data body: (name, Some(filename) for files, bytes).
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(b"--Bound4ry\r\n");
        let disposition = match filename {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--Bound4ry--\r\n");
    body
}

fn form_req(path: &str, body: Vec<u8>) -> Request {
    let mut r = Request {
        method: "POST".into(),
        path: path.into(),
        body,
        ..Request::default()
    };
    r.headers.insert(
        "content-type".into(),
        "multipart/form-data; boundary=Bound4ry".into(),
    );
    r
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

// === Fooocus-API v1 text-to-image (JSON) ===

#[test]
fn empty_body_gets_every_default() {
    let a = ok("/v1/generation/text-to-image", "{}");
    assert_eq!(a.api, Some(ApiKind::Image));
    assert_eq!(a.name, "text-to-image");
    assert_eq!(a.preset.as_deref(), Some("Speed"));
    assert_eq!(a.image_number, Some(1));
    assert_eq!(a.model.as_deref(), Some(JUGGERNAUT));
    assert_eq!(a.refiner_model, None);
    assert_eq!((a.width, a.height), (Some(1152), Some(896)));
    assert!(
        a.loras.is_empty(),
        "the default offset LoRA is the server's, not the caller's"
    );
    assert!(!a.upscale);
    assert!(a.permissions.is_empty());
    assert_eq!(a.prompt.as_deref(), Some(""));
    assert!(a.prompts.is_empty());
    assert!(a.urls.is_empty());
}

#[test]
fn realistic_text_to_image_body() {
    let a = ok(
        "/v1/generation/text-to-image",
        r#"{
            "prompt": "a lighthouse at dusk <lora:film_grain:0.6>, dramatic sky\nsecond line <lora:ignored:1>",
            "negative_prompt": "blurry",
            "style_selections": ["Fooocus V2", "Fooocus Enhance"],
            "performance_selection": "Quality",
            "aspect_ratios_selection": "896*1152",
            "image_number": "4",
            "image_seed": -1,
            "base_model_name": "realisticStockPhoto_v20.safetensors",
            "refiner_model_name": "sd_xl_refiner_1.0_0.9vae.safetensors",
            "loras": [
                {"enabled": true, "model_name": "sd_xl_offset_example-lora_1.0.safetensors", "weight": 0.1},
                {"enabled": "false", "model_name": "disabled.safetensors", "weight": 1},
                {"enabled": true, "model_name": "None", "weight": 1},
                {"enabled": "true", "model_name": "detail.safetensors", "weight": "0.7"}
            ],
            "advanced_params": {"overwrite_width": 1024, "overwrite_step": 50},
            "webhook_url": "https://hooks.example.com/done",
            "async_process": true,
            "unknown_field": {"ignored": true}
        }"#,
    );
    assert_eq!(a.preset.as_deref(), Some("Quality"));
    assert_eq!(a.image_number, Some(4));
    assert_eq!(
        a.model.as_deref(),
        Some("realisticStockPhoto_v20.safetensors")
    );
    assert_eq!(
        a.refiner_model.as_deref(),
        Some("sd_xl_refiner_1.0_0.9vae.safetensors")
    );
    assert_eq!((a.width, a.height), (Some(1024), Some(1152)));
    assert_eq!(
        a.loras,
        [
            "sd_xl_offset_example-lora_1.0.safetensors",
            "detail.safetensors",
            "film_grain"
        ]
    );
    assert_eq!(a.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!(a.prompts.len(), 1);
    assert!(a.prompts[0].starts_with("a lighthouse"));
    assert_eq!(a.urls, ["https://hooks.example.com/done"]);
    assert!(!a.upscale);
}

#[test]
fn duplicate_keys_take_the_last_value() {
    let a = ok(
        "/v1/generation/text-to-image",
        r#"{"performance_selection": "Quality", "image_number": 8, "performance_selection": "Speed", "image_number": 2}"#,
    );
    assert_eq!(a.preset.as_deref(), Some("Speed"));
    assert_eq!(a.image_number, Some(2));
}

#[test]
fn values_the_upstream_refuses_are_invalid() {
    let p = "/v1/generation/text-to-image";
    let cases = [
        (r#"{"image_number": 0}"#, "image_number"),
        (r#"{"image_number": 99}"#, "image_number"),
        (r#"{"image_number": 4.5}"#, "image_number"),
        (r#"{"image_number": "two"}"#, "image_number"),
        (r#"{"image_number": null}"#, "image_number"),
        (
            r#"{"performance_selection": "quality"}"#,
            "performance_selection",
        ),
        (
            r#"{"performance_selection": "Turbo"}"#,
            "performance_selection",
        ),
        (r#"{"prompt": 42}"#, "prompt"),
        (
            r#"{"aspect_ratios_selection": "big"}"#,
            "aspect_ratios_selection",
        ),
        (
            r#"{"aspect_ratios_selection": "1152*"}"#,
            "aspect_ratios_selection",
        ),
        (
            r#"{"aspect_ratios_selection": "0*896"}"#,
            "aspect_ratios_selection",
        ),
        (
            r#"{"loras": [{"model_name": "a.safetensors"}]}"#,
            "loras[0].enabled",
        ),
        (r#"{"loras": [{"enabled": true}]}"#, "loras[0].model_name"),
        (
            r#"{"loras": [{"enabled": "sometimes", "model_name": "a"}]}"#,
            "loras[0].enabled",
        ),
        (
            r#"{"loras": [{"enabled": true, "model_name": "a", "weight": 3}]}"#,
            "loras[0].weight",
        ),
        (
            r#"{"loras": [{"enabled": true, "model_name": "../../etc/x"}]}"#,
            "loras[0].model_name",
        ),
        (
            r#"{"loras": [{"enabled": true, "model_name": "/abs/x.safetensors"}]}"#,
            "loras[0].model_name",
        ),
        (r#"{"loras": "[]"}"#, "loras"),
        (r#"{"loras": null}"#, "loras"),
        (r#"{"prompt": "<lora:../evil:1> a cat"}"#, "prompt"),
        (
            r#"{"advanced_params": {"overwrite_width": 5000}}"#,
            "advanced_params.overwrite_width",
        ),
        (r#"{"advanced_params": "{}"}"#, "advanced_params"),
        (r#"{"refiner_switch": 2}"#, "refiner_switch"),
    ];
    for (body, field) in cases {
        assert_eq!(invalid_field(run(p, body)), field, "{body}");
    }
    // A disabled entry is never loaded, so its name is not judged.
    assert!(
        run(
            p,
            r#"{"loras": [{"enabled": false, "model_name": "../x"}]}"#
        )
        .is_ok()
    );
}

#[test]
fn aspect_ratio_spellings() {
    let p = "/v1/generation/text-to-image";
    let size = |aspect: &str| {
        let a = ok(p, &format!(r#"{{"aspect_ratios_selection": "{aspect}"}}"#));
        (a.width.unwrap(), a.height.unwrap())
    };
    assert_eq!(size("1024*1024"), (1024, 1024));
    assert_eq!(size("1152×896"), (1152, 896));
    assert_eq!(
        size("1152×896 <span style='color: grey;'> ∣ 9:7</span>"),
        (1152, 896)
    );
    assert_eq!(size("4096*4096"), (4096, 4096));
    let a = ok(
        p,
        r#"{"advanced_params": {"overwrite_width": "640", "overwrite_height": 480}}"#,
    );
    assert_eq!((a.width, a.height), (Some(640), Some(480)));
    let a = ok(
        p,
        r#"{"advanced_params": {"overwrite_width": -1, "overwrite_height": 0}}"#,
    );
    assert_eq!((a.width, a.height), (Some(1152), Some(896)));
}

#[test]
fn lora_tags_count_only_on_the_first_non_empty_line() {
    let p = "/v1/generation/text-to-image";
    let a = ok(
        p,
        r#"{"prompt": "\n\n<lora:style_a:1>, <lora:style_b:-0.5> portrait", "loras": []}"#,
    );
    assert_eq!(a.loras, ["style_a", "style_b"]);
    let a = ok(p, r#"{"prompt": "portrait\n<lora:style_a:1>"}"#);
    assert!(a.loras.is_empty());
    // The same LoRA chosen twice is listed once.
    let a = ok(
        p,
        r#"{"prompt": "<lora:d:1>", "loras": [{"enabled": true, "model_name": "d", "weight": 1}]}"#,
    );
    assert_eq!(a.loras, ["d"]);
}

#[test]
fn accept_png_forces_one_image() {
    let p = "/v1/generation/text-to-image";
    let body = r#"{"image_number": 6}"#;
    assert_eq!(
        ok(&format!("{p}?accept=image/png"), body).image_number,
        Some(1)
    );
    assert_eq!(
        ok(&format!("{p}?accept=image%2Fpng"), body).image_number,
        Some(1)
    );
    let mut r = json_req(p, body);
    r.headers.insert("accept".into(), "image/png".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(1));
    // A non-empty query value overrides the header.
    let mut r = json_req(&format!("{p}?accept=application/json"), body);
    r.headers.insert("accept".into(), "image/png".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(6));
    // An empty one does not.
    let mut r = json_req(&format!("{p}?accept="), body);
    r.headers.insert("accept".into(), "image/png".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(1));
    // The comparison is exact.
    let mut r = json_req(p, body);
    r.headers.insert("accept".into(), "image/png, */*".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(6));
    // image_number is validated before it is forced.
    assert!(run(&format!("{p}?accept=image/png"), r#"{"image_number": 40}"#).is_err());
}

#[test]
fn content_types_on_json_routes() {
    let p = "/v1/generation/text-to-image";
    let mut r = json_req(p, r#"{"image_number": 3}"#);
    r.headers.remove("content-type");
    assert_eq!(understand(p, &r).unwrap().image_number, Some(3));
    r.headers
        .insert("content-type".into(), "application/vnd.fooocus+json".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(3));
    for ct in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ] {
        r.headers.insert("content-type".into(), ct.into());
        assert!(
            matches!(understand(p, &r), Err(InferenceError::Malformed(_))),
            "{ct}"
        );
    }
}

#[test]
fn refiner_is_effective() {
    let p = "/v1/generation/text-to-image";
    let refiner = |body: &str| ok(p, body).refiner_model;
    assert_eq!(refiner(r#"{"refiner_model_name": "None"}"#), None);
    assert_eq!(refiner(r#"{"refiner_model_name": ""}"#), None);
    assert_eq!(
        refiner(&format!(r#"{{"refiner_model_name": "{JUGGERNAUT}"}}"#)),
        None
    );
    assert_eq!(
        refiner(r#"{"refiner_model_name": "r.safetensors", "performance_selection": "Lightning"}"#),
        None
    );
    assert_eq!(
        refiner(r#"{"refiner_model_name": "r.safetensors", "performance_selection": "Quality"}"#)
            .as_deref(),
        Some("r.safetensors")
    );
}

#[test]
fn upscale_named_inside_a_text_to_image_body_counts() {
    let p = "/v1/generation/text-to-image";
    let a = ok(
        p,
        r#"{"uov_method": "Upscale (2x)", "input_image": "https://img.example.com/a.png"}"#,
    );
    assert!(a.upscale);
    assert_eq!(a.permissions, vec![Permission::GenerationUpscale]);
    assert_eq!((a.width, a.height), (None, None));
    let a = ok(
        p,
        r#"{"enhance_uov_method": "Vary (Strong)", "enhance_checkbox": true}"#,
    );
    assert!(a.upscale);
    let a = ok(
        "/v2/generation/text-to-image-with-ip",
        r#"{"uov_method": "Vary (Subtle)", "uov_input_image": "aGk="}"#,
    );
    assert!(a.upscale);
    for body in [
        r#"{"uov_method": "Disabled", "input_image": "aGVsbG8="}"#,
        r#"{"uov_method": "Upscale (2x)"}"#,
        r#"{"uov_method": "Upscale (2x)", "input_image": "None"}"#,
        r#"{"enhance_uov_method": "Vary (Strong)", "enhance_checkbox": false}"#,
    ] {
        let a = ok(p, body);
        assert!(!a.upscale, "{body}");
        assert!(a.permissions.is_empty(), "{body}");
    }
}

#[test]
fn proxy_prefixed_paths_and_unknown_paths() {
    let a = ok(
        "/fooocus/v1/generation/text-to-image",
        r#"{"image_number": 2}"#,
    );
    assert_eq!(
        (a.name.as_str(), a.image_number),
        ("text-to-image", Some(2))
    );
    let a = ok(
        "/custom/generate",
        r#"{"uov_method": "Vary (Subtle)", "input_image": "aGk="}"#,
    );
    assert!(a.upscale, "unknown paths are read conservatively");
    assert!(a.permissions.contains(&Permission::GenerationUpscale));
}

#[test]
fn garbage_never_panics() {
    let p = "/v1/generation/text-to-image";
    let deep = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let mut noise = Vec::with_capacity(1 << 16);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..(1 << 16) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let noise = String::from_utf8_lossy(&noise).into_owned();
    for body in [
        "",
        "null",
        "[]",
        "\"text\"",
        "{\"prompt\":",
        "{}}",
        deep.as_str(),
        noise.as_str(),
    ] {
        assert!(
            matches!(run(p, body), Err(InferenceError::Malformed(_))),
            "{}",
            body.len()
        );
    }
    let mut r = json_req(p, "");
    r.body = vec![0xff, 0xfe, 0x00, 0x7b];
    assert!(matches!(
        understand(p, &r),
        Err(InferenceError::Malformed(_))
    ));
    // Large but valid bodies are read.
    let big = format!(r#"{{"prompt": "{}"}}"#, "a ".repeat(1 << 20));
    assert_eq!(ok(p, &big).prompts[0].len(), 2 << 20);
}

// === Fooocus-API v2 (JSON) ===

#[test]
fn v2_upscale_vary() {
    let p = "/v2/generation/image-upscale-vary";
    let a = ok(
        p,
        r#"{"input_image": "https://img.example.com/in.png", "image_number": 2}"#,
    );
    assert_eq!(a.name, "upscale-vary");
    assert!(a.upscale, "v2 defaults to Upscale (2x)");
    assert_eq!(a.permissions, vec![Permission::GenerationUpscale]);
    assert_eq!(a.urls, ["https://img.example.com/in.png"]);
    assert_eq!((a.width, a.height), (None, None));
    assert_eq!(a.image_number, Some(2));

    let a = ok(p, r#"{"input_image": "aGk=", "uov_method": "Disabled"}"#);
    assert!(!a.upscale);
    assert_eq!(
        a.permissions,
        vec![Permission::GenerationUpscale],
        "the route itself needs upscale"
    );
    assert_eq!(a.width, Some(1152));

    assert_eq!(invalid_field(run(p, "{}")), "input_image");
    assert_eq!(
        invalid_field(run(
            p,
            r#"{"input_image": "x", "uov_method": "upscale (2x)"}"#
        )),
        "uov_method"
    );
    assert_eq!(
        invalid_field(run(p, r#"{"input_image": "x", "upscale_value": 9}"#)),
        "upscale_value"
    );
}

#[test]
fn v2_inpaint_outpaint() {
    let p = "/v2/generation/image-inpaint-outpaint";
    let a = ok(
        p,
        r#"{"prompt": "a garden", "input_image": "http://10.0.0.5/in.png", "input_mask": "https://m/mask.png",
            "inpaint_additional_prompt": "<lora:flowers:0.8> roses", "outpaint_selections": ["Left", "Right"]}"#,
    );
    assert_eq!(a.name, "inpaint-outpaint");
    assert_eq!(a.prompts, ["a garden", "<lora:flowers:0.8> roses"]);
    assert_eq!(a.loras, ["flowers"]);
    assert_eq!(a.urls, ["http://10.0.0.5/in.png", "https://m/mask.png"]);
    assert_eq!(a.width, None);
    assert!(!a.upscale);
    let a = ok(p, r#"{"input_image": ""}"#);
    assert_eq!(a.width, Some(1152));
    // The old spelling is the same endpoint.
    assert_eq!(
        ok("/v2/generation/image-inpait-outpaint", "{}").name,
        "inpaint-outpaint"
    );
}

#[test]
fn v2_image_prompt_and_text_to_image_with_ip() {
    let p = "/v2/generation/image-prompt";
    let a = ok(
        p,
        r#"{"prompt": "p", "image_prompts": [{"cn_img": "https://a/1.png", "cn_type": "FaceSwap"}, {"cn_img": "aGk="}, {"cn_img": null}]}"#,
    );
    assert_eq!(a.name, "image-prompt");
    assert_eq!(a.urls, ["https://a/1.png"]);
    assert_eq!(invalid_field(run(p, "{}")), "image_prompts");
    assert_eq!(
        invalid_field(run(p, r#"{"image_prompts": [5]}"#)),
        "image_prompts[0]"
    );
    assert!(run(p, r#"{"image_prompts": []}"#).is_ok());

    let a = ok(
        "/v2/generation/text-to-image-with-ip",
        r#"{"image_prompts": [{"cn_img": "http://x/y.png"}]}"#,
    );
    assert_eq!(a.name, "text-to-image+image-prompt");
    assert_eq!(a.urls, ["http://x/y.png"]);
    assert_eq!(a.width, Some(1152));
}

#[test]
fn v2_enhance() {
    let p = "/v2/generation/image-enhance";
    let a = ok(
        p,
        r#"{"image_number": 5, "enhance_input_image": "https://e/in.png",
            "enhance_ctrlnets": [
              {"enhance_enabled": true, "enhance_mask_dino_prompt": "face", "enhance_prompt": "<lora:skin:1> smooth skin"},
              {"enhance_enabled": false, "enhance_prompt": ""}
            ]}"#,
    );
    assert_eq!(a.name, "image-enhance");
    assert_eq!(a.image_number, Some(1), "enhance forces one image");
    assert!(a.upscale, "enhance_uov_method defaults to Vary (Strong)");
    assert_eq!(a.permissions, vec![Permission::GenerationUpscale]);
    assert_eq!(a.prompts, ["<lora:skin:1> smooth skin", "face"]);
    assert_eq!(a.loras, ["skin"]);
    assert_eq!(a.urls, ["https://e/in.png"]);
    assert_eq!(a.width, None);

    let a = ok(
        p,
        r#"{"enhance_uov_method": "Disabled", "enhance_ctrlnets": []}"#,
    );
    assert!(!a.upscale);
    assert!(a.permissions.is_empty());
    assert_eq!(invalid_field(run(p, "{}")), "enhance_ctrlnets");
}

// === Fooocus-API v1 forms ===

#[test]
fn v1_upscale_form_with_loras_json_string() {
    let body = form(&[
        ("input_image", Some("in.png"), PNG),
        ("uov_method", None, b"Vary (Strong)"),
        ("prompt", None, b"a castle <lora:castle_style:0.9>"),
        ("performance_selection", None, b"Quality"),
        ("image_number", None, b"3"),
        (
            "loras",
            None,
            br#"[{"enabled": true, "model_name": "arch.safetensors", "weight": 0.5}, {"enabled": false, "model_name": "off.safetensors"}]"#,
        ),
        ("advanced_params", None, b"{not json"),
        ("webhook_url", None, b"http://hooks.internal/x"),
    ]);
    let p = "/v1/generation/image-upscale-vary";
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.name, "upscale-vary");
    assert!(a.upscale);
    assert_eq!(a.permissions, vec![Permission::GenerationUpscale]);
    assert_eq!(a.preset.as_deref(), Some("Quality"));
    assert_eq!(a.image_number, Some(3));
    assert_eq!(a.loras, ["arch.safetensors", "castle_style"]);
    assert_eq!(a.urls, ["http://hooks.internal/x"]);
    assert_eq!(a.width, None);
}

#[test]
fn v1_form_requirements_and_defaults() {
    let p = "/v1/generation/image-upscale-vary";
    let no_method = form(&[("input_image", Some("a.png"), PNG)]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, no_method))),
        "uov_method"
    );
    let no_image = form(&[("uov_method", None, b"Upscale (2x)")]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, no_image))),
        "input_image"
    );
    // A text part is not a file.
    let text_image = form(&[
        ("input_image", None, b"aGk="),
        ("uov_method", None, b"Upscale (2x)"),
    ]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, text_image))),
        "input_image"
    );
    let bad_loras = form(&[
        ("input_image", Some("a.png"), PNG),
        ("uov_method", None, b"Upscale (2x)"),
        ("loras", None, b"[{\"model_name\": \"x\"}]"),
    ]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, bad_loras))),
        "loras[0].enabled"
    );
    let garbage_loras = form(&[
        ("input_image", Some("a.png"), PNG),
        ("uov_method", None, b"Upscale (2x)"),
        ("loras", None, b"not json"),
    ]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, garbage_loras))),
        "loras"
    );

    // Empty values take the default; the last of repeated fields wins.
    let p = "/v1/generation/image-prompt";
    let body = form(&[
        ("image_number", None, b""),
        ("performance_selection", None, b"Quality"),
        ("performance_selection", None, b"Lightning"),
        ("loras", None, b""),
    ]);
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.image_number, Some(1));
    assert_eq!(a.preset.as_deref(), Some("Lightning"));
    assert!(a.loras.is_empty());
}

#[test]
fn v1_form_advanced_params_fall_back_to_defaults() {
    let p = "/v1/generation/image-prompt";
    let width = |adv: &[u8]| {
        let body = form(&[("advanced_params", None, adv)]);
        understand(p, &form_req(p, body)).unwrap().width
    };
    assert_eq!(width(br#"{"overwrite_width": 1024}"#), Some(1024));
    assert_eq!(width(br#"{"overwrite_width": "768"}"#), Some(768));
    assert_eq!(width(b"{broken"), Some(1152));
    assert_eq!(width(br#"{"overwrite_width": 5000}"#), Some(1152));
    assert_eq!(width(b"[1]"), Some(1152));
}

#[test]
fn v1_image_prompt_and_inpaint_forms() {
    let p = "/v1/generation/image-prompt";
    let body = form(&[
        ("cn_img1", Some("a.png"), PNG),
        ("cn_type1", None, b"PyraCanny"),
        ("prompt", None, b"a robot"),
    ]);
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.name, "image-prompt");
    assert_eq!(a.width, Some(1152));
    let body = form(&[
        ("input_image", Some("a.png"), PNG),
        ("inpaint_additional_prompt", None, b"hat"),
    ]);
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.width, None, "an input image decides the size");
    assert_eq!(a.prompts, ["hat"]);

    let p = "/v1/generation/image-inpaint-outpaint";
    let body = form(&[
        ("input_image", Some("a.png"), PNG),
        ("outpaint_selections", None, b"Left,Right"),
    ]);
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.name, "inpaint-outpaint");
    let body = form(&[("prompt", None, b"x")]);
    assert_eq!(
        invalid_field(understand(p, &form_req(p, body))),
        "input_image"
    );
}

#[test]
fn v1_enhance_form() {
    let p = "/v1/generation/image-enhance";
    let body = form(&[
        ("enhance_input_image", Some("a.png"), PNG),
        ("image_number", None, b"4"),
        ("enhance_enabled_1", None, b"true"),
        ("enhance_prompt_1", None, b"<lora:eyes:1> sharp eyes"),
        ("enhance_mask_dino_prompt_1", None, b"eyes"),
        ("enhance_uov_method", None, b"Upscale (1.5x)"),
    ]);
    let a = understand(p, &form_req(p, body)).unwrap();
    assert_eq!(a.name, "image-enhance");
    assert_eq!(a.image_number, Some(1));
    assert!(a.upscale);
    assert_eq!(a.loras, ["eyes"]);
    assert_eq!(a.prompts, ["<lora:eyes:1> sharp eyes", "eyes"]);
    let body = form(&[("enhance_uov_method", None, b"Disabled")]);
    assert!(!understand(p, &form_req(p, body)).unwrap().upscale);
}

#[test]
fn v1_form_encodings() {
    let p = "/v1/generation/image-prompt";
    let mut r = form_req(p, b"prompt=a+red+car&image_number=2".to_vec());
    r.headers.insert(
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    );
    let a = understand(p, &r).unwrap();
    assert_eq!(
        (a.prompts[0].as_str(), a.image_number),
        ("a red car", Some(2))
    );

    // Starlette treats any other body as an empty form: every default applies.
    let mut r = form_req(p, br#"{"image_number": 9}"#.to_vec());
    r.headers
        .insert("content-type".into(), "application/json".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(1));

    let mut r = form_req(p, form(&[("prompt", None, b"x")]));
    r.headers
        .insert("content-type".into(), "multipart/form-data".into());
    assert!(
        matches!(understand(p, &r), Err(InferenceError::Malformed(_))),
        "no boundary"
    );
    let r = form_req(p, b"garbage without boundaries".to_vec());
    assert!(matches!(
        understand(p, &r),
        Err(InferenceError::Malformed(_))
    ));
    let mut base64 = form(&[("performance_selection", None, b"UXVhbGl0eQ==")]);
    let at = base64.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    base64.splice(
        at..at,
        b"\r\nContent-Transfer-Encoding: base64".iter().copied(),
    );
    assert!(matches!(
        understand(p, &form_req(p, base64)),
        Err(InferenceError::Malformed(_))
    ));
}

// === FooocusAPI /v1/engine/generate/ ===

#[test]
fn engine_preset_overrides_defaults_only() {
    let p = "/v1/engine/generate/";
    let a = ok(
        p,
        r#"{"preset": "lightning", "performance_selection": "Speed"}"#,
    );
    assert_eq!(a.preset.as_deref(), Some("Lightning"));
    let a = ok(
        p,
        r#"{"preset": "lightning", "performance_selection": "Quality"}"#,
    );
    assert_eq!(a.preset.as_deref(), Some("Quality"));
    let a = ok(p, r#"{"preset": "lcm"}"#);
    assert_eq!(a.preset.as_deref(), Some("Extreme Speed"));
    let a = ok(p, r#"{"preset": "anime"}"#);
    assert_eq!(a.model.as_deref(), Some("animaPencilXL_v500.safetensors"));
    assert_eq!((a.width, a.height), (Some(896), Some(1152)));
    let a = ok(
        p,
        r#"{"preset": "anime", "base_model_name": "mine.safetensors", "aspect_ratios_selection": "1024*1024"}"#,
    );
    assert_eq!(a.model.as_deref(), Some("mine.safetensors"));
    assert_eq!(a.width, Some(1024));
    let a = ok(p, r#"{"preset": "sai"}"#);
    assert_eq!(
        a.refiner_model.as_deref(),
        Some("sd_xl_refiner_1.0_0.9vae.safetensors")
    );
    let a = ok(p, r#"{"preset": "initial"}"#);
    assert_eq!(
        (a.preset.as_deref(), a.model.as_deref()),
        (Some("Speed"), Some(JUGGERNAUT))
    );
    assert_eq!(invalid_field(run(p, r#"{"preset": "turbo"}"#)), "preset");
    assert_eq!(
        invalid_field(run(p, r#"{"preset": "../../etc/passwd"}"#)),
        "preset"
    );
    assert_eq!(invalid_field(run(p, r#"{"preset": 1}"#)), "preset");
    // The bare form (which Starlette redirects) reads the same.
    assert_eq!(
        ok("/v1/engine/generate", r#"{"preset": "lcm"}"#)
            .preset
            .as_deref(),
        Some("Extreme Speed")
    );
}

#[test]
fn engine_decides_the_work_from_the_images() {
    let p = "/v1/engine/generate/";
    let a = ok(
        p,
        r#"{"prompt": "x", "overwrite_width": 800, "image_number": 3}"#,
    );
    assert_eq!(
        (a.name.as_str(), a.width, a.image_number),
        ("text-to-image", Some(800), Some(3))
    );
    assert!(!a.upscale);

    let a = ok(
        p,
        r#"{"uov_input_image": "https://in/x.png", "uov_method": "Upscale (Custom)", "upscale_multiple": 3}"#,
    );
    assert_eq!(a.name, "upscale-vary");
    assert!(a.upscale);
    assert_eq!(a.permissions, vec![Permission::GenerationUpscale]);
    assert_eq!(a.urls, ["https://in/x.png"]);
    assert_eq!(a.width, None);

    let a = ok(
        p,
        r#"{"uov_input_image": "aGk=", "uov_method": "Disabled"}"#,
    );
    assert_eq!(a.name, "text-to-image");
    assert!(!a.upscale);

    // An image prompt takes the tab; the upscale runs only when mixing is asked for.
    let ip = r#"{"controlnet_image": [{"cn_img": "aGk="}], "uov_input_image": "aGk=", "uov_method": "Upscale (2x)""#;
    let a = ok(p, &format!("{ip}}}"));
    assert_eq!(a.name, "image-prompt");
    assert!(!a.upscale);
    let a = ok(
        p,
        &format!(r#"{ip}, "mixing_image_prompt_and_vary_upscale": "true"}}"#),
    );
    assert!(a.upscale);
    // Only the first control-net entry picks the tab.
    let a = ok(
        p,
        r#"{"controlnet_image": [{"cn_img": null}, {"cn_img": "aGk="}], "uov_input_image": "aGk=", "uov_method": "Vary (Subtle)"}"#,
    );
    assert_eq!(a.name, "upscale-vary");
    assert!(a.upscale);

    let a = ok(
        p,
        r#"{"inpaint_input_image": "aGk=", "inpaint_additional_prompt": "a hat"}"#,
    );
    assert_eq!((a.name.as_str(), a.width), ("inpaint-outpaint", None));
    assert_eq!(a.prompts, ["a hat"]);
}

#[test]
fn engine_enhance_and_binary_output() {
    let p = "/v1/engine/generate/";
    let a = ok(
        p,
        r#"{"enhance_input_image": "https://e/x.png", "image_number": 4,
            "enhance_ctrls": [{"enhance_enabled": true, "enhance_prompt": "<lora:hands:1> hands", "enhance_mask_dino_prompt": "hand"}]}"#,
    );
    assert_eq!(a.name, "image-enhance");
    assert_eq!(a.image_number, Some(1));
    assert!(
        !a.upscale,
        "FooocusAPI's enhance_uov_method defaults to Disabled"
    );
    assert_eq!(a.loras, ["hands"]);
    assert_eq!(a.prompts, ["<lora:hands:1> hands", "hand"]);
    let a = ok(
        p,
        r#"{"enhance_input_image": "aGk=", "enhance_uov_method": "Upscale (2x)"}"#,
    );
    assert!(a.upscale);
    // The enhance stage on generated images, with its own upscale.
    let a = ok(
        p,
        r#"{"enhance_checkbox": true, "enhance_uov_method": "Vary (Subtle)", "image_number": 2}"#,
    );
    assert_eq!(
        (a.name.as_str(), a.image_number),
        ("text-to-image", Some(2))
    );
    assert!(a.upscale);

    let mut r = json_req(p, r#"{"image_number": 4}"#);
    r.headers.insert("accept".into(), "image/jpeg".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(1));
    r.headers.insert("accept".into(), "application/json".into());
    assert_eq!(understand(p, &r).unwrap().image_number, Some(4));
    // FooocusAPI has no ?accept= override.
    assert_eq!(
        ok(&format!("{p}?accept=image/png"), r#"{"image_number": 4}"#).image_number,
        Some(4)
    );
}

#[test]
fn engine_reports_every_chosen_lora() {
    let loras: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"enabled": true, "model_name": "l{i}.safetensors", "weight": 0.5}}"#))
        .collect();
    let a = ok(
        "/v1/engine/generate/",
        &format!(r#"{{"loras": [{}]}}"#, loras.join(",")),
    );
    assert_eq!(
        a.loras.len(),
        7,
        "no truncation: the server's LoRA limit is configurable"
    );
    assert_eq!(
        invalid_field(run("/v1/engine/generate/", r#"{"overwrite_width": 4096}"#)),
        "overwrite_width"
    );
    assert_eq!(
        invalid_field(run("/v1/engine/generate/", r#"{"controlnet_image": null}"#)),
        "controlnet_image"
    );
}

// === Tools ===

#[test]
fn describe_image_and_generate_mask() {
    let p = "/v1/tools/describe-image";
    let a = ok(
        p,
        r#"{"image": "https://img/x.png", "image_type": "Anime"}"#,
    );
    assert_eq!(
        (a.name.as_str(), a.api),
        ("describe-image", Some(ApiKind::Image))
    );
    assert_eq!(a.urls, ["https://img/x.png"]);
    assert_eq!(a.image_number, None);
    assert_eq!(
        invalid_field(run(p, r#"{"image": "x", "image_type": "Cartoon"}"#)),
        "image_type"
    );
    assert_eq!(invalid_field(run(p, "{}")), "image");
    let body = form(&[("image", Some("x.png"), PNG)]);
    assert!(understand(p, &form_req(p, body)).is_ok());
    let mut r = form_req(p, form(&[("image", Some("x.png"), PNG)]));
    r.query = "image_type=Sketch".into();
    assert_eq!(invalid_field(understand(p, &r)), "image_type");
    assert_eq!(
        invalid_field(understand(p, &form_req(p, form(&[("x", None, b"1")])))),
        "image"
    );

    let p = "/v1/tools/generate_mask";
    let a = ok(
        p,
        r#"{"image": "http://i/x.png", "mask_model": "sam", "dino_prompt_text": "the dog"}"#,
    );
    assert_eq!(a.name, "generate-mask");
    assert_eq!(a.prompts, ["the dog"]);
    assert_eq!(a.urls, ["http://i/x.png"]);
    assert_eq!(invalid_field(run(p, r#"{"mask_model": "sam"}"#)), "image");
}
