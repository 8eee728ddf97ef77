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

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::domain::{
    AuthMethod, Denial, DenyKind, Permission, Principal, PrincipalKind, RoleSource,
};
use crate::identity::cache::FeedCache;
use crate::identity::key_uses::KeyUses;
use crate::identity::networks::{self, Cidr};
use crate::identity::{api_key, unauthenticated};
use crate::policy::{Policy, StoredLimits};
use crate::store::{DynStore, StoreError};

/// The keys cached at most (one entry per key id looked up, unknown ids included).
pub const CACHE_CAPACITY: u64 = 200_000;

/// What a Check needs of a key and of its owner's state at load time, and nothing else: the
/// cache holds one per key in the store, so it is kept small (about 100 bytes, the owner's
/// state shared by all of the owner's keys).
#[derive(Debug)]
pub struct KeyGrant {
    /// The stored SHA-256 of the secret; `None` when the stored text is not one, which
    /// matches no secret.
    secret_sha256: Option<[u8; 32]>,
    expires_at: i64,
    revoked: bool,
    /// The key's scopes, parsed.
    scopes: Option<Box<[Permission]>>,
    /// The networks the key may be used from, parsed; `None` = anywhere.
    networks: Option<Box<[Cidr]>>,
    /// `keys create --daily-images`.
    key_daily_images: Option<u64>,
    owner: Arc<KeyOwner>,
}

/// The state of a key's owner at load time, shared by the cached keys of one owner.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyOwner {
    kind: PrincipalKind,
    name: String,
    email: Option<String>,
    /// The owner's explicit role (always set for service accounts).
    role: Option<String>,
    attributes: BTreeMap<String, String>,
    /// A missing owner counts as disabled (fail closed).
    disabled: bool,
    /// The SCIM groups of a user owner (policy.yaml `groups:` maps them to a role when the
    /// owner has no explicit role).
    groups: Vec<String>,
    /// A service account's `--daily-images`.
    account_daily_images: Option<u64>,
    /// A service account's `--daily-tokens`.
    account_daily_tokens: Option<u64>,
}

impl KeyGrant {
    /// The quota limits kept with the key and its service account.
    fn limits(&self) -> StoredLimits {
        StoredLimits {
            key_daily_images: self.key_daily_images,
            account_daily_images: self.owner.account_daily_images,
            account_daily_tokens: self.owner.account_daily_tokens,
        }
    }
}

/// One shared [`KeyOwner`] per distinct owner state among the cached keys. The store is read
/// for every key loaded, as before; a freshly read state equal to one already held is
/// replaced by that one, so 100,000 keys of a few owners hold a few owner states.
#[derive(Debug, Default)]
struct Owners {
    held: Mutex<OwnersInner>,
}

#[derive(Debug, Default)]
struct OwnersInner {
    by_name: HashMap<(bool, String), Weak<KeyOwner>>,
    /// Map size at which dead entries are next pruned.
    prune_at: usize,
}

impl Owners {
    /// `fresh`, or an equal owner state already held.
    fn intern(&self, fresh: KeyOwner) -> Arc<KeyOwner> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let name = (fresh.kind == PrincipalKind::User, fresh.name.clone());
        if let Some(existing) = held.by_name.get(&name).and_then(Weak::upgrade)
            && *existing == fresh
        {
            return existing;
        }
        let fresh = Arc::new(fresh);
        held.by_name.insert(name, Arc::downgrade(&fresh));
        if held.by_name.len() >= held.prune_at {
            held.by_name.retain(|_, owner| owner.strong_count() > 0);
            held.prune_at = (held.by_name.len() * 2).max(64);
        }
        fresh
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().expect("owners").by_name.len()
    }
}

/// Authenticates `fk_…` keys.
pub struct KeyAuthenticator {
    store: DynStore,
    /// By [`api_key::id_bits`] of the key id.
    cache: FeedCache<u64, Option<Arc<KeyGrant>>>,
    owners: Owners,
    uses: Arc<KeyUses>,
}

/// The error code of a key used from outside its allowed networks.
pub const NETWORK_NOT_ALLOWED: &str = "key_network_not_allowed";

