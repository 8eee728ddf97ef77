//! Store-side state of token-authenticated users (role binding, disabled flag, attributes),
//! cached and dropped by the change feed, and the principal a verified token stands for.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{AuthMethod, Denial, Principal, PrincipalKind, RoleSource};
use crate::identity::cache::FeedCache;
use crate::identity::jwt::VerifiedToken;
use crate::identity::unauthenticated;
use crate::policy::Policy;
use crate::store::{DynStore, StoreError, UserRecord};

/// Cached user records by username (IdP `sub` or local username).
pub struct UserDirectory {
    store: DynStore,
    cache: FeedCache<String, Option<Arc<UserRecord>>>,
}

impl UserDirectory {
    /// A directory over `store`, caching each record at most `ttl`.
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        UserDirectory {
            store,
            cache: FeedCache::new(200_000, ttl),
        }
    }

    /// The user's record, if the store has one.
    pub async fn get(&self, username: &str) -> Result<Option<Arc<UserRecord>>, StoreError> {
        let key = username.to_string();
        self.cache
            .get_or_load(&key, async {
                Ok(self.store.get_user(username).await?.map(Arc::new))
            })
            .await
    }

    /// Drops one user.
    pub async fn invalidate(&self, username: &str) {
        self.cache.invalidate(&username.to_string()).await;
    }

    /// Drops every user.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// The principal a verified token stands for: an explicit role binding in the store wins,
/// then the IdP groups mapped by the policy (most privileged first), then `default_role`.
/// A disabled user is refused at once, whatever the token's remaining life.
pub fn principal_from_token(
    token: &VerifiedToken,
    user: Option<&UserRecord>,
    policy: &Policy,
) -> Result<Principal, Denial> {
    if user.is_some_and(|u| u.disabled) {
        return Err(unauthenticated(
            "disabled_principal",
            "the user is disabled",
        ));
    }
    let (role, role_source) = match user.and_then(|u| u.role.clone()) {
        Some(r) => (r, RoleSource::Binding),
        None => match policy.role_for_groups(&token.groups) {
            Some((r, true)) => (r.to_string(), RoleSource::Group),
            Some((r, false)) => (r.to_string(), RoleSource::Default),
            // No role at all: an empty name matches no role, so the policy refuses.
            None => (String::new(), RoleSource::Default),
        },
    };
    let mut attributes = token.attributes.clone();
    if let Some(u) = user {
        // Attributes an administrator set in the store override the IdP's claims.
        attributes.extend(u.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Ok(Principal {
        subject: token.subject.clone(),
        kind: PrincipalKind::User,
        email: token
            .email
            .clone()
            .or_else(|| user.and_then(|u| u.email.clone())),
        groups: token.groups.clone(),
        role,
        role_source,
        auth: AuthMethod::Jwt,
        key_id: None,
        scopes: None,
        session_id: None,
        mfa: crate::identity::oidc::amr_indicates_mfa(&token.amr),
        attributes,
    })
}
