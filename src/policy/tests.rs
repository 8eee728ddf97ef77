use std::collections::BTreeMap;

use super::*;
use crate::domain::{AuthMethod, PrincipalKind, RoleSource};
use crate::inference::RouteTable;

fn policy() -> Policy {
    let mut basic = Role::new(
        "designer_basic",
        [Permission::GenerationCreate, Permission::GenerationView],
    );
    basic.presets = NameSet::from_list(Some(&["Speed".to_string(), "Lightning".to_string()]));
    basic.loras = NameSet::from_list(Some(&[]));
    basic.models = NameSet::from_list(Some(&[
        "juggernautXL_v8Rundiffusion.safetensors".to_string()
    ]));
    basic.max_images = Some(4);
    basic.max_pixels = Some(1024 * 1024);
    let mut advanced = Role::new(
        "designer_advanced",
        [Permission::GenerationCreate, Permission::GenerationUpscale],
    );
    advanced.loras = NameSet::from_list(Some(&["*".to_string()]));
    let admin = Role::new("admin", Role::all_permissions());
    let viewer = Role::new("viewer", [Permission::GenerationView]);
    Policy {
        version: "test".into(),
        default_role: Some("viewer".into()),
        groups: BTreeMap::from([
            ("basic".to_string(), "designer_basic".to_string()),
            ("adv".to_string(), "designer_advanced".to_string()),
            ("admins".to_string(), "admin".to_string()),
        ]),
        roles: [basic, advanced, admin, viewer]
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect(),
        routes: RouteTable::new(&[], Vec::new()),
        rules: RuleSet::default(),
        content: ContentPolicy::default(),
        templates: Vec::new(),
    }
}

fn principal(role: &str) -> Principal {
    Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: None,
        groups: vec![],
        role: role.into(),
        role_source: RoleSource::Binding,
        auth: AuthMethod::ApiKey,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: false,
        attributes: Default::default(),
    }
}

fn generate() -> Action {
    Action {
        permissions: vec![Permission::GenerationCreate],
        name: "text-to-image".into(),
        preset: Some("Speed".into()),
        image_number: Some(1),
        model: Some("juggernautXL_v8Rundiffusion.safetensors".into()),
        width: Some(1024),
        height: Some(1024),
        ..Action::default()
    }
}

fn error_of(r: Result<(), Denial>) -> &'static str {
    r.expect_err("expected a refusal").error
}

#[test]
fn allowed_within_the_role() {
    decide(&policy(), &principal("designer_basic"), &generate()).unwrap();
}

#[test]
fn each_capability_refuses_on_its_own() {
    let p = policy();
    let who = principal("designer_basic");
    let mut a = generate();
    a.preset = Some("Quality".into());
    assert_eq!(error_of(decide(&p, &who, &a)), "preset_not_allowed");
    let mut a = generate();
    a.preset = Some("speed".into());
    assert_eq!(
        error_of(decide(&p, &who, &a)),
        "preset_not_allowed",
        "presets are case-sensitive"
    );
    let mut a = generate();
    a.loras = vec!["evil.safetensors".into()];
    assert_eq!(error_of(decide(&p, &who, &a)), "lora_not_allowed");
    let mut a = generate();
    a.model = Some("other.safetensors".into());
    assert_eq!(error_of(decide(&p, &who, &a)), "model_not_allowed");
    let mut a = generate();
    a.refiner_model = Some("other.safetensors".into());
    assert_eq!(error_of(decide(&p, &who, &a)), "model_not_allowed");
    let mut a = generate();
    a.image_number = Some(5);
    assert_eq!(error_of(decide(&p, &who, &a)), "too_many_images");
    let mut a = generate();
    a.width = Some(1152);
    a.height = Some(896 + 100);
    assert_eq!(error_of(decide(&p, &who, &a)), "resolution_not_allowed");
    let mut a = generate();
    a.permissions.push(Permission::GenerationUpscale);
    a.upscale = true;
    let d = decide(&p, &who, &a).unwrap_err();
    assert_eq!(d.error, "permission_denied");
    assert_eq!(d.rule.as_deref(), Some("roles.designer_basic.permissions"));
}

#[test]
fn lora_allow_lists_match_file_names_and_prompt_tag_stems() {
    let mut p = policy();
    let basic = p.roles.get_mut("designer_basic").unwrap();
    basic.loras = NameSet::from_list(Some(&["detail.safetensors".to_string()]));
    let who = principal("designer_basic");
    for ok in ["detail.safetensors", "detail"] {
        let mut a = generate();
        a.loras = vec![ok.into()];
        decide(&p, &who, &a).unwrap();
    }
    for bad in ["detail2", "other.safetensors", "detail.safetensors.evil"] {
        let mut a = generate();
        a.loras = vec![bad.into()];
        assert_eq!(error_of(decide(&p, &who, &a)), "lora_not_allowed", "{bad}");
    }
}

#[test]
fn advanced_role_may_upscale_and_use_any_lora() {
    let mut a = generate();
    a.permissions.push(Permission::GenerationUpscale);
    a.loras = vec!["anything.safetensors".into()];
    decide(&policy(), &principal("designer_advanced"), &a).unwrap();
}

#[test]
fn scopes_narrow_the_role() {
    let mut who = principal("admin");
    who.scopes = Some(vec![Permission::GenerationView]);
    assert_eq!(
        error_of(decide(&policy(), &who, &generate())),
        "insufficient_scope"
    );
    who.scopes = Some(vec![Permission::GenerationCreate]);
    decide(&policy(), &who, &generate()).unwrap();
}

#[test]
fn unknown_role_fails_closed() {
    assert_eq!(
        error_of(decide(&policy(), &principal("ghost"), &generate())),
        "unknown_role"
    );
    assert_eq!(
        error_of(decide(&policy(), &principal(""), &generate())),
        "unknown_role"
    );
}

#[test]
fn group_mapping_prefers_the_most_privileged_role() {
    let p = policy();
    assert_eq!(
        p.role_for_groups(&["basic".into(), "admins".into()]),
        Some(("admin", true))
    );
    assert_eq!(
        p.role_for_groups(&["basic".into()]),
        Some(("designer_basic", true))
    );
    assert_eq!(
        p.role_for_groups(&["adv".into(), "basic".into()])
            .unwrap()
            .0,
        "designer_advanced"
    );
    assert_eq!(
        p.role_for_groups(&["unknown".into()]),
        Some(("viewer", false))
    );
    assert_eq!(p.role_for_groups(&[]), Some(("viewer", false)));
}
