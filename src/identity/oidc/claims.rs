//! Identity fields from an ID token's (and userinfo response's) claims.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::OidcClaimMapping;
// The same claim shapes as bearer tokens: one reading of them for both.
pub(crate) use crate::identity::jwt::claims::string_list;
use crate::identity::jwt::claims::{attribute_value, lookup};

/// The identity fields of a login, as mapped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MappedClaims {
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
}

/// Maps `claims` through `mapping`; values of the wrong shape are left out.
pub(crate) fn map_claims(claims: &Map<String, Value>, mapping: &OidcClaimMapping) -> MappedClaims {
    MappedClaims {
        email: lookup(claims, &mapping.email)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        groups: lookup(claims, &mapping.groups)
            .map(string_list)
            .unwrap_or_default(),
        attributes: mapping
            .attributes
            .iter()
            .filter_map(|(attr, claim)| {
                lookup(claims, claim)
                    .and_then(attribute_value)
                    .map(|v| (attr.clone(), v))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_email_groups_and_attributes() {
        let claims = json!({
            "email": "a@example.com",
            "groups": ["g1", "g1", "", "g2"],
            "department": "design",
            "ext": {"clearance": 3},
            "roles": "one",
        });
        let mapping = OidcClaimMapping {
            attributes: BTreeMap::from([
                ("department".into(), "department".into()),
                ("clearance".into(), "ext.clearance".into()),
                ("missing".into(), "nope".into()),
            ]),
            ..OidcClaimMapping::default()
        };
        let m = map_claims(claims.as_object().unwrap(), &mapping);
        assert_eq!(m.email.as_deref(), Some("a@example.com"));
        assert_eq!(m.groups, vec!["g1", "g2"]);
        assert_eq!(m.attributes["department"], "design");
        assert_eq!(m.attributes["clearance"], "3");
        assert!(!m.attributes.contains_key("missing"));

        let one = OidcClaimMapping {
            groups: "roles".into(),
            ..OidcClaimMapping::default()
        };
        assert_eq!(
            map_claims(claims.as_object().unwrap(), &one).groups,
            vec!["one"]
        );
    }
}
