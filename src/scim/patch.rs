//! Parsing of SCIM 2.0 request bodies as Okta and Entra ID send them: user and group
//! resources, PATCH operations (any `op` case, string booleans, `members[value eq "…"]`
//! paths) and `filter=attr eq "value"`.
//!
//! Attributes inferguard does not keep (titles, phone numbers, enterprise extensions) are
//! ignored, as IdPs send many by default; malformed operations are refused.

use serde_json::{Map, Value};

use super::error::ScimError;

/// The user attributes inferguard keeps, as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInput {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    /// Absent means active (RFC 7643 leaves it to the provider; IdPs send it).
    pub active: bool,
}

/// Changes a user PATCH asks for; `Some(None)` clears an attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub active: Option<bool>,
    pub user_name: Option<String>,
    pub external_id: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub email: Option<Option<String>>,
}

/// A group as POST or PUT gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInput {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
}

/// Changes a group PATCH asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPatch {
    pub display_name: Option<String>,
    pub external_id: Option<Option<String>>,
    pub replace_members: Option<Vec<String>>,
    pub add_members: Vec<String>,
    pub remove_members: Vec<String>,
}

/// A SCIM PATCH operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// One operation: kind, optional path, optional value.
#[derive(Debug)]
struct Operation {
    op: Op,
    path: Option<String>,
    value: Option<Value>,
}

/// The most bytes of a name or id accepted from an IdP.
const MAX_TEXT: usize = 512;

fn invalid_value(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidValue", detail)
}

fn invalid_syntax(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request("invalidSyntax", detail)
}

/// A string attribute: a JSON string (trimmed, bounded) or null.
fn text(value: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
                return Err(invalid_value(format!(
                    "`{name}` is longer than {MAX_TEXT} bytes or has control characters"
                )));
            }
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        _ => Err(invalid_value(format!("`{name}` must be a string"))),
    }
}

/// A boolean attribute: JSON `true`/`false`, or the strings Entra ID sends (`"True"`,
/// `"False"`, any case).
pub fn boolean(value: &Value, name: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid_value(format!("`{name}` must be true or false"))),
    }
}

/// The primary (else first) `value` of a multi-valued `emails` attribute.
fn primary_email(value: &Value) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let pick = items
                .iter()
                .find(|e| {
                    e.get("primary")
                        .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
                })
                .or_else(|| items.first());
            match pick.and_then(|e| e.get("value")) {
                Some(v) => text(v, "emails.value"),
                None => Ok(None),
            }
        }
        _ => Err(invalid_value("`emails` must be a list")),
    }
}

fn object<'a>(body: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ScimError> {
    body.as_object()
        .ok_or_else(|| invalid_syntax(format!("the {what} must be a JSON object")))
}

/// Looks up an attribute by name, case-insensitively (SCIM attribute names are).
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The user of a POST or PUT body. `userName` is required.
pub fn user_input(body: &Value) -> Result<UserInput, ScimError> {
    let obj = object(body, "user")?;
    let user_name = get(obj, "userName")
        .map(|v| text(v, "userName"))
        .transpose()?
        .flatten()
        .ok_or_else(|| invalid_value("`userName` is required"))?;
    crate::commands::users::validate_name("userName", &user_name)
        .map_err(|e| invalid_value(e.to_string()))?;
    let name = get(obj, "name");
    let sub = |key: &str| -> Result<Option<String>, ScimError> {
        match name.and_then(|n| n.as_object()).and_then(|n| get(n, key)) {
            Some(v) => text(v, &format!("name.{key}")),
            None => Ok(None),
        }
    };
    Ok(UserInput {
        external_id: get(obj, "externalId")
            .map(|v| text(v, "externalId"))
            .transpose()?
            .flatten(),
        display_name: get(obj, "displayName")
            .map(|v| text(v, "displayName"))
            .transpose()?
            .flatten(),
        given_name: sub("givenName")?,
        family_name: sub("familyName")?,
        email: get(obj, "emails").map(primary_email).transpose()?.flatten(),
        active: get(obj, "active")
            .map(|v| boolean(v, "active"))
            .transpose()?
            .unwrap_or(true),
        user_name,
    })
}

