//! The verifier against a real HTTP identity provider stand-in (axum on 127.0.0.1:0) serving
//! discovery and a JWKS, with keys from `testdata/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::domain::DenyKind;

const RSA_A: &str = include_str!("testdata/rsa_a.pem");
const RSA_A_PUB: &str = include_str!("testdata/rsa_a_pub.pem");
const RSA_A2: &str = include_str!("testdata/rsa_a2.pem");
const RSA_B: &str = include_str!("testdata/rsa_b.pem");
const EC_P256: &str = include_str!("testdata/ec_p256.pem");
const ED25519: &str = include_str!("testdata/ed25519.pem");

const AUD: &str = "inferguard";

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

// ---- keys -------------------------------------------------------------------------------

fn rsa_a() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A.as_bytes()).unwrap()
}
fn rsa_a2() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A2.as_bytes()).unwrap()
}
fn rsa_b() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_B.as_bytes()).unwrap()
}
fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_P256.as_bytes()).unwrap()
}
fn ed() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519.as_bytes()).unwrap()
}

/// The public JWK of `key` under `kid`, pinned to `alg` or (None) naming no algorithm.
fn jwk(key: &EncodingKey, family_alg: Algorithm, kid: &str, pin: Option<Algorithm>) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, family_alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.key_algorithm = pin.map(KeyAlgorithm::from);
    serde_json::to_value(jwk).unwrap()
}

/// Issuer A's usual key set: RSA (any RSA algorithm), P-256 and Ed25519.
fn jwks_a() -> Value {
    json!({"keys": [
        jwk(&rsa_a(), Algorithm::RS256, "rsa-a", None),
        jwk(&rsa_a(), Algorithm::RS256, "rsa-a-rs256-only", Some(Algorithm::RS256)),
        jwk(&ec(), Algorithm::ES256, "ec-1", Some(Algorithm::ES256)),
        jwk(&ed(), Algorithm::EdDSA, "ed-1", Some(Algorithm::EdDSA)),
    ]})
}

// ---- the identity provider --------------------------------------------------------------

#[derive(Default)]
struct IdpState {
    issuer: std::sync::OnceLock<String>,
    jwks: std::sync::Mutex<Value>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    down: AtomicBool,
    /// Delay before answering the JWKS, in milliseconds.
    jwks_delay_ms: AtomicU64,
    /// Overrides the discovery document's `issuer`.
    claimed_issuer: std::sync::Mutex<Option<String>>,
}

struct Idp {
    state: Arc<IdpState>,
    issuer: String,
}

