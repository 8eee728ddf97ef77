//! FooocusAPI's `/v1/engine/generate/`: one endpoint, the body decides the work.

use crate::inference::json::Value;

use crate::domain::{Action, Request};
use crate::inference::InferenceError;
use crate::inference::json::{Obj, invalid};
use crate::inference::preset::{
    self, DEFAULT_ASPECT, DEFAULT_MODEL, DEFAULT_PERFORMANCE, DEFAULT_REFINER,
};

use super::common::{Advanced, Common, enhance_prompts};
use super::input::{Input, given};
use super::{DISABLED, UOV_METHODS};

/// FooocusAPI answers `Accept: image/<ext>` with one image (`binary_output`).
pub(super) fn fooocus_engine_binary(req: &Request) -> bool {
    req.header("accept").is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        let mut it = a.split('/');
        it.next() == Some("image") && it.next().is_some() && it.next().is_none()
    })
}

/// The tab FooocusAPI picks from the images given (`pre_process.py pre_worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Enhance,
    ImagePrompt,
    Uov,
    Inpaint,
    None,
}

/// FooocusAPI's `/v1/engine/generate/`: a flat `CommonRequest` whose images decide the work.
pub(super) fn engine(input: &Input, req: &Request) -> Result<Action, InferenceError> {
    let obj = &input.obj();
    let mut c = Common::read(input, Advanced::TopLevel)?;
    if let Some(p) = preset::lookup(obj.string("preset")?.unwrap_or("initial"))? {
        if c.performance == DEFAULT_PERFORMANCE {
            c.performance = p.performance;
        }
        if c.model == DEFAULT_MODEL {
            c.model = p.model.to_string();
        }
        if c.refiner == DEFAULT_REFINER {
            c.refiner = p.refiner.to_string();
        }
        if c.aspect == DEFAULT_ASPECT {
            c.aspect = p.aspect.to_string();
        }
    }
    let uov_method = obj.choice("uov_method", UOV_METHODS)?.unwrap_or(DISABLED);
    obj.float("upscale_multiple", 1.0..=5.0, false)?;
    let uov_image = obj.nullable_string("uov_input_image")?;
    let inpaint_image = obj.nullable_string("inpaint_input_image")?;
    let mask = obj.nullable_string("inpaint_mask_image_upload")?;
    let enhance_image = obj.nullable_string("enhance_input_image")?;
    for image in [uov_image, inpaint_image, mask, enhance_image] {
        c.add_image(image);
    }
    let additional = obj
        .string("inpaint_additional_prompt")?
        .unwrap_or("")
        .to_string();
    c.add_prompt(&additional)?;

    let mut first_cn_image = false;
    if let Some(list) = obj.array("controlnet_image")? {
        for (i, item) in list.iter().enumerate() {
            let path = format!("controlnet_image[{i}]");
            let Value::Object(map) = item else {
                return Err(invalid(path, "must be an object"));
            };
            let image = Obj::nested(map, path.clone()).nullable_string("cn_img")?;
            if i == 0 {
                first_cn_image = image.is_some_and(given);
            }
            c.add_image(image);
        }
    }
    let enhance_checkbox = obj.bool("enhance_checkbox")?.unwrap_or(false);
    let enhance_uov = obj
        .choice("enhance_uov_method", UOV_METHODS)?
        .unwrap_or(DISABLED);
    if let Some(ctrls) = obj.array("enhance_ctrls")? {
        enhance_prompts(&mut c, ctrls, "enhance_ctrls")?;
    }
    let mix_uov = obj
        .bool("mixing_image_prompt_and_vary_upscale")?
        .unwrap_or(false);
    let mix_inpaint = obj
        .bool("mixing_image_prompt_and_inpaint")?
        .unwrap_or(false);

    let has = |image: Option<&str>| image.is_some_and(given);
    let tab = if has(enhance_image) {
        Tab::Enhance
    } else if first_cn_image {
        Tab::ImagePrompt
    } else if has(uov_image) {
        Tab::Uov
    } else if has(inpaint_image) {
        Tab::Inpaint
    } else {
        Tab::None
    };
    let uov_runs = uov_method != DISABLED
        && has(uov_image)
        && (tab == Tab::Uov || (tab == Tab::ImagePrompt && mix_uov));
    let inpaint_runs =
        has(inpaint_image) && (tab == Tab::Inpaint || (tab == Tab::ImagePrompt && mix_inpaint));
    let enhance_uov = enhance_uov != DISABLED && (enhance_checkbox || tab == Tab::Enhance);
    let upscale = uov_runs || enhance_uov;
    let name = match tab {
        Tab::Enhance => "image-enhance",
        Tab::ImagePrompt => "image-prompt",
        Tab::Uov if uov_runs => "upscale-vary",
        Tab::Inpaint => "inpaint-outpaint",
        Tab::Uov | Tab::None => "text-to-image",
    };
    if tab == Tab::Enhance || fooocus_engine_binary(req) {
        c.image_number = 1;
    }
    let size = c.size(upscale || inpaint_runs || tab == Tab::Enhance)?;
    Ok(c.into_action(name, upscale, size))
}
