//! SCIM error responses (RFC 7644 §3.12): `{"schemas": [Error], "status": "400",
//! "scimType": …, "detail": …}` with `application/scim+json`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::resources::scim_json;
use crate::store::StoreError;

/// The SCIM error message schema.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: StatusCode,
    /// RFC 7644 `scimType` (`invalidValue`, `uniqueness`, …), for 400 and 409.
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    /// 400 with `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
        ScimError {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ScimError {
        ScimError {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// 409 `uniqueness`.
    pub fn conflict(detail: impl Into<String>) -> ScimError {
        ScimError {
            status: StatusCode::CONFLICT,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }

    /// 401 (no or wrong bearer token).
    pub fn unauthorized() -> ScimError {
        ScimError {
            status: StatusCode::UNAUTHORIZED,
            scim_type: None,
            detail: "a valid SCIM bearer token is required".into(),
        }
    }

    /// 500 or 503 from a store failure (never echoing internals beyond the store's message).
    pub fn store(e: StoreError) -> ScimError {
        match e {
            StoreError::NotFound(what) => ScimError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => ScimError::conflict(format!("{what} already exists")),
            StoreError::Unavailable(why) => {
                tracing::error!(error = %why, "SCIM: store unavailable");
                ScimError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    scim_type: None,
                    detail: "the store is unavailable; try again".into(),
                }
            }
            StoreError::Corrupt(why) => {
                tracing::error!(error = %why, "SCIM: stored data is invalid");
                ScimError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    scim_type: None,
                    detail: "stored data is invalid".into(),
                }
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        let mut response = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"inferguard-scim\""),
            );
        }
        response
    }
}
