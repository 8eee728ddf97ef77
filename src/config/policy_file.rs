//! `policy.yaml`: roles, group mapping, routes, templates, content filters and rules, compiled
//! into a [`Policy`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::config::locate::{line_of, line_of_value};
use crate::domain::Permission;
use crate::inference::{ApiSet, BodyKind, PathPattern, Route, RouteTable};
use crate::policy::content::{ContentError, ContentSpec, DlpSpec};
use crate::policy::{
    ContentPolicy, Effect, NameSet, PiiAction, PiiCategory, Policy, Role, RuleSet, RuleSpec,
    Template,
};

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
    name: String,
    text: String,
    max_words: Option<usize>,
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
    when: String,
    effect: EffectFile,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EffectFile {
    Deny,
    RequireApproval,
    Allow,
}

impl From<EffectFile> for Effect {
    fn from(e: EffectFile) -> Effect {
        match e {
            EffectFile::Deny => Effect::Deny,
            EffectFile::RequireApproval => Effect::RequireApproval,
            EffectFile::Allow => Effect::Allow,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentFile {
    #[serde(default)]
    forbidden_terms: Vec<String>,
    /// A list of detectors (each `deny`) or a map detector → `deny` | `redact`.
    #[serde(default)]
    pii: Option<serde_yaml::Value>,
    dlp: Option<DlpFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DlpFile {
    url: String,
    timeout_ms: Option<u64>,
    token_env: Option<String>,
}

/// Default time allowed for a DLP answer.
const DLP_TIMEOUT_MS: u64 = 1000;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Parses and validates policy.yaml text into a [`Policy`]; `path` names the file in errors.
pub fn compile_policy(path: &Path, text: &str) -> Result<Policy, ConfigError> {
    let file: PolicyFile =
        serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?;
    let err = |keys: &[&str], problem: String| ConfigError::new(path, line_of(text, keys), problem);

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
            templates_only: rf.templates_only,
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

    let templates = compile_templates(path, text, file.templates)?;
    let content = compile_content(path, text, file.content)?;
    let rules = compile_rules(path, text, file.rules)?;
    if rules.uses_pii() && !content.detects_pii() {
        return Err(err(
            &["rules"],
            "rules read request.contains_pii or request.pii, but content.pii enables no detector, so they would never see PII".into(),
        )
        .with_fix("enable detectors, e.g. `content: {pii: {email: redact, credit_card: deny}}`"));
    }

    Ok(Policy {
        version: hex::encode(&Sha256::digest(text.as_bytes())[..6]),
        default_role: file.default_role,
        groups: file.groups,
        roles,
        routes: RouteTable::new(&file.apis, explicit),
        rules,
        content,
        templates,
    })
}

fn compile_templates(
    path: &Path,
    text: &str,
    files: Vec<TemplateFile>,
) -> Result<Vec<Template>, ConfigError> {
    let mut templates: Vec<Template> = Vec::with_capacity(files.len());
    for (i, tf) in files.into_iter().enumerate() {
        let line = item_line(text, "templates", 0, &tf.name);
        let fail = |problem: String| {
            ConfigError::new(
                path,
                line,
                format!("templates[{i}] `{}`: {problem}", tf.name),
            )
        };
        if !valid_name(&tf.name) {
            return Err(fail("the name is not valid".into())
                .with_fix("use letters, digits, `_`, `-` and `.`"));
        }
        if templates.iter().any(|t| t.name == tf.name) {
            return Err(ConfigError::new(
                path,
                item_line(text, "templates", 1, &tf.name),
                format!(
                    "templates[{i}] `{}`: the name is used by an earlier template",
                    tf.name
                ),
            ));
        }
        let mut template = Template::new(tf.name.clone(), tf.text.clone()).map_err(|e| {
            fail(e.to_string()).with_fix("write placeholders as {name}, separated by text")
        })?;
        if let Some(n) = tf.max_words {
            template = template
                .with_max_words(n)
                .map_err(|e| fail(e.to_string()))?;
        }
        templates.push(template);
    }
    Ok(templates)
}

fn compile_content(
    path: &Path,
    text: &str,
    file: Option<ContentFile>,
) -> Result<ContentPolicy, ConfigError> {
    let Some(cf) = file else {
        return Ok(ContentPolicy::default());
    };
    let mut pii = BTreeMap::new();
    let pii_line = || line_of(text, &["content", "pii"]);
    let known = PiiCategory::ALL.map(PiiCategory::as_str).join(", ");
    let category = |name: &serde_yaml::Value| -> Result<PiiCategory, ConfigError> {
        let found = name.as_str().and_then(PiiCategory::parse);
        found.ok_or_else(|| {
            let shown = name
                .as_str()
                .map_or_else(|| format!("{name:?}"), str::to_string);
            ConfigError::new(
                path,
                line_of_value(text, &["content", "pii"], &shown),
                format!("content.pii: unknown detector `{shown}`"),
            )
            .with_fix(format!("use one of: {known}"))
        })
    };
    match &cf.pii {
        None | Some(serde_yaml::Value::Null) => {}
        Some(serde_yaml::Value::Sequence(list)) => {
            for name in list {
                pii.insert(category(name)?, PiiAction::Deny);
            }
        }
        Some(serde_yaml::Value::Mapping(map)) => {
            for (name, action) in map {
                let c = category(name)?;
                let a = action.as_str().and_then(PiiAction::parse).ok_or_else(|| {
                    ConfigError::new(
                        path,
                        line_of_value(text, &["content", "pii"], c.as_str()),
                        format!(
                            "content.pii.{}: the action must be `deny` or `redact`",
                            c.as_str()
                        ),
                    )
                })?;
                pii.insert(c, a);
            }
        }
        Some(_) => {
            return Err(ConfigError::new(
                path,
                pii_line(),
                "content.pii must be a list of detectors or a map detector: deny|redact",
            )
            .with_fix(format!(
                "e.g. `pii: [email, credit_card]` or `pii: {{email: redact}}`; detectors: {known}"
            )));
        }
    }
    let dlp = cf.dlp.map(|d| DlpSpec {
        url: d.url,
        timeout_ms: d.timeout_ms.unwrap_or(DLP_TIMEOUT_MS),
        token_env: d.token_env,
    });
    let spec = ContentSpec {
        forbidden_terms: cf.forbidden_terms,
        pii,
        dlp,
    };
    ContentPolicy::compile(spec).map_err(|e| {
        let line = match &e {
            ContentError::Term(_) => line_of(text, &["content", "forbidden_terms"]),
            ContentError::Dlp(_) => line_of(text, &["content", "dlp"]),
        };
        ConfigError::new(path, line, format!("content.{e}"))
    })
}

fn compile_rules(path: &Path, text: &str, files: Vec<RuleFile>) -> Result<RuleSet, ConfigError> {
    let names: Vec<String> = files.iter().map(|r| r.name.clone()).collect();
    let mut specs = Vec::with_capacity(files.len());
    for (i, rf) in files.into_iter().enumerate() {
        if !valid_name(&rf.name) {
            return Err(ConfigError::new(
                path,
                item_line(text, "rules", 0, &rf.name),
                format!("rules[{i}]: rule name `{}` is not valid", rf.name),
            )
            .with_fix("use letters, digits, `_`, `-` and `.`"));
        }
        specs.push(RuleSpec {
            name: rf.name,
            when: rf.when,
            effect: rf.effect.into(),
            message: rf.message,
        });
    }
    RuleSet::compile(specs).map_err(|e| {
        let occurrence = names[..e.index].iter().filter(|n| **n == e.rule).count();
        let line = item_line(text, "rules", occurrence, &e.rule);
        let err = ConfigError::new(path, line, format!("rules[{}]: {e}", e.index));
        match e.fix {
            Some(fix) => err.with_fix(fix),
            None => err,
        }
    })
}

/// The line of an item of the top-level list `section`, found by its `name:`; `occurrence`
/// counts earlier items of the same name (for duplicates). Falls back to the section's line.
fn item_line(text: &str, section: &str, occurrence: usize, name: &str) -> Option<usize> {
    let from = line_of(text, &[section])?;
    let names_it = |l: &str| {
        l.match_indices("name:").any(|(i, _)| {
            let key_start = i == 0 || !l[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            let value = l[i + 5..].trim_start().trim_start_matches(['"', '\'']);
            key_start
                && value.strip_prefix(name).is_some_and(|rest| {
                    !rest.starts_with(|c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                })
        })
    };
    text.lines()
        .enumerate()
        .skip(from)
        .take_while(|(_, l)| {
            // Stop at the next top-level key.
            l.starts_with([' ', '-', '\t']) || l.trim().is_empty() || l.starts_with('#')
        })
        .filter(|(_, l)| names_it(l))
        .nth(occurrence)
        .map(|(i, _)| i + 1)
        .or(Some(from))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
