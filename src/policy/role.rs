use std::collections::BTreeSet;

use crate::domain::{ALL_PERMISSIONS, Permission};

/// A set of allowed names: any, or exactly these (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSet {
    Any,
    Only(BTreeSet<String>),
}

impl NameSet {
    /// Builds from a policy list, where `"*"` means any; `None` (absent) also means any.
    pub fn from_list(list: Option<&[String]>) -> NameSet {
        match list {
            None => NameSet::Any,
            Some(items) if items.iter().any(|i| i == "*") => NameSet::Any,
            Some(items) => NameSet::Only(items.iter().cloned().collect()),
        }
    }

    /// True when `name` is allowed.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            NameSet::Any => true,
            NameSet::Only(set) => set.contains(name),
        }
    }
}

/// A role's capabilities as compiled from policy.yaml.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
    pub presets: NameSet,
    pub loras: NameSet,
    pub models: NameSet,
    /// Images per request; `None` = the API's maximum.
    pub max_images: Option<u32>,
    /// Width × height ceiling; `None` = any.
    pub max_pixels: Option<u64>,
    pub daily_images: Option<u64>,
    pub monthly_images: Option<u64>,
    pub daily_requests: Option<u64>,
    pub daily_tokens: Option<u64>,
    pub require_mfa: bool,
    /// Prompts must match an approved template (`templates_only: true`).
    pub templates_only: bool,
}

impl Role {
    /// A role with the given permissions and no other limits.
    pub fn new(name: impl Into<String>, permissions: impl IntoIterator<Item = Permission>) -> Role {
        Role {
            name: name.into(),
            permissions: permissions.into_iter().collect(),
            presets: NameSet::Any,
            loras: NameSet::Any,
            models: NameSet::Any,
            max_images: None,
            max_pixels: None,
            daily_images: None,
            monthly_images: None,
            daily_requests: None,
            daily_tokens: None,
            require_mfa: false,
            templates_only: false,
        }
    }

    /// True when the role grants `permission`.
    pub fn grants(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// A ranking used when several IdP groups map to different roles: more permissions first,
    /// then fewer limits.
    pub fn privilege(&self) -> (usize, usize) {
        let open = [&self.presets, &self.loras, &self.models]
            .iter()
            .filter(|s| ***s == NameSet::Any)
            .count()
            + usize::from(self.max_images.is_none())
            + usize::from(self.max_pixels.is_none())
            + usize::from(self.daily_images.is_none())
            + usize::from(!self.templates_only);
        (self.permissions.len(), open)
    }

    /// Every permission, for `permissions: ["*"]`.
    pub fn all_permissions() -> impl Iterator<Item = Permission> {
        ALL_PERMISSIONS.into_iter()
    }
}
