//! The relying party: OIDC discovery, the authorization request (PKCE S256, state, nonce),
//! the code exchange with ID-token verification (the `openidconnect` crate's), userinfo, the
//! refresh-token grant and the end-session URL.
//!
//! The IdP may be down when inferguard starts: its metadata (and keys) are fetched at first
//! use, refreshed in the background, and fetched again (at most every 10 s) when an ID token
//! names a key not in hand.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::url::Url;
use openidconnect::{
    AccessToken, AdditionalClaims, AuthenticationContextClass, AuthenticationFlow,
    AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenClaims,
    IdTokenFields, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, SubjectIdentifier, UserInfoClaims,
};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::claims::{MappedClaims, map_claims, string_list};
use super::config::OidcConfig;
use crate::store::RefreshedClaims;

/// Every claim of an ID token or userinfo response that `openidconnect` does not model.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ExtraClaims(pub Map<String, Value>);

impl AdditionalClaims for ExtraClaims {}

type Fields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponse = StandardTokenResponse<Fields, CoreTokenType>;
type OidcIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// ID-token algorithms accepted: asymmetric only (never `none`, never HMAC with the client
/// secret).
const ID_TOKEN_ALGORITHMS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The least time between two on-demand metadata fetches (an unknown signing key).
const REDISCOVER_INTERVAL: Duration = Duration::from_secs(10);

/// Why a step of the flow failed. `Display` is for logs: it never holds tokens or codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The IdP (discovery, token or userinfo endpoint) cannot be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    IdpUnavailable(String),
    /// The IdP refused the grant (a reused or unknown code, a revoked refresh token…).
    #[error("the identity provider refused the grant: {0}")]
    Refused(String),
    /// The ID token (or userinfo) failed verification: signature, issuer, audience, expiry,
    /// nonce, subject.
    #[error("the ID token is not valid: {0}")]
    InvalidIdToken(String),
    /// The configuration cannot work with this IdP.
    #[error("identity.oidc: {0}")]
    Config(String),
}

/// A new authorization request: the URL to send the browser to, and the secrets to keep
/// until the callback.
#[derive(Clone)]
pub struct LoginStart {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A completed login: the verified identity and the tokens to keep.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginResult {
    pub issuer: String,
    pub subject: String,
    /// The IdP session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// The raw ID token (for `id_token_hint`).
    pub id_token: String,
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for LoginResult {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResult")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("amr", &self.amr)
            .field("acr", &self.acr)
            .finish_non_exhaustive()
    }
}

/// Why the claims of a session could not be refreshed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The IdP refused the refresh token (revoked, expired, IdP session ended): the session
    /// must end.
    #[error("refused: {0}")]
    Refused(String),
    /// The IdP could not be asked; keep the claims in hand and try later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Reads a session's claims again from the IdP (implemented by [`RelyingParty`]; a seam for
/// tests).
#[async_trait::async_trait]
pub trait ClaimsRefresher: Send + Sync {
    /// Uses `refresh_token` for fresh claims of `subject` at `now`.
    async fn refresh(
        &self,
        refresh_token: &str,
        subject: &str,
        now: i64,
    ) -> Result<RefreshedClaims, RefreshError>;
}

struct Discovered {
    metadata: ProviderMetadataWithLogout,
    fetched_at: Instant,
}

/// inferguard as an OIDC client of one IdP.
pub struct RelyingParty {
    config: Arc<OidcConfig>,
    issuer: IssuerUrl,
    client_secret: Option<ClientSecret>,
    http: reqwest::Client,
    discovered: ArcSwapOption<Discovered>,
    /// Serialises metadata fetches; holds when the last one was attempted.
    fetching: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// A relying party for `config` (validated). Contacts nobody yet.
    pub fn new(config: Arc<OidcConfig>, client_secret: Option<String>) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Config(format!("issuer: {e}")))?;
        let http = reqwest::Client::builder()
            // Following redirects would let a hostile IdP answer point us anywhere (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .user_agent(concat!("inferguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OidcError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(RelyingParty {
            config,
            issuer,
            client_secret: client_secret.map(ClientSecret::new),
            http,
            discovered: ArcSwapOption::empty(),
            fetching: Mutex::new(None),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The IdP's metadata, fetched first when not in hand.
    async fn metadata(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.load_full() {
            return Ok(d);
        }
        self.fetch(Duration::ZERO).await?;
        self.discovered
            .load_full()
            .ok_or_else(|| OidcError::IdpUnavailable("no provider metadata".into()))
    }

