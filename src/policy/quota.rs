//! Daily and monthly quotas, consumed last: only a request every other stage allowed spends
//! any, and then atomically across every limit that applies.
//!
//! Which limits apply:
//! - the principal's role: `daily_images` and `monthly_images` on image routes,
//!   `daily_requests` and `daily_tokens` on LLM routes, counted per principal (user or
//!   service account);
//! - a service account's own `--daily-images` / `--daily-tokens` replace its role's daily
//!   image / token limit (same counter);
//! - a key's `--daily-images` is a separate counter for that key, on top of its owner's.
//!
//! Units: images are the action's `image_number` (the extractor fills the API's default);
//! LLM requests count 1 each; LLM tokens are `max_tokens` × choices, with
//! [`QuotaConfig::default_max_tokens`] standing in for an absent `max_tokens` (embeddings ask
//! for none). Windows reset at local midnight and on the first of the month, in
//! [`QuotaConfig::timezone`] (UTC by default).
//!
//! Every function takes `now`: nothing here reads the clock.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::domain::{Action, ApiKind, Denial, DenyKind, Principal, PrincipalKind};
use crate::policy::Role;
use crate::store::{
    ApiKeyRecord, QuotaCounter, QuotaOutcome, QuotaPeriod, QuotaStore, QuotaUnit,
    ServiceAccountRecord, Store, StoreResult,
};

/// Tokens counted per choice for an LLM request that names no `max_tokens`, unless
/// configured otherwise.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Header carrying the remaining count of the tightest quota to the upstream.
pub const QUOTA_REMAINING_HEADER: &str = "x-inferguard-quota-remaining";

/// `quota:` in inferguard.yaml.
///
/// ```yaml
/// quota:
///   timezone: Europe/Berlin     # IANA name; daily windows reset at its midnight (default UTC)
///   default_max_tokens: 4096    # tokens counted per choice when an LLM request names none
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// The time zone whose midnight (and first of the month) ends a window.
    #[serde(deserialize_with = "deserialize_tz")]
    pub timezone: Tz,
    /// Tokens counted per choice for an LLM request without `max_tokens`.
    pub default_max_tokens: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            timezone: Tz::UTC,
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }
}

fn deserialize_tz<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    Tz::from_str(&name).map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone `{name}` (use an IANA name such as `UTC` or `Europe/Berlin`)"
        ))
    })
}

/// Limits kept in the store for the principal's key and service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLimits {
    /// `keys create --daily-images`.
    pub key_daily_images: Option<u64>,
    /// `service-accounts create --daily-images` (replaces the role's `daily_images`).
    pub account_daily_images: Option<u64>,
    /// `service-accounts create --daily-tokens` (replaces the role's `daily_tokens`).
    pub account_daily_tokens: Option<u64>,
}

impl StoredLimits {
    /// The limits of a key and/or service account record (negative values read as 0).
    pub fn from_records(
        key: Option<&ApiKeyRecord>,
        account: Option<&ServiceAccountRecord>,
    ) -> StoredLimits {
        let non_negative = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
        StoredLimits {
            key_daily_images: non_negative(key.and_then(|k| k.daily_images)),
            account_daily_images: non_negative(account.and_then(|a| a.daily_images)),
            account_daily_tokens: non_negative(account.and_then(|a| a.daily_tokens)),
        }
    }

    /// Reads the principal's key (when it used one) and service account (when it is one)
    /// from the store. A user without a key costs no query.
    pub async fn load<S: Store + ?Sized>(
        store: &S,
        principal: &Principal,
    ) -> StoreResult<StoredLimits> {
        let key = match &principal.key_id {
            Some(id) => store.get_key(id).await?,
            None => None,
        };
        let account = match principal.kind {
            PrincipalKind::ServiceAccount => store.get_service_account(&principal.subject).await?,
            PrincipalKind::User => None,
        };
        Ok(StoredLimits::from_records(key.as_ref(), account.as_ref()))
    }
}

/// One limit a request draws on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    /// The setting that sets the limit, e.g. `roles.designer_basic.daily_images`,
    /// `service_accounts.batch.daily_tokens`, `keys.k1.daily_images`.
    pub rule: String,
    pub counter: QuotaCounter,
}

/// Every limit one request draws on, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaPlan {
    pub charges: Vec<QuotaCharge>,
}

impl QuotaPlan {
    /// True when no limit applies (nothing to consume).
    pub fn is_empty(&self) -> bool {
        self.charges.is_empty()
    }
}

