//! The fields every Fooocus generation request shares, and how they become an action.

use crate::inference::json::Value;

use crate::domain::{Action, ApiKind, Permission};
use crate::inference::InferenceError;
use crate::inference::json::{Obj, invalid, parse_value};
use crate::inference::lora;
use crate::inference::preset::{
    DEFAULT_ASPECT, DEFAULT_MODEL, DEFAULT_PERFORMANCE, DEFAULT_REFINER,
};

use super::input::Input;
use super::{NO_REFINER, PERFORMANCES};

/// The fields every generation request shares (`CommonRequest`).
pub(super) struct Common {
    pub(super) prompt: String,
    pub(super) negative_prompt: String,
    pub(super) performance: &'static str,
    pub(super) aspect: String,
    pub(super) image_number: u32,
    pub(super) model: String,
    pub(super) refiner: String,
    pub(super) loras: Vec<String>,
    pub(super) overwrite: (i64, i64),
    pub(super) prompts: Vec<String>,
    pub(super) urls: Vec<String>,
}

impl Common {
    /// Reads the shared fields; `advanced` is where `overwrite_width/height` live.
    pub(super) fn read(input: &Input, advanced: Advanced) -> Result<Common, InferenceError> {
        let obj = &input.obj();
        let prompt = obj.string("prompt")?.unwrap_or("").to_string();
        let mut common = Common {
            negative_prompt: obj.string("negative_prompt")?.unwrap_or("").to_string(),
            performance: obj
                .choice("performance_selection", PERFORMANCES)?
                .unwrap_or(DEFAULT_PERFORMANCE),
            aspect: obj
                .string("aspect_ratios_selection")?
                .unwrap_or(DEFAULT_ASPECT)
                .to_string(),
            image_number: obj.int("image_number", 1..=32)?.map_or(1, |n| n as u32),
            model: obj
                .string("base_model_name")?
                .unwrap_or(DEFAULT_MODEL)
                .to_string(),
            refiner: obj
                .string("refiner_model_name")?
                .unwrap_or(DEFAULT_REFINER)
                .to_string(),
            loras: Vec::new(),
            overwrite: (-1, -1),
            prompts: Vec::new(),
            urls: Vec::new(),
            prompt,
        };
        obj.float("refiner_switch", 0.1..=1.0, false)?;
        common.loras = match (input.form, obj.get("loras")) {
            (_, None) => Vec::new(),
            (true, Some(Value::String(text))) => {
                let list = parse_value(text.as_bytes()).map_err(|_| {
                    invalid(
                        "loras",
                        "must be a JSON list of {enabled, model_name, weight}",
                    )
                })?;
                chosen_loras(&list, "loras")?
            }
            (_, Some(list)) => chosen_loras(list, "loras")?,
        };
        common.overwrite = advanced.overwrite(input)?;
        common.add_prompt(&common.prompt.clone())?;
        if let Some(url) = obj
            .nullable_string("webhook_url")?
            .filter(|u| !u.is_empty())
        {
            common.urls.push(url.to_string());
        }
        Ok(common)
    }

    /// Adds a text the model reads, and the LoRAs its first line tags.
    pub(super) fn add_prompt(&mut self, text: &str) -> Result<(), InferenceError> {
        if text.is_empty() {
            return Ok(());
        }
        for name in lora::prompt_tags(text) {
            lora::check_name("prompt", &name)?;
            self.loras.push(name);
        }
        self.prompts.push(text.to_string());
        Ok(())
    }

    /// Adds a text the model reads that is not a diffusion prompt (a mask detector's).
    pub(super) fn add_text(&mut self, text: &str) {
        if !text.is_empty() {
            self.prompts.push(text.to_string());
        }
    }

    /// Adds an image string's URL when the pod would download it.
    pub(super) fn add_image(&mut self, image: Option<&str>) {
        if let Some(url) = image.filter(|i| i.starts_with("http")) {
            self.urls.push(url.to_string());
        }
    }

    /// The output size, or `None` when an input image decides it.
    pub(super) fn size(
        &self,
        from_input_image: bool,
    ) -> Result<Option<(u32, u32)>, InferenceError> {
        let (w, h) = aspect_size(&self.aspect)?;
        if from_input_image {
            return Ok(None);
        }
        let pick = |o: i64, v: u32| if o > 0 { o as u32 } else { v };
        Ok(Some((pick(self.overwrite.0, w), pick(self.overwrite.1, h))))
    }

    pub(super) fn into_action(self, name: &str, upscale: bool, size: Option<(u32, u32)>) -> Action {
        let refiner = (self.refiner != "None"
            && !self.refiner.is_empty()
            && self.refiner != self.model
            && !NO_REFINER.contains(&self.performance))
        .then_some(self.refiner);
        let mut loras = Vec::new();
        for l in self.loras {
            if !loras.contains(&l) {
                loras.push(l);
            }
        }
        Action {
            permissions: if upscale {
                vec![Permission::GenerationUpscale]
            } else {
                Vec::new()
            },
            api: Some(ApiKind::Image),
            name: name.to_string(),
            preset: Some(self.performance.to_string()),
            loras,
            image_number: Some(self.image_number),
            model: Some(self.model),
            refiner_model: refiner,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            upscale,
            prompt: Some(self.prompt),
            negative_prompt: Some(self.negative_prompt),
            prompts: self.prompts,
            max_tokens: None,
            urls: self.urls,
        }
    }
}