/// The operations of a PATCH body (`schemas` is not insisted on: some IdPs leave it out).
fn operations(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let obj = object(body, "PATCH body")?;
    let ops = get(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_syntax("a PATCH body needs an `Operations` list"))?;
    if ops.is_empty() || ops.len() > 1000 {
        return Err(invalid_syntax(
            "`Operations` must hold 1 to 1000 operations",
        ));
    }
    ops.iter()
        .map(|o| {
            let o = object(o, "operation")?;
            let op = match get(o, "op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => Op::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => Op::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => Op::Remove,
                _ => return Err(invalid_syntax("`op` must be add, replace or remove")),
            };
            let path = match get(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if !p.trim().is_empty() => Some(p.trim().to_string()),
                Some(_) => {
                    return Err(ScimError::bad_request(
                        "invalidPath",
                        "`path` must be a string",
                    ));
                }
            };
            let value = get(o, "value").cloned();
            if op != Op::Remove && value.is_none() {
                return Err(invalid_value("add and replace operations need a `value`"));
            }
            if op == Op::Remove && path.is_none() {
                return Err(ScimError::bad_request("noTarget", "remove needs a `path`"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// Sets one user attribute named by `path` (lower-cased) from `value` (`None`: remove).
fn set_user_attr(
    patch: &mut UserPatch,
    path: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let null = Value::Null;
    let v = value.unwrap_or(&null);
    match path.to_ascii_lowercase().as_str() {
        "active" => {
            if value.is_none() {
                return Err(invalid_value("`active` cannot be removed"));
            }
            patch.active = Some(boolean(v, "active")?);
        }
        "username" => {
            patch.user_name =
                Some(text(v, "userName")?.ok_or_else(|| invalid_value("`userName` is required"))?)
        }
        "externalid" => patch.external_id = Some(text(v, "externalId")?),
        "displayname" => patch.display_name = Some(text(v, "displayName")?),
        "name.givenname" => patch.given_name = Some(text(v, "name.givenName")?),
        "name.familyname" => patch.family_name = Some(text(v, "name.familyName")?),
        "name" => match v {
            Value::Object(n) => {
                for (k, sub) in n {
                    match k.to_ascii_lowercase().as_str() {
                        "givenname" => patch.given_name = Some(text(sub, "name.givenName")?),
                        "familyname" => patch.family_name = Some(text(sub, "name.familyName")?),
                        _ => {}
                    }
                }
            }
            Value::Null => {
                patch.given_name = Some(None);
                patch.family_name = Some(None);
            }
            _ => return Err(invalid_value("`name` must be an object")),
        },
        "emails" => patch.email = Some(primary_email(v)?),
        p if p.starts_with("emails[") => {
            // `emails[type eq "work"].value` (Entra ID) or `emails[primary eq true].value`.
            patch.email = Some(text(v, "emails.value")?);
        }
        // Attributes inferguard does not keep.
        _ => {}
    }
    Ok(())
}

/// The changes of a user PATCH body.
pub fn user_patch(body: &Value) -> Result<UserPatch, ScimError> {
    let mut patch = UserPatch::default();
    for op in operations(body)? {
        let value = if op.op == Op::Remove {
            None
        } else {
            op.value.as_ref()
        };
        match &op.path {
            Some(path) => set_user_attr(&mut patch, path, value)?,
            None => {
                // No path: the value is an object of attribute → value (Okta; Entra ID also
                // sends dotted names such as `name.givenName` as keys).
                let Some(Value::Object(attrs)) = &op.value else {
                    return Err(invalid_value(
                        "an operation without `path` needs an object `value`",
                    ));
                };
                for (k, v) in attrs {
                    set_user_attr(&mut patch, k, Some(v))?;
                }
            }
        }
    }
    Ok(patch)
}

/// The member ids of a `members` value: a list of `{"value": id}`.
fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let items = match value {
        Value::Array(items) => items.as_slice(),
        Value::Null => &[],
        _ => return Err(invalid_value("`members` must be a list")),
    };
    items
        .iter()
        .map(|m| {
            m.get("value")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
                .ok_or_else(|| invalid_value("each member needs a string `value`"))
        })
        .collect()
}

/// The id in a `members[value eq "ID"]` path.
fn member_filter(path: &str) -> Option<String> {
    path.get(..8)
        .filter(|p| p.eq_ignore_ascii_case("members["))?;
    let inner = path.get(8..)?.strip_suffix(']')?;
    match parse_filter(inner) {
        Ok(Filter { attr, value }) if attr.eq_ignore_ascii_case("value") => Some(value),
        _ => None,
    }
}

/// The group of a POST or PUT body. `displayName` is required.
pub fn group_input(body: &Value) -> Result<GroupInput, ScimError> {
    let obj = object(body, "group")?;
    let display_name = get(obj, "displayName")
        .map(|v| text(v, "displayName"))
        .transpose()?
        .flatten()
        .ok_or_else(|| invalid_value("`displayName` is required"))?;
    Ok(GroupInput {
        display_name,
        external_id: get(obj, "externalId")
            .map(|v| text(v, "externalId"))
            .transpose()?
            .flatten(),
        members: get(obj, "members")
            .map(member_ids)
            .transpose()?
            .unwrap_or_default(),
    })
}

/// The changes of a group PATCH body.
pub fn group_patch(body: &Value) -> Result<GroupPatch, ScimError> {
    let mut patch = GroupPatch::default();
    for op in operations(body)? {
        let path = op.path.as_deref();
        match (op.op, path) {
            (Op::Remove, Some(p)) if p.eq_ignore_ascii_case("members") => match &op.value {
                // Entra ID: remove the listed members; no value: remove all.
                Some(v) => patch.remove_members.extend(member_ids(v)?),
                None => {
                    patch.replace_members = Some(Vec::new());
                    patch.add_members.clear();
                }
            },
            (Op::Remove, Some(p)) => match member_filter(p) {
                Some(id) => patch.remove_members.push(id),
                None if p.eq_ignore_ascii_case("externalId") => patch.external_id = Some(None),
                None => {
                    return Err(ScimError::bad_request(
                        "invalidPath",
                        format!("cannot remove `{p}` from a group"),
                    ));
                }
            },
            (Op::Add, Some(p)) if p.eq_ignore_ascii_case("members") => {
                patch
                    .add_members
                    .extend(member_ids(op.value.as_ref().unwrap_or(&Value::Null))?);
            }
            (Op::Replace, Some(p)) if p.eq_ignore_ascii_case("members") => {
                patch.replace_members =
                    Some(member_ids(op.value.as_ref().unwrap_or(&Value::Null))?);
                patch.add_members.clear();
                patch.remove_members.clear();
            }
            (_, Some(p)) if p.eq_ignore_ascii_case("displayName") => {
                patch.display_name = Some(
                    text(op.value.as_ref().unwrap_or(&Value::Null), "displayName")?
                        .ok_or_else(|| invalid_value("`displayName` is required"))?,
                );
            }
            (_, Some(p)) if p.eq_ignore_ascii_case("externalId") => {
                patch.external_id = Some(text(
                    op.value.as_ref().unwrap_or(&Value::Null),
                    "externalId",
                )?);
            }
            (_, Some(p)) => {
                return Err(ScimError::bad_request(
                    "invalidPath",
                    format!("unsupported group attribute `{p}`"),
                ));
            }
            (_, None) => {
                // Okta: `{"op":"replace","value":{"id":…,"displayName":…}}`.
                let Some(Value::Object(attrs)) = &op.value else {
                    return Err(invalid_value(
                        "an operation without `path` needs an object `value`",
                    ));
                };
                for (k, v) in attrs {
                    match k.to_ascii_lowercase().as_str() {
                        "displayname" => {
                            patch.display_name = Some(
                                text(v, "displayName")?
                                    .ok_or_else(|| invalid_value("`displayName` is required"))?,
                            )
                        }
                        "externalid" => patch.external_id = Some(text(v, "externalId")?),
                        "members" if op.op == Op::Add => patch.add_members.extend(member_ids(v)?),
                        "members" => patch.replace_members = Some(member_ids(v)?),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(patch)
}

/// `attr eq "value"`: the only filter inferguard answers (what IdPs send to find a resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub attr: String,
    pub value: String,
}

/// Parses `attr eq "value"` (operator case-insensitive; `\"` and `\\` escapes in the value).
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    let bad = || {
        ScimError::bad_request(
            "invalidFilter",
            "only `attribute eq \"value\"` filters are supported",
        )
    };
    let text = text.trim();
    let (attr, rest) = text.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(bad());
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or_else(bad)?),
            '"' => return Err(bad()),
            c => out.push(c),
        }
    }
    if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return Err(bad());
    }
    Ok(Filter {
        attr: attr.to_string(),
        value: out,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn okta_create_user_and_deactivate() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"primary": true, "value": "alice@example.com", "type": "work"}],
            "displayName": "Alice Liddell",
            "locale": "en-US",
            "externalId": "00u1abcd",
            "groups": [],
            "password": "ignored",
            "active": true
        });
        let user = user_input(&body).expect("user");
        assert_eq!(user.user_name, "alice@example.com");
        assert_eq!(user.given_name.as_deref(), Some("Alice"));
        assert_eq!(user.family_name.as_deref(), Some("Liddell"));
        assert_eq!(user.email.as_deref(), Some("alice@example.com"));
        assert_eq!(user.external_id.as_deref(), Some("00u1abcd"));
        assert!(user.active);

        let deactivate = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        });
        assert_eq!(user_patch(&deactivate).expect("patch").active, Some(false));
    }

    #[test]
    fn entra_id_shapes() {
        let create = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee@testuser.com",
            "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "x"}
        });
        let user = user_input(&create).expect("user");
        assert!(user.active);
        assert_eq!(
            user.email.as_deref(),
            Some("Test_User_fd0ea19b@testuser.com")
        );

        let deactivate = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        });
        assert_eq!(user_patch(&deactivate).expect("patch").active, Some(false));

        let update = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Updated"},
                {"op": "Add", "path": "title", "value": "Engineer"},
                {"op": "Remove", "path": "displayName"}
            ]
        });
        let patch = user_patch(&update).expect("patch");
        assert_eq!(patch.email, Some(Some("new@example.com".into())));
        assert_eq!(patch.family_name, Some(Some("Updated".into())));
        assert_eq!(patch.display_name, Some(None));
        assert_eq!(patch.active, None);

        let add = json!({"Operations": [{"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}]});
        assert_eq!(
            group_patch(&add).expect("add").add_members,
            vec!["u1", "u2"]
        );
        let remove = json!({"Operations": [{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}]});
        assert_eq!(
            group_patch(&remove).expect("remove").remove_members,
            vec!["u1"]
        );
    }

    #[test]
    fn group_patches_from_okta() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "remove", "path": "members[value eq \"00u2\"]"},
                {"op": "add", "path": "members", "value": [{"value": "00u3", "display": "c@example.com"}]},
                {"op": "replace", "value": {"id": "g1", "displayName": "designers-renamed"}}
            ]
        });
        let patch = group_patch(&body).expect("patch");
        assert_eq!(patch.remove_members, vec!["00u2"]);
        assert_eq!(patch.add_members, vec!["00u3"]);
        assert_eq!(patch.display_name.as_deref(), Some("designers-renamed"));

        let replace = json!({"Operations": [{"op": "replace", "path": "members", "value": [{"value": "a"}]}]});
        assert_eq!(
            group_patch(&replace).expect("replace").replace_members,
            Some(vec!["a".to_string()])
        );
        let group = group_input(&json!({"displayName": "admins", "members": [{"value": "u1"}]}))
            .expect("group");
        assert_eq!(group.members, vec!["u1"]);
    }

    #[test]
    fn malformed_requests_are_refused() {
        for body in [
            json!({"Operations": []}),
            json!({"Operations": [{"op": "move", "path": "active", "value": true}]}),
            json!({"Operations": [{"op": "replace", "path": "active"}]}),
            json!({"Operations": [{"op": "remove"}]}),
            json!({"Operations": [{"op": "replace", "path": "active", "value": "yes"}]}),
            json!({"Operations": [{"op": "replace", "value": "not an object"}]}),
            json!([1, 2]),
        ] {
            assert!(user_patch(&body).is_err(), "{body}");
        }
        assert!(
            user_input(&json!({"name": {"givenName": "x"}})).is_err(),
            "no userName"
        );
        assert!(
            user_input(&json!({"userName": "a b"})).is_err(),
            "bad characters"
        );
        assert!(user_input(&json!({"userName": 5})).is_err());
        assert!(
            group_input(&json!({"members": []})).is_err(),
            "no displayName"
        );
        assert!(
            group_patch(
                &json!({"Operations": [{"op": "remove", "path": "members[display eq \"x\"]"}]})
            )
            .is_err()
        );
        assert!(group_patch(&json!({"Operations": [{"op": "add", "path": "members", "value": [{"display": "x"}]}]})).is_err());
    }

    #[test]
    fn filters_are_attr_eq_value_only() {
        assert_eq!(
            parse_filter("userName eq \"alice@example.com\"").expect("filter"),
            Filter {
                attr: "userName".into(),
                value: "alice@example.com".into()
            }
        );
        assert_eq!(
            parse_filter("displayName EQ \"a \\\"b\\\"\"")
                .expect("filter")
                .value,
            "a \"b\""
        );
        for bad in [
            "",
            "userName",
            "userName eq alice",
            "userName co \"a\"",
            "userName eq \"a\" or id eq \"b\"",
            "user(Name eq \"a\"",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
    }
}