/// What a request asks in each unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaAmounts {
    pub images: u64,
    pub requests: u64,
    pub tokens: u64,
}

/// The units an action spends: images on image routes, requests and tokens on LLM routes,
/// nothing on routes judged on headers alone.
pub fn amounts(cfg: &QuotaConfig, action: &Action) -> QuotaAmounts {
    match action.api {
        Some(ApiKind::Image) => QuotaAmounts {
            images: u64::from(action.image_number.unwrap_or(0)),
            ..QuotaAmounts::default()
        },
        Some(ApiKind::Llm) => {
            let choices = u64::from(action.image_number.unwrap_or(1));
            let tokens = if action.name == "llm-embedding" {
                0
            } else {
                action
                    .max_tokens
                    .unwrap_or(cfg.default_max_tokens)
                    .saturating_mul(choices)
            };
            QuotaAmounts {
                images: 0,
                requests: 1,
                tokens,
            }
        }
        Some(ApiKind::Other) | None => QuotaAmounts::default(),
    }
}

/// True when the action spends anything at all (so limits are worth looking up).
pub fn draws_on_quota(cfg: &QuotaConfig, action: &Action) -> bool {
    amounts(cfg, action) != QuotaAmounts::default()
}

/// The counters a request draws on at `now`: limits from the role, the service account and
/// the key, windows from the configured time zone. Limits that are absent or to which the
/// request adds nothing are left out.
pub fn plan(
    cfg: &QuotaConfig,
    role: &Role,
    principal: &Principal,
    stored: &StoredLimits,
    action: &Action,
    now: DateTime<Utc>,
) -> QuotaPlan {
    let amounts = amounts(cfg, action);
    let principal_scope = format!("{}:{}", principal.kind.as_str(), principal.subject);
    let role_rule = |field: &str| format!("roles.{}.{field}", role.name);
    let account_rule = |field: &str| format!("service_accounts.{}.{field}", principal.subject);
    // A service account's own daily limit replaces its role's.
    let daily = |account: Option<u64>, role_limit: Option<u64>, field: &str| match account {
        Some(limit) => Some((limit, account_rule(field))),
        None => role_limit.map(|limit| (limit, role_rule(field))),
    };
    let day = window(QuotaPeriod::Day, cfg.timezone, now);
    let month = window(QuotaPeriod::Month, cfg.timezone, now);

    let mut charges = Vec::new();
    let mut add = |scope: &str,
                   unit: QuotaUnit,
                   period: QuotaPeriod,
                   limit: Option<(u64, String)>,
                   amount: u64| {
        let Some((limit, rule)) = limit else {
            return;
        };
        if amount == 0 {
            return;
        }
        let (start, end) = match period {
            QuotaPeriod::Day => day,
            QuotaPeriod::Month => month,
        };
        charges.push(QuotaCharge {
            rule,
            counter: QuotaCounter {
                scope: scope.to_string(),
                unit,
                period,
                window_start: start.timestamp(),
                window_end: end.timestamp(),
                limit,
                amount,
            },
        });
    };
    add(
        &principal_scope,
        QuotaUnit::Images,
        QuotaPeriod::Day,
        daily(
            stored.account_daily_images,
            role.daily_images,
            "daily_images",
        ),
        amounts.images,
    );
    add(
        &principal_scope,
        QuotaUnit::Images,
        QuotaPeriod::Month,
        role.monthly_images
            .map(|limit| (limit, role_rule("monthly_images"))),
        amounts.images,
    );
    add(
        &principal_scope,
        QuotaUnit::Requests,
        QuotaPeriod::Day,
        role.daily_requests
            .map(|limit| (limit, role_rule("daily_requests"))),
        amounts.requests,
    );
    add(
        &principal_scope,
        QuotaUnit::Tokens,
        QuotaPeriod::Day,
        daily(
            stored.account_daily_tokens,
            role.daily_tokens,
            "daily_tokens",
        ),
        amounts.tokens,
    );
    if let Some(key_id) = &principal.key_id {
        add(
            &format!("key:{key_id}"),
            QuotaUnit::Images,
            QuotaPeriod::Day,
            stored
                .key_daily_images
                .map(|limit| (limit, format!("keys.{key_id}.daily_images"))),
            amounts.images,
        );
    }
    QuotaPlan { charges }
}

/// Where one limit stands after an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStanding {
    pub rule: String,
    pub unit: QuotaUnit,
    pub period: QuotaPeriod,
    pub limit: u64,
    /// Used in the window, this request included.
    pub used: u64,
    /// Unix seconds of the window's reset.
    pub resets_at: i64,
}

