//! `inferguard report …`: compliance reports read from the store and the audit trail.
//!
//! * `access-review` — every user and service account with its role, where the role comes
//!   from, whether it is disabled, its last activity in the trail and its active keys.
//! * `keys` — the API key inventory with status, expiry reminders and last use.
//! * `permission-changes` — admin events about users, service accounts, roles, keys,
//!   templates, approvals and policy reloads.
//! * `generations` — allowed generation decisions, optionally a deterministic sample.
//!
//! Reports only read: the store directly and the daily trail files beside the configured
//! `audit.file` base name (never through the trail writer, so no lock is taken and a running
//! `serve` is not disturbed). They do not verify the hash chain (that is `audit verify`);
//! lines that are not JSON objects (such as a torn last line) are skipped and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::keys::key_status;
use super::users::{format_time, render_json, render_table};
use crate::config::ServerConfig;
use crate::store::DynStore;

/// Days before expiry from which an active key is flagged `expires_soon`.
pub const EXPIRY_REMINDER_DAYS: i64 = 14;

/// What a text cell shows when a value is absent.
const NONE: &str = "—";

/// What trail-based cells show when no `audit.file` is configured.
const NO_TRAIL: &str = "no trail configured";

/// Admin actions (by prefix) that `permission-changes` reports.
const PERMISSION_ACTION_PREFIXES: [&str; 7] = [
    "user.",
    "service_account.",
    "role.",
    "key.",
    "template.",
    "approval.",
    "policy.",
];

/// Permissions that make a decision a generation for `generations`.
const GENERATION_PERMISSIONS: [&str; 2] = ["generation:create", "generation:upscale"];

