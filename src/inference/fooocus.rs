//! Fooocus-API (v1 JSON and forms, v2 JSON) and FooocusAPI (`/v1/engine/generate/`) bodies.
//!
//! The endpoint is told by the request path (also when a proxy prefix precedes it, e.g.
//! `/fooocus/v1/generation/text-to-image`); each endpoint reads exactly the fields its upstream
//! model class reads (`fooocusapi/models/*.py`, `apis/models/requests.py`), with their
//! defaults, and the effective values follow `req_to_params`, the workers and Fooocus'
//! `async_worker.py`.

mod classic;
mod common;
mod engine;
mod input;
mod tools;

use crate::inference::json::Value;

use crate::domain::{Action, Permission, Request};

use super::InferenceError;
use super::http::{MediaType, media_type};
use super::json::lax_bool;
use classic::classic;
use engine::engine;
use input::{Input, form_input, json_input};
use tools::{describe_image, generate_mask};

/// Fooocus' `Performance` values, compared exactly.
const PERFORMANCES: &[&str] = &["Speed", "Quality", "Extreme Speed", "Lightning", "Hyper-SD"];
/// Performances that force the refiner off (`async_worker.py set_*_defaults`).
const NO_REFINER: &[&str] = &["Extreme Speed", "Lightning", "Hyper-SD"];
/// `UpscaleOrVaryMethod` values, compared exactly.
const UOV_METHODS: &[&str] = &[
    "Disabled",
    "Vary (Subtle)",
    "Vary (Strong)",
    "Upscale (1.5x)",
    "Upscale (2x)",
    "Upscale (Fast 2x)",
    "Upscale (Custom)",
];
const DISABLED: &str = "Disabled";
/// Image strings that mean "no image" (`img_utils.read_input_image`).
const NO_IMAGE: &[&str] = &["", "None", "none", "null", "string"];

/// What a Fooocus-API generation endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TextToImage,
    TextToImageIp,
    UpscaleVary,
    InpaintOutpaint,
    ImagePrompt,
    Enhance,
}

/// The endpoints that take a Fooocus body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Fooocus-API generation: `v2` JSON, or v1 (a form except text-to-image).
    Classic {
        kind: Kind,
        v2: bool,
    },
    /// FooocusAPI's `/v1/engine/generate/`: the body decides what runs.
    Engine,
    DescribeImage,
    GenerateMask,
    /// A path no Fooocus server serves (an explicit route): read it conservatively.
    Unknown,
}

const ENDPOINTS: &[(&str, Endpoint)] = {
    use Endpoint::{Classic, DescribeImage, Engine, GenerateMask};
    use Kind::*;
    &[
        (
            "/v1/generation/text-to-image",
            Classic {
                kind: TextToImage,
                v2: false,
            },
        ),
        (
            "/v1/generation/image-upscale-vary",
            Classic {
                kind: UpscaleVary,
                v2: false,
            },
        ),
        (
            "/v1/generation/image-inpaint-outpaint",
            Classic {
                kind: InpaintOutpaint,
                v2: false,
            },
        ),
        (
            "/v1/generation/image-inpait-outpaint",
            Classic {
                kind: InpaintOutpaint,
                v2: false,
            },
        ),
        (
            "/v1/generation/image-prompt",
            Classic {
                kind: ImagePrompt,
                v2: false,
            },
        ),
        (
            "/v1/generation/image-enhance",
            Classic {
                kind: Enhance,
                v2: false,
            },
        ),
        (
            "/v2/generation/text-to-image-with-ip",
            Classic {
                kind: TextToImageIp,
                v2: true,
            },
        ),
        (
            "/v2/generation/image-upscale-vary",
            Classic {
                kind: UpscaleVary,
                v2: true,
            },
        ),
        (
            "/v2/generation/image-inpaint-outpaint",
            Classic {
                kind: InpaintOutpaint,
                v2: true,
            },
        ),
        (
            "/v2/generation/image-inpait-outpaint",
            Classic {
                kind: InpaintOutpaint,
                v2: true,
            },
        ),
        (
            "/v2/generation/image-prompt",
            Classic {
                kind: ImagePrompt,
                v2: true,
            },
        ),
        (
            "/v2/generation/image-enhance",
            Classic {
                kind: Enhance,
                v2: true,
            },
        ),
        ("/v1/tools/describe-image", DescribeImage),
        ("/v1/tools/generate_mask", GenerateMask),
        ("/v1/engine/generate/", Engine),
        ("/v1/engine/generate", Engine),
    ]
};

impl Endpoint {
    fn of(path: &str) -> Endpoint {
        ENDPOINTS
            .iter()
            .find(|(p, _)| path.ends_with(p))
            .map_or(Endpoint::Unknown, |(_, e)| *e)
    }
}

/// Understands a Fooocus request at `path` (percent-decoded).
pub(super) fn understand(path: &str, req: &Request) -> Result<Action, InferenceError> {
    match Endpoint::of(path) {
        Endpoint::Classic { kind, v2 } => {
            let form = !v2 && kind != Kind::TextToImage;
            let input = if form {
                form_input(req)?
            } else {
                json_input(req)?
            };
            let mut action = classic(kind, v2, &input, req)?;
            if matches!(kind, Kind::TextToImage | Kind::TextToImageIp) {
                widen_upscale(&mut action, &input);
            }
            Ok(action)
        }
        Endpoint::Engine => engine(&json_input(req)?, req),
        Endpoint::DescribeImage => describe_image(req),
        Endpoint::GenerateMask => generate_mask(req),
        Endpoint::Unknown => {
            let form = matches!(
                media_type(req)?,
                MediaType::Multipart(_) | MediaType::UrlEncoded
            );
            let input = if form {
                form_input(req)?
            } else {
                json_input(req)?
            };
            let mut action = if form {
                classic(Kind::ImagePrompt, false, &input, req)?
            } else {
                engine(&input, req)?
            };
            widen_upscale(&mut action, &input);
            Ok(action)
        }
    }
}

/// Counts an upscale or vary stage that the endpoint's own fields do not show but a body
/// field names (`uov_method` with an input image, `enhance_uov_method` with an enhance image or
/// checkbox). Fooocus-API's text-to-image ignores these fields; servers built on it and
/// unknown paths may not, so the request is judged as if the stage ran.
fn widen_upscale(action: &mut Action, input: &Input) {
    let active = |key: &str| match input.map.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => s != DISABLED,
        Some(_) => true,
    };
    let checkbox = input
        .map
        .get("enhance_checkbox")
        .is_some_and(|v| lax_bool(v) != Some(false));
    let uov =
        active("uov_method") && (input.image("input_image") || input.image("uov_input_image"));
    let enhance = active("enhance_uov_method") && (input.image("enhance_input_image") || checkbox);
    if (uov || enhance) && !action.upscale {
        action.upscale = true;
        action.width = None;
        action.height = None;
        action.permissions.push(Permission::GenerationUpscale);
    }
}

#[cfg(test)]
mod tests;
