//! Fooocus-API (v1 JSON and forms, v2 JSON) and FooocusAPI (`/v1/engine/generate/`) bodies.
//!
//! The endpoint is told by the request path (also when a proxy prefix precedes it, e.g.
//! `/fooocus/v1/generation/text-to-image`); each endpoint reads exactly the fields its upstream
//! model class reads (`fooocusapi/models/*.py`, `apis/models/requests.py`), with their
//! defaults, and the effective values follow `req_to_params`, the workers and Fooocus'
//! `async_worker.py`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::domain::{Action, ApiKind, Permission, Request};

use super::InferenceError;
use super::http::{MediaType, media_type, query_last, urlencoded_pairs};
use super::json::{Obj, invalid, lax_bool, parse_object, parse_value};
use super::preset::{self, DEFAULT_ASPECT, DEFAULT_MODEL, DEFAULT_PERFORMANCE, DEFAULT_REFINER};
use super::{lora, multipart};

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
            if kind == Kind::TextToImage {
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

/// A body's fields: JSON values, or a form's text fields as strings plus its file names.
struct Input {
    map: Map<String, Value>,
    files: BTreeSet<String>,
    form: bool,
}

impl Input {
    fn obj(&self) -> Obj<'_> {
        Obj::root(&self.map)
    }

    /// True when an image is given in `key`, as a file or as a non-empty image string.
    fn image(&self, key: &str) -> bool {
        self.files.contains(key) || matches!(self.map.get(key), Some(Value::String(s)) if given(s))
    }
}

/// A JSON body. FastAPI parses a missing Content-Type as JSON, and refuses `text/plain`,
/// forms and anything else on a JSON route.
fn json_input(req: &Request) -> Result<Input, InferenceError> {
    match media_type(req)? {
        MediaType::Missing | MediaType::Json => Ok(Input {
            map: parse_object(&req.body)?,
            files: BTreeSet::new(),
            form: false,
        }),
        _ => Err(InferenceError::Malformed(
            "this Fooocus endpoint takes a JSON body (Content-Type: application/json)".into(),
        )),
    }
}

/// A v1 form body. Starlette reads multipart and url-encoded forms and treats any other
/// body as an empty form (every field at its default). For each name the last part wins,
/// and an empty text value counts as absent (FastAPI then applies the default).
fn form_input(req: &Request) -> Result<Input, InferenceError> {
    let parts = match media_type(req)? {
        MediaType::Multipart(Some(boundary)) => multipart::parse(&req.body, &boundary)?,
        MediaType::Multipart(None) => {
            return Err(InferenceError::Malformed(
                "the multipart Content-Type has no boundary".into(),
            ));
        }
        MediaType::UrlEncoded => urlencoded_pairs(&req.body)?
            .into_iter()
            .map(|(k, v)| (k, multipart::Part::Text(v)))
            .collect(),
        _ => Vec::new(),
    };
    let mut map = Map::new();
    let mut files = BTreeSet::new();
    for (name, part) in parts {
        map.remove(&name);
        files.remove(&name);
        match part {
            multipart::Part::Text(text) => {
                map.insert(name, Value::String(text));
            }
            multipart::Part::File { .. } => {
                files.insert(name);
            }
        }
    }
    map.retain(|_, v| !matches!(v, Value::String(s) if s.is_empty()));
    Ok(Input {
        map,
        files,
        form: true,
    })
}

fn given(image: &str) -> bool {
    !NO_IMAGE.contains(&image)
}

/// The fields every generation request shares (`CommonRequest`).
struct Common {
    prompt: String,
    negative_prompt: String,
    performance: &'static str,
    aspect: String,
    image_number: u32,
    model: String,
    refiner: String,
    loras: Vec<String>,
    overwrite: (i64, i64),
    prompts: Vec<String>,
    urls: Vec<String>,
}

impl Common {
    /// Reads the shared fields; `advanced` is where `overwrite_width/height` live.
    fn read(input: &Input, advanced: Advanced) -> Result<Common, InferenceError> {
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
    fn add_prompt(&mut self, text: &str) -> Result<(), InferenceError> {
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
    fn add_text(&mut self, text: &str) {
        if !text.is_empty() {
            self.prompts.push(text.to_string());
        }
    }

    /// Adds an image string's URL when the pod would download it.
    fn add_image(&mut self, image: Option<&str>) {
        if let Some(url) = image.filter(|i| i.starts_with("http")) {
            self.urls.push(url.to_string());
        }
    }

    /// The output size, or `None` when an input image decides it.
    fn size(&self, from_input_image: bool) -> Result<Option<(u32, u32)>, InferenceError> {
        let (w, h) = aspect_size(&self.aspect)?;
        if from_input_image {
            return Ok(None);
        }
        let pick = |o: i64, v: u32| if o > 0 { o as u32 } else { v };
        Ok(Some((pick(self.overwrite.0, w), pick(self.overwrite.1, h))))
    }

    fn into_action(self, name: &str, upscale: bool, size: Option<(u32, u32)>) -> Action {
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
enum Advanced {
    /// An `advanced_params` object (JSON routes; invalid values are refused).
    Object,
    /// An `advanced_params` JSON string (v1 forms; if it does not validate, every advanced
    /// parameter takes its default, as `advanced_params_parser` does).
    FormString,
    /// Top-level fields (FooocusAPI).
    TopLevel,
}

impl Advanced {
    fn overwrite(self, input: &Input) -> Result<(i64, i64), InferenceError> {
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
fn chosen_loras(list: &Value, field: &str) -> Result<Vec<String>, InferenceError> {
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
fn aspect_size(aspect: &str) -> Result<(u32, u32), InferenceError> {
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
fn py_positive_int(text: &str) -> Option<u32> {
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

/// `Accept: image/png` (or `?accept=image/png`, which wins when non-empty) makes Fooocus-API
/// return one PNG and sets `image_number = 1` (`utils/call_worker.py`).
fn fooocus_api_png(req: &Request) -> bool {
    let accept = query_last(req, "accept").filter(|q| !q.is_empty());
    accept.as_deref().or(req.header("accept")) == Some("image/png")
}

/// FooocusAPI answers `Accept: image/<ext>` with one image (`binary_output`).
fn fooocus_engine_binary(req: &Request) -> bool {
    req.header("accept").is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        let mut it = a.split('/');
        it.next() == Some("image") && it.next().is_some() && it.next().is_none()
    })
}

/// A Fooocus-API generation endpoint.
fn classic(kind: Kind, v2: bool, input: &Input, req: &Request) -> Result<Action, InferenceError> {
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

/// The prompts of enhance passes (`enhance_ctrlnets` in Fooocus-API v2, `enhance_ctrls` in
/// FooocusAPI): each pass inpaints with its own prompt, and its mask detector reads its own
/// text.
fn enhance_prompts(c: &mut Common, ctrls: &[Value], field: &str) -> Result<(), InferenceError> {
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

/// The tab FooocusAPI picks from the images given (`pre_process.py pre_worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Enhance,
    ImagePrompt,
    Uov,
    Inpaint,
    None,
}

/// FooocusAPI's `/v1/engine/generate/`: a flat `CommonRequest` whose images decide the work.
fn engine(input: &Input, req: &Request) -> Result<Action, InferenceError> {
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

/// `/v1/tools/describe-image`: a multipart `image` file (Fooocus-API, `?image_type=`) or a
/// JSON `{image, image_type}` (FooocusAPI).
fn describe_image(req: &Request) -> Result<Action, InferenceError> {
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
fn generate_mask(req: &Request) -> Result<Action, InferenceError> {
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

#[cfg(test)]
mod tests;
