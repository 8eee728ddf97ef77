//! API key authentication with a cache in front of the store.
//!
//! A hot key costs no query: the key record and its owner's state are cached by key id
//! (unknown ids too, so random ids cannot hammer the store). Running servers drop entries
//! when the store's change feed names them, which makes revocations and disabled owners
//! effective within the poll interval. Expiry is judged at every request, never cached.
//!
//! A key may be limited to source networks (judged against the client address Envoy
//! reports; a key so limited is refused when the address is unknown). Every successful use
//! is noted in memory and written to the store in batches ([`KeyUses`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{
    AuthMethod, Denial, DenyKind, Permission, Principal, PrincipalKind, RoleSource,
};
use crate::identity::cache::FeedCache;
use crate::identity::key_uses::KeyUses;
use crate::identity::networks::{self, Cidr};
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
    /// The SCIM groups of a user owner (policy.yaml `groups:` maps them to a role when the
    /// owner has no explicit role).
    pub owner_groups: Vec<String>,
    /// The key's scopes, parsed.
    pub scopes: Option<Vec<Permission>>,
    /// The networks the key may be used from, parsed; `None` = anywhere.
    pub networks: Option<Vec<Cidr>>,
    /// Quota limits kept with the key and its service account, so quotas cost no lookup.
    pub limits: StoredLimits,
}

/// Authenticates `fk_…` keys.
pub struct KeyAuthenticator {
    store: DynStore,
    cache: FeedCache<String, Option<Arc<KeyGrant>>>,
    uses: Arc<KeyUses>,
}

/// The error code of a key used from outside its allowed networks.
pub const NETWORK_NOT_ALLOWED: &str = "key_network_not_allowed";

impl KeyAuthenticator {
    /// A key authenticator over `store`, caching each entry at most `ttl`.
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        KeyAuthenticator {
            store,
            cache: FeedCache::new(200_000, ttl),
            uses: Arc::default(),
        }
    }

    /// The uses noted since the last flush (flushed by
    /// [`flush_periodically`](crate::identity::key_uses::flush_periodically)).
    pub fn uses(&self) -> Arc<KeyUses> {
        self.uses.clone()
    }

    /// Turns the presented key text, used from client address `peer`, into a principal (with
    /// the quota limits stored with the key), or the refusal to give.
    pub async fn authenticate(
        &self,
        text: &str,
        policy: &Policy,
        now: i64,
        peer: Option<IpAddr>,
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
        if let Some(allowed) = &grant.networks {
            match peer {
                Some(ip) if networks::allows(allowed, ip) => {}
                Some(ip) => {
                    return Err(Denial::new(
                        DenyKind::Forbidden,
                        NETWORK_NOT_ALLOWED,
                        format!("this API key may not be used from {}", ip.to_canonical()),
                    )
                    .with_rule("key.allowed_networks"));
                }
                None => {
                    return Err(Denial::new(
                        DenyKind::Forbidden,
                        NETWORK_NOT_ALLOWED,
                        "this API key is limited to some networks and the client address is unknown",
                    )
                    .with_rule("key.allowed_networks"));
                }
            }
        }
        self.uses.note(&grant.key.id, now);
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
        // Validated at creation; anything else in the store fails closed (503).
        let networks = key
            .allowed_networks
            .as_deref()
            .map(networks::parse_all)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("key `{}`: {e}", key.id)))?;
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
                    owner_groups: Vec::new(),
                    limits: key_limits.clone(),
                    scopes,
                    networks,
                },
                Some(u) => KeyGrant {
                    owner_groups: self.scim_groups(&u.username).await,
                    key,
                    owner_email: u.email,
                    owner_role: u.role,
                    owner_attributes: u.attributes,
                    owner_disabled: u.disabled,
                    limits: key_limits.clone(),
                    scopes,
                    networks,
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
                        owner_groups: Vec::new(),
                        limits: key_limits.clone(),
                        scopes,
                        networks,
                    },
                    Some(sa) => KeyGrant {
                        limits: StoredLimits::from_records(Some(&key), Some(&sa)),
                        key,
                        owner_email: None,
                        owner_role: Some(sa.role),
                        owner_attributes: sa.attributes,
                        owner_disabled: sa.disabled,
                        owner_groups: Vec::new(),
                        scopes,
                        networks,
                    },
                }
            }
        };
        Ok(Some(grant))
    }

    /// The SCIM groups of `username`. A store that cannot answer gives none: groups only
    /// ever add privilege (most privileged wins), so the owner falls back to the default
    /// role rather than failing every key.
    async fn scim_groups(&self, username: &str) -> Vec<String> {
        match self.store.scim_groups_for_user(username).await {
            Ok(groups) => groups,
            Err(e) => {
                tracing::debug!(error = %e, "SCIM groups unavailable for a key owner");
                Vec::new()
            }
        }
    }
}

