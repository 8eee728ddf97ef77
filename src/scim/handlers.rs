//! The SCIM routes: Users, Groups and the discovery documents.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::patch::{self, Filter};
use super::resources::{self, BASE, scim_json};
use super::{ScimError, ScimService};
use crate::store::{ScimGroupChange, ScimGroupRecord, ScimUserRecord, StoreError, UserRecord};

/// The largest SCIM request body read.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest page a list answers.
const MAX_PAGE: usize = 1000;

type Svc = State<Arc<ScimService>>;
type ScimResult = Result<Response, ScimError>;

/// The `/scim/v2` routes; every one answers 404 (SCIM error) when SCIM is not enabled.
pub fn routes(scim: Option<Arc<ScimService>>) -> Router {
    let Some(scim) = scim else {
        return Router::new()
            .route(BASE, axum::routing::any(disabled))
            .route(&format!("{BASE}/{{*rest}}"), axum::routing::any(disabled));
    };
    Router::new()
        .route(
            &format!("{BASE}/ServiceProviderConfig"),
            get(|| async { ok(resources::service_provider_config()) }),
        )
        .route(
            &format!("{BASE}/ResourceTypes"),
            get(|| async { ok(resources::resource_types()) }),
        )
        .route(
            &format!("{BASE}/Schemas"),
            get(|| async { ok(resources::schemas()) }),
        )
        .route(&format!("{BASE}/Users"), get(list_users).post(create_user))
        .route(
            &format!("{BASE}/Users/{{id}}"),
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            &format!("{BASE}/Groups"),
            get(list_groups).post(create_group),
        )
        .route(
            &format!("{BASE}/Groups/{{id}}"),
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint") })
        .layer(middleware::from_fn_with_state(scim.clone(), require_token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(scim)
}

async fn disabled() -> ScimError {
    ScimError::not_found("SCIM provisioning is not enabled (scim.enabled in inferguard.yaml)")
}

/// Refuses requests without the bearer token (before any body is read).
async fn require_token(State(svc): Svc, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !svc.authorized(header) {
        return ScimError::unauthorized().into_response();
    }
    next.run(req).await
}

fn ok(body: Value) -> Response {
    scim_json(StatusCode::OK, &body)
}

fn created(body: Value, location: &str) -> Response {
    let mut response = scim_json(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

fn parse_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::bad_request("invalidSyntax", format!("the body is not JSON: {e}")))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A new SCIM resource id: a random (version 4) UUID.
fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `filter`, `startIndex` and `count` of a list request.
struct ListQuery {
    filter: Option<Filter>,
    start_index: usize,
    count: usize,
    with_members: bool,
}

fn list_query(q: &HashMap<String, String>) -> Result<ListQuery, ScimError> {
    let number = |name: &str, default: usize| -> Result<usize, ScimError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                ScimError::bad_request("invalidValue", format!("`{name}` must be a whole number"))
            }),
        }
    };
    let excluded = q
        .get("excludedAttributes")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    Ok(ListQuery {
        filter: q
            .get("filter")
            .map(|f| patch::parse_filter(f))
            .transpose()?,
        start_index: number("startIndex", 1)?.max(1),
        count: number("count", MAX_PAGE)?.min(MAX_PAGE),
        with_members: !excluded.split(',').any(|a| a.trim() == "members"),
    })
}

fn matches(value: Option<&str>, wanted: &str, case_exact: bool) -> bool {
    value.is_some_and(|v| {
        if case_exact {
            v == wanted
        } else {
            v.eq_ignore_ascii_case(wanted)
        }
    })
}

// === users ===

/// The `(group id, display name)` pairs of the groups `scim_id` belongs to.
async fn groups_of(svc: &ScimService, scim_id: &str) -> Result<Vec<(String, String)>, ScimError> {
    Ok(svc
        .store
        .scim_list_groups()
        .await
        .map_err(ScimError::store)?
        .into_iter()
        .filter(|g| g.members.iter().any(|m| m == scim_id))
        .map(|g| (g.scim_id, g.display_name))
        .collect())
}

async fn load_user(svc: &ScimService, id: &str) -> Result<ScimUserRecord, ScimError> {
    svc.store
        .scim_get_user(id)
        .await
        .map_err(ScimError::store)?
        .ok_or_else(|| ScimError::not_found(format!("user `{id}` not found")))
}

