//! Fooocus-API's generation endpoints (v1 JSON and forms, v2 JSON).

use crate::inference::json::Value;

use crate::domain::{Action, Permission, Request};
use crate::inference::InferenceError;
use crate::inference::http::query_last;
use crate::inference::json::{Obj, invalid};

use super::common::{Advanced, Common, enhance_prompts};
use super::input::Input;
use super::{DISABLED, Kind, UOV_METHODS};

/// `Accept: image/png` (or `?accept=image/png`, which wins when non-empty) makes Fooocus-API
/// return one PNG and sets `image_number = 1` (`utils/call_worker.py`).
pub(super) fn fooocus_api_png(req: &Request) -> bool {
    let accept = query_last(req, "accept").filter(|q| !q.is_empty());
    accept.as_deref().or(req.header("accept")) == Some("image/png")
}

/// A Fooocus-API generation endpoint.
pub(super) fn classic(
    kind: Kind,
    v2: bool,
    input: &Input,
    req: &Request,
) -> Result<Action, InferenceError> {
    let obj = &input.obj();
    let advanced = if input.form {
        Advanced::FormString
    } else {
        Advanced::Object
    };
    let mut c = Common::read(input, advanced)?;
    if v2 {
        image_prompt_urls(&mut c, obj, kind == Kind::ImagePrompt)?;
    }
    let mut upscale = false;
    let mut from_input_image = false;
    let name = match kind {
        Kind::TextToImage => "text-to-image",
        Kind::TextToImageIp => "text-to-image+image-prompt",
        Kind::UpscaleVary => {
            let method = obj.choice("uov_method", UOV_METHODS)?;
            let method = match (method, v2) {
                (Some(m), _) => m,
                (None, true) => "Upscale (2x)",
                (None, false) => return Err(invalid("uov_method", "is required")),
            };
            obj.float("upscale_value", 1.0..=5.0, true)?;
            if v2 {
                let image = obj
                    .string("input_image")?
                    .ok_or_else(|| invalid("input_image", "is required"))?;
                c.add_image(Some(image));
            } else if !input.files.contains("input_image") {
                return Err(invalid("input_image", "is required (a file)"));
            }
            upscale = method != DISABLED;
            from_input_image = upscale;
            "upscale-vary"
        }
        Kind::InpaintOutpaint | Kind::ImagePrompt => {
            if kind == Kind::InpaintOutpaint && !v2 && !input.files.contains("input_image") {
                return Err(invalid("input_image", "is required (a file)"));
            }
            if v2 {
                let image = obj.nullable_string("input_image")?;
                c.add_image(image);
                c.add_image(obj.nullable_string("input_mask")?);
            }
            from_input_image = input.image("input_image");
            let additional = obj
                .nullable_string("inpaint_additional_prompt")?
                .unwrap_or("");
            c.add_prompt(additional)?;
            if kind == Kind::InpaintOutpaint {
                "inpaint-outpaint"
            } else {
                "image-prompt"
            }
        }
        Kind::Enhance => {
            let method = obj
                .choice("enhance_uov_method", UOV_METHODS)?
                .unwrap_or("Vary (Strong)");
            upscale = method != DISABLED;
            from_input_image = true;
            c.image_number = 1;
            if v2 {
                c.add_image(obj.nullable_string("enhance_input_image")?);
                let ctrls = obj
                    .array("enhance_ctrlnets")?
                    .ok_or_else(|| invalid("enhance_ctrlnets", "is required"))?;
                enhance_prompts(&mut c, ctrls, "enhance_ctrlnets")?;
            } else {
                for n in 1..=3 {
                    let prompt = obj
                        .string(&format!("enhance_prompt_{n}"))?
                        .unwrap_or("")
                        .to_string();
                    c.add_prompt(&prompt)?;
                    let dino = obj
                        .string(&format!("enhance_mask_dino_prompt_{n}"))?
                        .unwrap_or("")
                        .to_string();
                    c.add_text(&dino);
                }
            }
            "image-enhance"
        }
    };
    if fooocus_api_png(req) {
        c.image_number = 1;
    }
    let size = c.size(from_input_image)?;
    let mut action = c.into_action(name, upscale, size);
    if kind == Kind::UpscaleVary && !action.permissions.contains(&Permission::GenerationUpscale) {
        action.permissions.push(Permission::GenerationUpscale);
    }
    Ok(action)
}

/// URLs in v2 `image_prompts[].cn_img` (required on `/v2/generation/image-prompt`).
fn image_prompt_urls(c: &mut Common, obj: &Obj<'_>, required: bool) -> Result<(), InferenceError> {
    let Some(list) = obj.array("image_prompts")? else {
        return if required {
            Err(invalid("image_prompts", "is required (it may be [])"))
        } else {
            Ok(())
        };
    };
    for (i, item) in list.iter().enumerate() {
        let path = format!("image_prompts[{i}]");
        let Value::Object(map) = item else {
            return Err(invalid(path, "must be an object"));
        };
        c.add_image(Obj::nested(map, path.clone()).nullable_string("cn_img")?);
    }
    Ok(())
}
