//! Browser sessions on the Check path: the session cookie's id turned into a principal, with
//! the idle and absolute timeouts, group-claim refresh and the same role rules as tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::mfa::login_was_mfa;
use super::provider::{ClaimsRefresher, LoginResult, RefreshError};
use crate::domain::{AuthMethod, Denial, DenyKind, Principal};
use crate::identity::cache::FeedCache;
use crate::identity::jwt::VerifiedToken;
use crate::identity::{SessionAuthenticator, UserDirectory, principal_from_token, unauthenticated};
use crate::policy::Policy;
use crate::store::{Change, DynStore, SessionRecord, StoreError};

/// Bytes of randomness in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;
/// Length of a session id: base64url of [`SESSION_ID_BYTES`] without padding.
const SESSION_ID_CHARS: usize = 43;
/// How long one replica may hold the right to refresh a session's claims.
const REFRESH_LEASE_SECS: i64 = 30;
/// How long a Check waits for a claim refresh before deciding on the claims in hand (Envoy
/// gives the whole Check one second); the refresh itself goes on and is stored.
const REFRESH_WAIT: Duration = Duration::from_millis(600);

/// What sessions are judged by.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The IdP's issuer (recorded on each session).
    pub issuer: String,
    /// Idle timeout, in seconds.
    pub idle_secs: i64,
    /// Absolute timeout, in seconds.
    pub absolute_secs: i64,
    /// Claims older than this are refreshed, in seconds.
    pub groups_max_age_secs: i64,
    /// `acr` values that count as MFA.
    pub mfa_acr_values: Vec<String>,
}

