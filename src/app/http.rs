//! The HTTP listener: health and readiness, local login (`POST /auth/token`,
//! `GET /auth/jwks.json`) and browser single sign-on (`/auth/login`, `/auth/callback`,
//! `/auth/logout`, `/auth/backchannel-logout`) and SCIM provisioning (`/scim/v2`, see
//! [`crate::scim`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::app::Shared;
use crate::identity::local::{LocalIssuer, TokenEndpoint, TokenResponse};
use crate::identity::oidc::{BrowserRequest, HttpAnswer, SsoEndpoints};

/// The largest token request body read (a form with a username and password, or a refresh
/// token).
const MAX_TOKEN_FORM_BYTES: usize = 16 * 1024;

/// The largest back-channel logout request body read (one signed logout token).
const MAX_LOGOUT_FORM_BYTES: usize = 64 * 1024;

/// What the local-login routes serve: the issuer (its JWKS, served whenever present, since it
/// also verifies the upstream identity assertion) and the token endpoint (present only when
/// `identity.local_users.enabled`).
#[derive(Clone, Default)]
pub struct LocalLogin {
    /// inferguard's own issuer, whose public keys `/auth/jwks.json` publishes.
    pub issuer: Option<Arc<LocalIssuer>>,
    /// `POST /auth/token`; `None` answers 404 `local_login_disabled`.
    pub token: Option<Arc<TokenEndpoint>>,
}

/// Everything the HTTP listener serves from.
pub struct HttpState {
    /// The state shared with the other listeners (readiness).
    pub shared: Arc<Shared>,
    /// Local login.
    pub local: LocalLogin,
    /// Browser single sign-on, when `identity.oidc` is configured.
    pub sso: Option<Arc<SsoEndpoints>>,
    /// SCIM provisioning (`/scim/v2`), when `scim.enabled`.
    pub scim: Option<Arc<crate::scim::ScimService>>,
}

impl From<Arc<Shared>> for HttpState {
    fn from(shared: Arc<Shared>) -> Self {
        HttpState {
            shared,
            local: LocalLogin::default(),
            sso: None,
            scim: None,
        }
    }
}

/// Serves the HTTP listener until shutdown, on a plain `TcpListener` or on TLS connections
/// (`crate::tls::TlsIncoming`).
pub async fn serve<L>(
    listener: L,
    state: impl Into<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    let app = router(state.into());
    axum::serve(
        // `tap_io` gives any listener with socket addresses the `ConnectInfo<SocketAddr>`
        // that axum otherwise provides for `TcpListener` alone.
        listener.tap_io(|_| {}),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
    .await
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.shared)
        .merge(local_login_routes(state.local))
        .merge(sso_routes(state.sso))
        .merge(crate::scim::routes(state.scim))
}

/// `/auth/login`, `/auth/callback`, `/auth/logout` (GET or POST) and
/// `POST /auth/backchannel-logout`; 404 `sso_disabled` without `identity.oidc`.
fn sso_routes(sso: Option<Arc<SsoEndpoints>>) -> Router {
    Router::new()
        .route("/auth/login", get(sso_login))
        .route("/auth/callback", get(sso_callback))
        .route("/auth/logout", get(sso_logout).post(sso_logout))
        .route(
            "/auth/backchannel-logout",
            post(sso_backchannel_logout).layer(DefaultBodyLimit::max(MAX_LOGOUT_FORM_BYTES)),
        )
        .with_state(sso)
}

type SsoState = State<Option<Arc<SsoEndpoints>>>;

fn sso_disabled() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "sso_disabled",
        "single sign-on is not enabled (identity.oidc)",
    )
}

/// The parts of a request the SSO endpoints read: lower-case headers (first value of each),
/// the raw query and the form pairs.
fn browser_request(
    headers: &HeaderMap,
    query: Option<String>,
    form: Vec<(String, String)>,
) -> BrowserRequest {
    let mut map = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            map.entry(name.as_str().to_string())
                .or_insert_with(|| v.to_string());
        }
    }
    BrowserRequest {
        headers: map,
        query: query.unwrap_or_default(),
        form,
    }
}