impl QuotaStanding {
    /// What is left in the window.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The quota an allowed request spent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaGrant {
    /// One entry per limit drawn on, in plan order (empty when none applies).
    pub standings: Vec<QuotaStanding>,
}

impl QuotaGrant {
    /// The limit closest to exhaustion (smallest remaining share; then fewest remaining).
    pub fn tightest(&self) -> Option<&QuotaStanding> {
        self.standings.iter().min_by(|a, b| {
            let share_a = u128::from(a.remaining()) * u128::from(b.limit.max(1));
            let share_b = u128::from(b.remaining()) * u128::from(a.limit.max(1));
            share_a
                .cmp(&share_b)
                .then(a.remaining().cmp(&b.remaining()))
        })
    }

    /// Headers for the upstream describing the tightest limit (none when no limit applied):
    /// `x-inferguard-quota-remaining`, `x-inferguard-quota-limit`, `x-inferguard-quota-reset`
    /// (seconds), `x-inferguard-quota-policy` (the setting, e.g.
    /// `roles.designer_basic.daily_images`), and the same numbers as `ratelimit-limit`,
    /// `ratelimit-remaining`, `ratelimit-reset`.
    pub fn headers(&self, now: DateTime<Utc>) -> Vec<(String, String)> {
        let Some(t) = self.tightest() else {
            return Vec::new();
        };
        let reset = seconds_until(t.resets_at, now).to_string();
        let remaining = t.remaining().to_string();
        let limit = t.limit.to_string();
        vec![
            (QUOTA_REMAINING_HEADER.into(), remaining.clone()),
            ("x-inferguard-quota-limit".into(), limit.clone()),
            ("x-inferguard-quota-reset".into(), reset.clone()),
            ("x-inferguard-quota-policy".into(), t.rule.clone()),
            ("ratelimit-limit".into(), limit),
            ("ratelimit-remaining".into(), remaining),
            ("ratelimit-reset".into(), reset),
        ]
    }
}

/// Spends the plan atomically: every counter or none. Over a limit: 429
/// (`quota_exceeded`) naming the limit that blocks longest, with `Retry-After` the seconds to
/// its reset; the store unreachable: 503 (`store_unavailable`), never allow.
pub async fn consume<S: QuotaStore + ?Sized>(
    store: &S,
    plan: &QuotaPlan,
    now: DateTime<Utc>,
) -> Result<QuotaGrant, Denial> {
    if plan.is_empty() {
        return Ok(QuotaGrant::default());
    }
    let counters: Vec<QuotaCounter> = plan.charges.iter().map(|c| c.counter.clone()).collect();
    let outcome = store.consume_quota(&counters).await.map_err(|e| {
        tracing::error!(error = %e, "quota consumption failed");
        unavailable()
    })?;
    match outcome {
        QuotaOutcome::Consumed { used } => Ok(QuotaGrant {
            standings: plan
                .charges
                .iter()
                .zip(used)
                .map(|(charge, used)| QuotaStanding {
                    rule: charge.rule.clone(),
                    unit: charge.counter.unit,
                    period: charge.counter.period,
                    limit: charge.counter.limit,
                    used,
                    resets_at: charge.counter.window_end,
                })
                .collect(),
        }),
        QuotaOutcome::Exceeded { exceeded } => {
            // Waiting out an earlier reset would not help while a later one still blocks.
            let blocking = exceeded
                .iter()
                .filter_map(|&(i, used)| plan.charges.get(i).map(|c| (c, used)))
                .max_by_key(|(c, _)| c.counter.window_end);
            match blocking {
                Some((charge, used)) => Err(exceeded_denial(charge, used, now)),
                None => Err(unavailable()),
            }
        }
    }
}

