//! API key authentication with a cache in front of the store.
//!
//! A hot key costs no query: the key record and its owner's state are cached by key id
//! (unknown ids too, so random ids cannot hammer the store). Running servers drop entries
//! when the store's change feed names them, which makes revocations and disabled owners
//! effective within the poll interval. Expiry is judged at every request, never cached.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    AuthMethod, Denial, DenyKind, Permission, Principal, PrincipalKind, RoleSource,
};
use crate::identity::cache::FeedCache;
use crate::identity::{api_key, unauthenticated};
use crate::policy::{Policy, StoredLimits};
use crate::store::{ApiKeyRecord, DynStore, StoreError};

/// A key together with the state of its owner at load time.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub key: ApiKeyRecord,
    pub owner_email: Option<String>,
    /// The owner's explicit role (always set for service accounts).
    pub owner_role: Option<String>,
    pub owner_attributes: std::collections::BTreeMap<String, String>,
    pub owner_disabled: bool,
    /// The key's scopes, parsed.
    pub scopes: Option<Vec<Permission>>,
    /// Quota limits kept with the key and its service account, so quotas cost no lookup.
    pub limits: StoredLimits,
}

/// Authenticates `fk_…` keys.
pub struct KeyAuthenticator {
    store: DynStore,
    cache: FeedCache<String, Option<Arc<KeyGrant>>>,
}

impl KeyAuthenticator {
    /// A key authenticator over `store`, caching each entry at most `ttl`.
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        KeyAuthenticator {
            store,
            cache: FeedCache::new(200_000, ttl),
        }
    }

    /// Turns the presented key text into a principal (with the quota limits stored with the
    /// key), or the refusal to give.
    pub async fn authenticate(
        &self,
        text: &str,
        policy: &Policy,
        now: i64,
    ) -> Result<(Principal, StoredLimits), Denial> {
        let invalid = || unauthenticated("invalid_api_key", "the API key is not valid");
        let presented = api_key::parse(text).ok_or_else(invalid)?;
        let grant = self.grant(presented.id).await.map_err(|e| {
            tracing::error!(error = %e, "store lookup for an API key failed");
            Denial::new(
                DenyKind::Unavailable,
                "store_unavailable",
                "the credential store is unreachable; try again",
            )
        })?;
        let grant = grant.ok_or_else(invalid)?;
        if !api_key::secret_matches(presented.secret, &grant.key.secret_sha256) {
            return Err(invalid());
        }
        // Only a caller holding the right secret learns why a real key no longer works.
        if grant.key.revoked_at.is_some() {
            return Err(unauthenticated(
                "revoked_api_key",
                "the API key has been revoked",
            ));
        }
        if grant.key.expires_at <= now {
            return Err(unauthenticated(
                "expired_api_key",
                "the API key has expired",
            ));
        }
        if grant.owner_disabled {
            return Err(unauthenticated(
                "disabled_principal",
                "the key's owner is disabled",
            ));
        }
        Ok((principal_for(&grant, policy), grant.limits.clone()))
    }

    /// Drops one key from the cache.
    pub async fn invalidate_key(&self, id: &str) {
        self.cache.invalidate(&id.to_string()).await;
    }

    /// Drops every cached key (an owner changed, or the change feed was lost).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    async fn grant(&self, id: &str) -> Result<Option<Arc<KeyGrant>>, StoreError> {
        let id = id.to_string();
        self.cache
            .get_or_load(&id, async { Ok(self.load(&id).await?.map(Arc::new)) })
            .await
    }

    async fn load(&self, id: &str) -> Result<Option<KeyGrant>, StoreError> {
        let Some(key) = self.store.get_key(id).await? else {
            return Ok(None);
        };
        let scopes = match &key.scopes {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        n.parse::<Permission>()
                            .map_err(|e| StoreError::Corrupt(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let key_limits = StoredLimits::from_records(Some(&key), None);
        let grant = match key.owner.kind {
            PrincipalKind::User => match self.store.get_user(&key.owner.name).await? {
                // A key whose owner vanished is treated as a disabled owner: fail closed.
                None => KeyGrant {
                    key,
                    owner_email: None,
                    owner_role: None,
                    owner_attributes: Default::default(),
                    owner_disabled: true,
                    limits: key_limits.clone(),
                    scopes,
                },
                Some(u) => KeyGrant {
                    key,
                    owner_email: u.email,
                    owner_role: u.role,
                    owner_attributes: u.attributes,
                    owner_disabled: u.disabled,
                    limits: key_limits.clone(),
                    scopes,
                },
            },
            PrincipalKind::ServiceAccount => {
                match self.store.get_service_account(&key.owner.name).await? {
                    None => KeyGrant {
                        key,
                        owner_email: None,
                        owner_role: None,
                        owner_attributes: Default::default(),
                        owner_disabled: true,
                        limits: key_limits.clone(),
                        scopes,
                    },
                    Some(sa) => KeyGrant {
                        limits: StoredLimits::from_records(Some(&key), Some(&sa)),
                        key,
                        owner_email: None,
                        owner_role: Some(sa.role),
                        owner_attributes: sa.attributes,
                        owner_disabled: sa.disabled,
                        scopes,
                    },
                }
            }
        };
        Ok(Some(grant))
    }
}

/// The principal a key stands for under the current policy.
fn principal_for(grant: &KeyGrant, policy: &Policy) -> Principal {
    let (role, role_source) = match &grant.owner_role {
        Some(r) => (r.clone(), RoleSource::Binding),
        None => match policy.role_for_groups(&[]) {
            Some((r, _)) => (r.to_string(), RoleSource::Default),
            // No role at all: an empty name matches no role, so the policy refuses.
            None => (String::new(), RoleSource::Default),
        },
    };
    Principal {
        subject: grant.key.owner.name.clone(),
        kind: grant.key.owner.kind,
        email: grant.owner_email.clone(),
        groups: Vec::new(),
        role,
        role_source,
        auth: AuthMethod::ApiKey,
        key_id: Some(grant.key.id.clone()),
        scopes: grant.scopes.clone(),
        session_id: None,
        mfa: false,
        attributes: grant.owner_attributes.clone(),
    }
}
