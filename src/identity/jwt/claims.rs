//! Turns a verified token's claims into identity fields, following the issuer's
//! [`ClaimMapping`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::ClaimMapping;

/// The identity fields of a token, as mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MappedClaims {
    pub subject: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub token_id: Option<String>,
}

/// Maps `claims` through `mapping`. Values of the wrong shape are left out rather than
/// guessed at; the caller decides whether a missing subject is an error.
pub(crate) fn map_claims(claims: &Map<String, Value>, mapping: &ClaimMapping) -> MappedClaims {
    let attributes = mapping
        .attributes
        .iter()
        .filter_map(|(attr, claim)| {
            lookup(claims, claim)
                .and_then(attribute_value)
                .map(|v| (attr.clone(), v))
        })
        .collect();
    MappedClaims {
        subject: lookup(claims, &mapping.subject)
            .and_then(scalar)
            .filter(|s| !s.is_empty()),
        email: lookup(claims, &mapping.email)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        groups: lookup(claims, &mapping.groups)
            .map(string_list)
            .unwrap_or_default(),
        attributes,
        amr: claims.get("amr").map(string_list).unwrap_or_default(),
        acr: claims
            .get("acr")
            .and_then(Value::as_str)
            .map(str::to_string),
        token_id: claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// A claim by name: the top-level claim of exactly that name when there is one (so namespaced
/// names such as `https://example.com/groups` work), else a dotted path through objects.
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut parts = name.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One string, or an array of scalars; empty and duplicate entries are dropped, order kept.
pub(crate) fn string_list(v: &Value) -> Vec<String> {
    let items: Vec<String> = match v {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !item.is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// An attribute's text: a scalar as is, an array of scalars joined with commas.
pub(crate) fn attribute_value(v: &Value) -> Option<String> {
    match v {
        Value::Array(_) => {
            let items = string_list(v);
            (!items.is_empty()).then(|| items.join(","))
        }
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_and_shapes() {
        let c = obj(json!({
            "sub": "alice", "email": "a@example.com", "groups": ["g1", "g2", "g1", ""],
            "amr": ["pwd", "mfa"], "acr": "gold", "jti": "t-1"
        }));
        let m = map_claims(&c, &ClaimMapping::default());
        assert_eq!(m.subject.as_deref(), Some("alice"));
        assert_eq!(m.email.as_deref(), Some("a@example.com"));
        assert_eq!(m.groups, vec!["g1", "g2"]);
        assert_eq!(m.amr, vec!["pwd", "mfa"]);
        assert_eq!(m.acr.as_deref(), Some("gold"));
        assert_eq!(m.token_id.as_deref(), Some("t-1"));

        let c = obj(json!({"sub": 42, "groups": "solo", "email": 7}));
        let m = map_claims(&c, &ClaimMapping::default());
        assert_eq!(m.subject.as_deref(), Some("42"));
        assert_eq!(m.groups, vec!["solo"]);
        assert_eq!(m.email, None);
        assert!(m.amr.is_empty());

        let m = map_claims(
            &obj(json!({"sub": "", "groups": {"x": 1}})),
            &ClaimMapping::default(),
        );
        assert_eq!(m.subject, None);
        assert!(m.groups.is_empty());
    }

    #[test]
    fn custom_names_paths_and_attributes() {
        let mapping = ClaimMapping {
            subject: "preferred_username".into(),
            email: "mail".into(),
            groups: "https://example.com/groups".into(),
            attributes: [
                ("department".to_string(), "ext.department".to_string()),
                ("clearance_level".to_string(), "clearance".to_string()),
                ("regions".to_string(), "regions".to_string()),
                ("absent".to_string(), "nope.deeper".to_string()),
                ("object".to_string(), "ext".to_string()),
            ]
            .into(),
        };
        let c = obj(json!({
            "sub": "ignored", "preferred_username": "bob", "mail": "b@example.com",
            "https://example.com/groups": ["designers"],
            "ext": {"department": "marketing"}, "clearance": 3, "regions": ["eu", "us"]
        }));
        let m = map_claims(&c, &mapping);
        assert_eq!(m.subject.as_deref(), Some("bob"));
        assert_eq!(m.email.as_deref(), Some("b@example.com"));
        assert_eq!(m.groups, vec!["designers"]);
        let want: BTreeMap<String, String> = [
            ("department".to_string(), "marketing".to_string()),
            ("clearance_level".to_string(), "3".to_string()),
            ("regions".to_string(), "eu,us".to_string()),
        ]
        .into();
        assert_eq!(m.attributes, want);
    }
}