impl Idp {
    async fn start(jwks: Value) -> Idp {
        let state = Arc::new(IdpState {
            jwks: std::sync::Mutex::new(jwks),
            ..Default::default()
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks_handler))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        state.issuer.set(issuer.clone()).unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { state, issuer }
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn config(&self) -> JwtIssuerConfig {
        JwtIssuerConfig::new(self.issuer.clone(), vec![AUD.to_string()])
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = s.issuer.get().unwrap().clone();
    let claimed = s
        .claimed_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| issuer.clone());
    axum::Json(json!({"issuer": claimed, "jwks_uri": format!("{issuer}/jwks")})).into_response()
}

async fn jwks_handler(State(s): State<Arc<IdpState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = s.jwks_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = s.jwks.lock().unwrap().clone();
    axum::Json(body).into_response()
}

// ---- tokens -----------------------------------------------------------------------------

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": AUD, "sub": "alice", "email": "alice@example.com",
        "groups": ["fooocus_designers_basic"], "exp": now() + 600, "iat": now(),
        "jti": format!("{}", rand::random::<u64>()),
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token assembled by hand from a header, claims and signature text.
fn raw(header: Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{}", b64(&header), b64(claims), signature)
}

fn verifier(configs: Vec<JwtIssuerConfig>) -> JwtVerifier {
    JwtVerifier::new(configs).unwrap()
}

// ---- tests ------------------------------------------------------------------------------

#[tokio::test]
async fn accepts_each_algorithm() {
    let idp = Idp::start(jwks_a()).await;
    let v = verifier(vec![idp.config()]);
    let c = claims(&idp.issuer);
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-a", rsa_a()),
        (Algorithm::PS256, "rsa-a", rsa_a()),
        (Algorithm::RS256, "rsa-a-rs256-only", rsa_a()),
        (Algorithm::ES256, "ec-1", ec()),
        (Algorithm::EdDSA, "ed-1", ed()),
    ] {
        let token = sign(alg, Some(kid), &c, &key);
        let got = v
            .verify(&token, now())
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(got.issuer, idp.issuer);
        assert_eq!(got.subject, "alice");
        assert_eq!(got.email.as_deref(), Some("alice@example.com"));
        assert_eq!(got.groups, vec!["fooocus_designers_basic"]);
        assert_eq!(got.expires_at, c["exp"].as_i64().unwrap());
    }
    // Keys were fetched once, by discovery, on first use.
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn construction_contacts_nobody() {
    let idp = Idp::start(jwks_a()).await;
    let _v = verifier(vec![idp.config()]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(idp.discovery_hits() + idp.jwks_hits(), 0);
}

#[tokio::test]
async fn refuses_attacks() {
    let a = Idp::start(jwks_a()).await;
    let b = Idp::start(
        json!({"keys": [jwk(&rsa_b(), Algorithm::RS256, "rsa-b", Some(Algorithm::RS256))]}),
    )
    .await;
    let mut b_config = b.config();
    b_config.algorithms = Some(vec!["RS256".into()]);
    let v = verifier(vec![a.config(), b_config]);
    let t = now();
    let good = claims(&a.issuer);
    // Warm both issuers' keys so the refusals below are about the tokens.
    v.verify(&sign(Algorithm::RS256, Some("rsa-a"), &good, &rsa_a()), t)
        .await
        .unwrap();
    v.verify(
        &sign(
            Algorithm::RS256,
            Some("rsa-b"),
            &claims(&b.issuer),
            &rsa_b(),
        ),
        t,
    )
    .await
    .unwrap();

    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        c
    };
    let rs = |c: &Value| sign(Algorithm::RS256, Some("rsa-a"), c, &rsa_a());
    let good_token = rs(&good);
    let (gh, gp, gs) = {
        let p: Vec<&str> = good_token.split('.').collect();
        (p[0].to_string(), p[1].to_string(), p[2].to_string())
    };

    let cases: Vec<(&str, String, JwtError)> = vec![
        (
            "alg none",
            raw(json!({"alg": "none", "typ": "JWT"}), &good, ""),
            JwtError::UnsupportedAlgorithm("none".into()),
        ),
        (
            "alg none with a signature",
            raw(json!({"alg": "none", "kid": "rsa-a"}), &good, &gs),
            JwtError::UnsupportedAlgorithm("none".into()),
        ),
        (
            "HS256 signed with the issuer's RSA public key",
            sign(
                Algorithm::HS256,
                Some("rsa-a"),
                &good,
                &EncodingKey::from_secret(RSA_A_PUB.as_bytes()),
            ),
            JwtError::UnsupportedAlgorithm("HS256".into()),
        ),
        (
            "RS384 (not accepted)",
            sign(Algorithm::RS384, Some("rsa-a"), &good, &rsa_a()),
            JwtError::UnsupportedAlgorithm("RS384".into()),
        ),
        (
            "ES256 for an issuer that allows only RS256",
            sign(Algorithm::ES256, Some("ec-1"), &claims(&b.issuer), &ec()),
            JwtError::UnsupportedAlgorithm("ES256".into()),
        ),
        (
            "PS256 with a key pinned to RS256",
            sign(Algorithm::PS256, Some("rsa-a-rs256-only"), &good, &rsa_a()),
            JwtError::KeyAlgorithmMismatch,
        ),
        (
            "ES256 header naming an RSA key",
            sign(Algorithm::ES256, Some("rsa-a"), &good, &ec()),
            JwtError::KeyAlgorithmMismatch,
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("nope"), &good, &rsa_b()),
            JwtError::UnknownKey,
        ),
        (
            "expired",
            rs(&with(json!({"exp": t - 31}))),
            JwtError::Expired,
        ),
        (
            "expired exactly at exp + leeway",
            rs(&with(json!({"exp": t - 30}))),
            JwtError::Expired,
        ),
        (
            "nbf in the future",
            rs(&with(json!({"nbf": t + 31}))),
            JwtError::NotYetValid,
        ),
        (
            "unknown issuer",
            rs(&with(json!({"iss": "https://evil.example"}))),
            JwtError::UnknownIssuer,
        ),
        (
            "issuer with a trailing slash",
            rs(&with(json!({"iss": format!("{}/", a.issuer)}))),
            JwtError::UnknownIssuer,
        ),
        (
            "iss as an array",
            rs(&with(json!({"iss": [a.issuer.clone()]}))),
            JwtError::InvalidClaim("iss"),
        ),
        (
            "no iss",
            rs(&with(json!({"iss": null}))),
            JwtError::MissingClaim("iss"),
        ),
        (
            "wrong audience",
            rs(&with(json!({"aud": "someone-else"}))),
            JwtError::WrongAudience,
        ),
        (
            "wrong audiences",
            rs(&with(json!({"aud": ["x", "y"]}))),
            JwtError::WrongAudience,
        ),
        (
            "no audience",
            rs(&with(json!({"aud": null}))),
            JwtError::MissingClaim("aud"),
        ),
        (
            "no exp",
            rs(&with(json!({"exp": null}))),
            JwtError::MissingClaim("exp"),
        ),
        (
            "no subject",
            rs(&with(json!({"sub": null}))),
            JwtError::MissingClaim("subject"),
        ),
        (
            "claims issuer B, signed by A's key (A's kid)",
            sign(
                Algorithm::RS256,
                Some("rsa-a"),
                &claims(&b.issuer),
                &rsa_a(),
            ),
            JwtError::UnknownKey,
        ),
        (
            "claims issuer A, signed by B's key (B's kid)",
            sign(Algorithm::RS256, Some("rsa-b"), &good, &rsa_b()),
            JwtError::UnknownKey,
        ),
        (
            "claims issuer A, signed by B's key under A's kid",
            sign(Algorithm::RS256, Some("rsa-a"), &good, &rsa_b()),
            JwtError::BadSignature,
        ),
        (
            "tampered payload",
            format!("{gh}.{}.{gs}", b64(&with(json!({"sub": "root"})))),
            JwtError::BadSignature,
        ),
        (
            "signature of another token",
            format!(
                "{gh}.{gp}.{}",
                rs(&with(json!({"sub": "x"}))).rsplit('.').next().unwrap()
            ),
            JwtError::BadSignature,
        ),
        (
            "garbage signature",
            format!("{gh}.{gp}.AAAA"),
            JwtError::BadSignature,
        ),
        ("one segment", "abc".into(), JwtError::Malformed),
        ("two segments", format!("{gh}.{gp}"), JwtError::Malformed),
        (
            "four segments",
            format!("{good_token}.x"),
            JwtError::Malformed,
        ),
        (
            "empty signature",
            format!("{gh}.{gp}."),
            JwtError::Malformed,
        ),
        ("empty", String::new(), JwtError::Malformed),
        ("not base64", format!("!!!.{gp}.{gs}"), JwtError::Malformed),
        (
            "padded base64",
            format!("{gh}=.{gp}.{gs}"),
            JwtError::Malformed,
        ),
        (
            "header not JSON",
            format!("{}.{gp}.{gs}", URL_SAFE_NO_PAD.encode("nope")),
            JwtError::Malformed,
        ),
        (
            "payload not an object",
            format!("{gh}.{}.{gs}", b64(&json!([1]))),
            JwtError::Malformed,
        ),
        (
            "header without alg",
            raw(json!({"kid": "rsa-a"}), &good, &gs),
            JwtError::Malformed,
        ),
        (
            "crit header",
            raw(
                json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"]}),
                &good,
                &gs,
            ),
            JwtError::Malformed,
        ),
        (
            "a 1 MB token",
            format!("{gh}.{}.{gs}", "A".repeat(1024 * 1024)),
            JwtError::TooLarge,
        ),
        (
            "just over 16 KiB",
            "a".repeat(MAX_TOKEN_BYTES + 1),
            JwtError::TooLarge,
        ),
    ];
    for (name, token, want) in cases {
        let got = v.verify(&token, t).await;
        assert_eq!(got.as_ref().err(), Some(&want), "{name}: {got:?}");
    }
    // Within the leeway is fine.
    v.verify(&rs(&with(json!({"exp": t - 29, "jti": "a"}))), t)
        .await
        .unwrap();
    v.verify(&rs(&with(json!({"nbf": t + 29, "jti": "b"}))), t)
        .await
        .unwrap();
    v.verify(&rs(&with(json!({"aud": ["x", AUD], "jti": "c"}))), t)
        .await
        .unwrap();
}