async fn user_doc(svc: &ScimService, id: &str) -> Result<Value, ScimError> {
    let user = load_user(svc, id).await?;
    let groups = groups_of(svc, id).await?;
    Ok(resources::user(&user, &groups))
}

async fn list_users(State(svc): Svc, Query(q): Query<HashMap<String, String>>) -> ScimResult {
    let q = list_query(&q)?;
    let users = svc
        .store
        .scim_list_users()
        .await
        .map_err(ScimError::store)?;
    let mut picked = Vec::new();
    for u in users {
        let keep = match &q.filter {
            None => true,
            Some(f) => match f.attr.to_ascii_lowercase().as_str() {
                "username" => matches(Some(&u.username), &f.value, false),
                "externalid" => matches(u.external_id.as_deref(), &f.value, true),
                "id" => matches(Some(&u.scim_id), &f.value, true),
                "emails.value" | "emails" => matches(u.email.as_deref(), &f.value, false),
                _ => {
                    return Err(ScimError::bad_request(
                        "invalidFilter",
                        format!("cannot filter users by `{}`", f.attr),
                    ));
                }
            },
        };
        if keep {
            picked.push(u);
        }
    }
    let groups = svc
        .store
        .scim_list_groups()
        .await
        .map_err(ScimError::store)?;
    let docs = picked
        .iter()
        .map(|u| {
            let mine: Vec<(String, String)> = groups
                .iter()
                .filter(|g| g.members.contains(&u.scim_id))
                .map(|g| (g.scim_id.clone(), g.display_name.clone()))
                .collect();
            resources::user(u, &mine)
        })
        .collect();
    Ok(ok(resources::list(docs, q.start_index, q.count)))
}

async fn get_user(State(svc): Svc, Path(id): Path<String>) -> ScimResult {
    Ok(ok(user_doc(&svc, &id).await?))
}

async fn create_user(State(svc): Svc, body: Bytes) -> ScimResult {
    let input = patch::user_input(&parse_body(&body)?)?;
    let at = now();
    let scim = ScimUserRecord {
        scim_id: new_id(),
        username: input.user_name.clone(),
        external_id: input.external_id,
        display_name: input.display_name,
        given_name: input.given_name,
        family_name: input.family_name,
        email: input.email.clone(),
        active: input.active,
        created_at: at,
        updated_at: at,
    };
    let user = UserRecord {
        username: input.user_name.clone(),
        email: input.email,
        role: None,
        attributes: Default::default(),
        disabled: !input.active,
        password_hash: None,
        created_at: at,
    };
    svc.store
        .scim_create_user(&scim, &user)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ScimError::conflict(format!("a user with userName `{}` exists", user.username))
            }
            e => ScimError::store(e),
        })?;
    if !input.active {
        // An adopted user may hold keys and sessions: an inactive user keeps none.
        svc.store
            .deactivate_user(&user.username, at)
            .await
            .map_err(ScimError::store)?;
    }
    svc.audit(
        "user.create",
        &format!("user:{}", user.username),
        json!({"scim_id": scim.scim_id, "active": input.active, "email": user.email}),
    )
    .await?;
    let doc = user_doc(&svc, &scim.scim_id).await?;
    Ok(created(doc, &format!("{BASE}/Users/{}", scim.scim_id)))
}

