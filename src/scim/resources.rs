//! SCIM resource documents inferguard answers with: User, Group, ListResponse and the
//! discovery documents (ServiceProviderConfig, ResourceTypes, Schemas).

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::{ScimGroupRecord, ScimUserRecord};

/// The SCIM media type.
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Where the SCIM routes are mounted.
pub const BASE: &str = "/scim/v2";

/// A JSON body with `application/scim+json`.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_CONTENT_TYPE));
    response
}

fn time(t: i64) -> String {
    crate::commands::users::format_time(t)
}

/// A User resource.
pub fn user(u: &ScimUserRecord, groups: &[(String, String)]) -> Value {
    let mut doc = json!({
        "schemas": [USER_SCHEMA],
        "id": u.scim_id,
        "userName": u.username,
        "active": u.active,
        "groups": groups.iter().map(|(id, name)| json!({
            "value": id, "display": name, "$ref": format!("{BASE}/Groups/{id}"),
        })).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "User",
            "created": time(u.created_at),
            "lastModified": time(u.updated_at),
            "location": format!("{BASE}/Users/{}", u.scim_id),
        },
    });
    if let Some(v) = &u.external_id {
        doc["externalId"] = v.clone().into();
    }
    if let Some(v) = &u.display_name {
        doc["displayName"] = v.clone().into();
    }
    if u.given_name.is_some() || u.family_name.is_some() {
        let mut name = json!({});
        if let Some(v) = &u.given_name {
            name["givenName"] = v.clone().into();
        }
        if let Some(v) = &u.family_name {
            name["familyName"] = v.clone().into();
        }
        doc["name"] = name;
    }
    if let Some(v) = &u.email {
        doc["emails"] = json!([{"value": v, "primary": true, "type": "work"}]);
    }
    doc
}

/// A Group resource; `members` pairs each member's SCIM id with its userName.
pub fn group(g: &ScimGroupRecord, members: &[(String, String)], with_members: bool) -> Value {
    let mut doc = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.scim_id,
        "displayName": g.display_name,
        "meta": {
            "resourceType": "Group",
            "created": time(g.created_at),
            "lastModified": time(g.updated_at),
            "location": format!("{BASE}/Groups/{}", g.scim_id),
        },
    });
    if with_members {
        doc["members"] = members
            .iter()
            .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{BASE}/Users/{id}")}))
            .collect();
    }
    if let Some(v) = &g.external_id {
        doc["externalId"] = v.clone().into();
    }
    doc
}

/// A ListResponse page: `start_index` is 1-based; `count` caps the page.
pub fn list(resources: Vec<Value>, start_index: usize, count: usize) -> Value {
    let total = resources.len();
    let page: Vec<Value> = resources
        .into_iter()
        .skip(start_index.saturating_sub(1))
        .take(count)
        .collect();
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index.max(1),
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

/// `/ServiceProviderConfig`: PATCH yes, filter yes (`eq` only), the rest no.
pub fn service_provider_config() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/inferguard/inferguard#scim-provisioning",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The token set in the environment variable named by scim.token_env",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{BASE}/ServiceProviderConfig")},
    })
}

/// `/ResourceTypes`.
pub fn resource_types() -> Value {
    let types = vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "schema": USER_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{BASE}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{BASE}/ResourceTypes/Group")},
        }),
    ];
    list(types, 1, 2)
}

fn attribute(name: &str, kind: &str, required: bool, multi: bool) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": false, "mutability": "readWrite", "returned": "default",
        "uniqueness": if name == "userName" || name == "displayName" && !multi { "server" } else { "none" },
    })
}

/// `/Schemas`: the attributes inferguard keeps.
pub fn schemas() -> Value {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "User Account",
        "attributes": [
            attribute("userName", "string", true, false),
            attribute("externalId", "string", false, false),
            attribute("displayName", "string", false, false),
            {"name": "name", "type": "complex", "multiValued": false, "required": false,
             "subAttributes": [attribute("givenName", "string", false, false),
                               attribute("familyName", "string", false, false)]},
            {"name": "emails", "type": "complex", "multiValued": true, "required": false,
             "subAttributes": [attribute("value", "string", false, false),
                               attribute("primary", "boolean", false, false)]},
            attribute("active", "boolean", false, false),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{BASE}/Schemas/{USER_SCHEMA}")},
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "Group (its displayName is matched against policy.yaml `groups:`)",
        "attributes": [
            attribute("displayName", "string", true, false),
            attribute("externalId", "string", false, false),
            {"name": "members", "type": "complex", "multiValued": true, "required": false,
             "subAttributes": [attribute("value", "string", false, false)]},
        ],
        "meta": {"resourceType": "Schema", "location": format!("{BASE}/Schemas/{GROUP_SCHEMA}")},
    });
    list(vec![user, group], 1, 2)
}