#[tokio::test]
async fn key_rotation_without_restart() {
    let idp = Idp::start(json!({"keys": [jwk(&rsa_a(), Algorithm::RS256, "k1", None)]})).await;
    // The interval leaves a wide margin for slow (debug, loaded) machines between the first
    // fetch and the rate-limited attempt right after it.
    let v = verifier(vec![idp.config()]).with_refetch_interval(Duration::from_millis(1500));
    let old = sign(Algorithm::RS256, Some("k1"), &claims(&idp.issuer), &rsa_a());
    // Sign the rotated key's token before the first fetch starts the rate-limit clock.
    let new = sign(
        Algorithm::RS256,
        Some("k2"),
        &claims(&idp.issuer),
        &rsa_a2(),
    );
    v.verify(&old, now()).await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);

    idp.set_jwks(json!({"keys": [jwk(&rsa_a2(), Algorithm::RS256, "k2", None)]}));
    // Right after the first fetch the refetch is rate-limited…
    assert_eq!(
        v.verify(&new, now()).await.unwrap_err(),
        JwtError::UnknownKey
    );
    assert_eq!(idp.jwks_hits(), 1);
    // …and once the interval has passed, the unknown kid brings the new key in.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let got = v.verify(&new, now()).await.unwrap();
    assert_eq!(got.subject, "alice");
    assert_eq!(idp.jwks_hits(), 2);
    // The old key is gone: its token, though cached before, is checked again and refused.
    assert_eq!(
        v.verify(&old, now()).await.unwrap_err(),
        JwtError::UnknownKey
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refetch_is_coalesced_and_rate_limited() {
    let idp = Idp::start(jwks_a()).await;
    idp.state.jwks_delay_ms.store(200, Ordering::SeqCst);
    let v = Arc::new(verifier(vec![idp.config()]).with_refetch_interval(Duration::from_secs(2)));
    // Tokens with random kids, signed up front so signing time never eats into the interval.
    let mut floods: Vec<Vec<String>> = (0..2)
        .map(|_| {
            (0..30)
                .map(|_| {
                    let kid = format!("random-{}", rand::random::<u64>());
                    sign(Algorithm::ES256, Some(&kid), &claims(&idp.issuer), &ec())
                })
                .collect()
        })
        .collect();

    // Many first requests at once share one fetch.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let v = v.clone();
        let token = sign(Algorithm::ES256, Some("ec-1"), &claims(&idp.issuer), &ec());
        tasks.spawn(async move { v.verify(&token, now()).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(idp.jwks_hits(), 1);

    // A flood of random kids within the interval fetches nothing.
    let flood = |v: Arc<JwtVerifier>, tokens: Vec<String>| {
        let mut tasks = tokio::task::JoinSet::new();
        for token in tokens {
            let v = v.clone();
            tasks.spawn(async move { v.verify(&token, now()).await });
        }
        tasks
    };
    let mut tasks = flood(v.clone(), floods.pop().unwrap());
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err(), JwtError::UnknownKey);
    }
    assert_eq!(idp.jwks_hits(), 1);

    // After the interval, a concurrent flood costs exactly one fetch.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut tasks = flood(v.clone(), floods.pop().unwrap());
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap_err(), JwtError::UnknownKey);
    }
    assert_eq!(idp.jwks_hits(), 2);
    assert_eq!(idp.discovery_hits(), 1);
}

