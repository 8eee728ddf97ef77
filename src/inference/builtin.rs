//! The built-in route sets named in policy.yaml's `apis:`: every endpoint of Fooocus-API and
//! FooocusAPI, of OpenAI-compatible servers (with mistral.rs' extras) and of
//! text-generation-inference, each with the permission it needs and its body extractor.

use crate::domain::Permission;

use super::routes::{ApiSet, BodyKind, PathPattern, Route};

/// The permission that stops or unloads work on the inference server (`stop`, `skip`,
/// `clean_vram`, deleting job history, loading LoRA adapters). DESIGN.md has no dedicated
/// "operate the server" permission yet; `models:load_lora` is the existing one that is about
/// what the server holds and runs, and the example policy grants it to no designer role.
pub const CONTROL_PERMISSION: Permission = Permission::ModelsLoadLora;

/// The routes of one API set, with the permission and extractor each endpoint needs.
pub fn builtin_routes(api: ApiSet) -> Vec<Route> {
    let table: &[(&str, &str, Permission, Option<BodyKind>)] = match api {
        ApiSet::FooocusApi => FOOOCUS_ROUTES,
        ApiSet::OpenAi => OPENAI_ROUTES,
        ApiSet::Tgi => TGI_ROUTES,
    };
    table
        .iter()
        .map(|(method, path, permission, body)| {
            let path = path
                .parse()
                .unwrap_or_else(|_| PathPattern::Exact((*path).to_string()));
            Route::new(Some(method), path, *permission, *body)
        })
        .collect()
}

use BodyKind::{Fooocus, OpenAi as OpenAiBody, Tgi as TgiBody};
use Permission::{GenerationCreate as CREATE, GenerationView as VIEW, ModelsView as MODELS};

const CONTROL: Permission = CONTROL_PERMISSION;
const FOOOCUS: Option<BodyKind> = Some(Fooocus);
const OPENAI: Option<BodyKind> = Some(OpenAiBody);
const TGI: Option<BodyKind> = Some(TgiBody);

/// Fooocus-API v0.5 (`fooocusapi/routes/*.py`) and FooocusAPI (`apis/routes/*.py`).
/// The upscale-vary routes need `generation:upscale` too; the extractor adds it.
const FOOOCUS_ROUTES: &[(&str, &str, Permission, Option<BodyKind>)] = &[
    ("POST", "/v1/generation/text-to-image", CREATE, FOOOCUS),
    ("POST", "/v1/generation/image-upscale-vary", CREATE, FOOOCUS),
    (
        "POST",
        "/v1/generation/image-inpaint-outpaint",
        CREATE,
        FOOOCUS,
    ),
    // The spelling used up to v0.3.29.
    (
        "POST",
        "/v1/generation/image-inpait-outpaint",
        CREATE,
        FOOOCUS,
    ),
    ("POST", "/v1/generation/image-prompt", CREATE, FOOOCUS),
    ("POST", "/v1/generation/image-enhance", CREATE, FOOOCUS),
    (
        "POST",
        "/v2/generation/text-to-image-with-ip",
        CREATE,
        FOOOCUS,
    ),
    ("POST", "/v2/generation/image-upscale-vary", CREATE, FOOOCUS),
    (
        "POST",
        "/v2/generation/image-inpaint-outpaint",
        CREATE,
        FOOOCUS,
    ),
    (
        "POST",
        "/v2/generation/image-inpait-outpaint",
        CREATE,
        FOOOCUS,
    ),
    ("POST", "/v2/generation/image-prompt", CREATE, FOOOCUS),
    ("POST", "/v2/generation/image-enhance", CREATE, FOOOCUS),
    ("POST", "/v1/tools/describe-image", CREATE, FOOOCUS),
    ("POST", "/v1/tools/generate_mask", CREATE, FOOOCUS),
    ("POST", "/v1/generation/stop", CONTROL, None),
    ("GET", "/v1/generation/query-job", VIEW, None),
    ("GET", "/v1/generation/job-queue", VIEW, None),
    // `?delete=true` also needs the control permission (added from the query).
    ("GET", "/v1/generation/job-history", VIEW, None),
    ("GET", "/v1/engines/all-models", MODELS, None),
    ("GET", "/v1/engines/styles", MODELS, None),
    // Deprecated in v0.3.33, removed later; still served by older pods.
    ("POST", "/v1/engines/refresh-models", MODELS, None),
    ("GET", "/v1/engines/clean_vram", CONTROL, None),
    ("GET", "/", VIEW, None),
    ("GET", "/ping", VIEW, None),
    ("GET", "/docs", VIEW, None),
    ("GET", "/openapi.json", VIEW, None),
    ("GET", "/files/*", VIEW, None),
    // FooocusAPI.
    ("POST", "/v1/engine/generate/", CREATE, FOOOCUS),
    ("POST", "/v1/engine/generate", CREATE, FOOOCUS),
    ("POST", "/v1/engine/control", CONTROL, None),
    // `?action=delete` also needs the control permission (added from the query).
    ("GET", "/tasks", VIEW, None),
    ("GET", "/tasks/*", VIEW, None),
    ("GET", "/outputs/*", VIEW, None),
    ("GET", "/inputs/*", VIEW, None),
];

/// OpenAI-compatible servers, with mistral.rs' extra and admin routes
/// (`mistralrs-server-core/src/route_registry.rs`).
const OPENAI_ROUTES: &[(&str, &str, Permission, Option<BodyKind>)] = &[
    ("POST", "/v1/chat/completions", CREATE, OPENAI),
    ("POST", "/v1/completions", CREATE, OPENAI),
    ("POST", "/v1/images/generations", CREATE, OPENAI),
    ("POST", "/v1/embeddings", CREATE, OPENAI),
    ("GET", "/v1/models", MODELS, None),
    ("GET", "/v1/models/*", MODELS, None),
    ("POST", "/v1/models/status", MODELS, None),
    ("POST", "/v1/models/unload", CONTROL, None),
    ("POST", "/v1/models/reload", CONTROL, None),
    ("GET", "/v1/lora_adapters", MODELS, None),
    ("POST", "/v1/load_lora_adapter", CONTROL, None),
    ("POST", "/v1/unload_lora_adapter", CONTROL, None),
    ("POST", "/activate_adapters", CONTROL, None),
    ("POST", "/re_isq", CONTROL, None),
    ("GET", "/health", VIEW, None),
    ("GET", "/", VIEW, None),
];

/// text-generation-inference (`router/src/server.rs`).
const TGI_ROUTES: &[(&str, &str, Permission, Option<BodyKind>)] = &[
    ("POST", "/", CREATE, TGI),
    ("POST", "/generate", CREATE, TGI),
    ("POST", "/generate_stream", CREATE, TGI),
    ("POST", "/v1/chat/completions", CREATE, TGI),
    ("POST", "/v1/completions", CREATE, TGI),
    ("POST", "/vertex", CREATE, TGI),
    ("POST", "/invocations", CREATE, TGI),
    // Tokenizing runs no generation.
    ("POST", "/tokenize", VIEW, None),
    ("POST", "/chat_tokenize", VIEW, None),
    ("GET", "/info", VIEW, None),
    ("GET", "/health", VIEW, None),
    ("GET", "/ping", VIEW, None),
    ("GET", "/v1/models", MODELS, None),
    ("GET", "/metrics", Permission::AdminViewLogs, None),
];