/// A new opaque session id: 256 random bits, base64url.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex SHA-256 of a session id (or login state): what the store keeps.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// True when `id` has the shape of a session id (so junk is refused without a lookup).
fn looks_like_session_id(id: &str) -> bool {
    id.len() == SESSION_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid_session() -> Denial {
    unauthenticated("invalid_session", "the session is not valid; sign in again")
}

fn session_expired() -> Denial {
    unauthenticated("session_expired", "the session has expired; sign in again")
}

fn store_unavailable(e: StoreError) -> Denial {
    tracing::error!(error = %e, "session lookup failed");
    Denial::new(
        DenyKind::Unavailable,
        "store_unavailable",
        "the session store is unreachable; try again",
    )
}

/// What a claim refresh came to.
enum RefreshOutcome {
    /// New claims are stored.
    Updated,
    /// The IdP refused (or the session ended meanwhile): the session is over.
    Ended,
    /// Nothing changed; the claims in hand stay.
    Kept,
}

/// Sessions over the store, cached and dropped by the change feed.
pub struct SessionManager {
    store: DynStore,
    settings: SessionSettings,
    cache: FeedCache<String, Option<Arc<SessionRecord>>>,
    users: UserDirectory,
    refresher: Option<Arc<dyn ClaimsRefresher>>,
}

impl SessionManager {
    /// Sessions over `store`, cached at most `cache_ttl` without a change-feed event; claims
    /// are refreshed through `refresher` when given.
    pub fn new(
        store: DynStore,
        settings: SessionSettings,
        cache_ttl: Duration,
        refresher: Option<Arc<dyn ClaimsRefresher>>,
    ) -> Self {
        SessionManager {
            users: UserDirectory::new(store.clone(), cache_ttl),
            cache: FeedCache::new(200_000, cache_ttl),
            store,
            settings,
            refresher,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Creates a session for a completed login; returns the new session id (the cookie
    /// value, never stored) and the record.
    pub async fn create(
        &self,
        login: &LoginResult,
        now: i64,
    ) -> Result<(String, SessionRecord), StoreError> {
        let id = new_session_id();
        let s = &self.settings;
        let record = SessionRecord {
            id_sha256: secret_hash(&id),
            username: login.subject.clone(),
            issuer: login.issuer.clone(),
            idp_sid: login.sid.clone(),
            email: login.email.clone(),
            groups: login.groups.clone(),
            attributes: login.attributes.clone(),
            amr: login.amr.clone(),
            acr: login.acr.clone(),
            mfa: login_was_mfa(&login.amr, login.acr.as_deref(), &s.mfa_acr_values),
            id_token: Some(login.id_token.clone()),
            refresh_token: login.refresh_token.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now.saturating_add(s.idle_secs),
            absolute_expires_at: now.saturating_add(s.absolute_secs),
            claims_refreshed_at: now,
            ended_at: None,
            end_reason: None,
        };
        self.store.create_session(&record).await?;
        Ok((id, record))
    }

    /// The session a cookie names, read from the store (not the cache), when it is active.
    pub async fn active(&self, id: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        if !looks_like_session_id(id) {
            return Ok(None);
        }
        Ok(self
            .store
            .get_session(&secret_hash(id))
            .await?
            .filter(|s| s.is_active(now)))
    }

    /// Ends a session by its hash (logging a store failure) and drops it from the cache.
    pub async fn end(&self, id_sha256: &str, now: i64, reason: &str) {
        if let Err(e) = self.store.end_session(id_sha256, now, reason).await {
            tracing::error!(error = %e, reason, "could not record the end of a session");
        }
        self.cache.invalidate(&id_sha256.to_string()).await;
    }

    /// Drops one session from the cache.
    pub async fn invalidate(&self, id_sha256: &str) {
        self.cache.invalidate(&id_sha256.to_string()).await;
    }

    async fn load(&self, hash: &str) -> Result<Option<Arc<SessionRecord>>, Denial> {
        let key = hash.to_string();
        self.cache
            .get_or_load(&key, async {
                Ok(self.store.get_session(hash).await?.map(Arc::new))
            })
            .await
            .map_err(store_unavailable)
    }

    /// Refreshes the claims when they are older than `groups_max_age` and a refresh token is
    /// in hand; one replica at a time (a lease in the store). Returns the updated record, or
    /// `None` to go on with the one in hand.
    async fn maybe_refresh(
        &self,
        rec: &SessionRecord,
        now: i64,
    ) -> Result<Option<Arc<SessionRecord>>, Denial> {
        if now.saturating_sub(rec.claims_refreshed_at) < self.settings.groups_max_age_secs {
            return Ok(None);
        }
        let (Some(refresher), Some(refresh_token)) = (&self.refresher, rec.refresh_token.clone())
        else {
            return Ok(None);
        };
        let hash = rec.id_sha256.clone();
        match self
            .store
            .acquire_refresh_lease(&hash, now, now + REFRESH_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "could not take the claim-refresh lease");
                return Ok(None);
            }
        }
        let store = self.store.clone();
        let refresher = refresher.clone();
        let subject = rec.username.clone();
        let task_hash = hash.clone();
        // Spawned, so a refresh that outlasts this Check still stores the rotated tokens.
        let task = tokio::spawn(async move {
            match refresher.refresh(&refresh_token, &subject, now).await {
                Ok(claims) => match store.update_session_claims(&task_hash, &claims).await {
                    Ok(true) => RefreshOutcome::Updated,
                    Ok(false) => RefreshOutcome::Ended,
                    Err(e) => {
                        tracing::error!(error = %e, "could not store refreshed claims");
                        RefreshOutcome::Kept
                    }
                },
                Err(RefreshError::Refused(why)) => {
                    tracing::info!(reason = %why, "the IdP refused a session's refresh; ending the session");
                    if let Err(e) = store.end_session(&task_hash, now, "refresh_refused").await {
                        tracing::error!(error = %e, "could not record the end of a session");
                    }
                    RefreshOutcome::Ended
                }
                Err(RefreshError::Unavailable(why)) => {
                    tracing::warn!(reason = %why, "could not refresh a session's claims; keeping them for now");
                    RefreshOutcome::Kept
                }
            }
        });
        match tokio::time::timeout(REFRESH_WAIT, task).await {
            Ok(Ok(RefreshOutcome::Updated)) => {
                self.invalidate(&hash).await;
                match self.load(&hash).await? {
                    Some(fresh) if fresh.ended_at.is_none() => Ok(Some(fresh)),
                    _ => Err(invalid_session()),
                }
            }
            Ok(Ok(RefreshOutcome::Ended)) => {
                self.invalidate(&hash).await;
                Err(unauthenticated(
                    "invalid_session",
                    "the identity provider ended this session; sign in again",
                ))
            }
            Ok(Ok(RefreshOutcome::Kept)) | Ok(Err(_)) | Err(_) => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl SessionAuthenticator for SessionManager {
    async fn authenticate(
        &self,
        session_id: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<Principal, Denial> {
        if !looks_like_session_id(session_id) {
            return Err(invalid_session());
        }
        let hash = secret_hash(session_id);
        let Some(mut rec) = self.load(&hash).await? else {
            return Err(invalid_session());
        };
        if rec.ended_at.is_some() {
            return Err(invalid_session());
        }
        if now >= rec.absolute_expires_at {
            self.end(&hash, now, "absolute_timeout").await;
            return Err(session_expired());
        }
        if now >= rec.idle_expires_at {
            // Another replica may have seen activity since this copy was cached.
            self.invalidate(&hash).await;
            rec = match self.load(&hash).await? {
                Some(r) if r.ended_at.is_none() => r,
                _ => return Err(invalid_session()),
            };
            if now >= rec.idle_expires_at {
                self.end(&hash, now, "idle_timeout").await;
                return Err(session_expired());
            }
        }
        let user = self
            .users
            .get(&rec.username)
            .await
            .map_err(store_unavailable)?;
        if let Some(fresh) = self.maybe_refresh(&rec, now).await? {
            rec = fresh;
        }
        if now.saturating_sub(rec.last_seen_at) >= self.settings.idle_secs / 10 {
            let idle_until = now.saturating_add(self.settings.idle_secs);
            match self.store.touch_session(&hash, now, idle_until).await {
                Ok(_) => self.invalidate(&hash).await,
                Err(e) => tracing::warn!(error = %e, "could not record session activity"),
            }
        }
        let token = VerifiedToken {
            issuer: rec.issuer.clone(),
            subject: rec.username.clone(),
            email: rec.email.clone(),
            groups: rec.groups.clone(),
            attributes: rec.attributes.clone(),
            expires_at: rec.expires_at(),
            amr: rec.amr.clone(),
            acr: rec.acr.clone(),
            token_id: None,
        };
        let mut principal = principal_from_token(&token, user.as_deref(), policy)?;
        principal.auth = AuthMethod::Session;
        principal.session_id = Some(hash);
        principal.mfa = rec.mfa;
        Ok(principal)
    }

    async fn apply_change(&self, change: &Change) {
        match change.entity.as_str() {
            "session" => self.invalidate(&change.id).await,
            "user" => self.users.invalidate(&change.id).await,
            _ => {}
        }
    }

    fn flush(&self) {
        self.cache.invalidate_all();
        self.users.invalidate_all();
    }
}