fn sso_answer(answer: HttpAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn sso_login(
    State(sso): SsoState,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(sso) = sso else {
        return sso_disabled();
    };
    let req = browser_request(&headers, query, Vec::new());
    sso_answer(sso.login(&req, unix_now()).await)
}

async fn sso_callback(
    State(sso): SsoState,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(sso) = sso else {
        return sso_disabled();
    };
    let req = browser_request(&headers, query, Vec::new());
    sso_answer(sso.callback(&req, unix_now()).await)
}

async fn sso_logout(State(sso): SsoState, headers: HeaderMap) -> Response {
    let Some(sso) = sso else {
        return sso_disabled();
    };
    let req = browser_request(&headers, None, Vec::new());
    sso_answer(sso.logout(&req, unix_now()).await)
}

async fn sso_backchannel_logout(
    State(sso): SsoState,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Some(sso) = sso else {
        return sso_disabled();
    };
    let Ok(Form(pairs)) = form else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send an application/x-www-form-urlencoded body with logout_token",
        );
    };
    let req = browser_request(&headers, None, pairs);
    sso_answer(sso.backchannel_logout(&req, unix_now()).await)
}

/// Ready while the store answers (otherwise only cached credentials can be decided).
async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.store_healthy.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
    }
}

/// Prometheus text exposition (`inferguard_decisions_total`, `inferguard_check_duration_seconds`, …).
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.metrics.render(),
    )
}

/// `POST /auth/token` and `GET /auth/jwks.json`. Needs the peer address
/// (`into_make_service_with_connect_info::<SocketAddr>`).
fn local_login_routes(local: LocalLogin) -> Router {
    Router::new()
        .route(
            "/auth/token",
            post(token).layer(DefaultBodyLimit::max(MAX_TOKEN_FORM_BYTES)),
        )
        .route("/auth/jwks.json", get(jwks))
        .with_state(local)
}

async fn token(
    State(local): State<LocalLogin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Some(endpoint) = local.token else {
        return json_error(
            StatusCode::NOT_FOUND,
            "local_login_disabled",
            "local-user login is not enabled (identity.local_users.enabled)",
        );
    };
    let Ok(Form(pairs)) = form else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send an application/x-www-form-urlencoded body",
        );
    };
    let mut params = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if params.insert(name, value).is_some() {
            // RFC 6749 §3.2: a parameter must not appear more than once.
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter appears more than once",
            );
        }
    }
    let client = client_address(peer, &headers);
    let now = chrono::Utc::now().timestamp();
    token_response(endpoint.token(params, &client, now).await)
}

async fn jwks(State(local): State<LocalLogin>) -> Response {
    let Some(issuer) = local.issuer else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no local issuer");
    };
    (
        [(CACHE_CONTROL, "public, max-age=300")],
        axum::Json(issuer.jwks()),
    )
        .into_response()
}

/// The address failed logins are counted against: the first hop of `x-forwarded-for` when the
/// peer is loopback (Envoy in front of us), else the socket peer.
fn client_address(peer: SocketAddr, headers: &HeaderMap) -> String {
    let peer_ip = peer.ip().to_canonical();
    if peer_ip.is_loopback()
        && let Some(last) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            // Envoy (use_remote_address: true) appends the address it saw: the last hop is
            // the only one a client cannot choose.
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
    {
        return last.to_canonical().to_string();
    }
    peer_ip.to_string()
}

