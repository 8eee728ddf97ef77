//! The route table: which permission and which body extractor a method + path needs.
//!
//! Built-in route sets (see [`builtin_routes`]) come first; explicit routes from policy.yaml
//! add to them or replace the built-in route with the same method and path pattern. A lookup
//! prefers an exact path over a prefix, a longer prefix over a shorter one, and a route naming
//! the method over one that takes any method.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize as _;

use crate::domain::Permission;

use super::builtin::builtin_routes;
use super::http::decode_path;

/// Which body extractor understands a route's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// Fooocus-API v1 (JSON and multipart) and v2 JSON bodies, and FooocusAPI's
    /// `/v1/engine/generate/` body with its `preset` override.
    Fooocus,
    /// OpenAI-compatible bodies (chat, completions, images, embeddings), as mistral.rs and
    /// candle-vllm accept them.
    OpenAi,
    /// text-generation-inference bodies (`/generate`, its OpenAI-style routes, `/vertex`,
    /// `/invocations`).
    Tgi,
}

/// A built-in route set named in policy.yaml's `apis:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum ApiSet {
    /// Every endpoint of Fooocus-API (`mrhan1993/Fooocus-API`) and of its successor FooocusAPI.
    #[serde(rename = "fooocus-api")]
    FooocusApi,
    /// OpenAI-compatible LLM servers (mistral.rs, candle-vllm, …).
    #[serde(rename = "openai")]
    OpenAi,
    /// Hugging Face text-generation-inference.
    #[serde(rename = "tgi")]
    Tgi,
}

impl ApiSet {
    /// The name used in policy.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiSet::FooocusApi => "fooocus-api",
            ApiSet::OpenAi => "openai",
            ApiSet::Tgi => "tgi",
        }
    }
}

impl fmt::Display for ApiSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a route's path is matched (the query string is never part of the match).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// The whole path, exactly.
    Exact(String),
    /// Any path that starts with this text (written with a trailing `*`).
    Prefix(String),
}

impl PathPattern {
    /// True when `path` (already percent-decoded) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// Why a route path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPathPattern {
    /// The path is empty or relative.
    #[error("a route path must start with `/`")]
    NoLeadingSlash,
    /// A `*` somewhere other than the end.
    #[error("`*` may only end a route path (it makes the route match by prefix)")]
    InnerWildcard,
    /// A query string in the pattern.
    #[error("a route path never contains `?`: the query string is not part of the match")]
    Query,
    /// Whitespace or control characters.
    #[error("a route path may not contain whitespace or control characters")]
    BadCharacter,
}

impl FromStr for PathPattern {
    type Err = InvalidPathPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.starts_with('/') {
            return Err(InvalidPathPattern::NoLeadingSlash);
        }
        if s.contains('?') {
            return Err(InvalidPathPattern::Query);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidPathPattern::BadCharacter);
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err(InvalidPathPattern::InnerWildcard),
            Some(prefix) => Ok(PathPattern::Prefix(prefix.to_string())),
            None if s.contains('*') => Err(InvalidPathPattern::InnerWildcard),
            None => Ok(PathPattern::Exact(s.to_string())),
        }
    }
}

impl TryFrom<String> for PathPattern {
    type Error = InvalidPathPattern;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl<'de> serde::Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PathPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One route: what a method + path needs and how its body is read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Upper-case HTTP method; `None` matches any method. A `GET` route also matches `HEAD`
    /// (Starlette and axum both answer `HEAD` with the `GET` handler).
    #[serde(default, deserialize_with = "deserialize_method")]
    pub method: Option<String>,
    /// The path, exactly or by prefix.
    pub path: PathPattern,
    /// The primary permission; the extractor may add more (e.g. `generation:upscale`).
    pub permission: Permission,
    /// The body extractor; `None` judges the request on its method, path and query alone.
    #[serde(default)]
    pub body: Option<BodyKind>,
    /// Send the signed identity assertion upstream.
    #[serde(default)]
    pub assertion: bool,
    /// The caller must have completed multi-factor authentication.
    #[serde(default)]
    pub require_mfa: bool,
}