impl KeyAuthenticator {
    /// A key authenticator over `store`, caching each entry at most `ttl`.
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        KeyAuthenticator {
            store,
            cache: FeedCache::new(CACHE_CAPACITY, ttl),
            owners: Owners::default(),
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
        let secret_ok = grant
            .secret_sha256
            .as_ref()
            .is_some_and(|stored| api_key::secret_matches_digest(presented.secret, stored));
        if !secret_ok {
            return Err(invalid());
        }
        // Only a caller holding the right secret learns why a real key no longer works.
        if grant.revoked {
            return Err(unauthenticated(
                "revoked_api_key",
                "the API key has been revoked",
            ));
        }
        if grant.expires_at <= now {
            return Err(unauthenticated(
                "expired_api_key",
                "the API key has expired",
            ));
        }
        if grant.owner.disabled {
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
        // The presented id is the stored one: the store found the key by exact match.
        self.uses.note(presented.id, now);
        Ok((principal_for(&grant, presented.id, policy), grant.limits()))
    }

    /// Drops one key from the cache.
    pub async fn invalidate_key(&self, id: &str) {
        // An id that is not well-formed can never have been looked up, so never cached.
        if let Some(bits) = api_key::id_bits(id) {
            self.cache.invalidate(&bits).await;
        }
    }

    /// Drops every cached key (an owner changed, or the change feed was lost).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    async fn grant(&self, id: &str) -> Result<Option<Arc<KeyGrant>>, StoreError> {
        // `id` comes from `api_key::parse`, so it is well-formed; anything else is unknown.
        let Some(bits) = api_key::id_bits(id) else {
            return Ok(None);
        };
        self.cache
            .get_or_load(&bits, async { Ok(self.load(id).await?.map(Arc::new)) })
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
                    .collect::<Result<Box<[_]>, _>>()?,
            ),
        };
        // Validated at creation; anything else in the store fails closed (503).
        let networks = key
            .allowed_networks
            .as_deref()
            .map(networks::parse_all)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("key `{}`: {e}", key.id)))?
            .map(Vec::into_boxed_slice);
        let missing = |kind| KeyOwner {
            kind,
            name: key.owner.name.clone(),
            email: None,
            role: None,
            attributes: BTreeMap::new(),
            disabled: true,
            groups: Vec::new(),
            account_daily_images: None,
            account_daily_tokens: None,
        };
        let owner = match key.owner.kind {
            // A key whose owner vanished is treated as a disabled owner: fail closed.
            PrincipalKind::User => match self.store.get_user(&key.owner.name).await? {
                None => missing(PrincipalKind::User),
                Some(u) => KeyOwner {
                    kind: PrincipalKind::User,
                    name: key.owner.name.clone(),
                    groups: self.scim_groups(&u.username).await,
                    email: u.email,
                    role: u.role,
                    attributes: u.attributes,
                    disabled: u.disabled,
                    account_daily_images: None,
                    account_daily_tokens: None,
                },
            },
            PrincipalKind::ServiceAccount => {
                match self.store.get_service_account(&key.owner.name).await? {
                    None => missing(PrincipalKind::ServiceAccount),
                    Some(sa) => {
                        let limits = StoredLimits::from_records(None, Some(&sa));
                        KeyOwner {
                            kind: PrincipalKind::ServiceAccount,
                            name: key.owner.name.clone(),
                            email: None,
                            role: Some(sa.role),
                            attributes: sa.attributes,
                            disabled: sa.disabled,
                            groups: Vec::new(),
                            account_daily_images: limits.account_daily_images,
                            account_daily_tokens: limits.account_daily_tokens,
                        }
                    }
                }
            }
        };
        Ok(Some(KeyGrant {
            secret_sha256: api_key::decode_sha256(&key.secret_sha256),
            expires_at: key.expires_at,
            revoked: key.revoked_at.is_some(),
            key_daily_images: StoredLimits::from_records(Some(&key), None).key_daily_images,
            scopes,
            networks,
            owner: self.owners.intern(owner),
        }))
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

