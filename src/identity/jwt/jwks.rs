//! An issuer's public keys: found by OIDC discovery, fetched over HTTP, kept between fetches,
//! and refetched at most once per interval however many requests ask.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The most a discovery document or JWKS may weigh.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The kind of a usable public key, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    Ed25519,
}

impl KeyKind {
    fn verifies(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (KeyKind::Rsa, Algorithm::RS256 | Algorithm::PS256)
                | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One public key ready to verify signatures.
pub(crate) struct VerifyingKey {
    pub kid: Option<String>,
    /// The algorithm the JWK pins (`alg`), when it pins one.
    pub alg: Option<Algorithm>,
    pub kind: KeyKind,
    pub key: DecodingKey,
}

impl VerifyingKey {
    /// Whether this key may verify a signature made with `alg`: the key type must fit, and a
    /// key that names its algorithm allows only that one. The token header never widens this.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// The answer to "which key verifies this token".
pub(crate) enum KeyLookup {
    Found(Arc<VerifyingKey>),
    /// A key with this id exists but cannot verify this algorithm.
    WrongAlgorithm,
    NotFound,
}

/// An issuer's usable keys at one moment.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Keeps the signature keys inferguard can use (RSA, P-256, Ed25519) and skips the rest:
    /// symmetric (`oct`) keys, encryption keys, other curves, keys without `verify` in
    /// `key_ops`, and entries that do not parse.
    pub fn from_jwks(issuer: &str, jwks: &JwkSet) -> KeySet {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| prepare(issuer, jwk))
            .map(Arc::new)
            .collect();
        KeySet { keys }
    }

    /// Parses a JWKS document leniently: one odd entry does not hide the others.
    pub fn from_json(issuer: &str, body: &[u8]) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet =
            serde_json::from_slice(body).map_err(|e| format!("the JWKS is not valid JSON: {e}"))?;
        let mut keys = Vec::new();
        for value in raw.keys {
            match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => keys.extend(prepare(issuer, &jwk).map(Arc::new)),
                Err(e) => {
                    tracing::debug!(%issuer, error = %e, "skipping a JWKS entry that does not parse")
                }
            }
        }
        Ok(KeySet { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key ids present, for noticing removed keys.
    pub fn kids(&self) -> BTreeSet<Option<String>> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The key for a token with this `kid` and algorithm. Without a `kid` the token is
    /// accepted only when exactly one key fits the algorithm, so nothing is guessed.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return KeyLookup::NotFound;
                }
                match named.find(|k| k.accepts(alg)) {
                    Some(k) => KeyLookup::Found(k.clone()),
                    None => KeyLookup::WrongAlgorithm,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => KeyLookup::Found(only.clone()),
                    _ => KeyLookup::NotFound,
                }
            }
        }
    }
}

fn prepare(issuer: &str, jwk: &Jwk) -> Option<VerifyingKey> {
    let kid = jwk.common.key_id.clone();
    let skip = |why: &str| {
        tracing::debug!(%issuer, kid = ?kid, why, "skipping a JWKS key");
        None
    };
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return skip("not a signature key (`use`)");
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return skip("`key_ops` does not allow verify");
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => KeyKind::P256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => return skip("symmetric keys are never used"),
        _ => return skip("unsupported key type or curve"),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(ka) => match Algorithm::try_from(ka).ok().filter(|a| kind.verifies(*a)) {
            Some(a) => Some(a),
            None => return skip("its `alg` is not supported for its key type"),
        },
    };
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(key) => key,
        Err(_) => return skip("its parameters do not decode"),
    };
    Some(VerifyingKey {
        kid,
        alg,
        kind,
        key,
    })
}

/// Where an issuer's keys come from.
enum Source {
    /// Given at construction; never fetched.
    Static,
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
    /// A configured JWKS address.
    Jwks(String),
}

/// What happened when a caller asked for fresh keys.
pub(crate) enum Refetch {
    /// A fetch (this caller's or a concurrent one) succeeded since the caller looked.
    Done,
    /// The last attempt was too recent; nothing was fetched. Carries the last attempt's error.
    RateLimited(Option<String>),
    /// The fetch failed.
    Failed(String),
}

struct FetchState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    /// The `jwks_uri` found by discovery, kept until a JWKS fetch from it fails.
    discovered: Option<String>,
}

/// One issuer's current keys and the means to refresh them.
pub(crate) struct IssuerKeys {
    issuer: String,
    source: Source,
    keys: ArcSwapOption<KeySet>,
    /// Bumped after every fetch attempt; lets a waiter see that someone else just fetched.
    attempts: AtomicU64,
    /// Held for the whole of a fetch: concurrent refetches queue here and are coalesced.
    fetch: tokio::sync::Mutex<FetchState>,
}

/// What a fetch changed.
pub(crate) struct Updated {
    /// Some key present before is gone (rotated out or revoked).
    pub removed_keys: bool,
}

impl IssuerKeys {
    /// Keys fetched over HTTP, from `jwks_url` or by discovery.
    pub fn remote(issuer: &str, jwks_url: Option<String>) -> Self {
        let source = match jwks_url {
            Some(url) => Source::Jwks(url),
            None => Source::Discovery,
        };
        Self::with(issuer, source, None)
    }