/// The principal a key stands for under the current policy.
fn principal_for(grant: &KeyGrant, policy: &Policy) -> Principal {
    let (role, role_source) = match &grant.owner_role {
        Some(r) => (r.clone(), RoleSource::Binding),
        None => match policy.role_for_groups(&grant.owner_groups) {
            Some((r, true)) => (r.to_string(), RoleSource::Group),
            Some((r, false)) => (r.to_string(), RoleSource::Default),
            // No role at all: an empty name matches no role, so the policy refuses.
            None => (String::new(), RoleSource::Default),
        },
    };
    Principal {
        subject: grant.key.owner.name.clone(),
        kind: grant.key.owner.kind,
        email: grant.owner_email.clone(),
        groups: grant.owner_groups.clone(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::store::{OwnerRef, SqliteStore, UserRecord};

    const POLICY: &str = "
apis: [fooocus-api]
default_role: viewer
roles:
  viewer: {permissions: [generation:view]}
";

    async fn fixture(
        networks: Option<Vec<String>>,
    ) -> (tempfile::TempDir, KeyAuthenticator, String) {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        store
            .create_user(&UserRecord {
                username: "alice".into(),
                email: None,
                role: Some("viewer".into()),
                attributes: BTreeMap::new(),
                disabled: false,
                password_hash: None,
                created_at: 1,
            })
            .await
            .expect("user");
        let key = api_key::generate();
        store
            .create_key(&ApiKeyRecord {
                id: key.id.clone(),
                name: "k".into(),
                owner: OwnerRef {
                    kind: PrincipalKind::User,
                    name: "alice".into(),
                },
                secret_sha256: key.secret_sha256.clone(),
                scopes: None,
                daily_images: None,
                created_at: 1,
                expires_at: i64::MAX,
                revoked_at: None,
                allowed_networks: networks,
                last_used_at: None,
            })
            .await
            .expect("key");
        let auth = KeyAuthenticator::new(store, Duration::from_secs(60));
        (dir, auth, key.full)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[tokio::test]
    async fn a_key_limited_to_networks_is_refused_elsewhere_and_uses_are_noted() {
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("p");
        let nets = Some(vec!["10.0.0.0/8".to_string(), "127.0.0.1/32".to_string()]);
        let (_dir, auth, key) = fixture(nets).await;
        let (principal, _) = auth
            .authenticate(&key, &policy, 100, ip("10.2.3.4"))
            .await
            .expect("inside");
        assert_eq!(principal.subject, "alice");
        auth.authenticate(&key, &policy, 101, ip("::ffff:127.0.0.1"))
            .await
            .expect("mapped loopback is inside 127.0.0.1/32");
        assert_eq!(auth.uses().pending(), 1);

        let refused = auth
            .authenticate(&key, &policy, 102, ip("192.0.2.1"))
            .await
            .expect_err("outside");
        assert_eq!(refused.kind, DenyKind::Forbidden);
        assert_eq!(refused.error, NETWORK_NOT_ALLOWED);
        assert!(refused.reason.contains("192.0.2.1"), "{}", refused.reason);
        let unknown = auth
            .authenticate(&key, &policy, 103, None)
            .await
            .expect_err("unknown address fails closed");
        assert_eq!(unknown.error, NETWORK_NOT_ALLOWED);

        // A wrong secret never learns about networks.
        let wrong = format!("{}x", &key[..key.len() - 1]);
        let bad = auth
            .authenticate(&wrong, &policy, 104, ip("192.0.2.1"))
            .await
            .expect_err("bad secret");
        assert_eq!(bad.kind, DenyKind::Unauthenticated);
    }

    #[tokio::test]
    async fn scim_groups_give_a_key_owner_without_a_binding_its_role() {
        const GROUPS: &str = "
apis: [fooocus-api]
default_role: viewer
groups: {designers: designer}
roles:
  viewer: {permissions: [generation:view]}
  designer: {permissions: [generation:create, generation:view]}
";
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), GROUPS).expect("p");
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let scim_user = crate::store::ScimUserRecord {
            scim_id: "u1".into(),
            username: "bob".into(),
            external_id: None,
            display_name: None,
            given_name: None,
            family_name: None,
            email: None,
            active: true,
            created_at: 1,
            updated_at: 1,
        };
        let user = UserRecord {
            username: "bob".into(),
            email: None,
            role: None,
            attributes: BTreeMap::new(),
            disabled: false,
            password_hash: None,
            created_at: 1,
        };
        store
            .scim_create_user(&scim_user, &user)
            .await
            .expect("scim user");
        let key = api_key::generate();
        store
            .create_key(&ApiKeyRecord {
                id: key.id.clone(),
                name: "k".into(),
                owner: OwnerRef {
                    kind: PrincipalKind::User,
                    name: "bob".into(),
                },
                secret_sha256: key.secret_sha256.clone(),
                scopes: None,
                daily_images: None,
                created_at: 1,
                expires_at: i64::MAX,
                revoked_at: None,
                allowed_networks: None,
                last_used_at: None,
            })
            .await
            .expect("key");
        let auth = KeyAuthenticator::new(store.clone(), Duration::from_secs(60));
        let (p, _) = auth
            .authenticate(&key.full, &policy, 5, None)
            .await
            .expect("ok");
        assert_eq!(
            (p.role.as_str(), p.role_source),
            ("viewer", RoleSource::Default)
        );

        store
            .scim_create_group(&crate::store::ScimGroupRecord {
                scim_id: "g1".into(),
                display_name: "designers".into(),
                external_id: None,
                members: vec!["u1".into()],
                created_at: 2,
                updated_at: 2,
            })
            .await
            .expect("group");
        auth.invalidate_all();
        let (p, _) = auth
            .authenticate(&key.full, &policy, 6, None)
            .await
            .expect("ok");
        assert_eq!(
            (p.role.as_str(), p.role_source),
            ("designer", RoleSource::Group)
        );
        assert_eq!(p.groups, vec!["designers"]);
    }

    #[tokio::test]
    async fn an_unlimited_key_works_from_anywhere_even_without_an_address() {
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("p");
        let (_dir, auth, key) = fixture(None).await;
        auth.authenticate(&key, &policy, 100, None)
            .await
            .expect("no address needed");
        auth.authenticate(&key, &policy, 100, ip("203.0.113.9"))
            .await
            .expect("anywhere");
    }
}