/// Stores `next` (attributes) and moves `active` from `before.active` to `next.active`,
/// auditing each change.
async fn apply_user(
    svc: &ScimService,
    before: &ScimUserRecord,
    mut next: ScimUserRecord,
) -> Result<(), ScimError> {
    let at = now();
    let attrs_changed = (
        &next.external_id,
        &next.display_name,
        &next.given_name,
        &next.family_name,
        &next.email,
    ) != (
        &before.external_id,
        &before.display_name,
        &before.given_name,
        &before.family_name,
        &before.email,
    );
    let target = format!("user:{}", before.username);
    if attrs_changed {
        next.updated_at = at;
        svc.store
            .scim_update_user(&next)
            .await
            .map_err(ScimError::store)?;
        svc.audit(
            "user.update",
            &target,
            json!({"scim_id": before.scim_id, "email": next.email}),
        )
        .await?;
    }
    match (before.active, next.active) {
        (true, false) => deactivate(svc, &before.username, &before.scim_id).await?,
        (false, true) => {
            svc.store
                .enable_user(&before.username)
                .await
                .map_err(ScimError::store)?;
            svc.audit("user.enable", &target, json!({"scim_id": before.scim_id}))
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Deactivates a user (one store transaction) and audits what it ended.
async fn deactivate(svc: &ScimService, username: &str, scim_id: &str) -> Result<(), ScimError> {
    let outcome = svc
        .store
        .deactivate_user(username, now())
        .await
        .map_err(ScimError::store)?;
    svc.audit(
        "user.disable",
        &format!("user:{username}"),
        json!({
            "scim_id": scim_id,
            "sessions_ended": outcome.sessions_ended.len(),
            "keys_revoked": outcome.keys_revoked,
            "refresh_tokens_revoked": outcome.refresh_tokens_revoked,
        }),
    )
    .await
}

fn same_user_name(before: &ScimUserRecord, asked: &str) -> Result<(), ScimError> {
    if before.username.eq_ignore_ascii_case(asked) {
        Ok(())
    } else {
        Err(ScimError::bad_request(
            "mutability",
            "userName cannot change (keys and sessions belong to the username); deprovision and create a new user instead",
        ))
    }
}

async fn put_user(State(svc): Svc, Path(id): Path<String>, body: Bytes) -> ScimResult {
    let before = load_user(&svc, &id).await?;
    let input = patch::user_input(&parse_body(&body)?)?;
    same_user_name(&before, &input.user_name)?;
    let next = ScimUserRecord {
        external_id: input.external_id,
        display_name: input.display_name,
        given_name: input.given_name,
        family_name: input.family_name,
        email: input.email,
        active: input.active,
        ..before.clone()
    };
    apply_user(&svc, &before, next).await?;
    Ok(ok(user_doc(&svc, &id).await?))
}

async fn patch_user(State(svc): Svc, Path(id): Path<String>, body: Bytes) -> ScimResult {
    let before = load_user(&svc, &id).await?;
    let p = patch::user_patch(&parse_body(&body)?)?;
    if let Some(name) = &p.user_name {
        same_user_name(&before, name)?;
    }
    let mut next = before.clone();
    if let Some(v) = p.external_id {
        next.external_id = v;
    }
    if let Some(v) = p.display_name {
        next.display_name = v;
    }
    if let Some(v) = p.given_name {
        next.given_name = v;
    }
    if let Some(v) = p.family_name {
        next.family_name = v;
    }
    if let Some(v) = p.email {
        next.email = v;
    }
    if let Some(v) = p.active {
        next.active = v;
    }
    apply_user(&svc, &before, next).await?;
    Ok(ok(user_doc(&svc, &id).await?))
}

/// DELETE deactivates (the record stays, so the audit trail keeps its meaning).
async fn delete_user(State(svc): Svc, Path(id): Path<String>) -> ScimResult {
    let before = load_user(&svc, &id).await?;
    deactivate(&svc, &before.username, &before.scim_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === groups ===

async fn load_group(svc: &ScimService, id: &str) -> Result<ScimGroupRecord, ScimError> {
    svc.store
        .scim_get_group(id)
        .await
        .map_err(ScimError::store)?
        .ok_or_else(|| ScimError::not_found(format!("group `{id}` not found")))
}

/// SCIM id → userName of every SCIM user.
async fn user_names(svc: &ScimService) -> Result<HashMap<String, String>, ScimError> {
    Ok(svc
        .store
        .scim_list_users()
        .await
        .map_err(ScimError::store)?
        .into_iter()
        .map(|u| (u.scim_id, u.username))
        .collect())
}

fn group_doc(g: &ScimGroupRecord, names: &HashMap<String, String>, with_members: bool) -> Value {
    let members: Vec<(String, String)> = g
        .members
        .iter()
        .map(|m| (m.clone(), names.get(m).cloned().unwrap_or_default()))
        .collect();
    resources::group(g, &members, with_members)
}

fn member_names(ids: &[String], names: &HashMap<String, String>) -> Vec<String> {
    ids.iter()
        .map(|m| names.get(m).cloned().unwrap_or_else(|| m.clone()))
        .collect()
}

/// An unknown member id is the request's fault (400), not a missing resource.
fn member_error(e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound(what) => {
            ScimError::bad_request("invalidValue", format!("{what} not found"))
        }
        StoreError::Conflict(_) => ScimError::conflict("a group with this displayName exists"),
        e => ScimError::store(e),
    }
}

async fn list_groups(State(svc): Svc, Query(q): Query<HashMap<String, String>>) -> ScimResult {
    let q = list_query(&q)?;
    let groups = svc
        .store
        .scim_list_groups()
        .await
        .map_err(ScimError::store)?;
    let names = user_names(&svc).await?;
    let mut docs = Vec::new();
    for g in &groups {
        let keep = match &q.filter {
            None => true,
            Some(f) => match f.attr.to_ascii_lowercase().as_str() {
                "displayname" => matches(Some(&g.display_name), &f.value, false),
                "externalid" => matches(g.external_id.as_deref(), &f.value, true),
                "id" => matches(Some(&g.scim_id), &f.value, true),
                _ => {
                    return Err(ScimError::bad_request(
                        "invalidFilter",
                        format!("cannot filter groups by `{}`", f.attr),
                    ));
                }
            },
        };
        if keep {
            docs.push(group_doc(g, &names, q.with_members));
        }
    }
    Ok(ok(resources::list(docs, q.start_index, q.count)))
}

async fn get_group(
    State(svc): Svc,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ScimResult {
    let q = list_query(&q)?;
    let g = load_group(&svc, &id).await?;
    Ok(ok(group_doc(&g, &user_names(&svc).await?, q.with_members)))
}

async fn create_group(State(svc): Svc, body: Bytes) -> ScimResult {
    let input = patch::group_input(&parse_body(&body)?)?;
    let at = now();
    let members: BTreeSet<String> = input.members.into_iter().collect();
    let group = ScimGroupRecord {
        scim_id: new_id(),
        display_name: input.display_name,
        external_id: input.external_id,
        members: members.into_iter().collect(),
        created_at: at,
        updated_at: at,
    };
    svc.store
        .scim_create_group(&group)
        .await
        .map_err(member_error)?;
    let names = user_names(&svc).await?;
    svc.audit(
        "group.create",
        &format!("group:{}", group.display_name),
        json!({"scim_id": group.scim_id, "members": member_names(&group.members, &names)}),
    )
    .await?;
    Ok(created(
        group_doc(&group, &names, true),
        &format!("{BASE}/Groups/{}", group.scim_id),
    ))
}

/// Applies a group change and audits it (membership changes are role changes).
async fn change_group(svc: &ScimService, id: &str, change: ScimGroupChange) -> ScimResult {
    let before = load_group(svc, id).await?;
    let after = svc
        .store
        .scim_modify_group(id, &change, now())
        .await
        .map_err(member_error)?;
    let names = user_names(svc).await?;
    let old: BTreeSet<&String> = before.members.iter().collect();
    let new: BTreeSet<&String> = after.members.iter().collect();
    let added: Vec<String> = new.difference(&old).map(|s| (*s).clone()).collect();
    let removed: Vec<String> = old.difference(&new).map(|s| (*s).clone()).collect();
    svc.audit(
        "group.update",
        &format!("group:{}", before.display_name),
        json!({
            "scim_id": id,
            "display_name": after.display_name,
            "members_added": member_names(&added, &names),
            "members_removed": member_names(&removed, &names),
        }),
    )
    .await?;
    Ok(ok(group_doc(&after, &names, true)))
}

async fn patch_group(State(svc): Svc, Path(id): Path<String>, body: Bytes) -> ScimResult {
    let p = patch::group_patch(&parse_body(&body)?)?;
    let change = ScimGroupChange {
        display_name: p.display_name,
        external_id: p.external_id,
        replace_members: p.replace_members,
        add_members: p.add_members,
        remove_members: p.remove_members,
    };
    change_group(&svc, &id, change).await
}

async fn put_group(State(svc): Svc, Path(id): Path<String>, body: Bytes) -> ScimResult {
    let input = patch::group_input(&parse_body(&body)?)?;
    let change = ScimGroupChange {
        display_name: Some(input.display_name),
        external_id: Some(input.external_id),
        replace_members: Some(input.members),
        ..Default::default()
    };
    change_group(&svc, &id, change).await
}

async fn delete_group(State(svc): Svc, Path(id): Path<String>) -> ScimResult {
    let before = load_group(&svc, &id).await?;
    svc.store
        .scim_delete_group(&id)
        .await
        .map_err(ScimError::store)?;
    let names = user_names(&svc).await?;
    svc.audit(
        "group.delete",
        &format!("group:{}", before.display_name),
        json!({"scim_id": id, "members": member_names(&before.members, &names)}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
