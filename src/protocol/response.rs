//! The one table from a refusal to what Envoy sends the caller, and the allow response.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use crate::domain::{Denial, DenyKind};

/// gRPC status codes (google.rpc.Code) used in CheckResponse.status.
const RPC_PERMISSION_DENIED: i32 = 7;
const RPC_UNAUTHENTICATED: i32 = 16;
const RPC_UNAVAILABLE: i32 = 14;
const RPC_RESOURCE_EXHAUSTED: i32 = 8;
const RPC_INVALID_ARGUMENT: i32 = 3;

/// The HTTP status a refusal becomes.
pub fn status_for(kind: &DenyKind) -> u16 {
    match kind {
        DenyKind::Unauthenticated => 401,
        DenyKind::Forbidden | DenyKind::PendingApproval { .. } => 403,
        DenyKind::BadRequest => 400,
        DenyKind::PayloadTooLarge => 413,
        DenyKind::RateLimited { .. } => 429,
        DenyKind::Unavailable => 503,
        DenyKind::LoginRedirect { .. } => 302,
    }
}

fn rpc_code_for(kind: &DenyKind) -> i32 {
    match kind {
        DenyKind::Unauthenticated => RPC_UNAUTHENTICATED,
        DenyKind::Forbidden | DenyKind::PendingApproval { .. } => RPC_PERMISSION_DENIED,
        DenyKind::BadRequest | DenyKind::PayloadTooLarge => RPC_INVALID_ARGUMENT,
        DenyKind::RateLimited { .. } => RPC_RESOURCE_EXHAUSTED,
        DenyKind::Unavailable => RPC_UNAVAILABLE,
        DenyKind::LoginRedirect { .. } => RPC_UNAUTHENTICATED,
    }
}

/// A header that replaces any value the request already has.
pub(crate) fn overwrite(key: &str, value: impl Into<String>) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.into(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

/// The decision as Envoy dynamic metadata (namespace `envoy.filters.http.ext_authz`), so the
/// access log can print it with `%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%`. Holds no
/// secret: decision, status, error code and, on allow, who was let through.
pub fn decision_metadata(fields: &[(&str, &str)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_string(),
                    Value {
                        kind: Some(Kind::StringValue((*v).to_string())),
                    },
                )
            })
            .collect(),
    }
}

