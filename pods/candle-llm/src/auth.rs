//! The upstream key check: inferguard (through Envoy) sets the pod's key on every request it
//! allows; a call without it (someone bypassing Envoy) is refused before any work.

use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::server::openai_error;

/// The header and value every request must carry.
#[derive(Clone)]
pub struct UpstreamKey {
    header: HeaderName,
    secret: Vec<u8>,
}

impl std::fmt::Debug for UpstreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamKey")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl UpstreamKey {
    /// A key read from the environment; empty keys are refused (the pod never runs open).
    pub fn new(header: HeaderName, secret: String) -> Result<Self, String> {
        if secret.trim().is_empty() {
            return Err("the upstream key is empty".into());
        }
        Ok(UpstreamKey {
            header,
            secret: secret.into_bytes(),
        })
    }

    /// Whether a request carries exactly the key (constant-time in the key's content; a
    /// repeated header is refused).
    pub fn admits(&self, headers: &axum::http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.header).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => bool::from(v.as_bytes().ct_eq(&self.secret)),
            _ => false,
        }
    }
}

/// Middleware: 401 unless the upstream key is present and right.
pub async fn require_key(State(key): State<UpstreamKey>, request: Request, next: Next) -> Response {
    if key.admits(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "refused a request without the upstream key");
    openai_error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "this server only answers requests that came through inferguard",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn only_the_exact_single_key_is_admitted() {
        let key = UpstreamKey::new(HeaderName::from_static("x-api-key"), "s3cret".into()).unwrap();
        let mut h = HeaderMap::new();
        assert!(!key.admits(&h));
        h.insert("x-api-key", HeaderValue::from_static("s3cre"));
        assert!(!key.admits(&h));
        h.insert("x-api-key", HeaderValue::from_static("s3cret"));
        assert!(key.admits(&h));
        h.append("x-api-key", HeaderValue::from_static("s3cret"));
        assert!(!key.admits(&h), "a repeated key header must be refused");
        assert!(UpstreamKey::new(HeaderName::from_static("x-api-key"), " ".into()).is_err());
    }
}
