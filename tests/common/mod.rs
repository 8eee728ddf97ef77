//! Helpers shared by the tests that call the ext_authz service directly: the CheckRequest
//! Envoy would send, and what Envoy gets back.

#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};

/// The CheckRequest for one HTTP request (body in `raw_body`, as with `pack_as_bytes`), from
/// `peer` when given.
pub fn check_request(
    method: &str,
    path: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> CheckRequest {
    let source = peer.map(|peer| Peer {
        address: Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: peer.into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    });
    CheckRequest {
        attributes: Some(AttributeContext {
            source,
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    raw_body: body.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The headers set and removed by an allow (panics on a refusal).
pub fn allowed(resp: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    assert_eq!(
        resp.status.as_ref().unwrap().code,
        0,
        "expected allow, got {resp:?}"
    );
    match resp.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(ok) => (
            ok.headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            ok.headers_to_remove.clone(),
        ),
        other => panic!("not an allow: {other:?}"),
    }
}

/// The HTTP status and JSON body of a refusal (panics on an allow).
pub fn denied(resp: &CheckResponse) -> (i32, serde_json::Value) {
    assert_ne!(
        resp.status.as_ref().unwrap().code,
        0,
        "expected a refusal, got {resp:?}"
    );
    match resp.http_response.as_ref().unwrap() {
        HttpResponse::DeniedResponse(d) => (
            d.status.as_ref().unwrap().code,
            serde_json::from_str(&d.body).unwrap(),
        ),
        other => panic!("not a denial: {other:?}"),
    }
}