/// `inferguard report …`
#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Every user and service account: role, role source, disabled, last activity (from the
    /// audit trail) and number of active API keys.
    AccessReview {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// API key inventory: owner, scopes, status, days until expiry (`expires_soon` within
    /// `--expiring-within` days) and last use (recorded by the servers, or the audit trail's
    /// latest, whichever is later).
    Keys {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Remind of active keys expiring within this many days.
        #[arg(long, value_name = "DAYS", default_value_t = EXPIRY_REMINDER_DAYS,
              value_parser = clap::value_parser!(i64).range(0..=36_500))]
        expiring_within: i64,
    },
    /// Admin changes to users, service accounts, roles, keys, templates, approvals and the
    /// policy, from the audit trail (needs `audit.file`).
    PermissionChanges {
        /// Only events at or after this UTC date (`2026-11-01`), RFC 3339 time, or this long
        /// ago (`7d`, `12h`, `2w`). Absent: the whole trail.
        #[arg(long, value_name = "DATE_OR_DURATION")]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Allowed decisions that needed a generation permission, from the audit trail (needs
    /// `audit.file`).
    Generations {
        /// Only decisions at or after this UTC date (`2026-11-01`), RFC 3339 time, or this
        /// long ago (`7d`, `12h`, `2w`). Absent: the whole trail.
        #[arg(long, value_name = "DATE_OR_DURATION")]
        since: Option<String>,
        /// Print only N rows, evenly spaced over the matching decisions (deterministic).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        sample: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
}

/// How reports print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for people.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// What reports read: the store, the trail's base name and the policy's default role.
pub struct ReportSources {
    /// The configured store.
    pub store: DynStore,
    /// The resolved `audit.file` base name (`None`: no local trail configured).
    pub trail_base: Option<PathBuf>,
    /// The policy's `default_role`, shown for users without a binding.
    pub default_role: Option<String>,
}

impl ReportSources {
    /// The sources a configuration names.
    pub fn from_config(cfg: &ServerConfig, store: DynStore, default_role: Option<String>) -> Self {
        let trail_base = cfg
            .audit
            .as_ref()
            .and_then(|a| a.file.as_ref())
            .map(|f| cfg.base_dir.join(f));
        ReportSources {
            store,
            trail_base,
            default_role,
        }
    }
}

impl ReportCommand {
    /// Runs the report and prints it on stdout.
    pub async fn run(self, sources: &ReportSources) -> anyhow::Result<()> {
        let out = self.render(sources, Utc::now()).await?;
        print!("{out}");
        Ok(())
    }

    /// The report's text at `now`.
    pub async fn render(
        &self,
        sources: &ReportSources,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let (columns, rows, format) = match self {
            ReportCommand::AccessReview { format } => {
                let trail = read_optional_trail(sources, None)?;
                let rows = access_review(sources, trail.as_ref(), now.timestamp()).await?;
                (ACCESS_REVIEW_COLUMNS.as_slice(), rows, *format)
            }
            ReportCommand::Keys {
                format,
                expiring_within,
            } => {
                let trail = read_optional_trail(sources, None)?;
                let rows =
                    key_inventory(sources, trail.as_ref(), now.timestamp(), *expiring_within)
                        .await?;
                (KEY_COLUMNS.as_slice(), rows, *format)
            }
            ReportCommand::PermissionChanges { since, format } => {
                let since = since.as_deref().map(|s| parse_since(s, now)).transpose()?;
                let trail = read_required_trail(sources, since, "permission-changes")?;
                (
                    PERMISSION_CHANGE_COLUMNS.as_slice(),
                    permission_changes(&trail),
                    *format,
                )
            }
            ReportCommand::Generations {
                since,
                sample,
                format,
            } => {
                let since = since.as_deref().map(|s| parse_since(s, now)).transpose()?;
                let trail = read_required_trail(sources, since, "generations")?;
                let mut rows = generations(&trail);
                if let Some(n) = sample {
                    rows = sample_evenly(rows, usize::try_from(*n).unwrap_or(usize::MAX));
                }
                (GENERATION_COLUMNS.as_slice(), rows, *format)
            }
        };
        Ok(render(columns, &rows, format))
    }
}

/// One column: its JSON/CSV key and its table header.
type Column = (&'static str, &'static str);

/// A report row: one value per column, in column order.
type Row = Vec<Value>;

const ACCESS_REVIEW_COLUMNS: [Column; 7] = [
    ("name", "NAME"),
    ("kind", "KIND"),
    ("role", "ROLE"),
    ("role_source", "ROLE SOURCE"),
    ("disabled", "DISABLED"),
    ("last_activity", "LAST ACTIVITY"),
    ("active_keys", "ACTIVE KEYS"),
];

const KEY_COLUMNS: [Column; 12] = [
    ("id", "ID"),
    ("name", "NAME"),
    ("owner_kind", "OWNER KIND"),
    ("owner", "OWNER"),
    ("scopes", "SCOPES"),
    ("created_at", "CREATED"),
    ("expires_at", "EXPIRES"),
    ("status", "STATUS"),
    ("days_until_expiry", "DAYS LEFT"),
    ("reminder", "REMINDER"),
    ("last_used", "LAST USED"),
    ("revoked_at", "REVOKED"),
];

const PERMISSION_CHANGE_COLUMNS: [Column; 6] = [
    ("ts", "TIME"),
    ("actor", "ACTOR"),
    ("action", "ACTION"),
    ("target", "TARGET"),
    ("result", "RESULT"),
    ("details", "DETAILS"),
];

const GENERATION_COLUMNS: [Column; 11] = [
    ("ts", "TIME"),
    ("user_id", "USER"),
    ("role", "ROLE"),
    ("auth_method", "AUTH"),
    ("key_id", "KEY"),
    ("action", "ACTION"),
    ("preset", "PRESET"),
    ("model", "MODEL"),
    ("loras", "LORAS"),
    ("image_number", "IMAGES"),
    ("request_id", "REQUEST ID"),
];

// === since ===

/// Parses `--since`: a UTC date (`2026-11-01`, from its midnight), an RFC 3339 time, or a
/// duration before `now` (`7d`, `12h`, `2w`, `1d 12h`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(d) => {
            let d = chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d <= chrono::Duration::days(365 * 100))
                .with_context(|| format!("--since `{text}` is too long ago"))?;
            Ok(now - d)
        }
        Err(_) => bail!(
            "--since `{text}` is neither a date (2026-11-01), an RFC 3339 time nor a duration (7d, 12h)"
        ),
    }
}

