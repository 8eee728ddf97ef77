use crate::domain::{Action, Denial, DenyKind};
use crate::policy::{NameSet, Role};

/// Checks the role's limits on what the model is asked to do.
pub fn check_capabilities(role: &Role, action: &Action) -> Result<(), Denial> {
    let rule = |field: &str| format!("roles.{}.{field}", role.name);
    let forbidden = |error, reason: String, field: &str| {
        Err(Denial::new(DenyKind::Forbidden, error, reason).with_rule(rule(field)))
    };

    if let Some(preset) = &action.preset
        && !role.presets.allows(preset)
    {
        return forbidden(
            "preset_not_allowed",
            format!("preset `{preset}` is not allowed for role `{}`", role.name),
            "presets",
        );
    }
    if let Some(lora) = action.loras.iter().find(|l| !lora_allowed(&role.loras, l)) {
        return forbidden(
            "lora_not_allowed",
            format!(
                "LoRA `{}` is not allowed for role `{}`",
                printable(lora),
                role.name
            ),
            "loras",
        );
    }
    for model in action.model.iter().chain(action.refiner_model.iter()) {
        if !role.models.allows(model) {
            return forbidden(
                "model_not_allowed",
                format!(
                    "model `{}` is not allowed for role `{}`",
                    printable(model),
                    role.name
                ),
                "models",
            );
        }
    }
    if let (Some(max), Some(n)) = (role.max_images, action.image_number)
        && n > max
    {
        return forbidden(
            "too_many_images",
            format!(
                "{n} images requested; role `{}` allows at most {max} per request",
                role.name
            ),
            "max_images",
        );
    }
    if let (Some(max), Some(pixels)) = (role.max_pixels, action.pixels())
        && pixels > max
    {
        return forbidden(
            "resolution_not_allowed",
            format!(
                "{}×{} is {pixels} pixels; role `{}` allows at most {max}",
                action.width.unwrap_or(0),
                action.height.unwrap_or(0),
                role.name
            ),
            "max_pixels",
        );
    }
    Ok(())
}

/// LoRAs are named by file in `loras[]` and by stem in `<lora:NAME:W>` prompt tags, and Fooocus
/// loads the same file for both: an allow-list entry matches either spelling.
fn lora_allowed(allowed: &NameSet, name: &str) -> bool {
    match allowed {
        NameSet::Any => true,
        NameSet::Only(set) => {
            set.contains(name) || set.iter().any(|entry| lora_stem(entry) == lora_stem(name))
        }
    }
}

fn lora_stem(name: &str) -> &str {
    [".safetensors", ".ckpt", ".pt", ".bin"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name)
}

/// A name shortened and stripped of control characters, safe to put in a refusal body.
fn printable(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(128).collect();
    if name.chars().count() > 128 {
        format!("{clean}…")
    } else {
        clean
    }
}