/// The CheckResponse for a refusal: status, headers and the JSON body of DESIGN.md.
pub fn denial_response(denial: &Denial, request_id: &str) -> CheckResponse {
    let status = status_for(&denial.kind);
    let mut body = serde_json::json!({
        "error": denial.error,
        "reason": denial.reason,
        "rule": denial.rule,
        "request_id": request_id,
    });
    let mut headers = vec![
        overwrite("content-type", "application/json"),
        overwrite("cache-control", "no-store"),
        overwrite("x-request-id", request_id),
    ];
    match &denial.kind {
        DenyKind::Unauthenticated => {
            let code = match denial.error {
                "missing_credential" => "",
                // RFC 9470: the token or session is fine but a stronger login is needed.
                "insufficient_user_authentication" => {
                    ", error=\"insufficient_user_authentication\", \
                     error_description=\"multi-factor authentication is required\""
                }
                _ => ", error=\"invalid_token\"",
            };
            headers.push(overwrite(
                "www-authenticate",
                format!("Bearer realm=\"inferguard\"{code}"),
            ));
        }
        DenyKind::RateLimited {
            retry_after_secs,
            limit,
            reset_secs,
        } => {
            headers.push(overwrite("retry-after", retry_after_secs.to_string()));
            headers.push(overwrite("ratelimit-limit", limit.to_string()));
            headers.push(overwrite("ratelimit-remaining", "0"));
            headers.push(overwrite("ratelimit-reset", reset_secs.to_string()));
        }
        DenyKind::PendingApproval { approval_id } => {
            body["status"] = "pending_approval".into();
            body["approval_id"] = approval_id.clone().into();
        }
        DenyKind::Unavailable => headers.push(overwrite("retry-after", "1")),
        DenyKind::LoginRedirect { location } => {
            headers.push(overwrite("location", location.clone()))
        }
        _ => {}
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: rpc_code_for(&denial.kind),
            message: denial.error.to_string(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status),
            }),
            headers,
            body: format!("{body}\n"),
        })),
        dynamic_metadata: Some(decision_metadata(&[
            ("decision", "deny"),
            ("status", &status.to_string()),
            ("error", denial.error),
            ("rule", denial.rule.as_deref().unwrap_or("")),
        ])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(resp: &CheckResponse) -> &DeniedHttpResponse {
        match resp.http_response.as_ref().expect("http response") {
            HttpResponse::DeniedResponse(d) => d,
            other => panic!("not a denial: {other:?}"),
        }
    }

    fn header<'a>(d: &'a DeniedHttpResponse, name: &str) -> Option<&'a str> {
        d.headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.as_str())
    }

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (DenyKind::Unauthenticated, 401),
            (DenyKind::Forbidden, 403),
            (DenyKind::BadRequest, 400),
            (DenyKind::PayloadTooLarge, 413),
            (
                DenyKind::RateLimited {
                    retry_after_secs: 5,
                    limit: 10,
                    reset_secs: 5,
                },
                429,
            ),
            (DenyKind::Unavailable, 503),
            (
                DenyKind::LoginRedirect {
                    location: "/auth/login?rd=%2F".into(),
                },
                302,
            ),
            (
                DenyKind::PendingApproval {
                    approval_id: "a1".into(),
                },
                403,
            ),
        ];
        for (kind, code) in cases {
            let resp = denial_response(&Denial::new(kind, "e", "r"), "rid");
            assert_eq!(denied(&resp).status.as_ref().unwrap().code, code);
            assert_ne!(
                resp.status.as_ref().unwrap().code,
                0,
                "a refusal must never carry OK"
            );
        }
    }

    #[test]
    fn refusal_carries_decision_metadata_for_the_access_log() {
        let d = Denial::new(DenyKind::Forbidden, "preset_not_allowed", "no").with_rule("r1");
        let meta = denial_response(&d, "rid")
            .dynamic_metadata
            .expect("metadata");
        let field = |k: &str| match meta.fields.get(k).and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(field("decision"), "deny");
        assert_eq!(field("status"), "403");
        assert_eq!(field("error"), "preset_not_allowed");
        assert_eq!(field("rule"), "r1");
    }

    #[test]
    fn body_and_headers_follow_the_contract() {
        let d = Denial::new(
            DenyKind::Unauthenticated,
            "invalid_api_key",
            "the API key is not valid",
        )
        .with_rule("r");
        let resp = denial_response(&d, "req-1");
        let dh = denied(&resp);
        let body: serde_json::Value = serde_json::from_str(&dh.body).unwrap();
        assert_eq!(body["error"], "invalid_api_key");
        assert_eq!(body["reason"], "the API key is not valid");
        assert_eq!(body["rule"], "r");
        assert_eq!(body["request_id"], "req-1");
        assert!(
            header(dh, "www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );

        let step_up = denial_response(
            &Denial::new(
                DenyKind::Unauthenticated,
                "insufficient_user_authentication",
                "x",
            ),
            "r",
        );
        assert_eq!(denied(&step_up).status.as_ref().unwrap().code, 401);
        assert!(
            header(denied(&step_up), "www-authenticate")
                .unwrap()
                .contains("error=\"insufficient_user_authentication\"")
        );

        let rl = denial_response(
            &Denial::new(
                DenyKind::RateLimited {
                    retry_after_secs: 42,
                    limit: 50,
                    reset_secs: 42,
                },
                "quota_exceeded",
                "x",
            ),
            "r",
        );
        assert_eq!(header(denied(&rl), "retry-after"), Some("42"));
        assert_eq!(header(denied(&rl), "ratelimit-limit"), Some("50"));

        let pa = denial_response(
            &Denial::new(
                DenyKind::PendingApproval {
                    approval_id: "ap_1".into(),
                },
                "approval_required",
                "x",
            ),
            "r",
        );
        let body: serde_json::Value = serde_json::from_str(&denied(&pa).body).unwrap();
        assert_eq!(body["status"], "pending_approval");
        assert_eq!(body["approval_id"], "ap_1");
    }
}