fn token_response(answer: TokenResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::identity::local::LocalUsersConfig;
    use crate::store::{self, DynStore, UserRecord};

    fn headers(xff: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = xff {
            h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn client_address_trusts_forwarded_for_only_from_loopback() {
        let lo: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:5555".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5555".parse().expect("addr");
        let remote: SocketAddr = "203.0.113.9:5555".parse().expect("addr");
        let xff = headers(Some(" 10.0.0.1 , 198.51.100.7"));
        assert_eq!(client_address(lo, &xff), "198.51.100.7");
        assert_eq!(client_address(lo6, &xff), "198.51.100.7");
        assert_eq!(client_address(mapped, &xff), "198.51.100.7");
        assert_eq!(client_address(remote, &xff), "203.0.113.9");
        assert_eq!(client_address(lo, &headers(None)), "127.0.0.1");
        assert_eq!(client_address(lo, &headers(Some("garbage"))), "127.0.0.1");
        assert_eq!(
            client_address(lo, &headers(Some("::ffff:192.0.2.1"))),
            "192.0.2.1"
        );
    }

    async fn spawn(local: LocalLogin) -> (String, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = watch::channel(false);
        let app = local_login_routes(local);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        (format!("http://{addr}"), tx)
    }

    async fn local_login(
        enabled: bool,
    ) -> (tempfile::TempDir, DynStore, Arc<LocalIssuer>, LocalLogin) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = store::open(&url).await.expect("store");
        let cfg = LocalUsersConfig {
            enabled,
            ..LocalUsersConfig::default()
        };
        let issuer = Arc::new(
            LocalIssuer::load(&cfg, store.clone(), dir.path())
                .await
                .expect("issuer"),
        );
        let token = enabled.then(|| {
            Arc::new(TokenEndpoint::new(&cfg, issuer.clone(), store.clone()).expect("endpoint"))
        });
        let local = LocalLogin {
            issuer: Some(issuer.clone()),
            token,
        };
        (dir, store, issuer, local)
    }

    #[tokio::test]
    async fn disabled_login_still_publishes_the_jwks() {
        let (_dir, _store, issuer, local) = local_login(false).await;
        let (base, _stop) = spawn(local).await;
        let http = reqwest::Client::new();

        let r = http
            .post(format!("{base}/auth/token"))
            .form(&[("grant_type", "password")])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"], "local_login_disabled");

        let r = http
            .get(format!("{base}/auth/jwks.json"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[CONTENT_TYPE].to_str().expect("ascii"),
            "application/json"
        );
        let jwks: serde_json::Value = r.json().await.expect("json");
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], issuer.kid());
        assert!(key.get("d").is_none(), "never the private key");
    }

    #[tokio::test]
    async fn token_route_speaks_oauth_forms() {
        let (_dir, store, _issuer, local) = local_login(true).await;
        store
            .create_user(&UserRecord {
                username: "alice".into(),
                email: None,
                role: Some("viewer".into()),
                attributes: Default::default(),
                disabled: false,
                password_hash: Some(
                    crate::commands::users::hash_password("correct horse battery").expect("hash"),
                ),
                created_at: 1,
            })
            .await
            .expect("user");
        let (base, _stop) = spawn(local).await;
        let http = reqwest::Client::new();
        let url = format!("{base}/auth/token");

        // Good credentials, through the form parser and with the client behind Envoy.
        let r = http
            .post(&url)
            .header("x-forwarded-for", "198.51.100.7")
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "correct horse battery"),
            ])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["token_type"], "Bearer");
        assert!(
            body["refresh_token"]
                .as_str()
                .expect("refresh")
                .starts_with("igr_")
        );

        // Not a form.
        let r = http
            .post(&url)
            .json(&serde_json::json!({"grant_type": "password"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"], "invalid_request");

        // A parameter twice.
        let r = http
            .post(&url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=password&username=alice&username=bob&password=x")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);

        // Too large a body.
        let r = http
            .post(&url)
            .form(&[
                ("grant_type", "password"),
                ("password", &"x".repeat(20_000)),
            ])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 400);

        // Only POST.
        let r = http.get(&url).send().await.expect("send");
        assert_eq!(r.status(), 405);
    }
}
