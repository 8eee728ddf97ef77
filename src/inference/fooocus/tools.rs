//! `/v1/tools/describe-image` and `/v1/tools/generate_mask`.

use crate::domain::{Action, ApiKind, Request};
use crate::inference::InferenceError;
use crate::inference::http::{MediaType, media_type, query_last};
use crate::inference::json::invalid;

use super::input::{form_input, json_input};

/// `/v1/tools/describe-image`: a multipart `image` file (Fooocus-API, `?image_type=`) or a
/// JSON `{image, image_type}` (FooocusAPI).
pub(super) fn describe_image(req: &Request) -> Result<Action, InferenceError> {
    const TYPES: &[&str] = &["Photo", "Anime"];
    let mut urls = Vec::new();
    match media_type(req)? {
        MediaType::Multipart(_) | MediaType::UrlEncoded => {
            let input = form_input(req)?;
            if !input.files.contains("image") {
                return Err(invalid("image", "is required (a file)"));
            }
            let image_type = query_last(req, "image_type").filter(|t| !t.is_empty());
            if image_type.is_some_and(|t| !TYPES.contains(&t.as_str())) {
                return Err(invalid("image_type", "must be one of: Photo, Anime"));
            }
        }
        _ => {
            let input = json_input(req)?;
            let obj = &input.obj();
            let image = obj
                .string("image")?
                .ok_or_else(|| invalid("image", "is required"))?;
            obj.choice("image_type", TYPES)?;
            if image.starts_with("http") {
                urls.push(image.to_string());
            }
        }
    }
    Ok(Action {
        api: Some(ApiKind::Image),
        name: "describe-image".into(),
        urls,
        ..Action::default()
    })
}

/// `/v1/tools/generate_mask`: a JSON `GenerateMaskRequest`.
pub(super) fn generate_mask(req: &Request) -> Result<Action, InferenceError> {
    let input = json_input(req)?;
    let obj = &input.obj();
    let image = obj
        .string("image")?
        .ok_or_else(|| invalid("image", "is required"))?;
    let mut action = Action {
        api: Some(ApiKind::Image),
        name: "generate-mask".into(),
        ..Action::default()
    };
    if image.starts_with("http") {
        action.urls.push(image.to_string());
    }
    if let Some(text) = obj.string("dino_prompt_text")?.filter(|t| !t.is_empty()) {
        action.prompt = Some(text.to_string());
        action.prompts.push(text.to_string());
    }
    Ok(action)
}