#[tokio::test]
async fn cached_tokens_cost_nothing_and_expire_at_exp() {
    let idp = Idp::start(jwks_a()).await;
    let mut config = idp.config();
    config.leeway_secs = 0;
    let v = verifier(vec![config]);
    let t = now();
    let mut c = claims(&idp.issuer);
    c["exp"] = json!(t + 3);
    let token = sign(Algorithm::EdDSA, Some("ed-1"), &c, &ed());

    let first = v.verify(&token, t).await.unwrap();
    assert_eq!(v.signature_checks(), 1);
    let hits = (idp.discovery_hits(), idp.jwks_hits());
    for _ in 0..5 {
        let again = v.verify(&token, t).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }
    assert_eq!(v.signature_checks(), 1);
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), hits);
    assert_eq!(v.cached_tokens().await, 1);

    // At `exp` the cached answer is not used: the token is verified again and refused.
    assert_eq!(
        v.verify(&token, t + 3).await.unwrap_err(),
        JwtError::Expired
    );
    assert_eq!(v.signature_checks(), 2);
    assert_eq!(v.cached_tokens().await, 0);

    // The cache entry itself lives no longer than `exp` on the wall clock.
    v.verify(&token, t).await.unwrap();
    assert_eq!(v.cached_tokens().await, 1);
    tokio::time::sleep(Duration::from_millis(
        ((t + 3 - now()).max(0) as u64) * 1000 + 2500,
    ))
    .await;
    assert_eq!(v.cached_tokens().await, 0);
    assert_eq!(
        v.verify(&token, now()).await.unwrap_err(),
        JwtError::Expired
    );
}

