//! CheckRequest → Request. Everything in a CheckRequest comes from the client through Envoy
//! and is treated as hostile: missing parts become empty values (which later stages refuse),
//! never a panic.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::address::Address;

use crate::domain::Request;

/// Converts Envoy's description of a request into inferguard's.
pub fn to_request(check: CheckRequest) -> Request {
    let Some(attrs) = check.attributes else {
        return Request {
            id: new_request_id(),
            ..Request::default()
        };
    };
    let peer = attrs
        .source
        .and_then(|s| s.address)
        .and_then(|a| a.address)
        .and_then(|a| match a {
            Address::SocketAddress(sa) => Some(sa.address),
            _ => None,
        });
    let Some(http) = attrs.request.and_then(|r| r.http) else {
        return Request {
            id: new_request_id(),
            peer,
            ..Request::default()
        };
    };

    let mut headers: HashMap<String, String> = HashMap::with_capacity(http.headers.len());
    for (k, v) in http.headers {
        headers.insert(k.to_ascii_lowercase(), v);
    }
    // With `encode_raw_headers`, Envoy sends `header_map` instead; repeated headers are
    // joined with a comma, as Envoy does for the plain map.
    if let Some(map) = http.header_map {
        for hv in map.headers {
            let value = if hv.raw_value.is_empty() {
                hv.value
            } else {
                String::from_utf8_lossy(&hv.raw_value).into_owned()
            };
            headers
                .entry(hv.key.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
    }

    let (path, query) = match http.path.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (http.path, http.query),
    };
    let path = path.split('#').next().unwrap_or_default().to_string();

    let body = if http.raw_body.is_empty() {
        http.body.into_bytes()
    } else {
        http.raw_body
    };
    // Envoy's partial-body flag alone is unreliable when the buffer stops exactly at the
    // limit, so a content-length above what arrived also means truncated.
    let partial_flag = headers
        .get("x-envoy-auth-partial-body")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let declared_longer = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > body.len() as u64);

    let id = headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .or_else(|| (!http.id.is_empty() && http.id.len() <= 128).then_some(http.id))
        .unwrap_or_else(new_request_id);

    Request {
        id,
        method: http.method.to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
        body_truncated: partial_flag || declared_longer,
        peer,
    }
}

fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Request as AttrRequest,
    };

    use super::*;

    fn check(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttrRequest {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn splits_path_and_query_and_reads_raw_body() {
        let r = to_request(check(HttpRequest {
            method: "post".into(),
            path: "/v1/generation/text-to-image?accept=image/png".into(),
            raw_body: b"{}".to_vec(),
            headers: [("X-Request-Id".to_string(), "abc".to_string())].into(),
            ..Default::default()
        }));
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/generation/text-to-image");
        assert_eq!(r.query, "accept=image/png");
        assert_eq!(r.body, b"{}");
        assert_eq!(r.id, "abc");
        assert!(!r.body_truncated);
    }

    #[test]
    fn detects_truncation_by_flag_or_length() {
        let flagged = to_request(check(HttpRequest {
            body: "{\"a\":".into(),
            headers: [("x-envoy-auth-partial-body".to_string(), "true".to_string())].into(),
            ..Default::default()
        }));
        assert!(flagged.body_truncated);
        let short = to_request(check(HttpRequest {
            body: "{}".into(),
            headers: [("content-length".to_string(), "3".to_string())].into(),
            ..Default::default()
        }));
        assert!(short.body_truncated);
        let whole = to_request(check(HttpRequest {
            body: "{}".into(),
            headers: [("content-length".to_string(), "2".to_string())].into(),
            ..Default::default()
        }));
        assert!(!whole.body_truncated);
    }

    #[test]
    fn empty_check_request_is_an_empty_request() {
        let r = to_request(CheckRequest::default());
        assert!(r.method.is_empty() && r.path.is_empty() && r.headers.is_empty());
        assert_eq!(r.id.len(), 32);
        assert_eq!(to_request(check(HttpRequest::default())).id.len(), 32);
    }
}
