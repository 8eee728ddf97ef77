use std::fmt;
use std::str::FromStr;

/// A permission a route requires and a role or key scope grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    GenerationCreate,
    GenerationView,
    GenerationUpscale,
    ModelsView,
    ModelsLoadLora,
    ApprovalsDecide,
    TemplatesManage,
    AdminViewLogs,
    AdminManageKeys,
    AdminManageUsers,
}

/// Every permission, in the order DESIGN.md lists them.
pub const ALL_PERMISSIONS: [Permission; 10] = [
    Permission::GenerationCreate,
    Permission::GenerationView,
    Permission::GenerationUpscale,
    Permission::ModelsView,
    Permission::ModelsLoadLora,
    Permission::ApprovalsDecide,
    Permission::TemplatesManage,
    Permission::AdminViewLogs,
    Permission::AdminManageKeys,
    Permission::AdminManageUsers,
];

impl Permission {
    /// The wire name, e.g. `generation:create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::GenerationCreate => "generation:create",
            Permission::GenerationView => "generation:view",
            Permission::GenerationUpscale => "generation:upscale",
            Permission::ModelsView => "models:view",
            Permission::ModelsLoadLora => "models:load_lora",
            Permission::ApprovalsDecide => "approvals:decide",
            Permission::TemplatesManage => "templates:manage",
            Permission::AdminViewLogs => "admin:view_logs",
            Permission::AdminManageKeys => "admin:manage_keys",
            Permission::AdminManageUsers => "admin:manage_users",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission name that inferguard does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown permission `{0}` (known: generation:create, generation:view, generation:upscale, models:view, models:load_lora, approvals:decide, templates:manage, admin:view_logs, admin:manage_keys, admin:manage_users)"
)]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_PERMISSIONS
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

impl<'de> serde::Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in ALL_PERMISSIONS {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        assert!("generation:delete".parse::<Permission>().is_err());
        assert!("Generation:Create".parse::<Permission>().is_err());
    }
}