    /// Fetches the metadata (and keys) unless another fetch happened within `min_interval`.
    async fn fetch(&self, min_interval: Duration) -> Result<(), OidcError> {
        let started = Instant::now();
        let mut last = self.fetching.lock().await;
        if let Some(d) = self.discovered.load_full()
            && (d.fetched_at >= started || d.fetched_at.elapsed() < min_interval)
        {
            // Someone fetched while we waited, or recently enough.
            return Ok(());
        }
        if let Some(at) = *last
            && at.elapsed() < min_interval
        {
            return Ok(());
        }
        *last = Some(Instant::now());
        let metadata = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "OIDC discovery failed");
                OidcError::IdpUnavailable(format!("discovery: {e}"))
            })?;
        self.discovered.store(Some(Arc::new(Discovered {
            metadata,
            fetched_at: Instant::now(),
        })));
        Ok(())
    }

    /// Refreshes the metadata now and then every `every`, until the relying party is dropped.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(rp) = weak.upgrade() else { break };
                let _ = rp.fetch(Duration::from_secs(1)).await;
            }
        })
    }

    fn client(&self, d: &Discovered) -> OidcClient {
        OidcClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.client_secret.clone(),
        )
    }

    /// Starts a login: a fresh state, nonce and PKCE verifier, and the authorization URL. A
    /// step-up login asks the IdP for a new authentication (`prompt=login`) with the
    /// configured MFA `acr_values`.
    pub async fn start_login(
        &self,
        redirect_uri: &str,
        step_up: bool,
    ) -> Result<LoginStart, OidcError> {
        let d = self.metadata().await?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| OidcError::Config(format!("redirect URI: {e}")))?;
        let client = self.client(&d).set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if step_up {
            request = request.add_prompt(CoreAuthPrompt::Login);
            for acr in &self.config.mfa_acr_values {
                request =
                    request.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        Ok(LoginStart {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes a login: exchanges the code (with the PKCE verifier and the same redirect
    /// URI), verifies the ID token (signature with the IdP's keys, `iss`, `aud`, `exp`,
    /// `nonce`), reads userinfo when the IdP has an endpoint, and maps the claims.
    pub async fn finish_login(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<LoginResult, OidcError> {
        let d = self.metadata().await?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| OidcError::Config(format!("redirect URI: {e}")))?;
        let client = self.client(&d).set_redirect_uri(redirect.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Config(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or_else(|| OidcError::InvalidIdToken("the token response has no id_token".into()))?
            .clone();
        let nonce = Nonce::new(nonce.to_string());
        let claims = self
            .verify_id_token(&id_token, |n: Option<&Nonce>| match n {
                Some(n) if constant_eq(n.secret(), nonce.secret()) => Ok(()),
                Some(_) => Err("nonce mismatch".to_string()),
                None => Err("missing nonce claim".to_string()),
            })
            .await?;
        let subject = claims.subject().as_str().to_string();
        let mut all = claims_json(&claims);
        if let Some(info) = self
            .userinfo(&d, response.access_token().clone(), &subject)
            .await?
        {
            all.extend(info);
        }
        let mapped: MappedClaims = map_claims(&all, &self.config.claims);
        let sid = claims
            .additional_claims()
            .0
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(LoginResult {
            issuer: self.config.issuer.clone(),
            subject,
            sid,
            email: mapped.email,
            groups: mapped.groups,
            attributes: mapped.attributes,
            amr: claims
                .auth_method_refs()
                .map(|v| v.iter().map(|a| a.as_str().to_string()).collect())
                .unwrap_or_default(),
            acr: claims.auth_context_ref().map(|a| a.as_str().to_string()),
            id_token: id_token.to_string(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Verifies an ID token; when its key is unknown, fetches the IdP's metadata again (at
    /// most every 10 s) and retries once.
    async fn verify_id_token<N>(
        &self,
        token: &OidcIdToken,
        nonce: N,
    ) -> Result<IdTokenClaims<ExtraClaims, CoreGenderClaim>, OidcError>
    where
        N: Fn(Option<&Nonce>) -> Result<(), String>,
    {
        let mut retried = false;
        loop {
            let d = self.metadata().await?;
            let client = self.client(&d);
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(ID_TOKEN_ALGORITHMS);
            match token.clone().into_claims(&verifier, &nonce) {
                Ok(claims) => return Ok(claims),
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !retried => {
                    retried = true;
                    self.fetch(REDISCOVER_INTERVAL).await?;
                }
                Err(e) => return Err(OidcError::InvalidIdToken(e.to_string())),
            }
        }
    }

    /// The userinfo claims (JSON) of `subject`, when the IdP has a userinfo endpoint.
    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: AccessToken,
        subject: &str,
    ) -> Result<Option<Map<String, Value>>, OidcError> {
        let client = self.client(d);
        let Ok(request) = client.user_info(
            access_token,
            Some(SubjectIdentifier::new(subject.to_string())),
        ) else {
            return Ok(None);
        };
        let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::UserInfoError::ClaimsVerification(e) => {
                    OidcError::InvalidIdToken(format!("userinfo: {e}"))
                }
                other => OidcError::IdpUnavailable(format!("userinfo: {other}")),
            })?;
        match serde_json::to_value(&info) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        }
    }

    /// The IdP's `end_session_endpoint` with `id_token_hint`, `client_id` and
    /// `post_logout_redirect_uri`, or `None` when the IdP has none (or cannot be reached).
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<Url> {
        let d = self.metadata().await.ok()?;
        let endpoint = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.clone()));
        if let Ok(url) = PostLogoutRedirectUrl::new(post_logout_redirect_uri.to_string()) {
            request = request.set_post_logout_redirect_uri(url);
        }
        let mut url = request.http_get_url();
        if let Some(hint) = id_token_hint {
            // The raw token as the IdP issued it (LogoutRequest wants a parsed IdToken).
            url.query_pairs_mut().append_pair("id_token_hint", hint);
        }
        Some(url)
    }
}

#[async_trait::async_trait]
impl ClaimsRefresher for RelyingParty {
    async fn refresh(
        &self,
        refresh_token: &str,
        subject: &str,
        now: i64,
    ) -> Result<RefreshedClaims, RefreshError> {
        let d = self
            .metadata()
            .await
            .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        let client = self.client(&d);
        let token = RefreshToken::new(refresh_token.to_string());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| RefreshError::Unavailable(format!("token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| match token_error(e) {
                OidcError::Refused(why) => RefreshError::Refused(why),
                other => RefreshError::Unavailable(other.to_string()),
            })?;
        let mut all = Map::new();
        let mut id_token = None;
        if let Some(t) = response.extra_fields().id_token() {
            // A refreshed ID token has no nonce; it must be about the same user.
            let claims = self
                .verify_id_token(t, |_: Option<&Nonce>| Ok(()))
                .await
                .map_err(|e| RefreshError::Refused(e.to_string()))?;
            if claims.subject().as_str() != subject {
                return Err(RefreshError::Refused(
                    "the refreshed ID token is about another subject".into(),
                ));
            }
            all = claims_json(&claims);
            id_token = Some(t.to_string());
        }
        match self
            .userinfo(&d, response.access_token().clone(), subject)
            .await
        {
            Ok(Some(info)) => all.extend(info),
            Ok(None) => {}
            Err(OidcError::InvalidIdToken(e)) => return Err(RefreshError::Refused(e)),
            Err(e) => return Err(RefreshError::Unavailable(e.to_string())),
        }
        if all.is_empty() {
            return Err(RefreshError::Unavailable(
                "the IdP returned neither an ID token nor userinfo".into(),
            ));
        }
        let mapped = map_claims(&all, &self.config.claims);
        Ok(RefreshedClaims {
            email: mapped.email,
            groups: mapped.groups,
            attributes: mapped.attributes,
            id_token,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            refreshed_at: now,
        })
    }
}

/// Every claim of a verified ID token as JSON.
fn claims_json(claims: &IdTokenClaims<ExtraClaims, CoreGenderClaim>) -> Map<String, Value> {
    let mut map = claims.additional_claims().0.clone();
    if let Ok(Value::Object(standard)) = serde_json::to_value(claims) {
        map.extend(standard);
    }
    // `amr` stays a list of strings whatever the IdP sent.
    if let Some(amr) = map.get("amr").map(string_list) {
        map.insert("amr".into(), Value::from(amr));
    }
    map
}

fn token_error<E: std::error::Error>(
    e: RequestTokenError<E, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let code = r.error().as_ref().to_string();
            match r.error() {
                CoreErrorResponseType::InvalidGrant
                | CoreErrorResponseType::InvalidClient
                | CoreErrorResponseType::UnauthorizedClient
                | CoreErrorResponseType::InvalidRequest
                | CoreErrorResponseType::InvalidScope
                | CoreErrorResponseType::UnsupportedGrantType => OidcError::Refused(code),
                _ => OidcError::IdpUnavailable(format!("token endpoint error `{code}`")),
            }
        }
        RequestTokenError::Request(e) => OidcError::IdpUnavailable(format!("token endpoint: {e}")),
        RequestTokenError::Parse(e, _) => {
            OidcError::IdpUnavailable(format!("token endpoint answer: {e}"))
        }
        RequestTokenError::Other(e) => OidcError::IdpUnavailable(format!("token endpoint: {e}")),
    }
}

/// Compares secrets without an early exit.
fn constant_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
