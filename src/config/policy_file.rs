//! `policy.yaml`: roles, group mapping, routes, compiled into a [`Policy`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::config::locate::{line_of, line_of_value};
use crate::domain::Permission;
use crate::inference::{ApiSet, BodyKind, PathPattern, Route, RouteTable};
use crate::policy::{NameSet, Policy, Role};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    apis: Vec<ApiSet>,
    default_role: Option<String>,
    #[serde(default)]
    groups: BTreeMap<String, String>,
    roles: BTreeMap<String, RoleFile>,
    #[serde(default)]
    templates: Vec<TemplateFile>,
    #[serde(default)]
    routes: Vec<RouteFile>,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    content: Option<ContentFile>,
}

/// A permission entry: a known permission or `"*"`.
#[derive(Debug)]
enum PermissionEntry {
    All,
    One(Permission),
}

impl<'de> Deserialize<'de> for PermissionEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(PermissionEntry::All);
        }
        s.parse()
            .map(PermissionEntry::One)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    permissions: Vec<PermissionEntry>,
    presets: Option<Vec<String>>,
    loras: Option<Vec<String>>,
    models: Option<Vec<String>>,
    max_images: Option<u32>,
    max_pixels: Option<u64>,
    daily_images: Option<u64>,
    monthly_images: Option<u64>,
    daily_requests: Option<u64>,
    daily_tokens: Option<u64>,
    #[serde(default)]
    templates_only: bool,
    #[serde(default)]
    require_mfa: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    method: Option<String>,
    path: String,
    permission: Permission,
    body: Option<BodyKind>,
    #[serde(default)]
    assertion: bool,
    #[serde(default)]
    require_mfa: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[allow(dead_code)]
    when: String,
    #[allow(dead_code)]
    effect: String,
    #[allow(dead_code)]
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentFile {
    #[allow(dead_code)]
    #[serde(default)]
    forbidden_terms: Vec<String>,
    #[allow(dead_code)]
    #[serde(default)]
    pii: Vec<String>,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Parses and validates policy.yaml text into a [`Policy`]; `path` names the file in errors.
pub fn compile_policy(path: &Path, text: &str) -> Result<Policy, ConfigError> {
    let file: PolicyFile =
        serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?;
    let err = |keys: &[&str], problem: String| ConfigError::new(path, line_of(text, keys), problem);

    // Features of later releases must not be silently ignored: an ignored deny rule or
    // content filter would let through what the author meant to stop.
    if let Some(rule) = file.rules.first() {
        return Err(err(
            &["rules"],
            format!(
                "rule `{}`: rules are not supported by this version",
                rule.name
            ),
        )
        .with_fix("remove `rules:` or upgrade inferguard"));
    }
    if file.content.is_some() {
        return Err(err(
            &["content"],
            "content filters are not supported by this version".into(),
        )
        .with_fix("remove `content:` or upgrade inferguard"));
    }
    if !file.templates.is_empty() {
        return Err(err(
            &["templates"],
            "templates are not supported by this version".into(),
        )
        .with_fix("remove `templates:` or upgrade inferguard"));
    }

    if file.roles.is_empty() {
        return Err(err(&["roles"], "no roles are defined".into())
            .with_fix("define at least one role under `roles:`"));
    }
    let mut roles = BTreeMap::new();
    for (name, rf) in file.roles {
        if !valid_name(&name) {
            return Err(err(
                &["roles", &name],
                format!("role name `{name}` is not valid"),
            )
            .with_fix("use letters, digits, `_`, `-` and `.`"));
        }
        if rf.templates_only {
            return Err(err(
                &["roles", &name, "templates_only"],
                "templates_only is not supported by this version".into(),
            )
            .with_fix("remove `templates_only` or upgrade inferguard"));
        }
        if rf.max_images == Some(0) {
            return Err(err(
                &["roles", &name, "max_images"],
                "max_images must be at least 1".into(),
            )
            .with_fix("remove generation:create from the role instead of setting 0"));
        }
        let mut permissions = BTreeSet::new();
        for p in &rf.permissions {
            match p {
                PermissionEntry::All => permissions.extend(Role::all_permissions()),
                PermissionEntry::One(p) => {
                    permissions.insert(*p);
                }
            }
        }
        for (field, list) in [
            ("presets", &rf.presets),
            ("loras", &rf.loras),
            ("models", &rf.models),
        ] {
            if let Some(items) = list
                && let Some(bad) = items.iter().find(|i| i.trim().is_empty())
            {
                return Err(ConfigError::new(
                    path,
                    line_of_value(text, &["roles", &name, field], bad),
                    format!("roles.{name}.{field} has an empty name"),
                ));
            }
        }
        let role = Role {
            name: name.clone(),
            permissions,
            presets: NameSet::from_list(rf.presets.as_deref()),
            loras: NameSet::from_list(rf.loras.as_deref()),
            models: NameSet::from_list(rf.models.as_deref()),
            max_images: rf.max_images,
            max_pixels: rf.max_pixels,
            daily_images: rf.daily_images,
            monthly_images: rf.monthly_images,
            daily_requests: rf.daily_requests,
            daily_tokens: rf.daily_tokens,
            require_mfa: rf.require_mfa,
        };
        roles.insert(name, role);
    }
    let known = || roles.keys().cloned().collect::<Vec<_>>().join(", ");

    if let Some(default) = &file.default_role
        && !roles.contains_key(default)
    {
        return Err(err(
            &["default_role"],
            format!("default_role `{default}` is not a defined role"),
        )
        .with_fix(format!("use one of: {}", known())));
    }
    for (group, role) in &file.groups {
        if !roles.contains_key(role) {
            return Err(err(
                &["groups", group],
                format!("group `{group}` maps to undefined role `{role}`"),
            )
            .with_fix(format!("use one of: {}", known())));
        }
    }

    let mut explicit = Vec::with_capacity(file.routes.len());
    for (i, rf) in file.routes.into_iter().enumerate() {
        let line = line_of_value(text, &["routes"], &rf.path);
        let method = match rf.method {
            None => None,
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(ConfigError::new(
                        path,
                        line,
                        format!("routes[{i}]: unknown method `{m}`"),
                    )
                    .with_fix(format!("use one of {}", METHODS.join(", "))));
                }
                Some(upper)
            }
        };
        let pattern: PathPattern = rf.path.parse().map_err(|e| {
            ConfigError::new(path, line, format!("routes[{i}]: {e}"))
                .with_fix("paths start with `/`; end with `*` for a prefix match")
        })?;
        explicit.push(Route {
            method,
            path: pattern,
            permission: rf.permission,
            body: rf.body,
            assertion: rf.assertion,
            require_mfa: rf.require_mfa,
        });
    }
    if file.apis.is_empty() && explicit.is_empty() {
        return Err(err(
            &["routes"],
            "no routes: every request would be denied".into(),
        )
        .with_fix("add `apis: [fooocus-api]` (or openai, tgi) or explicit `routes:`"));
    }

    Ok(Policy {
        version: hex::encode(&Sha256::digest(text.as_bytes())[..6]),
        default_role: file.default_role,
        groups: file.groups,
        roles,
        routes: RouteTable::new(&file.apis, explicit),
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