    /// Keys known locally.
    pub fn fixed(issuer: &str, keys: KeySet) -> Self {
        Self::with(issuer, Source::Static, Some(Arc::new(keys)))
    }

    fn with(issuer: &str, source: Source, keys: Option<Arc<KeySet>>) -> Self {
        IssuerKeys {
            issuer: issuer.to_string(),
            source,
            keys: ArcSwapOption::new(keys),
            attempts: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(FetchState {
                last_attempt: None,
                last_error: None,
                discovered: None,
            }),
        }
    }

    /// Whether keys are fetched over HTTP (and so can be refreshed).
    pub fn is_remote(&self) -> bool {
        !matches!(self.source, Source::Static)
    }

    /// The attempt counter; read it before looking at [`IssuerKeys::current`].
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// The keys in hand, if any fetch ever succeeded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Fetches fresh keys because a token named a key not in hand, unless another caller did
    /// so since `seen_attempts` (then its result is shared) or the last attempt was less than
    /// `min_interval` ago (so a flood of random `kid`s costs the IdP at most one request per
    /// interval). Returns the outcome and what changed.
    pub async fn refetch(
        &self,
        http: &reqwest::Client,
        min_interval: Duration,
        seen_attempts: u64,
    ) -> (Refetch, Option<Updated>) {
        if !self.is_remote() {
            return (Refetch::RateLimited(None), None);
        }
        let mut state = self.fetch.lock().await;
        if self.attempts() != seen_attempts {
            return match &state.last_error {
                None => (Refetch::Done, None),
                Some(e) => (Refetch::Failed(e.clone()), None),
            };
        }
        if let Some(at) = state.last_attempt
            && at.elapsed() < min_interval
        {
            return (Refetch::RateLimited(state.last_error.clone()), None);
        }
        self.fetch_locked(http, &mut state).await
    }

    /// Fetches fresh keys now (the background refresh), waiting for any fetch in progress.
    pub async fn refresh(&self, http: &reqwest::Client) -> (Refetch, Option<Updated>) {
        if !self.is_remote() {
            return (Refetch::Done, None);
        }
        let mut state = self.fetch.lock().await;
        self.fetch_locked(http, &mut state).await
    }

    async fn fetch_locked(
        &self,
        http: &reqwest::Client,
        state: &mut FetchState,
    ) -> (Refetch, Option<Updated>) {
        state.last_attempt = Some(Instant::now());
        let result = self.download(http, state).await;
        let out = match result {
            Ok(set) => {
                let before = self.current();
                let removed_keys = before.is_some_and(|old| !old.kids().is_subset(&set.kids()));
                tracing::debug!(issuer = %self.issuer, keys = set.len(), "JWKS refreshed");
                self.keys.store(Some(Arc::new(set)));
                state.last_error = None;
                (Refetch::Done, Some(Updated { removed_keys }))
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, kept_previous_keys = self.current().is_some(), "JWKS fetch failed");
                state.last_error = Some(e.clone());
                (Refetch::Failed(e), None)
            }
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        out
    }

    async fn download(
        &self,
        http: &reqwest::Client,
        state: &mut FetchState,
    ) -> Result<KeySet, String> {
        let (url, discovered) = match &self.source {
            Source::Static => return Err("static keys are not fetched".into()),
            Source::Jwks(url) => (url.clone(), false),
            Source::Discovery => match &state.discovered {
                Some(url) => (url.clone(), true),
                None => {
                    let url = self.discover(http).await?;
                    state.discovered = Some(url.clone());
                    (url, true)
                }
            },
        };
        let fetched = get(http, &url)
            .await
            .and_then(|body| KeySet::from_json(&self.issuer, &body))
            .and_then(|set| {
                if set.is_empty() {
                    Err(format!("the JWKS at {url} holds no usable signature key"))
                } else {
                    Ok(set)
                }
            });
        if fetched.is_err() && discovered {
            // The address may have moved: ask discovery again next time.
            state.discovered = None;
        }
        fetched
    }

    async fn discover(&self, http: &reqwest::Client) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let body = get(http, &url).await?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("the discovery document at {url} is not usable: {e}"))?;
        // OpenID Connect Discovery 1.0 §4.3: the document must name exactly this issuer.
        if doc.issuer != self.issuer {
            return Err(format!(
                "the discovery document at {url} names issuer `{}`, not `{}`",
                doc.issuer, self.issuer
            ));
        }
        match reqwest::Url::parse(&doc.jwks_uri) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(doc.jwks_uri),
            _ => Err(format!(
                "the discovery document at {url} has no usable `jwks_uri`"
            )),
        }
    }
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", describe(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: status {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!(
            "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // The source chain carries the useful part (connection refused, DNS, TLS…); the URL is
    // already in the caller's message.
    let mut text = match e.url() {
        Some(url) => e.to_string().replace(&format!(" ({url})"), ""),
        None => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Follows at most three redirects, and never from https to plain http.
pub(crate) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("refusing a redirect from https to http")
        } else if attempt.previous().len() > 3 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}
