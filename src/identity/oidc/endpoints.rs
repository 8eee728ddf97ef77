//! The SSO endpoints of the http listener, independent of the HTTP framework:
//! `/auth/login`, `/auth/callback`, `/auth/logout` and `/auth/backchannel-logout`.
//!
//! Nothing here logs a token, cookie, code or state.

use std::collections::HashMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::logout_token::{LogoutTokenError, LogoutTokenVerifier};
use super::provider::{OidcError, RelyingParty};
use super::redirect::{public_origin, safe_return_to};
use super::sessions::{SessionManager, secret_hash};
use crate::identity::SESSION_COOKIE;
use crate::store::{DynStore, LoginStateRecord};

/// Prefix of the per-login cookie binding a login to the browser that started it.
pub const LOGIN_COOKIE_PREFIX: &str = "__Host-inferguard-login-";

/// One request to an SSO endpoint.
#[derive(Debug, Clone, Default)]
pub struct BrowserRequest {
    /// Lower-case header names (first value of each).
    pub headers: HashMap<String, String>,
    /// The raw query string without `?`.
    pub query: String,
    /// Decoded `application/x-www-form-urlencoded` body pairs (POST endpoints).
    pub form: Vec<(String, String)>,
}

impl BrowserRequest {
    fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        openidconnect::url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }

    /// A cookie's value, when the request carries exactly one of that name.
    fn cookie(&self, name: &str) -> Option<String> {
        let header = self.headers.get("cookie")?;
        let mut found = None;
        for c in cookie::Cookie::split_parse(header.as_str()).flatten() {
            if c.name() == name {
                if found.is_some() {
                    return None;
                }
                found = Some(c.value().to_string());
            }
        }
        found.filter(|v| !v.is_empty())
    }

    fn wants_html(&self) -> bool {
        self.headers
            .get("accept")
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
    }
}

