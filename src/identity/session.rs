//! Browser sessions as seen from the Check path: the authenticator a session store provides,
//! and the redirect a browser without a session gets when SSO is on.

use crate::domain::{Denial, DenyKind, Principal, Request};
use crate::policy::Policy;

/// Turns a session cookie's value into a principal (implemented by the SSO module over the
/// store), or the refusal to give.
#[async_trait::async_trait]
pub trait SessionAuthenticator: Send + Sync {
    /// Authenticates the opaque session id from the cookie.
    async fn authenticate(
        &self,
        session_id: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<Principal, Denial>;

    /// Drops what a change-feed entry says has changed (an ended or refreshed session, a
    /// user's binding or disabled flag). Default: nothing is cached.
    async fn apply_change(&self, _change: &crate::store::Change) {}

    /// Drops everything cached (the change feed was lost or restarted). Default: nothing.
    fn flush(&self) {}
}

/// Where browsers without a session are sent when SSO is on.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    /// The login path on the public origin, `/auth/login`.
    pub login_path: String,
}

impl LoginRedirect {
    /// A 302 to the login page for a browser page request, or `None` for API callers (which
    /// get 401). A browser is a GET or HEAD whose `Accept` names `text/html`.
    pub fn for_request(&self, req: &Request) -> Option<Denial> {
        let browser = matches!(req.method.as_str(), "GET" | "HEAD")
            && req
                .header("accept")
                .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"));
        if !browser {
            return None;
        }
        let original = if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, req.query)
        };
        let rd =
            percent_encoding::utf8_percent_encode(&original, percent_encoding::NON_ALPHANUMERIC);
        Some(Denial::new(
            DenyKind::LoginRedirect {
                location: format!("{}?rd={rd}", self.login_path),
            },
            "login_required",
            "sign in to continue",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, accept: Option<&str>) -> Request {
        let mut r = Request {
            method: method.into(),
            path: "/ui/page".into(),
            query: "x=1&y=2".into(),
            ..Request::default()
        };
        if let Some(a) = accept {
            r.headers.insert("accept".into(), a.into());
        }
        r
    }

    #[test]
    fn browsers_are_redirected_api_callers_are_not() {
        let l = LoginRedirect {
            login_path: "/auth/login".into(),
        };
        let d = l
            .for_request(&req("GET", Some("text/html,application/xhtml+xml")))
            .unwrap();
        assert_eq!(
            d.kind,
            DenyKind::LoginRedirect {
                location: "/auth/login?rd=%2Fui%2Fpage%3Fx%3D1%26y%3D2".into()
            }
        );
        assert!(
            l.for_request(&req("GET", Some("application/json")))
                .is_none()
        );
        assert!(l.for_request(&req("POST", Some("text/html"))).is_none());
        assert!(l.for_request(&req("GET", None)).is_none());
    }
}
