//! The SCIM routes against a real SQLite store, with the request shapes Okta and Entra ID
//! send.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::domain::PrincipalKind;
use crate::store::{ApiKeyRecord, OwnerRef, SqliteStore};

const TOKEN: &str = "scim-test-token-0123456789abcdefghijklmnop";

struct Fixture {
    _dir: tempfile::TempDir,
    store: DynStore,
    app: axum::Router,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("scim.db").display());
    let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    let svc = Arc::new(ScimService::new(store.clone(), TOKEN, None));
    Fixture {
        _dir: dir,
        store,
        app: routes(Some(svc)),
    }
}

async fn call(f: &Fixture, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_with(f, method, path, body, Some(TOKEN)).await
}

async fn call_with(
    f: &Fixture,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/scim+json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let response = f.app.clone().oneshot(req).await.expect("response");
    let status = response.status();
    if status != StatusCode::NO_CONTENT {
        assert_eq!(
            response.headers()["content-type"],
            "application/scim+json",
            "{status}"
        );
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (status, value)
}

fn okta_user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"primary": true, "value": name, "type": "work"}],
        "displayName": "Alice Liddell",
        "locale": "en-US",
        "externalId": "00u1",
        "groups": [],
        "active": true
    })
}

#[tokio::test]
async fn the_token_is_required() {
    let f = fixture().await;
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = call_with(&f, Method::GET, "/scim/v2/Users", None, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["schemas"][0], error::ERROR_SCHEMA);
        assert_eq!(body["status"], "401");
    }
    let disabled = routes(None);
    let req = Request::builder()
        .uri("/scim/v2/Users")
        .body(Body::empty())
        .expect("req");
    let response = disabled.oneshot(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn okta_lifecycle_create_find_deactivate() {
    let f = fixture().await;
    // Okta first looks the user up, then creates it.
    let (status, list) = call(
        &f,
        Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22alice%40example.com%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["schemas"][0], resources::LIST_SCHEMA);
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));

    let (status, user) = call(
        &f,
        Method::POST,
        "/scim/v2/Users",
        Some(okta_user("alice@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().expect("id").to_string();
    assert_eq!(user["userName"], "alice@example.com");
    assert_eq!(user["active"], true);
    assert_eq!(user["name"]["givenName"], "Alice");
    assert_eq!(user["emails"][0]["value"], "alice@example.com");
    assert_eq!(user["meta"]["resourceType"], "User");

    let (status, dup) = call(
        &f,
        Method::POST,
        "/scim/v2/Users",
        Some(okta_user("alice@example.com")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(dup["scimType"], "uniqueness");

    let (_, list) = call(
        &f,
        Method::GET,
        "/scim/v2/Users?filter=userName%20eq%20%22ALICE%40example.com%22",
        None,
    )
    .await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id.as_str());

    // A key the user holds dies with the deactivation.
    f.store
        .create_key(&ApiKeyRecord {
            id: "k1".into(),
            name: "k1".into(),
            owner: OwnerRef {
                kind: PrincipalKind::User,
                name: "alice@example.com".into(),
            },
            secret_sha256: "00".repeat(32),
            scopes: None,
            daily_images: None,
            created_at: 1,
            expires_at: i64::MAX,
            revoked_at: None,
            allowed_networks: None,
            last_used_at: None,
        })
        .await
        .expect("key");
    let (status, user) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["active"], false);
    assert!(
        f.store
            .get_user("alice@example.com")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(
        f.store
            .get_key("k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Reactivation enables the user (revoked keys stay revoked).
    let (status, user) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(json!({"Operations": [{"op": "replace", "value": {"active": true}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["active"], true);
    assert!(
        f.store
            .get_key("k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    let (status, err) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(json!({"Operations": [{"op": "replace", "path": "userName", "value": "mallory"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["scimType"], "mutability");
    assert_eq!(err["status"], "400");

    let (status, _) = call(&f, Method::DELETE, &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        f.store
            .get_user("alice@example.com")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let (status, err) = call(&f, Method::GET, "/scim/v2/Users/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["status"], "404");
}

#[tokio::test]
async fn entra_id_deactivation_and_group_membership() {
    let f = fixture().await;
    let (status, user) = call(
        &f,
        Method::POST,
        "/scim/v2/Users",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": "0a21f0f2",
            "userName": "bob@example.com",
            "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "bob@example.com"}],
            "name": {"familyName": "B", "givenName": "Bob"}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let bob = user["id"].as_str().expect("id").to_string();
    let (_, carol) = call(
        &f,
        Method::POST,
        "/scim/v2/Users",
        Some(okta_user("carol@example.com")),
    )
    .await;
    let carol = carol["id"].as_str().expect("id").to_string();

    let (status, group) = call(
        &f,
        Method::POST,
        "/scim/v2/Groups",
        Some(json!({"schemas": [resources::GROUP_SCHEMA], "displayName": "designers", "members": []})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().expect("id").to_string();

    let (status, group) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Groups/{gid}"),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": bob}, {"value": carol}]}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{group}");
    assert_eq!(group["members"].as_array().expect("members").len(), 2);
    assert_eq!(
        f.store
            .scim_groups_for_user("bob@example.com")
            .await
            .expect("groups"),
        vec!["designers"]
    );

    let (status, _) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Groups/{gid}"),
        Some(json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        f.store
            .scim_groups_for_user("bob@example.com")
            .await
            .expect("groups")
            .is_empty()
    );

    let (status, err) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Groups/{gid}"),
        Some(json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["scimType"], "invalidValue");

    let (_, list) = call(
        &f,
        Method::GET,
        "/scim/v2/Groups?filter=displayName%20eq%20%22designers%22&excludedAttributes=members",
        None,
    )
    .await;
    assert_eq!(list["totalResults"], 1);
    assert!(list["Resources"][0].get("members").is_none());

    let (status, user) = call(
        &f,
        Method::PATCH,
        &format!("/scim/v2/Users/{bob}"),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["active"], false);
    assert!(
        f.store
            .get_user("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );

    let (status, err) = call(
        &f,
        Method::GET,
        "/scim/v2/Users?filter=title%20co%20%22x%22",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["scimType"], "invalidFilter");

    let (status, _) = call(&f, Method::DELETE, &format!("/scim/v2/Groups/{gid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&f, Method::GET, &format!("/scim/v2/Groups/{gid}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn discovery_documents() {
    let f = fixture().await;
    let (status, spc) = call(&f, Method::GET, "/scim/v2/ServiceProviderConfig", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spc["patch"]["supported"], true);
    let (_, types) = call(&f, Method::GET, "/scim/v2/ResourceTypes", None).await;
    assert_eq!(types["totalResults"], 2);
    let (_, schemas) = call(&f, Method::GET, "/scim/v2/Schemas", None).await;
    assert_eq!(schemas["Resources"][0]["id"], resources::USER_SCHEMA);
    let (status, err) = call(
        &f,
        Method::POST,
        "/scim/v2/Users",
        Some(json!({"userName": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["scimType"], "invalidValue");
}