#[tokio::test]
async fn idp_down_after_first_fetch_still_verifies() {
    let idp = Idp::start(jwks_a()).await;
    let v = verifier(vec![idp.config()]).with_refetch_interval(Duration::ZERO);
    v.verify(
        &sign(
            Algorithm::RS256,
            Some("rsa-a"),
            &claims(&idp.issuer),
            &rsa_a(),
        ),
        now(),
    )
    .await
    .unwrap();

    idp.set_down(true);
    v.refresh_all().await; // fails, keeps the keys
    for (alg, kid, key) in [
        (Algorithm::PS256, "rsa-a", rsa_a()),
        (Algorithm::ES256, "ec-1", ec()),
    ] {
        // Fresh tokens (new jti): not cached, verified with the keys in hand.
        v.verify(&sign(alg, Some(kid), &claims(&idp.issuer), &key), now())
            .await
            .unwrap();
    }
    // A key not in hand cannot be learned while the IdP is down.
    let unknown = sign(
        Algorithm::RS256,
        Some("new"),
        &claims(&idp.issuer),
        &rsa_b(),
    );
    let err = v.verify(&unknown, now()).await.unwrap_err();
    assert!(matches!(err, JwtError::IdpUnavailable(_)), "{err:?}");
    assert_eq!(err.to_denial().kind, DenyKind::Unavailable);
    assert!(!err.to_denial().reason.contains("127.0.0.1"));

    // A verifier that never had keys answers "unavailable", not "bad token".
    let cold = verifier(vec![idp.config()]);
    let err = cold
        .verify(
            &sign(
                Algorithm::RS256,
                Some("rsa-a"),
                &claims(&idp.issuer),
                &rsa_a(),
            ),
            now(),
        )
        .await;
    assert!(matches!(err, Err(JwtError::IdpUnavailable(_))), "{err:?}");

    // Back up: works again without a restart.
    idp.set_down(false);
    let cold = cold.with_refetch_interval(Duration::ZERO);
    cold.verify(
        &sign(
            Algorithm::RS256,
            Some("rsa-a"),
            &claims(&idp.issuer),
            &rsa_a(),
        ),
        now(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_idp_fails_fast() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let v = verifier(vec![JwtIssuerConfig::new(issuer.clone(), vec![AUD.into()])]);
    let started = std::time::Instant::now();
    let err = v
        .verify(
            &sign(Algorithm::RS256, Some("k"), &claims(&issuer), &rsa_a()),
            now(),
        )
        .await;
    let Err(JwtError::IdpUnavailable(detail)) = err else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains("openid-configuration") && detail.contains("onnect"),
        "{detail}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn background_refresh_picks_up_new_keys() {
    let idp = Idp::start(json!({"keys": [jwk(&rsa_a(), Algorithm::RS256, "k1", None)]})).await;
    // On-demand refetches are effectively off: only the background refresh can learn k2.
    let v = Arc::new(verifier(vec![idp.config()]).with_refetch_interval(Duration::from_secs(3600)));
    let handle = v.spawn_refresh(Duration::from_millis(150));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(idp.jwks_hits(), 1, "the refresh task fetches at once");

    idp.set_jwks(json!({"keys": [
        jwk(&rsa_a(), Algorithm::RS256, "k1", None),
        jwk(&rsa_a2(), Algorithm::RS256, "k2", None),
    ]}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.verify(
        &sign(
            Algorithm::RS256,
            Some("k2"),
            &claims(&idp.issuer),
            &rsa_a2(),
        ),
        now(),
    )
    .await
    .unwrap();

    // The task ends once the verifier is gone.
    drop(v);
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn discovery_must_name_the_issuer() {
    let idp = Idp::start(jwks_a()).await;
    *idp.state.claimed_issuer.lock().unwrap() = Some("https://someone-else.example".into());
    let v = verifier(vec![idp.config()]);
    let err = v
        .verify(
            &sign(
                Algorithm::RS256,
                Some("rsa-a"),
                &claims(&idp.issuer),
                &rsa_a(),
            ),
            now(),
        )
        .await;
    assert!(
        matches!(err, Err(JwtError::IdpUnavailable(ref e)) if e.contains("someone-else")),
        "{err:?}"
    );
    assert_eq!(idp.jwks_hits(), 0);

    // With `jwks_url`, discovery is skipped altogether.
    let mut config = idp.config();
    config.jwks_url = Some(format!("{}/jwks", idp.issuer));
    let v = verifier(vec![config]);
    v.verify(
        &sign(
            Algorithm::RS256,
            Some("rsa-a"),
            &claims(&idp.issuer),
            &rsa_a(),
        ),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(idp.discovery_hits(), 1);
}

#[tokio::test]
async fn jwks_keeps_only_usable_signature_keys() {
    let mut set = jwks_a();
    let keys = set["keys"].as_array_mut().unwrap();
    // A symmetric key holding the RSA public key text: never used, whatever the token says.
    keys.push(json!({"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(RSA_A_PUB), "alg": "HS256"}));
    // An encryption key, a key whose ops exclude verify, and an entry that does not parse.
    let mut enc = jwk(&rsa_b(), Algorithm::RS256, "enc", None);
    enc["use"] = json!("enc");
    keys.push(enc);
    let mut ops = jwk(&rsa_b(), Algorithm::RS256, "sign-only", None);
    ops["key_ops"] = json!(["sign"]);
    keys.push(ops);
    keys.push(json!({"kty": "RSA", "kid": "broken"}));
    keys.push(json!("not even an object"));
    let idp = Idp::start(set).await;
    let v = verifier(vec![idp.config()]);
    let t = now();
    v.verify(
        &sign(
            Algorithm::RS256,
            Some("rsa-a"),
            &claims(&idp.issuer),
            &rsa_a(),
        ),
        t,
    )
    .await
    .unwrap();
    let hmac = sign(
        Algorithm::HS256,
        Some("hmac"),
        &claims(&idp.issuer),
        &EncodingKey::from_secret(RSA_A_PUB.as_bytes()),
    );
    assert_eq!(
        v.verify(&hmac, t).await.unwrap_err(),
        JwtError::UnsupportedAlgorithm("HS256".into())
    );
    for kid in ["enc", "sign-only", "broken"] {
        let token = sign(Algorithm::RS256, Some(kid), &claims(&idp.issuer), &rsa_b());
        assert_eq!(
            v.verify(&token, t).await.unwrap_err(),
            JwtError::UnknownKey,
            "{kid}"
        );
    }
}

#[tokio::test]
async fn token_without_kid_needs_a_single_fitting_key() {
    let idp = Idp::start(json!({"keys": [
        jwk(&rsa_a(), Algorithm::RS256, "rsa-a", None),
        jwk(&ec(), Algorithm::ES256, "ec-1", None),
    ]}))
    .await;
    let v = verifier(vec![idp.config()]);
    v.verify(
        &sign(Algorithm::ES256, None, &claims(&idp.issuer), &ec()),
        now(),
    )
    .await
    .unwrap();
    v.verify(
        &sign(Algorithm::RS256, None, &claims(&idp.issuer), &rsa_a()),
        now(),
    )
    .await
    .unwrap();
    // Two RSA keys: no guessing.
    idp.set_jwks(json!({"keys": [
        jwk(&rsa_a(), Algorithm::RS256, "rsa-a", None),
        jwk(&rsa_b(), Algorithm::RS256, "rsa-b", None),
    ]}));
    v.refresh_all().await;
    let err = v
        .verify(
            &sign(Algorithm::RS256, None, &claims(&idp.issuer), &rsa_a()),
            now(),
        )
        .await;
    assert_eq!(err.unwrap_err(), JwtError::UnknownKey);
}

#[tokio::test]
async fn claim_mapping_with_custom_names() {
    let idp = Idp::start(jwks_a()).await;
    let mut config = idp.config();
    config.claims = serde_yaml::from_str(
        "subject: preferred_username\nemail: mail\ngroups: roles\n\
         attributes: {department: ext.department, clearance_level: clearance, site: 'https://corp.example/site'}",
    )
    .unwrap();
    let v = verifier(vec![config]);

    let mut c = claims(&idp.issuer);
    c["preferred_username"] = json!("bob");
    c["mail"] = json!("bob@example.com");
    c["roles"] = json!(["fooocus_admins", "fooocus_designers_basic"]);
    c["ext"] = json!({"department": "marketing"});
    c["clearance"] = json!(3);
    c["https://corp.example/site"] = json!("paris");
    c["amr"] = json!(["pwd", "mfa"]);
    c["acr"] = json!("urn:example:loa:2");
    let got = v
        .verify(&sign(Algorithm::ES256, Some("ec-1"), &c, &ec()), now())
        .await
        .unwrap();
    assert_eq!(got.subject, "bob");
    assert_eq!(got.email.as_deref(), Some("bob@example.com"));
    assert_eq!(
        got.groups,
        vec!["fooocus_admins", "fooocus_designers_basic"]
    );
    assert_eq!(
        got.attributes.get("department").map(String::as_str),
        Some("marketing")
    );
    assert_eq!(
        got.attributes.get("clearance_level").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        got.attributes.get("site").map(String::as_str),
        Some("paris")
    );
    assert_eq!(got.amr, vec!["pwd", "mfa"]);
    assert_eq!(got.acr.as_deref(), Some("urn:example:loa:2"));
    assert_eq!(got.token_id.as_deref(), c["jti"].as_str());

    // Groups as one string; absent attributes are simply absent.
    let mut c = claims(&idp.issuer);
    c["preferred_username"] = json!("carol");
    c["roles"] = json!("fooocus_admins");
    let got = v
        .verify(&sign(Algorithm::ES256, Some("ec-1"), &c, &ec()), now())
        .await
        .unwrap();
    assert_eq!(got.subject, "carol");
    assert_eq!(got.groups, vec!["fooocus_admins"]);
    assert_eq!(got.email, None, "`email` is not the mapped claim");
    assert!(got.attributes.is_empty());
    assert!(got.amr.is_empty());
}

#[tokio::test]
async fn static_issuer_uses_no_http() {
    let jwks: JwkSet = serde_json::from_value(
        json!({"keys": [jwk(&ed(), Algorithm::EdDSA, "own-1", Some(Algorithm::EdDSA))]}),
    )
    .unwrap();
    // Nothing listens here: any HTTP would fail.
    let mut config = JwtIssuerConfig::new("https://inferguard.invalid", vec!["inferguard".into()]);
    config.algorithms = Some(vec!["EdDSA".into()]);
    let mut v = JwtVerifier::new(vec![])
        .unwrap()
        .with_refetch_interval(Duration::ZERO);
    v.add_static_issuer(config.clone(), jwks.clone()).unwrap();
    assert!(matches!(
        v.add_static_issuer(config, jwks),
        Err(JwtConfigError::DuplicateIssuer(_))
    ));

    let c = claims("https://inferguard.invalid");
    let got = v
        .verify(&sign(Algorithm::EdDSA, Some("own-1"), &c, &ed()), now())
        .await
        .unwrap();
    assert_eq!(got.subject, "alice");
    let other = sign(Algorithm::EdDSA, Some("own-2"), &c, &ed());
    assert_eq!(
        v.verify(&other, now()).await.unwrap_err(),
        JwtError::UnknownKey
    );
    let rsa = sign(Algorithm::RS256, Some("own-1"), &c, &rsa_a());
    assert_eq!(
        v.verify(&rsa, now()).await.unwrap_err(),
        JwtError::UnsupportedAlgorithm("RS256".into())
    );
    v.refresh_all().await; // nothing to fetch
    assert_eq!(v.issuers(), vec!["https://inferguard.invalid"]);
}

#[test]
fn config_parsing_and_validation() {
    let cfg: JwtIssuerConfig =
        serde_yaml::from_str("issuer: https://idp.example.com\naudiences: [inferguard]").unwrap();
    assert_eq!(cfg.leeway_secs, 30);
    assert_eq!(cfg.claims, ClaimMapping::default());
    assert_eq!(cfg.claims.subject, "sub");
    assert_eq!(cfg.validate(true).unwrap().len(), 4);

    let unknown = serde_yaml::from_str::<JwtIssuerConfig>("issuer: x\naudiences: [a]\nsecret: y");
    assert!(unknown.is_err());
    let unknown =
        serde_yaml::from_str::<JwtIssuerConfig>("issuer: x\naudiences: [a]\nclaims: {name: y}");
    assert!(unknown.is_err());

    let bad = |yaml: &str| {
        let cfg: JwtIssuerConfig = serde_yaml::from_str(yaml).unwrap();
        JwtVerifier::new(vec![cfg]).unwrap_err().to_string()
    };
    assert!(bad("issuer: https://i\naudiences: []").contains("audiences"));
    assert!(bad("issuer: https://i\naudiences: [a]\nleeway_secs: 301").contains("leeway_secs"));
    assert!(bad("issuer: https://i\naudiences: [a]\nalgorithms: [HS256]").contains("HS256"));
    assert!(bad("issuer: https://i\naudiences: [a]\nalgorithms: [none]").contains("none"));
    assert!(bad("issuer: https://i\naudiences: [a]\nalgorithms: []").contains("algorithms"));
    assert!(bad("issuer: not-a-url\naudiences: [a]").contains("discovery"));
    assert!(bad("issuer: ftp://i\naudiences: [a]").contains("scheme"));
    assert!(bad("issuer: https://i\naudiences: [a]\njwks_url: nope").contains("jwks_url"));
    assert!(
        bad("issuer: https://i\naudiences: [a]\nclaims: {subject: ''}").contains("claims.subject")
    );

    // A non-URL issuer is fine when keys are fetched from `jwks_url`.
    let cfg: JwtIssuerConfig = serde_yaml::from_str(
        "issuer: corp-idp\naudiences: [a]\njwks_url: https://idp/jwks\nalgorithms: [ES256, ES256]",
    )
    .unwrap();
    assert_eq!(cfg.validate(true).unwrap(), vec![Algorithm::ES256]);

    let twice = JwtIssuerConfig::new("https://i", vec!["a".into()]);
    let err = JwtVerifier::new(vec![twice.clone(), twice]).unwrap_err();
    assert!(matches!(err, JwtConfigError::DuplicateIssuer(_)));
}

#[test]
fn errors_become_denials() {
    let d = JwtError::Expired.to_denial();
    assert_eq!(d.kind, DenyKind::Unauthenticated);
    assert_eq!(d.error, "invalid_token");
    assert_eq!(d.reason, "the token has expired");
    assert_eq!(
        JwtError::MissingClaim("exp").to_string(),
        "the token has no `exp` claim"
    );
    let d = JwtError::IdpUnavailable("GET http://10.0.0.1/jwks: timed out".into()).to_denial();
    assert_eq!(d.kind, DenyKind::Unavailable);
    assert!(!d.reason.contains("10.0.0.1"));
    assert_eq!(JwtError::UnknownKey.code(), "unknown_key");
}
