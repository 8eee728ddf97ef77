//! Records of SCIM 2.0 provisioning (users and groups an IdP such as Okta or Entra ID pushes)
//! and of user deactivation.

/// The SCIM view of a store user: the SCIM resource id and the IdP's attributes, linked to
/// one `users` row by username (the SCIM `userName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserRecord {
    /// The SCIM resource id inferguard assigned (a UUID).
    pub scim_id: String,
    /// The store username (SCIM `userName`).
    pub username: String,
    /// The IdP's own id for the user (SCIM `externalId`).
    pub external_id: Option<String>,
    /// SCIM `displayName`.
    pub display_name: Option<String>,
    /// SCIM `name.givenName`.
    pub given_name: Option<String>,
    /// SCIM `name.familyName`.
    pub family_name: Option<String>,
    /// The primary email (also stored on the user).
    pub email: Option<String>,
    /// SCIM `active` (the inverse of the user's `disabled`).
    pub active: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change (SCIM `meta.lastModified`).
    pub updated_at: i64,
}

/// A SCIM group: its display name is what policy.yaml's `groups:` maps to a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroupRecord {
    /// The SCIM resource id inferguard assigned (a UUID).
    pub scim_id: String,
    /// SCIM `displayName`; unique; the group name matched against policy.yaml's `groups:`.
    pub display_name: String,
    /// The IdP's own id for the group (SCIM `externalId`).
    pub external_id: Option<String>,
    /// SCIM ids of the member users, sorted.
    pub members: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change (SCIM `meta.lastModified`).
    pub updated_at: i64,
}

/// One change to a SCIM group, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimGroupChange {
    /// A new display name.
    pub display_name: Option<String>,
    /// A new external id (`Some(None)` clears it).
    pub external_id: Option<Option<String>>,
    /// Replaces the whole member list (applied before `add` and `remove`).
    pub replace_members: Option<Vec<String>>,
    /// Member SCIM user ids to add.
    pub add_members: Vec<String>,
    /// Member SCIM user ids to remove.
    pub remove_members: Vec<String>,
}

/// What deactivating a user did, all in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeactivationOutcome {
    /// False when the user was disabled already.
    pub newly_disabled: bool,
    /// Hashes of the browser sessions ended.
    pub sessions_ended: Vec<String>,
    /// Ids of the API keys revoked (those not revoked before).
    pub keys_revoked: Vec<String>,
    /// How many refresh tokens were revoked.
    pub refresh_tokens_revoked: u64,
}