/// Where `overwrite_width` / `overwrite_height` come from.
#[derive(Clone, Copy)]
pub(super) enum Advanced {
    /// An `advanced_params` object (JSON routes; invalid values are refused).
    Object,
    /// An `advanced_params` JSON string (v1 forms; if it does not validate, every advanced
    /// parameter takes its default, as `advanced_params_parser` does).
    FormString,
    /// Top-level fields (FooocusAPI).
    TopLevel,
}

impl Advanced {
    pub(super) fn overwrite(self, input: &Input) -> Result<(i64, i64), InferenceError> {
        let read = |obj: &Obj<'_>| -> Result<(i64, i64), InferenceError> {
            Ok((
                obj.int("overwrite_width", -1..=2048)?.unwrap_or(-1),
                obj.int("overwrite_height", -1..=2048)?.unwrap_or(-1),
            ))
        };
        match self {
            Advanced::TopLevel => read(&input.obj()),
            Advanced::Object => match input.obj().object("advanced_params")? {
                Some(map) => read(&Obj::nested(map, "advanced_params")),
                None => Ok((-1, -1)),
            },
            Advanced::FormString => {
                let Some(Value::String(text)) = input.map.get("advanced_params") else {
                    return Ok((-1, -1));
                };
                match parse_value(text.as_bytes()) {
                    Ok(Value::Object(map)) => {
                        Ok(read(&Obj::nested(&map, "advanced_params")).unwrap_or((-1, -1)))
                    }
                    _ => Ok((-1, -1)),
                }
            }
        }
    }
}

/// The LoRAs a `loras` list chooses: entries that are enabled and not named `None`. An entry
/// without `enabled` or `model_name`, or with a weight outside −2..2, is refused (422 upstream).
pub(super) fn chosen_loras(list: &Value<'_>, field: &str) -> Result<Vec<String>, InferenceError> {
    let Value::Array(items) = list else {
        return Err(invalid(field, "must be a list"));
    };
    let mut names = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let Value::Object(map) = item else {
            return Err(invalid(path, "must be an object"));
        };
        let entry = &Obj::nested(map, path.clone());
        let enabled = entry
            .bool("enabled")?
            .ok_or_else(|| invalid(entry.field("enabled"), "is required"))?;
        let name = entry
            .string("model_name")?
            .ok_or_else(|| invalid(entry.field("model_name"), "is required"))?;
        entry.float("weight", -2.0..=2.0, false)?;
        if enabled && name != "None" && !name.is_empty() {
            lora::check_name(&entry.field("model_name"), name)?;
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Width and height from `W*H` (or `W×H`, or with trailing text after a space, as Fooocus
/// displays it): Fooocus replaces `×` and `*` with spaces, splits on single spaces and reads
/// the first two pieces with Python's `int`.
pub(super) fn aspect_size(aspect: &str) -> Result<(u32, u32), InferenceError> {
    let replaced = aspect.replace(['×', '*'], " ");
    let mut pieces = replaced.split(' ');
    let mut next = || pieces.next().and_then(py_positive_int);
    match (next(), next()) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(invalid(
            "aspect_ratios_selection",
            "must be `WIDTH*HEIGHT` in pixels, e.g. 1152*896",
        )),
    }
}

/// Python's `int(text)` for positive values that fit `u32` (underscores between digits
/// allowed, surrounding whitespace ignored).
pub(super) fn py_positive_int(text: &str) -> Option<u32> {
    let t = text.trim().strip_prefix('+').unwrap_or(text.trim());
    let ok = !t.is_empty()
        && !t.starts_with('_')
        && !t.ends_with('_')
        && !t.contains("__")
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !ok {
        return None;
    }
    t.replace('_', "").parse().ok().filter(|n| *n > 0)
}

/// The prompts of enhance passes (`enhance_ctrlnets` in Fooocus-API v2, `enhance_ctrls` in
/// FooocusAPI): each pass inpaints with its own prompt, and its mask detector reads its own
/// text.
pub(super) fn enhance_prompts(
    c: &mut Common,
    ctrls: &[Value<'_>],
    field: &str,
) -> Result<(), InferenceError> {
    for (i, item) in ctrls.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let Value::Object(map) = item else {
            return Err(invalid(path, "must be an object"));
        };
        let entry = &Obj::nested(map, path.clone());
        let prompt = entry.string("enhance_prompt")?.unwrap_or("").to_string();
        c.add_prompt(&prompt)?;
        let dino = entry
            .string("enhance_mask_dino_prompt")?
            .unwrap_or("")
            .to_string();
        c.add_text(&dino);
    }
    Ok(())
}