impl Route {
    /// A route with no assertion and no MFA requirement (used by the built-in sets).
    pub fn new(
        method: Option<&str>,
        path: PathPattern,
        permission: Permission,
        body: Option<BodyKind>,
    ) -> Route {
        Route {
            method: method.map(str::to_ascii_uppercase),
            path,
            permission,
            body,
            assertion: false,
            require_mfa: false,
        }
    }

    /// How well this route's method fits `method`: `None` when it does not match at all.
    fn method_score(&self, method: &str) -> Option<u8> {
        match &self.method {
            None => Some(0),
            Some(m) if m.eq_ignore_ascii_case(method) => Some(2),
            Some(m) if m == "GET" && method.eq_ignore_ascii_case("HEAD") => Some(1),
            Some(_) => None,
        }
    }

    fn same_key(&self, other: &Route) -> bool {
        self.method == other.method && self.path == other.path
    }
}

fn deserialize_method<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let m = Option::<String>::deserialize(d)?;
    match m {
        None => Ok(None),
        Some(m) if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Err(serde::de::Error::custom(
                "a route method is a word such as GET or POST (omit it to match any method)",
            ))
        }
        Some(m) => Ok(Some(m.to_ascii_uppercase())),
    }
}

/// The built-in routes of the configured API sets plus the explicit routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table: the built-in routes of `apis` in order (a later set replaces an
    /// earlier set's route with the same method and path pattern, e.g. `tgi` after `openai`
    /// owns `POST /v1/chat/completions`), then `explicit`, each of which replaces the route
    /// with the same method and pattern or is added.
    pub fn new(apis: &[ApiSet], explicit: Vec<Route>) -> RouteTable {
        let mut table = RouteTable::default();
        for api in apis {
            for route in builtin_routes(*api) {
                table.upsert(route);
            }
        }
        for route in explicit {
            table.upsert(route);
        }
        table
    }

    fn upsert(&mut self, route: Route) {
        match self.routes.iter_mut().find(|r| r.same_key(&route)) {
            Some(existing) => *existing = route,
            None => self.routes.push(route),
        }
    }

    /// The route for a request, or `None` (the request is then denied).
    ///
    /// `path` is percent-decoded first, as uvicorn does before Starlette routes it (for
    /// axum-based servers a path with `%` matches no route of theirs, so decoding only ever
    /// makes the match stricter); a path with a `.` or `..` segment then matches nothing. An
    /// exact path wins over a prefix, a longer prefix over a shorter one, and a route naming
    /// the method over one taking any method.
    pub fn find(&self, method: &str, path: &str) -> Option<&Route> {
        let path = decode_path(path);
        // `.` and `..` segments reach no endpoint of Starlette or axum (neither resolves
        // them), but could slip a path under a prefix route: refuse them.
        if path.split('/').any(|seg| seg == "." || seg == "..") {
            return None;
        }
        self.routes
            .iter()
            .filter(|r| r.path.matches(&path))
            .filter_map(|r| {
                let m = r.method_score(method)?;
                let (exact, len) = match &r.path {
                    PathPattern::Exact(p) => (1u8, p.len()),
                    PathPattern::Prefix(p) => (0u8, p.len()),
                };
                Some(((exact, len, m), r))
            })
            .max_by_key(|(score, _)| *score)
            .map(|(_, r)| r)
    }

    /// Every route, built-in ones first, in the order they were added.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::CONTROL_PERMISSION;

    fn route(method: Option<&str>, path: &str, permission: Permission) -> Route {
        Route::new(method, path.parse().unwrap(), permission, None)
    }

    #[test]
    fn path_patterns_parse() {
        assert_eq!("/a/b".parse(), Ok(PathPattern::Exact("/a/b".into())));
        assert_eq!(
            "/files/*".parse(),
            Ok(PathPattern::Prefix("/files/".into()))
        );
        assert_eq!("/*".parse(), Ok(PathPattern::Prefix("/".into())));
        assert_eq!(
            "a/b".parse::<PathPattern>(),
            Err(InvalidPathPattern::NoLeadingSlash)
        );
        assert_eq!(
            "".parse::<PathPattern>(),
            Err(InvalidPathPattern::NoLeadingSlash)
        );
        assert_eq!(
            "/a*/b".parse::<PathPattern>(),
            Err(InvalidPathPattern::InnerWildcard)
        );
        assert_eq!(
            "/a/**".parse::<PathPattern>(),
            Err(InvalidPathPattern::InnerWildcard)
        );
        assert_eq!(
            "/a?x=1".parse::<PathPattern>(),
            Err(InvalidPathPattern::Query)
        );
        assert_eq!(
            "/a b".parse::<PathPattern>(),
            Err(InvalidPathPattern::BadCharacter)
        );
        assert_eq!(
            PathPattern::Prefix("/files/".into()).to_string(),
            "/files/*"
        );
    }

    #[test]
    fn enums_deserialize_from_policy_names() {
        let apis: Vec<ApiSet> = serde_yaml::from_str("[fooocus-api, openai, tgi]").unwrap();
        assert_eq!(apis, vec![ApiSet::FooocusApi, ApiSet::OpenAi, ApiSet::Tgi]);
        let bodies: Vec<BodyKind> = serde_yaml::from_str("[fooocus, openai, tgi]").unwrap();
        assert_eq!(
            bodies,
            vec![BodyKind::Fooocus, BodyKind::OpenAi, BodyKind::Tgi]
        );
        assert!(serde_yaml::from_str::<ApiSet>("fooocus").is_err());
        assert!(serde_yaml::from_str::<BodyKind>("OpenAI").is_err());
    }

    #[test]
    fn route_deserializes_from_policy_yaml() {
        let r: Route = serde_yaml::from_str(
            "{method: post, path: /v1/generation/text-to-image, permission: generation:create, body: fooocus}",
        )
        .unwrap();
        assert_eq!(r.method.as_deref(), Some("POST"));
        assert_eq!(
            r.path,
            PathPattern::Exact("/v1/generation/text-to-image".into())
        );
        assert_eq!(r.permission, Permission::GenerationCreate);
        assert_eq!(r.body, Some(BodyKind::Fooocus));
        assert!(!r.assertion && !r.require_mfa);

        let r: Route = serde_yaml::from_str(
            "{path: /custom/*, permission: generation:view, require_mfa: true}",
        )
        .unwrap();
        assert_eq!(r.method, None);
        assert_eq!(r.path, PathPattern::Prefix("/custom/".into()));
        assert!(r.require_mfa);

        for bad in [
            "{path: custom, permission: generation:view}",
            "{path: /x, permission: generation:delete}",
            "{path: /x, permission: generation:view, body: json}",
            "{path: /x, permission: generation:view, methd: GET}",
            "{method: 'G T', path: /x, permission: generation:view}",
        ] {
            assert!(serde_yaml::from_str::<Route>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let table = RouteTable::new(
            &[],
            vec![
                route(Some("GET"), "/files/*", Permission::GenerationView),
                route(Some("GET"), "/files/secret/*", Permission::AdminViewLogs),
                route(
                    Some("GET"),
                    "/files/secret/open.png",
                    Permission::ModelsView,
                ),
                route(None, "/*", Permission::AdminManageUsers),
            ],
        );
        let p = |path: &str| table.find("GET", path).map(|r| r.permission);
        assert_eq!(
            p("/files/2024-01-01/a.png"),
            Some(Permission::GenerationView)
        );
        assert_eq!(p("/files/secret/x.png"), Some(Permission::AdminViewLogs));
        assert_eq!(p("/files/secret/open.png"), Some(Permission::ModelsView));
        assert_eq!(p("/other"), Some(Permission::AdminManageUsers));
        assert_eq!(p("/files"), Some(Permission::AdminManageUsers));

        // A prefix as long as the path still loses to the exact path.
        let table = RouteTable::new(
            &[],
            vec![
                route(Some("GET"), "/tasks", Permission::GenerationView),
                route(Some("GET"), "/tasks*", Permission::AdminViewLogs),
            ],
        );
        let p = |path: &str| table.find("GET", path).map(|r| r.permission);
        assert_eq!(p("/tasks"), Some(Permission::GenerationView));
        assert_eq!(p("/tasks/1"), Some(Permission::AdminViewLogs));
    }

    #[test]
    fn method_must_match_and_specific_method_wins() {
        let table = RouteTable::new(
            &[],
            vec![
                route(Some("POST"), "/x", Permission::GenerationCreate),
                route(None, "/x", Permission::GenerationView),
                route(Some("GET"), "/only-get", Permission::ModelsView),
            ],
        );
        assert_eq!(
            table.find("POST", "/x").unwrap().permission,
            Permission::GenerationCreate
        );
        assert_eq!(
            table.find("DELETE", "/x").unwrap().permission,
            Permission::GenerationView
        );
        assert!(table.find("POST", "/only-get").is_none());
        assert_eq!(
            table.find("HEAD", "/only-get").unwrap().permission,
            Permission::ModelsView
        );
        assert!(table.find("GET", "/nothing").is_none());
    }

    #[test]
    fn explicit_routes_override_builtins_with_the_same_key_and_add_others() {
        let builtin = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
        let t2i = builtin
            .find("POST", "/v1/generation/text-to-image")
            .unwrap();
        assert_eq!(t2i.permission, Permission::GenerationCreate);
        assert!(!t2i.require_mfa);

        let mut strict = route(
            Some("POST"),
            "/v1/generation/text-to-image",
            Permission::GenerationUpscale,
        );
        strict.require_mfa = true;
        strict.body = Some(BodyKind::Fooocus);
        let extra = route(Some("GET"), "/custom", Permission::ModelsView);
        let table = RouteTable::new(&[ApiSet::FooocusApi], vec![strict.clone(), extra]);
        assert_eq!(table.routes().len(), builtin.routes().len() + 1);
        assert_eq!(
            table.find("POST", "/v1/generation/text-to-image"),
            Some(&strict)
        );
        assert_eq!(
            table.find("GET", "/custom").unwrap().permission,
            Permission::ModelsView
        );
    }

    #[test]
    fn later_api_set_owns_shared_paths() {
        let t = RouteTable::new(&[ApiSet::OpenAi, ApiSet::Tgi], vec![]);
        assert_eq!(
            t.find("POST", "/v1/chat/completions").unwrap().body,
            Some(BodyKind::Tgi)
        );
        let t = RouteTable::new(&[ApiSet::Tgi, ApiSet::OpenAi], vec![]);
        assert_eq!(
            t.find("POST", "/v1/chat/completions").unwrap().body,
            Some(BodyKind::OpenAi)
        );
        assert!(
            RouteTable::new(&[], vec![])
                .find("POST", "/v1/chat/completions")
                .is_none()
        );
    }

    #[test]
    fn paths_match_after_percent_decoding() {
        let t = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
        let r = t.find("POST", "/v1/generation/text%2Dto-image").unwrap();
        assert_eq!(r.body, Some(BodyKind::Fooocus));
        assert_eq!(r.permission, Permission::GenerationCreate);
        // Trailing slash: Starlette redirects instead of generating; no route of ours.
        assert!(t.find("POST", "/v1/generation/text-to-image/").is_none());
        assert!(t.find("POST", "/V1/generation/text-to-image").is_none());
        // Dot segments never match, encoded or not.
        assert!(t.find("GET", "/files/2024/x.png").is_some());
        assert!(t.find("GET", "/files/../v1/engines/clean_vram").is_none());
        assert!(
            t.find("GET", "/files/%2e%2e/v1/engines/clean_vram")
                .is_none()
        );
        assert!(t.find("GET", "/files/./x.png").is_none());
        assert!(t.find("GET", "/files/..x.png").is_some());
    }

    #[test]
    fn fooocus_builtins_carry_the_right_permissions() {
        let t = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
        let p = |m: &str, path: &str| t.find(m, path).map(|r| (r.permission, r.body));
        let generation = Some((Permission::GenerationCreate, Some(BodyKind::Fooocus)));
        for path in [
            "/v1/generation/text-to-image",
            "/v1/generation/image-upscale-vary",
            "/v1/generation/image-inpaint-outpaint",
            "/v1/generation/image-prompt",
            "/v1/generation/image-enhance",
            "/v2/generation/text-to-image-with-ip",
            "/v2/generation/image-upscale-vary",
            "/v2/generation/image-inpaint-outpaint",
            "/v2/generation/image-prompt",
            "/v2/generation/image-enhance",
            "/v1/tools/describe-image",
            "/v1/tools/generate_mask",
            "/v1/engine/generate/",
            "/v1/engine/generate",
        ] {
            assert_eq!(p("POST", path), generation, "{path}");
            assert_eq!(p("GET", path), None, "{path}");
        }
        let view = Some((Permission::GenerationView, None));
        for path in [
            "/v1/generation/query-job",
            "/v1/generation/job-queue",
            "/v1/generation/job-history",
            "/",
            "/ping",
            "/files/2024-05-01/abc.png",
            "/tasks",
            "/tasks/0123abcd",
            "/outputs/2024-05-01/x.png",
            "/inputs/x.png",
        ] {
            assert_eq!(p("GET", path), view, "{path}");
        }
        let models = Some((Permission::ModelsView, None));
        assert_eq!(p("GET", "/v1/engines/all-models"), models);
        assert_eq!(p("GET", "/v1/engines/styles"), models);
        let control = Some((CONTROL_PERMISSION, None));
        assert_eq!(p("POST", "/v1/generation/stop"), control);
        assert_eq!(p("GET", "/v1/engines/clean_vram"), control);
        assert_eq!(p("POST", "/v1/engine/control"), control);
    }

    #[test]
    fn llm_builtins_carry_the_right_permissions() {
        let t = RouteTable::new(&[ApiSet::OpenAi], vec![]);
        let p = |m: &str, path: &str| t.find(m, path).map(|r| (r.permission, r.body));
        let generation = Some((Permission::GenerationCreate, Some(BodyKind::OpenAi)));
        assert_eq!(p("POST", "/v1/chat/completions"), generation);
        assert_eq!(p("POST", "/v1/completions"), generation);
        assert_eq!(p("POST", "/v1/images/generations"), generation);
        assert_eq!(p("POST", "/v1/embeddings"), generation);
        assert_eq!(p("GET", "/v1/models"), Some((Permission::ModelsView, None)));
        assert_eq!(
            p("POST", "/v1/load_lora_adapter"),
            Some((CONTROL_PERMISSION, None))
        );
        assert_eq!(
            p("GET", "/health"),
            Some((Permission::GenerationView, None))
        );

        let t = RouteTable::new(&[ApiSet::Tgi], vec![]);
        let p = |m: &str, path: &str| t.find(m, path).map(|r| (r.permission, r.body));
        let generation = Some((Permission::GenerationCreate, Some(BodyKind::Tgi)));
        for path in [
            "/",
            "/generate",
            "/generate_stream",
            "/v1/chat/completions",
            "/v1/completions",
        ] {
            assert_eq!(p("POST", path), generation, "{path}");
        }
        assert_eq!(p("GET", "/info"), Some((Permission::GenerationView, None)));
        assert_eq!(
            p("GET", "/health"),
            Some((Permission::GenerationView, None))
        );
        assert_eq!(
            p("POST", "/tokenize"),
            Some((Permission::GenerationView, None))
        );
        assert_eq!(p("GET", "/"), None);
    }
}