/// The principal key `key_id` stands for under the current policy.
fn principal_for(grant: &KeyGrant, key_id: &str, policy: &Policy) -> Principal {
    let owner = &grant.owner;
    let (role, role_source) = match &owner.role {
        Some(r) => (r.clone(), RoleSource::Binding),
        None => match policy.role_for_groups(&owner.groups) {
            Some((r, true)) => (r.to_string(), RoleSource::Group),
            Some((r, false)) => (r.to_string(), RoleSource::Default),
            // No role at all: an empty name matches no role, so the policy refuses.
            None => (String::new(), RoleSource::Default),
        },
    };
    Principal {
        subject: owner.name.clone(),
        kind: owner.kind,
        email: owner.email.clone(),
        groups: owner.groups.clone(),
        role,
        role_source,
        auth: AuthMethod::ApiKey,
        key_id: Some(key_id.to_string()),
        scopes: grant.scopes.as_deref().map(<[Permission]>::to_vec),
        session_id: None,
        mfa: false,
        attributes: owner.attributes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::store::{ApiKeyRecord, OwnerRef, SqliteStore, UserRecord};

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

    async fn add_key(store: &DynStore, owner: OwnerRef, daily_images: Option<i64>) -> String {
        let key = api_key::generate();
        store
            .create_key(&ApiKeyRecord {
                id: key.id.clone(),
                name: "k".into(),
                owner,
                secret_sha256: key.secret_sha256.clone(),
                scopes: Some(vec!["generation:view".into()]),
                daily_images,
                created_at: 1,
                expires_at: 1_000,
                revoked_at: None,
                allowed_networks: None,
                last_used_at: None,
            })
            .await
            .expect("key");
        key.full
    }

    fn alice() -> OwnerRef {
        OwnerRef {
            kind: PrincipalKind::User,
            name: "alice".into(),
        }
    }

    #[tokio::test]
    async fn keys_of_one_owner_share_its_state_and_see_its_changes_after_invalidation() {
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("p");
        let (_dir, auth, first) = fixture(None).await;
        let store = auth.store.clone();
        let second = add_key(&store, alice(), Some(7)).await;
        let (p1, l1) = auth
            .authenticate(&first, &policy, 100, None)
            .await
            .expect("1");
        let (p2, l2) = auth
            .authenticate(&second, &policy, 100, None)
            .await
            .expect("2");
        assert_eq!(
            (p1.subject.as_str(), p2.subject.as_str()),
            ("alice", "alice")
        );
        assert_eq!(p2.key_id.as_deref(), Some(&second[3..19]));
        assert_eq!(p2.scopes, Some(vec![Permission::GenerationView]));
        assert_eq!((l1.key_daily_images, l2.key_daily_images), (None, Some(7)));
        let g1 = auth.grant(&first[3..19]).await.expect("g").expect("some");
        let g2 = auth.grant(&second[3..19]).await.expect("g").expect("some");
        assert!(
            Arc::ptr_eq(&g1.owner, &g2.owner),
            "one owner state for both keys"
        );
        assert_eq!(auth.owners.len(), 1);

        // Expiry is judged at each request, cached or not.
        let expired = auth
            .authenticate(&second, &policy, 1_000, None)
            .await
            .expect_err("expired");
        assert_eq!(expired.error, "expired_api_key");

        // A disabled owner is seen once the change feed drops the cached keys.
        store.disable_user("alice").await.expect("disable");
        auth.authenticate(&first, &policy, 101, None)
            .await
            .expect("still cached");
        auth.invalidate_all();
        for key in [&first, &second] {
            let refused = auth
                .authenticate(key, &policy, 102, None)
                .await
                .expect_err("disabled");
            assert_eq!(refused.error, "disabled_principal");
        }
        drop((g1, g2));
        let g3 = auth.grant(&first[3..19]).await.expect("g").expect("some");
        assert!(g3.owner.disabled);
    }

    #[tokio::test]
    async fn a_revoked_key_is_refused_once_the_feed_names_it() {
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("p");
        let (_dir, auth, key) = fixture(None).await;
        auth.authenticate(&key, &policy, 100, None)
            .await
            .expect("ok");
        auth.store
            .revoke_key(&key[3..19], 100)
            .await
            .expect("revoke");
        auth.invalidate_key("not-a-key-id").await; // ignored, never cached
        auth.authenticate(&key, &policy, 101, None)
            .await
            .expect("cached until the feed names it");
        auth.invalidate_key(&key[3..19]).await;
        let refused = auth
            .authenticate(&key, &policy, 102, None)
            .await
            .expect_err("revoked");
        assert_eq!(refused.error, "revoked_api_key");
        // A wrong secret still learns nothing.
        let wrong = format!("{}x", &key[..key.len() - 1]);
        let bad = auth
            .authenticate(&wrong, &policy, 103, None)
            .await
            .expect_err("bad secret");
        assert_eq!(bad.error, "invalid_api_key");
    }

    #[tokio::test]
    async fn service_account_keys_carry_the_account_and_key_limits() {
        let policy = crate::config::compile_policy(Path::new("policy.yaml"), POLICY).expect("p");
        let (_dir, auth, _) = fixture(None).await;
        auth.store
            .create_service_account(&crate::store::ServiceAccountRecord {
                name: "batch".into(),
                role: "viewer".into(),
                attributes: BTreeMap::from([("team".to_string(), "x".to_string())]),
                daily_images: Some(5),
                daily_tokens: Some(-1),
                disabled: false,
                created_at: 1,
            })
            .await
            .expect("sa");
        let owner = OwnerRef {
            kind: PrincipalKind::ServiceAccount,
            name: "batch".into(),
        };
        let key = add_key(&auth.store, owner.clone(), Some(3)).await;
        let (p, limits) = auth
            .authenticate(&key, &policy, 100, None)
            .await
            .expect("ok");
        assert_eq!(p.kind, PrincipalKind::ServiceAccount);
        assert_eq!(
            (p.role.as_str(), p.role_source),
            ("viewer", RoleSource::Binding)
        );
        assert_eq!(p.attributes.get("team").map(String::as_str), Some("x"));
        assert_eq!(
            limits,
            StoredLimits {
                key_daily_images: Some(3),
                account_daily_images: Some(5),
                account_daily_tokens: Some(0),
            }
        );
        // A key whose owner is gone fails closed.
        let orphan = add_key(
            &auth.store,
            OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                name: "gone".into(),
            },
            None,
        )
        .await;
        let refused = auth
            .authenticate(&orphan, &policy, 100, None)
            .await
            .expect_err("no owner");
        assert_eq!(refused.error, "disabled_principal");
    }

    #[test]
    fn equal_owner_states_are_shared_and_dead_ones_pruned() {
        let owners = Owners::default();
        let state = |name: &str, disabled| KeyOwner {
            kind: PrincipalKind::User,
            name: name.into(),
            email: None,
            role: None,
            attributes: BTreeMap::new(),
            disabled,
            groups: vec!["g".into()],
            account_daily_images: None,
            account_daily_tokens: None,
        };
        let a = owners.intern(state("a", false));
        let a2 = owners.intern(state("a", false));
        assert!(Arc::ptr_eq(&a, &a2));
        let a3 = owners.intern(state("a", true));
        assert!(
            !Arc::ptr_eq(&a, &a3),
            "a changed state is never replaced by an old one"
        );
        assert!(a3.disabled);
        let sa = owners.intern(KeyOwner {
            kind: PrincipalKind::ServiceAccount,
            ..state("a", true)
        });
        assert!(!Arc::ptr_eq(&a3, &sa), "kinds are told apart");
        drop((a, a2, a3, sa));
        for i in 0..200 {
            drop(owners.intern(state(&format!("u{i}"), false)));
        }
        assert!(owners.len() < 130, "{} owner entries kept", owners.len());
    }

    #[test]
    fn a_cached_grant_stays_small() {
        assert!(
            std::mem::size_of::<KeyGrant>() <= 112,
            "{}",
            std::mem::size_of::<KeyGrant>()
        );
    }
}
