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

#[test]
fn unsupported_sections_are_refused_not_ignored() {
    let text = format!("{POLICY}rules:\n  - {{name: r1, when: 'true', effect: deny}}\n");
    assert!(compile(&text).unwrap_err().problem.contains("rule `r1`"));
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
