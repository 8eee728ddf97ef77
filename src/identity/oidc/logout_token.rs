//! OIDC Back-Channel Logout 1.0: verifying a logout token.
//!
//! The signature, `iss`, `aud` (= the client id), `exp` and `nbf` are checked by the same JWT
//! verifier as bearer tokens (the IdP's keys by discovery, asymmetric algorithms only); then
//! the logout-specific claims: `iat` (present and recent), `jti` (present and not seen
//! before), `events` naming the back-channel logout event, `sid` and/or `sub`, and no `nonce`
//! (so an ID token can never pass for a logout token).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::future::Cache;
use serde_json::{Map, Value};

use crate::identity::jwt::{ClaimMapping, JwtIssuerConfig, JwtVerifier};

/// The event a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How far in the past a logout token's `iat` may be.
const MAX_AGE_SECS: i64 = 600;
/// Clock skew allowed for `iat` in the future.
const LEEWAY_SECS: i64 = 60;

/// Whom a valid logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The IdP session id, when given.
    pub sid: Option<String>,
    /// The subject, when given.
    pub sub: Option<String>,
}

/// Why a logout token was refused (the text is safe to send back to the IdP).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    #[error("the logout token is not valid: {0}")]
    Invalid(String),
    #[error("the logout token was already used")]
    Replayed,
    #[error("the identity provider's keys cannot be fetched")]
    Unavailable,
}

/// Verifies logout tokens of one IdP for one client.
pub struct LogoutTokenVerifier {
    jwt: JwtVerifier,
    /// `jti`s seen within [`MAX_AGE_SECS`] (per process: replaying a logout token elsewhere
    /// only ends sessions that are ended already).
    seen: Cache<String, ()>,
}

impl LogoutTokenVerifier {
    /// A verifier for tokens from `issuer` meant for `client_id`.
    pub fn new(issuer: &str, client_id: &str) -> Result<Self, String> {
        let mut cfg = JwtIssuerConfig::new(issuer, vec![client_id.to_string()]);
        // A logout token may have no `sub`; `jti` is required and identifies it.
        cfg.claims = ClaimMapping {
            subject: "jti".into(),
            ..ClaimMapping::default()
        };
        let jwt = JwtVerifier::new(vec![cfg]).map_err(|e| e.to_string())?;
        Ok(LogoutTokenVerifier {
            jwt,
            seen: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs((MAX_AGE_SECS + LEEWAY_SECS) as u64))
                .build(),
        })
    }

    /// Verifies `token` at `now` (unix seconds) and returns whom it logs out.
    pub async fn verify(&self, token: &str, now: i64) -> Result<LogoutClaims, LogoutTokenError> {
        let verified = self.jwt.verify(token, now).await.map_err(|e| match e {
            crate::identity::jwt::JwtError::IdpUnavailable(_) => LogoutTokenError::Unavailable,
            other => LogoutTokenError::Invalid(other.to_string()),
        })?;
        let (header, claims) = decode_parts(token)
            .ok_or_else(|| LogoutTokenError::Invalid("malformed segments".into()))?;
        if let Some(typ) = header.get("typ") {
            let typ = typ.as_str().unwrap_or_default().to_ascii_lowercase();
            let typ = typ.strip_prefix("application/").unwrap_or(&typ);
            if typ != "logout+jwt" && typ != "jwt" {
                return Err(LogoutTokenError::Invalid(format!("`typ` is `{typ}`")));
            }
        }
        let claims = check_logout_claims(&claims, now)?;
        let jti = verified.subject.clone();
        if self.seen.contains_key(&jti) {
            return Err(LogoutTokenError::Replayed);
        }
        self.seen.insert(jti, ()).await;
        Ok(claims)
    }
}

/// The header and claims of a compact JWS (already verified by the caller).
fn decode_parts(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let header = parts.next()?;
    let payload = parts.next()?;
    let json = |segment: &str| -> Option<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    };
    Some((json(header)?, json(payload)?))
}

/// The logout-specific checks on verified claims.
fn check_logout_claims(
    claims: &Map<String, Value>,
    now: i64,
) -> Result<LogoutClaims, LogoutTokenError> {
    let invalid = |why: &str| LogoutTokenError::Invalid(why.to_string());
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or_else(|| invalid("no numeric `iat`"))? as i64;
    if iat > now + LEEWAY_SECS || iat < now - MAX_AGE_SECS {
        return Err(invalid("`iat` is too far from now"));
    }
    if claims
        .get("jti")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid("no `jti`"));
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(invalid(
            "`events` does not name the back-channel logout event",
        ));
    }
    if claims.contains_key("nonce") {
        return Err(invalid("a logout token must not carry `nonce`"));
    }
    let text = |name: &str| -> Result<Option<String>, LogoutTokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(LogoutTokenError::Invalid(format!(
                "`{name}` is not a string"
            ))),
        }
    };
    let sid = text("sid")?;
    let sub = text("sub")?;
    if sid.is_none() && sub.is_none() {
        return Err(invalid("neither `sid` nor `sub`"));
    }
    Ok(LogoutClaims { sid, sub })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    fn good(now: i64) -> Value {
        json!({
            "iss": "https://idp", "aud": "ig", "iat": now, "exp": now + 120, "jti": "j1",
            "sid": "s1", "sub": "alice",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        })
    }

    #[test]
    fn logout_claims_are_checked() {
        let now = 1_700_000_000;
        assert_eq!(
            check_logout_claims(&claims(good(now)), now),
            Ok(LogoutClaims {
                sid: Some("s1".into()),
                sub: Some("alice".into())
            })
        );
        let mut only_sid = good(now);
        only_sid.as_object_mut().unwrap().remove("sub");
        assert!(check_logout_claims(&claims(only_sid), now).is_ok());

        type Change = Box<dyn Fn(&mut Map<String, Value>)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "nonce",
                Box::new(|c| {
                    c.insert("nonce".into(), json!("n"));
                }),
            ),
            (
                "no events",
                Box::new(|c| {
                    c.remove("events");
                }),
            ),
            (
                "other event",
                Box::new(|c| {
                    c.insert("events".into(), json!({"x": {}}));
                }),
            ),
            (
                "event not object",
                Box::new(|c| {
                    c.insert("events".into(), json!({BACKCHANNEL_LOGOUT_EVENT: "yes"}));
                }),
            ),
            (
                "no jti",
                Box::new(|c| {
                    c.remove("jti");
                }),
            ),
            (
                "no iat",
                Box::new(|c| {
                    c.remove("iat");
                }),
            ),
            (
                "old iat",
                Box::new(|c| {
                    c.insert("iat".into(), json!(1_700_000_000 - 3600));
                }),
            ),
            (
                "future iat",
                Box::new(|c| {
                    c.insert("iat".into(), json!(1_700_000_000 + 3600));
                }),
            ),
            (
                "neither sid nor sub",
                Box::new(|c| {
                    c.remove("sid");
                    c.remove("sub");
                }),
            ),
            (
                "sid not a string",
                Box::new(|c| {
                    c.insert("sid".into(), json!(5));
                }),
            ),
        ];
        for (name, change) in cases {
            let mut c = claims(good(now));
            change(&mut c);
            assert!(check_logout_claims(&c, now).is_err(), "{name}");
        }
    }

    #[test]
    fn segments_are_decoded() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"logout+jwt"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#);
        let (header, payload) = decode_parts(&format!("{h}.{p}.sig")).expect("parts");
        assert_eq!(header["typ"], "logout+jwt");
        assert_eq!(payload["sub"], "a");
        assert!(decode_parts("x.y.z").is_none());
    }
}
