//! The inference stage: what a request asks the model to do.
//!
//! The [`RouteTable`] maps a method and path to a [`Route`]: the permission it needs and which
//! body extractor reads it. [`understand`] then turns the request into an [`Action`] in
//! *effective* values, the ones the upstream will use: defaults applied (Fooocus' `Speed`,
//! one image, the default model), `Accept: image/png` forcing one image, a FooocusAPI
//! `preset` replacing fields left at their defaults, the LoRAs the caller chose (not those the
//! server adds), and whether an upscale or vary stage runs. Bodies are parsed as the upstream
//! parses them (see reference/inference-apis.md §7); a value the upstream would refuse is
//! [`InferenceError::Invalid`], a body it could not parse is [`InferenceError::Malformed`].
//!
//! This module depends only on `domain`.

mod builtin;
mod fooocus;
mod http;
mod json;
mod llm;
mod lora;
mod multipart;
mod openai;
mod preset;
mod routes;
mod tgi;

pub use builtin::{CONTROL_PERMISSION, builtin_routes};
pub use routes::{ApiSet, BodyKind, InvalidPathPattern, PathPattern, Route, RouteTable};

use crate::domain::{Action, ApiKind, Request};

/// Why a request's body could not be understood. Messages name fields and rules, never the
/// caller's values (prompts stay out of logs and responses).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    /// The route needs the body but Envoy sent only part of it: answer 413.
    #[error("the request body is needed to decide but was not sent whole")]
    Truncated,
    /// The body cannot be parsed as the upstream parses it: answer 400.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// A field holds a value the upstream would refuse: answer 400.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field's path in the body, e.g. `loras[1].model_name`.
        field: String,
        /// What the upstream requires of it.
        reason: String,
    },
}

/// Turns a request matched to `route` into an [`Action`].
///
/// `action.permissions` starts with the route's permission and adds what the body or query
/// needs on top: `generation:upscale` for an upscale or vary stage (and on every upscale-vary
/// route), [`CONTROL_PERMISSION`] for Fooocus-API's `job-history?delete=true` and FooocusAPI's
/// `/tasks?action=delete`, which delete jobs and their files.
pub fn understand(route: &Route, req: &Request) -> Result<Action, InferenceError> {
    let path = http::decode_path(&req.path);
    let mut action = match route.body {
        None => bodyless(route, &path),
        Some(_) if req.body_truncated => return Err(InferenceError::Truncated),
        Some(BodyKind::Fooocus) => fooocus::understand(&path, req)?,
        Some(BodyKind::OpenAi) => openai::understand(&path, req)?,
        Some(BodyKind::Tgi) => tgi::understand(&path, req)?,
    };
    let mut permissions = vec![route.permission];
    permissions.append(&mut action.permissions);
    if destructive_query(&path, req) {
        permissions.push(CONTROL_PERMISSION);
    }
    let mut seen = Vec::with_capacity(permissions.len());
    permissions.retain(|p| {
        let new = !seen.contains(p);
        seen.push(*p);
        new
    });
    action.permissions = permissions;
    Ok(action)
}

/// An action for a route judged on method, path and query alone.
fn bodyless(route: &Route, path: &str) -> Action {
    Action {
        api: Some(ApiKind::Other),
        name: bodyless_name(path).map_or_else(|| route.path.to_string(), str::to_string),
        ..Action::default()
    }
}

/// The action name of a known body-less endpoint.
fn bodyless_name(path: &str) -> Option<&'static str> {
    let name = match path {
        "/v1/generation/stop" | "/v1/engines/clean_vram" | "/v1/engine/control" => "control",
        "/v1/load_lora_adapter"
        | "/v1/unload_lora_adapter"
        | "/activate_adapters"
        | "/v1/models/unload"
        | "/v1/models/reload"
        | "/re_isq" => "control",
        "/v1/generation/query-job"
        | "/v1/generation/job-queue"
        | "/v1/generation/job-history"
        | "/tasks" => "query",
        "/v1/engines/all-models"
        | "/v1/engines/styles"
        | "/v1/engines/refresh-models"
        | "/v1/models"
        | "/v1/lora_adapters"
        | "/v1/models/status" => "models-list",
        "/" | "/ping" | "/health" | "/info" => "health",
        "/docs" | "/openapi.json" => "docs",
        "/metrics" => "metrics",
        "/tokenize" | "/chat_tokenize" => "llm-tokenize",
        p if p.starts_with("/tasks/") => "query",
        p if p.starts_with("/v1/models/") => "models-list",
        p if p.starts_with("/files/")
            || p.starts_with("/outputs/")
            || p.starts_with("/inputs/") =>
        {
            "files"
        }
        _ => return None,
    };
    Some(name)
}