/// What an SSO endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// Headers in order (`set-cookie` may repeat).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    fn redirect(location: &str) -> Self {
        HttpAnswer {
            status: 302,
            headers: vec![
                ("location".into(), location.to_string()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: String::new(),
        }
    }

    fn with_cookie(mut self, cookie: String) -> Self {
        self.headers.push(("set-cookie".into(), cookie));
        self
    }

    /// A refusal: a small HTML page for browsers, else `{"error", "reason"}` JSON.
    fn error(req: &BrowserRequest, status: u16, error: &str, reason: &str) -> Self {
        let (content_type, body) = if req.wants_html() {
            (
                "text/html; charset=utf-8",
                format!(
                    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sign-in problem</title></head>\
                     <body><h1>Sign-in problem</h1><p>{}</p><p><code>{}</code></p>\
                     <p><a href=\"/auth/login?rd=%2F\">Sign in again</a></p></body></html>\n",
                    html_escape(reason),
                    html_escape(error)
                ),
            )
        } else {
            (
                "application/json",
                format!(
                    "{}\n",
                    serde_json::json!({"error": error, "reason": reason})
                ),
            )
        };
        HttpAnswer {
            status,
            headers: vec![
                ("content-type".into(), content_type.into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body,
        }
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain.
fn host_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}")
}

/// The login cookie of one state: its name carries part of the state's hash, so several
/// logins (tabs) can be in flight at once.
fn login_cookie_name(state_hash: &str) -> String {
    format!("{LOGIN_COOKIE_PREFIX}{}", &state_hash[..16])
}

/// Serves the SSO endpoints.
pub struct SsoEndpoints {
    rp: Arc<RelyingParty>,
    sessions: Arc<SessionManager>,
    store: DynStore,
    logout_tokens: LogoutTokenVerifier,
}

impl SsoEndpoints {
    /// Endpoints over the relying party, sessions and store.
    pub fn new(
        rp: Arc<RelyingParty>,
        sessions: Arc<SessionManager>,
        store: DynStore,
        logout_tokens: LogoutTokenVerifier,
    ) -> Self {
        SsoEndpoints {
            rp,
            sessions,
            store,
            logout_tokens,
        }
    }

    /// The public origin of the request, or a refusal.
    fn origin(&self, req: &BrowserRequest) -> Result<String, HttpAnswer> {
        public_origin(&req.headers).ok_or_else(|| {
            HttpAnswer::error(
                req,
                400,
                "invalid_request",
                "the request does not name a usable host",
            )
        })
    }

    /// `GET /auth/login?rd=URL[&step_up=1]`: starts the authorization-code flow.
    pub async fn login(&self, req: &BrowserRequest, now: i64) -> HttpAnswer {
        let pairs = req.query_pairs();
        let rd = BrowserRequest::param(&pairs, "rd").unwrap_or("/");
        let config = self.rp.config();
        let Some(return_to) = safe_return_to(rd, &config.allowed_redirect_origins) else {
            return HttpAnswer::error(
                req,
                400,
                "invalid_redirect",
                "`rd` must be a path on this site or an allowed origin",
            );
        };
        let step_up = matches!(BrowserRequest::param(&pairs, "step_up"), Some("1" | "true"));
        let redirect_uri = match &config.redirect_url {
            Some(url) => url.clone(),
            None => match self.origin(req) {
                Ok(origin) => format!("{origin}/auth/callback"),
                Err(answer) => return answer,
            },
        };
        let start = match self.rp.start_login(&redirect_uri, step_up).await {
            Ok(s) => s,
            Err(e) => return self.idp_problem(req, &e),
        };
        let state_hash = secret_hash(&start.state);
        let timeout = config.login_timeout.as_secs() as i64;
        let record = LoginStateRecord {
            state_sha256: state_hash.clone(),
            nonce: start.nonce,
            pkce_verifier: start.pkce_verifier,
            redirect_uri,
            return_to,
            step_up,
            created_at: now,
            expires_at: now + timeout,
        };
        if let Err(e) = self.store.create_login_state(&record).await {
            tracing::error!(error = %e, "could not store a login state");
            return HttpAnswer::error(
                req,
                503,
                "store_unavailable",
                "sign-in is unavailable right now; try again",
            );
        }
        HttpAnswer::redirect(start.url.as_str()).with_cookie(host_cookie(
            &login_cookie_name(&state_hash),
            &start.state,
            timeout,
        ))
    }

    /// `GET /auth/callback?code=…&state=…`: finishes the flow, creates the session and sends
    /// the browser where it was going.
    pub async fn callback(&self, req: &BrowserRequest, now: i64) -> HttpAnswer {
        let pairs = req.query_pairs();
        let Some(state) = BrowserRequest::param(&pairs, "state").filter(|s| !s.is_empty()) else {
            return HttpAnswer::error(
                req,
                400,
                "invalid_state",
                "the sign-in response has no state",
            );
        };
        let state_hash = secret_hash(state);
        let cookie_name = login_cookie_name(&state_hash);
        // The state must come back to the browser that started the login (no login CSRF).
        let bound = req.cookie(&cookie_name).is_some_and(|c| {
            c.len() == state.len() && bool::from(c.as_bytes().ct_eq(state.as_bytes()))
        });
        if !bound {
            return HttpAnswer::error(
                req,
                400,
                "invalid_state",
                "this sign-in was not started in this browser, or took too long; sign in again",
            );
        }
        let clear_login = host_cookie(&cookie_name, "", 0);
        let login = match self.store.take_login_state(&state_hash, now).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                return HttpAnswer::error(
                    req,
                    400,
                    "invalid_state",
                    "this sign-in is unknown, was already used or took too long; sign in again",
                )
                .with_cookie(clear_login);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read a login state");
                return HttpAnswer::error(req, 503, "store_unavailable", "try again")
                    .with_cookie(clear_login);
            }
        };
        if let Some(error) = BrowserRequest::param(&pairs, "error") {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            tracing::info!(idp_error = %code, "the IdP did not sign the user in");
            return HttpAnswer::error(
                req,
                403,
                "login_failed",
                &format!("the identity provider did not sign you in ({code})"),
            )
            .with_cookie(clear_login);
        }
        let Some(code) = BrowserRequest::param(&pairs, "code").filter(|c| !c.is_empty()) else {
            return HttpAnswer::error(
                req,
                400,
                "invalid_request",
                "the sign-in response has no code",
            )
            .with_cookie(clear_login);
        };
        let result = match self
            .rp
            .finish_login(
                code,
                &login.pkce_verifier,
                &login.redirect_uri,
                &login.nonce,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return self.idp_problem(req, &e).with_cookie(clear_login),
        };
        match self.store.get_user(&result.subject).await {
            Ok(Some(u)) if u.disabled => {
                tracing::info!(subject = %result.subject, "a disabled user tried to sign in");
                return HttpAnswer::error(req, 403, "disabled_principal", "the user is disabled")
                    .with_cookie(clear_login);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not read the user record at sign-in");
                return HttpAnswer::error(req, 503, "store_unavailable", "try again")
                    .with_cookie(clear_login);
            }
        }
        // A new session always gets a new id; the one the browser had (if any) ends.
        if let Some(old) = req.cookie(SESSION_COOKIE)
            && let Ok(Some(old)) = self.sessions.active(&old, now).await
        {
            self.sessions.end(&old.id_sha256, now, "replaced").await;
        }
        let (id, record) = match self.sessions.create(&result, now).await {
            Ok(created) => created,
            Err(e) => {
                tracing::error!(error = %e, "could not store a new session");
                return HttpAnswer::error(req, 503, "store_unavailable", "try again")
                    .with_cookie(clear_login);
            }
        };
        tracing::info!(subject = %record.username, mfa = record.mfa, "signed in");
        let cookie = host_cookie(SESSION_COOKIE, &id, record.absolute_expires_at - now);
        if login.step_up && !record.mfa {
            // Sending the browser back would only ask for MFA again, forever.
            return HttpAnswer::error(
                req,
                403,
                "mfa_required",
                "this page needs multi-factor authentication, and the identity provider did \
                 not report any; sign in with a second factor",
            )
            .with_cookie(clear_login)
            .with_cookie(cookie);
        }
        HttpAnswer::redirect(&login.return_to)
            .with_cookie(clear_login)
            .with_cookie(cookie)
    }

    /// `GET|POST /auth/logout`: ends the session, clears the cookie and sends the browser to
    /// the IdP's end-session endpoint (RP-initiated logout).
    pub async fn logout(&self, req: &BrowserRequest, now: i64) -> HttpAnswer {
        let config = self.rp.config();
        let post_logout = match &config.post_logout_redirect_url {
            Some(url) => url.clone(),
            None => match self.origin(req) {
                Ok(origin) => format!("{origin}/"),
                Err(answer) => return answer,
            },
        };
        let mut id_token_hint = None;
        if let Some(id) = req.cookie(SESSION_COOKIE) {
            match self.sessions.active(&id, now).await {
                Ok(Some(session)) => {
                    self.sessions.end(&session.id_sha256, now, "logout").await;
                    tracing::info!(subject = %session.username, "signed out");
                    id_token_hint = session.id_token;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not read the session at logout"),
            }
        }
        let target = self
            .rp
            .end_session_url(id_token_hint.as_deref(), &post_logout)
            .await
            .map(|u| u.to_string())
            .unwrap_or(post_logout);
        HttpAnswer::redirect(&target).with_cookie(host_cookie(SESSION_COOKIE, "", 0))
    }

    /// `POST /auth/backchannel-logout` with `logout_token`: ends the sessions it names.
    pub async fn backchannel_logout(&self, req: &BrowserRequest, now: i64) -> HttpAnswer {
        let tokens: Vec<&str> = req
            .form
            .iter()
            .filter(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.as_str())
            .collect();
        let [token] = tokens.as_slice() else {
            return json_answer(400, "invalid_request", "send exactly one logout_token");
        };
        let claims = match self.logout_tokens.verify(token, now).await {
            Ok(c) => c,
            Err(LogoutTokenError::Unavailable) => {
                return json_answer(503, "temporarily_unavailable", "try again later");
            }
            Err(e) => {
                tracing::info!(error = %e, "refused a back-channel logout token");
                return json_answer(400, "invalid_request", &e.to_string());
            }
        };
        match self
            .store
            .end_idp_sessions(
                self.rp.issuer(),
                claims.sid.as_deref(),
                claims.sub.as_deref(),
                now,
                "backchannel_logout",
            )
            .await
        {
            Ok(ended) => {
                for hash in &ended {
                    self.sessions.invalidate(hash).await;
                }
                tracing::info!(sessions = ended.len(), "back-channel logout");
                HttpAnswer {
                    status: 200,
                    headers: vec![("cache-control".into(), "no-store".into())],
                    body: String::new(),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not end sessions on back-channel logout");
                json_answer(503, "temporarily_unavailable", "try again later")
            }
        }
    }

    fn idp_problem(&self, req: &BrowserRequest, e: &OidcError) -> HttpAnswer {
        match e {
            OidcError::IdpUnavailable(_) => {
                tracing::warn!(error = %e, "sign-in: the IdP is unavailable");
                HttpAnswer::error(
                    req,
                    503,
                    "idp_unavailable",
                    "the identity provider cannot be reached; try again",
                )
            }
            OidcError::Refused(_) => {
                tracing::info!(error = %e, "sign-in: the IdP refused the code");
                HttpAnswer::error(
                    req,
                    400,
                    "invalid_grant",
                    "the sign-in response was refused by the identity provider (used or expired); sign in again",
                )
            }
            OidcError::InvalidIdToken(_) => {
                tracing::warn!(error = %e, "sign-in: the ID token failed verification");
                HttpAnswer::error(
                    req,
                    400,
                    "invalid_id_token",
                    "the identity provider's answer failed verification; sign in again",
                )
            }
            OidcError::Config(_) => {
                tracing::error!(error = %e, "sign-in: configuration problem");
                HttpAnswer::error(req, 500, "server_error", "sign-in is misconfigured")
            }
        }
    }
}

fn json_answer(status: u16, error: &str, description: &str) -> HttpAnswer {
    HttpAnswer {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: format!(
            "{}\n",
            serde_json::json!({"error": error, "error_description": description})
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_have_the_host_prefix_flags() {
        let c = host_cookie(SESSION_COOKIE, "abc", 36000);
        assert_eq!(
            c,
            "__Host-inferguard-session=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=36000"
        );
        let name = login_cookie_name(&secret_hash("state"));
        assert!(
            name.starts_with(LOGIN_COOKIE_PREFIX) && name.len() == LOGIN_COOKIE_PREFIX.len() + 16
        );
    }

    #[test]
    fn cookies_are_read_once() {
        let mut req = BrowserRequest::default();
        req.headers
            .insert("cookie".into(), "a=1; b=2; a=3; c=".into());
        assert_eq!(req.cookie("b").as_deref(), Some("2"));
        assert_eq!(req.cookie("a"), None, "two cookies of one name");
        assert_eq!(req.cookie("c"), None);
        assert_eq!(req.cookie("d"), None);
    }

    #[test]
    fn errors_are_html_for_browsers_and_escaped() {
        let mut req = BrowserRequest::default();
        let a = HttpAnswer::error(&req, 400, "invalid_state", "x");
        assert_eq!(a.headers[0].1, "application/json");
        req.headers.insert("accept".into(), "text/html".into());
        let a = HttpAnswer::error(&req, 400, "e<", "<script>");
        assert!(a.body.contains("&lt;script&gt;") && !a.body.contains("<script>"));
    }
}