/// Looks up the stored limits when the action spends anything, plans and consumes: the one
/// call the pipeline makes after every other check passed. Returns the headers for the
/// upstream through [`QuotaGrant::headers`].
pub async fn enforce<S: Store + ?Sized>(
    store: &S,
    cfg: &QuotaConfig,
    role: &Role,
    principal: &Principal,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<QuotaGrant, Denial> {
    enforce_known(store, cfg, role, principal, None, action, now).await
}

/// [`enforce`] with the principal's stored limits already known (from the cached key), so
/// the hot path costs no lookup; `None` reads them from the store.
pub async fn enforce_known<S: Store + ?Sized>(
    store: &S,
    cfg: &QuotaConfig,
    role: &Role,
    principal: &Principal,
    known: Option<&StoredLimits>,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<QuotaGrant, Denial> {
    if !draws_on_quota(cfg, action) {
        return Ok(QuotaGrant::default());
    }
    let stored = match known {
        Some(limits) => limits.clone(),
        None => StoredLimits::load(store, principal).await.map_err(|e| {
            tracing::error!(error = %e, "store lookup for quota limits failed");
            unavailable()
        })?,
    };
    let plan = plan(cfg, role, principal, &stored, action, now);
    consume(store, &plan, now).await
}

fn unavailable() -> Denial {
    Denial::new(
        DenyKind::Unavailable,
        "store_unavailable",
        "the quota store is unreachable; try again",
    )
}

/// The 429 for a charge that would take its counter (at `used`) over its limit.
fn exceeded_denial(charge: &QuotaCharge, used: u64, now: DateTime<Utc>) -> Denial {
    let c = &charge.counter;
    let wait = seconds_until(c.window_end, now);
    let remaining = c.limit.saturating_sub(used);
    let period = match c.period {
        QuotaPeriod::Day => "daily",
        QuotaPeriod::Month => "monthly",
    };
    let unit = match c.unit {
        QuotaUnit::Images => "image",
        QuotaUnit::Requests => "request",
        QuotaUnit::Tokens => "token",
    };
    let resets = DateTime::from_timestamp(c.window_end, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let ask = if c.amount > c.limit {
        format!(
            "this request asks for {} {}, more than the whole limit of {}",
            c.amount, c.unit, c.limit
        )
    } else {
        format!(
            "{used} of {} {} used, {remaining} left, and this request asks for {}",
            c.limit, c.unit, c.amount
        )
    };
    Denial::new(
        DenyKind::RateLimited {
            retry_after_secs: wait,
            limit: c.limit,
            reset_secs: wait,
        },
        "quota_exceeded",
        format!(
            "{period} {unit} quota (`{}`) exceeded: {ask}; it resets in {} (at {resets})",
            charge.rule,
            human_duration(wait)
        ),
    )
    .with_rule(charge.rule.clone())
}

/// Whole seconds from `now` until `at`, at least 1 (a reset is always ahead).
fn seconds_until(at: i64, now: DateTime<Utc>) -> u64 {
    let millis = at
        .saturating_mul(1000)
        .saturating_sub(now.timestamp_millis());
    // Round up: a client that waits this long finds the window reset.
    u64::try_from((millis + 999) / 1000).unwrap_or(0).max(1)
}

/// `3h 12m`, `45m`, `20s`.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The window of `period` that contains `now`, in `tz`: `[start, end)` as UTC instants.
/// Days run from local midnight to local midnight (23 or 25 hours across a DST change);
/// months from the first at local midnight to the next first.
pub fn window(period: QuotaPeriod, tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.with_timezone(&tz).date_naive();
    let (start, end) = match period {
        QuotaPeriod::Day => (today, today.succ_opt().unwrap_or(today)),
        QuotaPeriod::Month => {
            let first = today.with_day(1).unwrap_or(today);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            };
            (first, next.unwrap_or(first))
        }
    };
    let (start, end) = (local_midnight(tz, start), local_midnight(tz, end));
    // A skipped local midnight can resolve after `now` on a day that starts in a gap
    // (e.g. Pacific/Apia skipped 2011-12-30 entirely): the window still contains `now`.
    (start.min(now), end.max(now + Duration::seconds(1)))
}

/// The instant a local date starts: its midnight, the earlier one when clocks fall back over
/// it, or the first local time after a gap when clocks spring forward over it.
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => {
            // Real transitions fall on whole minutes; a gap is at most a day (Samoa, 2011).
            let mut local = midnight;
            for _ in 0..(2 * 24 * 60) {
                local += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&local).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            midnight.and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthMethod, Permission, RoleSource};
    use crate::store::SqliteStore;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn tz(name: &str) -> Tz {
        name.parse().expect("tz")
    }

    fn principal(kind: PrincipalKind, subject: &str, key: Option<&str>) -> Principal {
        Principal {
            subject: subject.into(),
            kind,
            email: None,
            groups: vec![],
            role: "designer".into(),
            role_source: RoleSource::Binding,
            auth: AuthMethod::ApiKey,
            key_id: key.map(String::from),
            scopes: None,
            session_id: None,
            mfa: false,
            attributes: Default::default(),
        }
    }

    fn alice() -> Principal {
        principal(PrincipalKind::User, "alice", None)
    }

    fn role() -> Role {
        let mut r = Role::new("designer", [Permission::GenerationCreate]);
        r.daily_images = Some(10);
        r.monthly_images = Some(100);
        r.daily_requests = Some(5);
        r.daily_tokens = Some(1_000);
        r
    }

    fn images(n: u32) -> Action {
        Action {
            api: Some(ApiKind::Image),
            name: "text-to-image".into(),
            image_number: Some(n),
            ..Action::default()
        }
    }

    fn chat(n: u32, max_tokens: Option<u64>) -> Action {
        Action {
            api: Some(ApiKind::Llm),
            name: "llm-chat".into(),
            image_number: Some(n),
            max_tokens,
            ..Action::default()
        }
    }

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        (dir, store)
    }

    #[test]
    fn config_parses_time_zones_and_refuses_unknown_ones() {
        let cfg: QuotaConfig = serde_yaml::from_str("timezone: Europe/Berlin").expect("berlin");
        assert_eq!(cfg.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(cfg.default_max_tokens, DEFAULT_MAX_TOKENS);
        let cfg: QuotaConfig = serde_yaml::from_str("{}").expect("empty");
        assert_eq!(cfg, QuotaConfig::default());
        assert_eq!(cfg.timezone, Tz::UTC);
        let err = serde_yaml::from_str::<QuotaConfig>("timezone: Mars/Olympus")
            .expect_err("unknown zone");
        assert!(err.to_string().contains("unknown time zone `Mars/Olympus`"));
        assert!(serde_yaml::from_str::<QuotaConfig>("tz: UTC").is_err());
    }

    #[test]
    fn utc_days_and_months() {
        let now = at("2026-11-22T13:45:10Z");
        assert_eq!(
            window(QuotaPeriod::Day, Tz::UTC, now),
            (at("2026-11-22T00:00:00Z"), at("2026-11-23T00:00:00Z"))
        );
        assert_eq!(
            window(QuotaPeriod::Month, Tz::UTC, now),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        // December rolls into January; February of a leap year has 29 days.
        assert_eq!(
            window(QuotaPeriod::Month, Tz::UTC, at("2026-12-31T23:59:59Z")).1,
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            window(QuotaPeriod::Month, Tz::UTC, at("2028-02-10T00:00:00Z")).1,
            at("2028-03-01T00:00:00Z")
        );
        // The boundary instant belongs to the new window.
        assert_eq!(
            window(QuotaPeriod::Day, Tz::UTC, at("2026-11-23T00:00:00Z")).0,
            at("2026-11-23T00:00:00Z")
        );
    }

    #[test]
    fn a_time_zone_shifts_the_boundary() {
        let berlin = tz("Europe/Berlin");
        // 23:30 UTC on the 22nd is 00:30 on the 23rd in Berlin (UTC+1 in winter).
        assert_eq!(
            window(QuotaPeriod::Day, berlin, at("2026-11-22T23:30:00Z")),
            (at("2026-11-22T23:00:00Z"), at("2026-11-23T23:00:00Z"))
        );
        assert_eq!(
            window(QuotaPeriod::Month, berlin, at("2026-11-30T23:30:00Z")),
            (at("2026-11-30T23:00:00Z"), at("2026-12-31T23:00:00Z"))
        );
        // Spring forward: the 29 March 2026 Berlin day lasts 23 hours.
        let (s, e) = window(QuotaPeriod::Day, berlin, at("2026-03-29T12:00:00Z"));
        assert_eq!(
            (s, e),
            (at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z"))
        );
        // Fall back: 25 October 2026 lasts 25 hours.
        let (s, e) = window(QuotaPeriod::Day, berlin, at("2026-10-25T12:00:00Z"));
        assert_eq!(e - s, Duration::hours(25));
        let ny = tz("America/New_York");
        assert_eq!(
            window(QuotaPeriod::Day, ny, at("2026-11-23T03:00:00Z")).1,
            at("2026-11-23T05:00:00Z")
        );
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_after_the_gap() {
        // Santiago springs forward at 24:00 on 6 September 2026: 00:00 → 01:00 (UTC-4 → -3).
        let santiago = tz("America/Santiago");
        let (start, end) = window(QuotaPeriod::Day, santiago, at("2026-09-06T12:00:00Z"));
        assert_eq!(start, at("2026-09-06T04:00:00Z"));
        assert_eq!(end, at("2026-09-07T03:00:00Z"));
        // Samoa skipped 30 December 2011 entirely.
        let apia = tz("Pacific/Apia");
        let now = at("2011-12-30T09:59:59Z"); // 23:59:59 on the 29th, local
        let (start, end) = window(QuotaPeriod::Day, apia, now);
        assert!(start <= now && now < end);
        assert_eq!(end, at("2011-12-30T10:00:00Z"));
    }

    #[test]
    fn units_per_api() {
        let cfg = QuotaConfig::default();
        assert_eq!(
            amounts(&cfg, &images(3)),
            QuotaAmounts {
                images: 3,
                ..Default::default()
            }
        );
        assert_eq!(
            amounts(&cfg, &chat(2, Some(100))),
            QuotaAmounts {
                images: 0,
                requests: 1,
                tokens: 200
            }
        );
        assert_eq!(amounts(&cfg, &chat(3, None)).tokens, 3 * DEFAULT_MAX_TOKENS);
        let embed = Action {
            name: "llm-embedding".into(),
            ..chat(4, None)
        };
        assert_eq!(amounts(&cfg, &embed).tokens, 0);
        let describe = Action {
            image_number: None,
            ..images(1)
        };
        assert!(!draws_on_quota(&cfg, &describe));
        let other = Action {
            api: Some(ApiKind::Other),
            ..Action::default()
        };
        assert!(!draws_on_quota(&cfg, &other));
    }

    #[test]
    fn plans_take_limits_from_role_account_and_key() {
        let cfg = QuotaConfig::default();
        let now = at("2026-11-22T12:00:00Z");
        let rules = |plan: &QuotaPlan| {
            plan.charges
                .iter()
                .map(|c| (c.rule.clone(), c.counter.scope.clone(), c.counter.limit))
                .collect::<Vec<_>>()
        };
        let p = plan(
            &cfg,
            &role(),
            &alice(),
            &StoredLimits::default(),
            &images(2),
            now,
        );
        assert_eq!(
            rules(&p),
            [
                (
                    "roles.designer.daily_images".into(),
                    "user:alice".into(),
                    10
                ),
                (
                    "roles.designer.monthly_images".into(),
                    "user:alice".into(),
                    100
                ),
            ]
        );
        assert!(p.charges.iter().all(|c| c.counter.amount == 2));

        let sa = principal(PrincipalKind::ServiceAccount, "batch", Some("k1"));
        let stored = StoredLimits {
            key_daily_images: Some(3),
            account_daily_images: Some(50),
            account_daily_tokens: Some(7),
        };
        let p = plan(&cfg, &role(), &sa, &stored, &images(2), now);
        assert_eq!(
            rules(&p),
            [
                (
                    "service_accounts.batch.daily_images".into(),
                    "service_account:batch".into(),
                    50
                ),
                (
                    "roles.designer.monthly_images".into(),
                    "service_account:batch".into(),
                    100
                ),
                ("keys.k1.daily_images".into(), "key:k1".into(), 3),
            ]
        );
        let p = plan(&cfg, &role(), &sa, &stored, &chat(2, Some(3)), now);
        assert_eq!(
            rules(&p),
            [
                (
                    "roles.designer.daily_requests".into(),
                    "service_account:batch".into(),
                    5
                ),
                (
                    "service_accounts.batch.daily_tokens".into(),
                    "service_account:batch".into(),
                    7
                ),
            ]
        );
        assert_eq!(p.charges[1].counter.amount, 6);
        // No limits: nothing to consume.
        let open = Role::new("open", [Permission::GenerationCreate]);
        assert!(
            plan(
                &cfg,
                &open,
                &alice(),
                &StoredLimits::default(),
                &images(4),
                now
            )
            .is_empty()
        );
    }

    #[test]
    fn stored_limits_come_from_records() {
        let key = ApiKeyRecord {
            id: "k1".into(),
            name: "n".into(),
            owner: crate::store::OwnerRef {
                kind: PrincipalKind::User,
                name: "alice".into(),
            },
            secret_sha256: String::new(),
            scopes: None,
            daily_images: Some(4),
            created_at: 0,
            expires_at: 1,
            revoked_at: None,
            allowed_networks: None,
            last_used_at: None,
        };
        let account = ServiceAccountRecord {
            name: "batch".into(),
            role: "designer".into(),
            attributes: Default::default(),
            daily_images: None,
            daily_tokens: Some(-5),
            disabled: false,
            created_at: 0,
        };
        assert_eq!(
            StoredLimits::from_records(Some(&key), Some(&account)),
            StoredLimits {
                key_daily_images: Some(4),
                account_daily_images: None,
                account_daily_tokens: Some(0),
            }
        );
    }

    #[tokio::test]
    async fn consumption_resets_at_the_day_boundary_and_reports_retry_after() {
        let (_dir, store) = open_store().await;
        let cfg = QuotaConfig::default();
        let role = role();
        let go = |action: Action, now: DateTime<Utc>| {
            let store = store.clone();
            let cfg = cfg.clone();
            let role = role.clone();
            async move { enforce(&store, &cfg, &role, &alice(), &action, now).await }
        };
        let morning = at("2026-11-22T08:00:00Z");
        let grant = go(images(4), morning).await.expect("first");
        let headers = grant.headers(morning);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(QUOTA_REMAINING_HEADER), Some("6"));
        assert_eq!(header("ratelimit-remaining"), Some("6"));
        assert_eq!(header("ratelimit-limit"), Some("10"));
        assert_eq!(header("ratelimit-reset"), Some("57600"));
        assert_eq!(
            header("x-inferguard-quota-policy"),
            Some("roles.designer.daily_images")
        );
        go(images(6), morning).await.expect("exactly the rest");

        // One second before midnight: refused, Retry-After 1.
        let late = at("2026-11-22T23:59:59Z");
        let denial = go(images(1), late).await.expect_err("over");
        assert_eq!(denial.error, "quota_exceeded");
        assert_eq!(denial.rule.as_deref(), Some("roles.designer.daily_images"));
        assert_eq!(
            denial.kind,
            DenyKind::RateLimited {
                retry_after_secs: 1,
                limit: 10,
                reset_secs: 1
            }
        );
        assert!(denial.reason.contains("10 of 10 images used, 0 left"));
        // A fraction of a second before midnight still waits a whole second.
        let almost = at("2026-11-22T23:59:59.900Z");
        assert!(matches!(
            go(images(1), almost).await.expect_err("over").kind,
            DenyKind::RateLimited {
                retry_after_secs: 1,
                ..
            }
        ));
        // Midnight: a new day.
        let grant = go(images(1), at("2026-11-23T00:00:00Z"))
            .await
            .expect("new day");
        assert_eq!(grant.standings[0].used, 1);
        // The monthly counter kept counting across the day: 11 of 100.
        assert_eq!(grant.standings[1].used, 11);
    }

    #[tokio::test]
    async fn the_month_limit_blocks_until_the_first_and_outranks_the_day() {
        let (_dir, store) = open_store().await;
        let cfg = QuotaConfig::default();
        let mut role = role();
        role.daily_images = Some(5);
        role.monthly_images = Some(8);
        let p = alice();
        let day1 = at("2026-11-29T10:00:00Z");
        enforce(&store, &cfg, &role, &p, &images(5), day1)
            .await
            .expect("day 1");
        let day2 = at("2026-11-30T10:00:00Z");
        enforce(&store, &cfg, &role, &p, &images(3), day2)
            .await
            .expect("day 2");
        // Both the day (3 of 5) and month (8 of 8) would overflow with 3 more: the month
        // blocks longer, so it is the one reported.
        let denial = enforce(&store, &cfg, &role, &p, &images(3), day2)
            .await
            .expect_err("month");
        assert_eq!(
            denial.rule.as_deref(),
            Some("roles.designer.monthly_images")
        );
        let DenyKind::RateLimited {
            retry_after_secs, ..
        } = denial.kind
        else {
            panic!("not 429");
        };
        assert_eq!(retry_after_secs, 14 * 3600);
        let december = at("2026-12-01T00:00:00Z");
        enforce(&store, &cfg, &role, &p, &images(3), december)
            .await
            .expect("new month");
    }

    #[tokio::test]
    async fn a_time_zone_moves_the_reset() {
        let (_dir, store) = open_store().await;
        let cfg = QuotaConfig {
            timezone: tz("Europe/Berlin"),
            ..QuotaConfig::default()
        };
        let mut role = role();
        role.daily_images = Some(1);
        let p = alice();
        let evening = at("2026-11-22T22:30:00Z"); // 23:30 in Berlin
        enforce(&store, &cfg, &role, &p, &images(1), evening)
            .await
            .expect("first");
        let denial = enforce(&store, &cfg, &role, &p, &images(1), evening)
            .await
            .expect_err("second");
        assert!(matches!(
            denial.kind,
            DenyKind::RateLimited {
                retry_after_secs: 1800,
                ..
            }
        ));
        // 23:00 UTC is Berlin's midnight; in UTC it would still be the same day.
        enforce(
            &store,
            &cfg,
            &role,
            &p,
            &images(1),
            at("2026-11-22T23:00:00Z"),
        )
        .await
        .expect("Berlin's new day");
    }

    #[tokio::test]
    async fn a_refused_request_costs_nothing_on_any_counter() {
        let (_dir, store) = open_store().await;
        let cfg = QuotaConfig::default();
        let role = role();
        let now = at("2026-11-22T12:00:00Z");
        let p = principal(PrincipalKind::User, "alice", Some("k1"));
        let stored = StoredLimits {
            key_daily_images: Some(2),
            ..Default::default()
        };
        let run = |n: u32| {
            let plan = plan(&cfg, &role, &p, &stored, &images(n), now);
            let store = store.clone();
            async move { consume(&store, &plan, now).await }
        };
        run(2).await.expect("key's two");
        let denial = run(1).await.expect_err("key exhausted");
        assert_eq!(denial.rule.as_deref(), Some("keys.k1.daily_images"));
        // The user's own counters did not move: 2 of 10, 2 of 100.
        let plan = plan(&cfg, &role, &p, &StoredLimits::default(), &images(1), now);
        for charge in &plan.charges {
            assert_eq!(store.quota_used(&charge.counter).await.expect("used"), 2);
        }
    }

    #[tokio::test]
    async fn llm_requests_and_tokens_are_counted() {
        let (_dir, store) = open_store().await;
        let cfg = QuotaConfig::default();
        let role = role(); // 5 requests, 1000 tokens a day
        let now = at("2026-11-22T12:00:00Z");
        let p = alice();
        let grant = enforce(&store, &cfg, &role, &p, &chat(2, Some(300)), now)
            .await
            .expect("600 tokens");
        // Tokens: 400 of 1000 left (40 %); requests: 4 of 5 (80 %): tokens are tightest.
        assert_eq!(
            grant.tightest().map(|t| (t.rule.as_str(), t.remaining())),
            Some(("roles.designer.daily_tokens", 400))
        );
        let denial = enforce(&store, &cfg, &role, &p, &chat(1, Some(500)), now)
            .await
            .expect_err("too many tokens");
        assert_eq!(denial.rule.as_deref(), Some("roles.designer.daily_tokens"));
        // The refused request did not spend a request either.
        for _ in 0..4 {
            enforce(&store, &cfg, &role, &p, &chat(1, Some(10)), now)
                .await
                .expect("within");
        }
        let denial = enforce(&store, &cfg, &role, &p, &chat(1, Some(10)), now)
            .await
            .expect_err("requests");
        assert_eq!(
            denial.rule.as_deref(),
            Some("roles.designer.daily_requests")
        );
    }

    #[tokio::test]
    async fn limits_from_the_store_apply() {
        let (_dir, store) = open_store().await;
        store
            .create_service_account(&ServiceAccountRecord {
                name: "batch".into(),
                role: "designer".into(),
                attributes: Default::default(),
                daily_images: Some(2),
                daily_tokens: None,
                disabled: false,
                created_at: 0,
            })
            .await
            .expect("sa");
        let cfg = QuotaConfig::default();
        let now = at("2026-11-22T12:00:00Z");
        let sa = principal(PrincipalKind::ServiceAccount, "batch", None);
        enforce(&store, &cfg, &role(), &sa, &images(2), now)
            .await
            .expect("two");
        let denial = enforce(&store, &cfg, &role(), &sa, &images(1), now)
            .await
            .expect_err("account limit, not the role's 10");
        assert_eq!(
            denial.rule.as_deref(),
            Some("service_accounts.batch.daily_images")
        );
        // A request that asks for more than the whole limit says so.
        let denial = enforce(
            &store,
            &cfg,
            &role(),
            &sa,
            &images(3),
            at("2026-11-23T01:00:00Z"),
        )
        .await
        .expect_err("too big");
        assert!(
            denial.reason.contains("more than the whole limit of 2"),
            "{}",
            denial.reason
        );
    }

    #[tokio::test]
    async fn a_store_failure_is_a_503_never_an_allow() {
        let (_dir, store) = open_store().await;
        store.close_for_tests().await;
        let denial = enforce(
            &store,
            &QuotaConfig::default(),
            &role(),
            &alice(),
            &images(1),
            at("2026-11-22T12:00:00Z"),
        )
        .await
        .expect_err("closed");
        assert_eq!(denial.kind, DenyKind::Unavailable);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m 5s");
        assert_eq!(human_duration(3 * 3600 + 12 * 60 + 5), "3h 12m");
        assert_eq!(human_duration(3 * 86_400 + 3600), "3d 1h");
    }
}