/// True for the query forms that delete jobs and output files.
fn destructive_query(path: &str, req: &Request) -> bool {
    match path {
        // `delete` is a bool query parameter: anything pydantic would not read as false
        // (including values it would refuse) counts.
        "/v1/generation/job-history" => http::query_all(req, "delete")
            .iter()
            .any(|v| json::str_bool(v) != Some(false)),
        "/tasks" => http::query_all(req, "action")
            .iter()
            .any(|v| v.trim().eq_ignore_ascii_case("delete")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Permission;

    pub(crate) fn request(method: &str, path_and_query: &str, body: &str) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            id: "req-1".into(),
            method: method.into(),
            path: path.into(),
            query: query.into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(&[ApiSet::FooocusApi, ApiSet::OpenAi], vec![])
    }

    fn run(method: &str, path_and_query: &str, body: &str) -> Result<Action, InferenceError> {
        let req = request(method, path_and_query, body);
        let t = table();
        let route = t.find(&req.method, &req.path).expect("a route");
        understand(route, &req)
    }

    #[test]
    fn bodyless_routes_name_the_action_and_ignore_the_body() {
        let a = run("GET", "/v1/generation/query-job?job_id=abc", "garbage").unwrap();
        assert_eq!(a.name, "query");
        assert_eq!(a.api, Some(ApiKind::Other));
        assert_eq!(a.permissions, vec![Permission::GenerationView]);
        assert_eq!(a.image_number, None);

        let a = run("GET", "/v1/engines/all-models", "").unwrap();
        assert_eq!(
            (a.name.as_str(), a.permissions),
            ("models-list", vec![Permission::ModelsView])
        );
        let a = run("GET", "/files/2024-01-01/x.png", "").unwrap();
        assert_eq!(a.name, "files");
        let a = run("POST", "/v1/generation/stop", "").unwrap();
        assert_eq!(
            (a.name.as_str(), a.permissions),
            ("control", vec![CONTROL_PERMISSION])
        );

        let custom = Route::new(
            None,
            "/custom/*".parse().unwrap(),
            Permission::ModelsView,
            None,
        );
        let a = understand(&custom, &request("GET", "/custom/x", "")).unwrap();
        assert_eq!(a.name, "/custom/*");
    }

    #[test]
    fn destructive_queries_need_the_control_permission() {
        let a = run(
            "GET",
            "/v1/generation/job-history?job_id=j1&delete=true",
            "",
        )
        .unwrap();
        assert_eq!(
            a.permissions,
            vec![Permission::GenerationView, CONTROL_PERMISSION]
        );
        let a = run("GET", "/v1/generation/job-history?job_id=j1&delete=1", "").unwrap();
        assert!(a.permissions.contains(&CONTROL_PERMISSION));
        let a = run("GET", "/v1/generation/job-history?delete=maybe", "").unwrap();
        assert!(a.permissions.contains(&CONTROL_PERMISSION));
        let a = run(
            "GET",
            "/v1/generation/job-history?delete=false&delete=on",
            "",
        )
        .unwrap();
        assert!(a.permissions.contains(&CONTROL_PERMISSION));
        let a = run("GET", "/v1/generation/job-history?delete=false&page=0", "").unwrap();
        assert_eq!(a.permissions, vec![Permission::GenerationView]);
        let a = run("GET", "/v1/generation/job-history", "").unwrap();
        assert_eq!(a.permissions, vec![Permission::GenerationView]);

        let a = run("GET", "/tasks?query=history&action=delete", "").unwrap();
        assert_eq!(
            a.permissions,
            vec![Permission::GenerationView, CONTROL_PERMISSION]
        );
        let a = run("GET", "/tasks?action=%64elete", "").unwrap();
        assert!(a.permissions.contains(&CONTROL_PERMISSION));
        let a = run("GET", "/tasks?query=all", "").unwrap();
        assert_eq!(a.permissions, vec![Permission::GenerationView]);
        let a = run("HEAD", "/v1/generation/job-history?delete=yes", "").unwrap();
        assert!(a.permissions.contains(&CONTROL_PERMISSION));
    }

    #[test]
    fn truncated_bodies_are_refused_only_when_the_body_is_needed() {
        let t = table();
        let mut req = request("POST", "/v1/generation/text-to-image", "{\"prompt\": \"a");
        req.body_truncated = true;
        let route = t.find("POST", &req.path).unwrap();
        assert_eq!(understand(route, &req), Err(InferenceError::Truncated));

        let mut req = request("GET", "/v1/generation/query-job", "");
        req.body_truncated = true;
        let route = t.find("GET", &req.path).unwrap();
        assert!(understand(route, &req).is_ok());
    }

    #[test]
    fn explicit_route_permission_comes_first_and_extras_follow() {
        let route = Route::new(
            Some("POST"),
            "/v2/generation/image-upscale-vary".parse().unwrap(),
            Permission::GenerationView,
            Some(BodyKind::Fooocus),
        );
        let req = request(
            "POST",
            "/v2/generation/image-upscale-vary",
            r#"{"input_image": "aGk="}"#,
        );
        let a = understand(&route, &req).unwrap();
        assert_eq!(
            a.permissions,
            vec![Permission::GenerationView, Permission::GenerationUpscale]
        );
    }

    #[test]
    fn errors_never_echo_values() {
        let err = run(
            "POST",
            "/v1/generation/text-to-image",
            r#"{"performance_selection": "my secret"}"#,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("performance_selection"), "{err}");
    }
}
