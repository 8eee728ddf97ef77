//! Which credential a request carries.

use crate::domain::{Denial, Request};
use crate::identity::{api_key, unauthenticated};

/// The credential a request presented, with the header it came in (so it can be removed
/// before the upstream).
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    ApiKey {
        text: &'a str,
        header: &'a str,
    },
    Bearer {
        token: &'a str,
    },
    /// A browser session cookie ([`SESSION_COOKIE`]).
    Session {
        id: String,
    },
}

/// The browser session cookie. The `__Host-` prefix makes browsers accept it only when set
/// Secure, from the host itself, with `Path=/` and no Domain.
pub const SESSION_COOKIE: &str = "__Host-inferguard-session";

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
    if let Some(id) = session_cookie(req)? {
        found = merge(found, Credential::Session { id })?;
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

/// The session cookie's value, if present once. Two session cookies (cookie tossing from a
/// sibling domain) are refused rather than guessed between.
fn session_cookie(req: &Request) -> Result<Option<String>, Denial> {
    let Some(header) = req.header("cookie") else {
        return Ok(None);
    };
    let mut found = None;
    for cookie in cookie::Cookie::split_parse(header).flatten() {
        if cookie.name() != SESSION_COOKIE {
            continue;
        }
        if found.is_some() {
            return Err(unauthenticated(
                "ambiguous_credentials",
                "the request carries two session cookies",
            ));
        }
        found = Some(cookie.value().to_string());
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// Every cookie inferguard sets starts with this (the session, the login-state binding).
pub const INFERGUARD_COOKIE_PREFIX: &str = "__Host-inferguard-";

/// The `cookie` header without inferguard's own cookies (so the upstream never sees the
/// session or login state), or `None` when nothing else is left.
pub fn cookie_header_without_session(header: &str) -> Option<String> {
    let rest: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|c| {
            !c.is_empty()
                && !c
                    .split('=')
                    .next()
                    .map(str::trim)
                    .is_some_and(|name| name.starts_with(INFERGUARD_COOKIE_PREFIX))
        })
        .collect();
    (!rest.is_empty()).then(|| rest.join("; "))
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
    fn finds_the_session_cookie_once() {
        let hs = vec!["x-api-key".to_string()];
        let r = req(&[("cookie", "a=1; __Host-inferguard-session=s3cr3t; b=2")]);
        assert_eq!(
            find_credential(&r, &hs).unwrap(),
            Some(Credential::Session {
                id: "s3cr3t".into()
            })
        );
        let r = req(&[(
            "cookie",
            "__Host-inferguard-session=a; __Host-inferguard-session=b",
        )]);
        assert_eq!(
            find_credential(&r, &hs).unwrap_err().error,
            "ambiguous_credentials"
        );
        let r = req(&[
            ("cookie", "__Host-inferguard-session=a"),
            ("x-api-key", "fk_x"),
        ]);
        assert!(find_credential(&r, &hs).is_err());
        assert_eq!(
            find_credential(&req(&[("cookie", "other=1")]), &hs).unwrap(),
            None
        );
    }

    #[test]
    fn strips_only_the_session_cookie() {
        assert_eq!(
            cookie_header_without_session("a=1; __Host-inferguard-session=x; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            cookie_header_without_session("__Host-inferguard-session=x"),
            None
        );
        assert_eq!(cookie_header_without_session("a=1").as_deref(), Some("a=1"));
        assert_eq!(
            cookie_header_without_session("__Host-inferguard-login-ab=x; a=1").as_deref(),
            Some("a=1")
        );
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
