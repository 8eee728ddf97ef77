//! FooocusAPI's `preset` files (`presets/*.json` shipped with Fooocus 2.5.5) and the request
//! defaults they are compared with (`apis/utils/pre_process.py parse_preset`: every field
//! still equal to its default takes the preset's value).

use super::InferenceError;
use super::json::invalid;

/// Fooocus' default base model (`modules/config.py`, default preset).
pub(crate) const DEFAULT_MODEL: &str = "juggernautXL_v8Rundiffusion.safetensors";
/// The default refiner.
pub(crate) const DEFAULT_REFINER: &str = "None";
/// The default performance.
pub(crate) const DEFAULT_PERFORMANCE: &str = "Speed";
/// The default aspect ratio as the APIs spell it.
pub(crate) const DEFAULT_ASPECT: &str = "1152*896";

/// The fields of a preset file that change what the request costs or which model it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Preset {
    pub performance: &'static str,
    pub model: &'static str,
    pub refiner: &'static str,
    pub aspect: &'static str,
}

/// The presets shipped with Fooocus 2.5.5, by file name.
const PRESETS: &[(&str, Preset)] = &[
    (
        "default",
        preset("Speed", DEFAULT_MODEL, "None", "1152*896"),
    ),
    (
        "lightning",
        preset("Lightning", DEFAULT_MODEL, "None", "1152*896"),
    ),
    (
        "lcm",
        preset("Extreme Speed", DEFAULT_MODEL, "None", "1152*896"),
    ),
    (
        "anime",
        preset(
            "Speed",
            "animaPencilXL_v500.safetensors",
            "None",
            "896*1152",
        ),
    ),
    (
        "realistic",
        preset(
            "Speed",
            "realisticStockPhoto_v20.safetensors",
            "None",
            "896*1152",
        ),
    ),
    (
        "sai",
        preset(
            "Speed",
            "sd_xl_base_1.0_0.9vae.safetensors",
            "sd_xl_refiner_1.0_0.9vae.safetensors",
            "1152*896",
        ),
    ),
    (
        "playground_v2.5",
        preset(
            "Speed",
            "playground-v2.5-1024px-aesthetic.fp16.safetensors",
            "None",
            "1024*1024",
        ),
    ),
    (
        "pony_v6",
        preset("Speed", "ponyDiffusionV6XL.safetensors", "None", "896*1152"),
    ),
];

const fn preset(
    performance: &'static str,
    model: &'static str,
    refiner: &'static str,
    aspect: &'static str,
) -> Preset {
    Preset {
        performance,
        model,
        refiner,
        aspect,
    }
}

/// The preset a request names: `None` for FooocusAPI's `initial` (no preset) or an empty
/// name (no file, nothing changes); an unknown name is refused, since the pod would read
/// `./presets/{name}.json` from disk.
pub(crate) fn lookup(name: &str) -> Result<Option<Preset>, InferenceError> {
    if name == "initial" || name.is_empty() {
        return Ok(None);
    }
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(invalid(
            "preset",
            "a preset name may not contain `/`, `\\` or `..`",
        ));
    }
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| Some(*p))
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            invalid(
                "preset",
                format!("must be `initial` or one of: {}", names.join(", ")),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_presets() {
        assert_eq!(
            lookup("lightning").unwrap().unwrap().performance,
            "Lightning"
        );
        assert_eq!(lookup("lcm").unwrap().unwrap().performance, "Extreme Speed");
        assert_eq!(
            lookup("anime").unwrap().unwrap().model,
            "animaPencilXL_v500.safetensors"
        );
        assert_eq!(
            lookup("playground_v2.5").unwrap().unwrap().aspect,
            "1024*1024"
        );
        assert_eq!(lookup("initial").unwrap(), None);
        assert_eq!(lookup("").unwrap(), None);
        for bad in [
            "Lightning",
            "turbo",
            "../default",
            "presets/lcm",
            "lcm.json/..",
        ] {
            assert!(
                matches!(lookup(bad), Err(InferenceError::Invalid { field, .. }) if field == "preset"),
                "{bad}"
            );
        }
    }
}