// === the trail ===

/// The records read from the trail, oldest first.
#[derive(Debug, Default)]
pub struct TrailRecords {
    /// Records as JSON objects, in file (date) then line order.
    pub records: Vec<Map<String, Value>>,
    /// Lines that were not JSON objects (e.g. a torn last line).
    pub skipped: usize,
}

/// The daily trail files of the base name `base`, oldest first, with their days.
pub fn trail_files(base: &Path) -> anyhow::Result<Vec<(NaiveDate, PathBuf)>> {
    let dir = match base.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".into());
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the trail directory {}", dir.display()));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let day = name
            .strip_prefix(stem.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(ext.as_str()))
            .filter(|d| d.len() == 10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if let Some(day) = day {
            files.push((day, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the trail files of `base` (only days on or after `since`'s day), keeping records
/// whose `ts` is at or after `since`.
pub fn read_trail(base: &Path, since: Option<DateTime<Utc>>) -> anyhow::Result<TrailRecords> {
    let mut out = TrailRecords::default();
    for (day, path) in trail_files(base)? {
        if since.is_some_and(|s| day < s.date_naive()) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the audit trail {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
                out.skipped += 1;
                continue;
            };
            if let Some(since) = since
                && record_time(&record).is_none_or(|t| t < since)
            {
                continue;
            }
            out.records.push(record);
        }
    }
    Ok(out)
}

fn read_optional_trail(
    sources: &ReportSources,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Option<TrailRecords>> {
    let Some(base) = &sources.trail_base else {
        return Ok(None);
    };
    let trail = read_trail(base, since)?;
    warn_skipped(&trail);
    Ok(Some(trail))
}

fn read_required_trail(
    sources: &ReportSources,
    since: Option<DateTime<Utc>>,
    report: &str,
) -> anyhow::Result<TrailRecords> {
    let Some(base) = &sources.trail_base else {
        bail!(
            "`report {report}` reads the audit trail, but no audit trail is configured (set audit.file in the configuration)"
        );
    };
    let trail = read_trail(base, since)?;
    warn_skipped(&trail);
    Ok(trail)
}

fn warn_skipped(trail: &TrailRecords) {
    if trail.skipped > 0 {
        eprintln!(
            "warning: skipped {} trail line(s) that are not JSON records (run `inferguard audit verify`)",
            trail.skipped
        );
    }
}

fn record_time(record: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let ts = record.get("ts")?.as_str()?;
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn str_field<'a>(record: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

fn is_decision(record: &Map<String, Value>) -> bool {
    str_field(record, "event_type") == Some("decision")
}

/// Keeps the later of two times for `key`.
fn note_latest(map: &mut HashMap<String, DateTime<Utc>>, key: &str, t: DateTime<Utc>) {
    map.entry(key.to_string())
        .and_modify(|cur| *cur = (*cur).max(t))
        .or_insert(t);
}

/// The latest decision time per `(principal kind, user_id)`; decisions without a principal
/// kind count for any kind.
fn last_activity(trail: &TrailRecords) -> HashMap<String, DateTime<Utc>> {
    let mut latest = HashMap::new();
    for r in trail.records.iter().filter(|r| is_decision(r)) {
        let (Some(user), Some(t)) = (str_field(r, "user_id"), record_time(r)) else {
            continue;
        };
        match str_field(r, "principal_kind") {
            Some(kind) => note_latest(&mut latest, &format!("{kind}:{user}"), t),
            None => {
                for kind in ["user", "service_account"] {
                    note_latest(&mut latest, &format!("{kind}:{user}"), t);
                }
            }
        }
    }
    latest
}

/// The latest decision time per key id.
fn key_last_used(trail: &TrailRecords) -> HashMap<String, DateTime<Utc>> {
    let mut latest = HashMap::new();
    for r in trail.records.iter().filter(|r| is_decision(r)) {
        if let (Some(key), Some(t)) = (str_field(r, "key_id"), record_time(r)) {
            note_latest(&mut latest, key, t);
        }
    }
    latest
}

fn time_value(t: Option<DateTime<Utc>>, trail: Option<&TrailRecords>) -> Value {
    match (trail, t) {
        (None, _) => Value::String(NO_TRAIL.into()),
        (Some(_), Some(t)) => Value::String(format_time(t.timestamp())),
        (Some(_), None) => Value::Null,
    }
}

// === the reports ===

/// `access-review` rows: users (by name), then service accounts (by name).
///
/// Role sources: `binding` when the store holds a role for the principal (always, for a
/// service account); otherwise `default` for a local user (one with a password: the policy's
/// `default_role` applies) and `idp-groups (resolved at login)` for an IdP user (the role
/// comes from the IdP groups at each login, else the default role).
async fn access_review(
    sources: &ReportSources,
    trail: Option<&TrailRecords>,
    now: i64,
) -> anyhow::Result<Vec<Row>> {
    let users = sources.store.list_users().await.context("listing users")?;
    let accounts = sources
        .store
        .list_service_accounts()
        .await
        .context("listing service accounts")?;
    let keys = sources.store.list_keys().await.context("listing keys")?;
    let mut active: HashMap<String, u64> = HashMap::new();
    for k in keys.iter().filter(|k| key_status(k, now) == "active") {
        *active
            .entry(format!("{}:{}", k.owner.kind.as_str(), k.owner.name))
            .or_default() += 1;
    }
    let activity = trail.map(last_activity).unwrap_or_default();
    let default_role = sources
        .default_role
        .clone()
        .map_or(Value::Null, Value::String);
    let mut rows = Vec::new();
    for u in &users {
        let id = format!("user:{}", u.username);
        let (role, source) = match &u.role {
            Some(r) => (Value::String(r.clone()), "binding"),
            None if u.password_hash.is_some() => (default_role.clone(), "default"),
            None => (Value::Null, "idp-groups (resolved at login)"),
        };
        rows.push(vec![
            u.username.clone().into(),
            "user".into(),
            role,
            source.into(),
            u.disabled.into(),
            time_value(activity.get(&id).copied(), trail),
            active.get(&id).copied().unwrap_or(0).into(),
        ]);
    }
    for sa in &accounts {
        let id = format!("service_account:{}", sa.name);
        rows.push(vec![
            sa.name.clone().into(),
            "service_account".into(),
            sa.role.clone().into(),
            "binding".into(),
            sa.disabled.into(),
            time_value(activity.get(&id).copied(), trail),
            active.get(&id).copied().unwrap_or(0).into(),
        ]);
    }
    Ok(rows)
}

/// `keys` rows, newest key first (the store's order). Never secrets or hashes.
async fn key_inventory(
    sources: &ReportSources,
    trail: Option<&TrailRecords>,
    now: i64,
    expiring_within: i64,
) -> anyhow::Result<Vec<Row>> {
    let keys = sources.store.list_keys().await.context("listing keys")?;
    let used = trail.map(key_last_used).unwrap_or_default();
    Ok(keys
        .iter()
        .map(|k| {
            let status = key_status(k, now);
            // Whole days left, rounded down; only for keys that still work.
            let days = (status == "active").then(|| (k.expires_at - now).div_euclid(86_400));
            let reminder = if days.is_some_and(|d| d <= expiring_within) {
                Value::String("expires_soon".into())
            } else {
                Value::Null
            };
            vec![
                k.id.clone().into(),
                k.name.clone().into(),
                k.owner.kind.as_str().into(),
                k.owner.name.clone().into(),
                k.scopes
                    .clone()
                    .map_or_else(|| Value::String("(role)".into()), Value::from),
                format_time(k.created_at).into(),
                format_time(k.expires_at).into(),
                status.into(),
                days.map_or(Value::Null, Value::from),
                reminder,
                // The servers record uses in the store (batched); the trail may know later ones
                // a server had not flushed yet.
                match (k.last_used_at, used.get(&k.id).copied()) {
                    (Some(stored), seen) => Value::String(format_time(
                        seen.map_or(stored, |t| t.timestamp().max(stored)),
                    )),
                    (None, seen) => time_value(seen, trail),
                },
                k.revoked_at
                    .map(format_time)
                    .map_or(Value::Null, Value::String),
            ]
        })
        .collect())
}

/// `permission-changes` rows, oldest first.
fn permission_changes(trail: &TrailRecords) -> Vec<Row> {
    trail
        .records
        .iter()
        .filter(|r| str_field(r, "event_type") == Some("admin"))
        .filter(|r| {
            str_field(r, "action")
                .is_some_and(|a| PERMISSION_ACTION_PREFIXES.iter().any(|p| a.starts_with(p)))
        })
        .map(|r| {
            PERMISSION_CHANGE_COLUMNS
                .iter()
                .map(|(key, _)| r.get(*key).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// Whether a decision record is an allowed generation.
fn is_allowed_generation(record: &Map<String, Value>) -> bool {
    is_decision(record)
        && str_field(record, "result") == Some("allow")
        && record
            .get("permissions")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter()
                    .filter_map(Value::as_str)
                    .any(|p| GENERATION_PERMISSIONS.contains(&p))
            })
}

/// `generations` rows, oldest first.
fn generations(trail: &TrailRecords) -> Vec<Row> {
    trail
        .records
        .iter()
        .filter(|r| is_allowed_generation(r))
        .map(|r| {
            GENERATION_COLUMNS
                .iter()
                .map(|(key, _)| r.get(*key).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// `n` rows evenly spaced over `rows` (the first always included); all of them when there
/// are no more than `n`.
pub fn sample_evenly<T>(rows: Vec<T>, n: usize) -> Vec<T> {
    let len = rows.len();
    if n >= len {
        return rows;
    }
    let picks: Vec<usize> = (0..n).map(|i| i * len / n).collect();
    rows.into_iter()
        .enumerate()
        .filter(|(i, _)| picks.binary_search(i).is_ok())
        .map(|(_, r)| r)
        .collect()
}

// === rendering ===

/// A value as a table or CSV cell: absent `—`, lists comma-separated, objects as JSON.
fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => NONE.into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => NONE.into(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF or starts or ends
/// with a space; a leading `=`, `+`, `@`, tab, CR, or `-` not starting a number is prefixed
/// with `'` so spreadsheets do not run it as a formula.
pub fn csv_field(text: &str) -> String {
    let formula = match text.chars().next() {
        Some('=' | '+' | '@' | '\t' | '\r') => true,
        Some('-') => text.parse::<f64>().is_err(),
        _ => false,
    };
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\r', '\n']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Renders rows in a format. Table cells are single-line.
fn render(columns: &[Column], rows: &[Row], format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => render_json(&Value::Array(
            rows.iter()
                .map(|row| {
                    Value::Object(
                        columns
                            .iter()
                            .zip(row)
                            .map(|((key, _), v)| (key.to_string(), v.clone()))
                            .collect(),
                    )
                })
                .collect(),
        )),
        ReportFormat::Csv => {
            let mut out = String::new();
            let header: Vec<String> = columns.iter().map(|(k, _)| csv_field(k)).collect();
            out.push_str(&header.join(","));
            out.push_str("\r\n");
            for row in rows {
                let cells: Vec<String> = row.iter().map(|v| csv_field(&cell_text(v))).collect();
                out.push_str(&cells.join(","));
                out.push_str("\r\n");
            }
            out
        }
        ReportFormat::Table => {
            let headers: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| cell_text(v).replace(['\r', '\n', '\t'], " "))
                        .collect()
                })
                .collect();
            render_table(&headers, &rows)
        }
    }
}

#[cfg(test)]
mod tests;
