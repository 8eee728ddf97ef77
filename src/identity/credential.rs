//! Which credential a request carries.

use crate::domain::{Denial, Request};
use crate::identity::{api_key, unauthenticated};

/// The credential a request presented, with the header it came in (so it can be removed
/// before the upstream).
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    ApiKey { text: &'a str, header: &'a str },
    Bearer { token: &'a str },
}

/// Finds exactly one credential: an API key in one of `key_headers`, or an
/// `Authorization: Bearer` value (an `fk_` value there is an API key). Two different
/// credentials in one request are refused rather than guessed between.
pub fn find_credential<'a>(
    req: &'a Request,
    key_headers: &'a [String],
) -> Result<Option<Credential<'a>>, Denial> {
    let mut found: Option<Credential<'a>> = None;
    for h in key_headers {
        if let Some(v) = req.header(h) {
            let v = v.trim();
            if !v.is_empty() {
                found = merge(found, Credential::ApiKey { text: v, header: h })?;
            }
        }
    }
    if let Some(auth) = req.header("authorization") {
        let auth = auth.trim();
        let Some((scheme, value)) = auth.split_once(' ') else {
            return Err(unauthenticated(
                "invalid_request",
                "the Authorization header is not `Bearer <credential>`",
            ));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthenticated(
                "invalid_request",
                "only the Bearer authorization scheme is accepted",
            ));
        }
        let value = value.trim();
        let cred = if api_key::looks_like_key(value) {
            Credential::ApiKey {
                text: value,
                header: "authorization",
            }
        } else {
            Credential::Bearer { token: value }
        };
        found = merge(found, cred)?;
    }
    Ok(found)
}

fn merge<'a>(
    found: Option<Credential<'a>>,
    next: Credential<'a>,
) -> Result<Option<Credential<'a>>, Denial> {
    match found {
        None => Ok(Some(next)),
        Some(prev) => {
            let same = match (&prev, &next) {
                (Credential::ApiKey { text: a, .. }, Credential::ApiKey { text: b, .. }) => a == b,
                _ => false,
            };
            if same {
                Ok(Some(prev))
            } else {
                Err(unauthenticated(
                    "ambiguous_credentials",
                    "the request carries more than one credential",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Request::default()
        }
    }

    #[test]
    fn finds_keys_and_bearers() {
        let hs = vec!["x-api-key".to_string()];
        let r = req(&[("x-api-key", "fk_abc")]);
        assert_eq!(
            find_credential(&r, &hs).unwrap(),
            Some(Credential::ApiKey {
                text: "fk_abc",
                header: "x-api-key"
            })
        );
        let r = req(&[("authorization", "Bearer fk_abc")]);
        assert_eq!(
            find_credential(&r, &hs).unwrap(),
            Some(Credential::ApiKey {
                text: "fk_abc",
                header: "authorization"
            })
        );
        let r = req(&[("authorization", "bearer eyJ.x.y")]);
        assert_eq!(
            find_credential(&r, &hs).unwrap(),
            Some(Credential::Bearer { token: "eyJ.x.y" })
        );
        assert_eq!(find_credential(&req(&[]), &hs).unwrap(), None);
    }

    #[test]
    fn refuses_ambiguous_and_odd_schemes() {
        let hs = vec!["x-api-key".to_string()];
        let r = req(&[("x-api-key", "fk_a"), ("authorization", "Bearer fk_b")]);
        assert_eq!(
            find_credential(&r, &hs).unwrap_err().error,
            "ambiguous_credentials"
        );
        let r = req(&[("x-api-key", "fk_a"), ("authorization", "Bearer fk_a")]);
        assert!(find_credential(&r, &hs).unwrap().is_some());
        let r = req(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert!(find_credential(&r, &hs).is_err());
        let r = req(&[("authorization", "Bearer")]);
        assert!(find_credential(&r, &hs).is_err());
    }
}
