//! Security events for a SIEM's alerting: a `severity` and, when a record is one, a
//! `security_event` name on audit records, plus two small in-memory detectors whose findings
//! become records of their own.
//!
//! * [`classify`] — a pure function from an [`AuditEvent`] to its [`Severity`] and
//!   [`SecurityEvent`]: a `content_blocked` refusal is `prohibited_content` (medium); role,
//!   credential, approval, template and policy changes are `role_or_permission_change`,
//!   `credential_change` or `policy_change`; any other admin change made through the CLI
//!   (`actor` `cli:…`, i.e. not through an admin listener — inferguard has none yet) is
//!   `admin_outside_listener` (low). When several apply, the more specific name wins; the
//!   `actor` still tells a CLI change apart.
//! * [`FailureBursts`] — a bounded sliding-window counter of failed authentications (401s)
//!   per client address and per key id: [`BURST_THRESHOLD`] failures within [`BURST_WINDOW`]
//!   raise one `auth_failure_burst` (high) per window per subject.
//! * [`KeyRanges`] — per key id, the /24 (IPv4) or /64 (IPv6) ranges it has been used from;
//!   an allowed request from a range the key has not used before (after its first one)
//!   raises `key_new_address_range` (medium).
//!
//! Both detectors are in memory and per replica: a restart forgets them, and replicas behind
//! a load balancer each count only what they see. Their memory is bounded
//! ([`MAX_SUBJECTS`], [`MAX_KEYS`], [`MAX_RANGES_PER_KEY`]); the least recently seen entries
//! are evicted first.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::event::{AuditEvent, EventType, Outcome};

/// Failed authentications within [`BURST_WINDOW`] that make a burst.
pub const BURST_THRESHOLD: usize = 20;
/// The sliding window of burst detection.
pub const BURST_WINDOW: Duration = Duration::from_secs(60);
/// The most addresses and key ids the burst detector tracks at once.
pub const MAX_SUBJECTS: usize = 10_000;
/// The most key ids whose address ranges are remembered.
pub const MAX_KEYS: usize = 10_000;
/// The most address ranges remembered per key id.
pub const MAX_RANGES_PER_KEY: usize = 16;

/// How much a record matters to a SIEM. Ordered: `info < low < medium < high`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine: allowed requests, ordinary refusals.
    #[default]
    Info,
    /// Worth keeping an eye on (most admin changes).
    Low,
    /// Worth a look (role changes, prohibited content, a key used from a new range).
    Medium,
    /// Alert (a burst of failed authentications).
    High,
}

impl Severity {
    /// The lower-case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// The name of a security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityEvent {
    /// [`BURST_THRESHOLD`] failed authentications within [`BURST_WINDOW`] from one address or
    /// for one key id.
    AuthFailureBurst,
    /// A role, approval, template or service-account change.
    RoleOrPermissionChange,
    /// An API key created or revoked, a user created or disabled, sessions revoked.
    CredentialChange,
    /// A policy reload (`failed` ones are medium).
    PolicyChange,
    /// A request refused for prohibited content (`content_blocked`).
    ProhibitedContent,
    /// An API key used from an address range it has not used before.
    KeyNewAddressRange,
    /// An API key refused because it was used from outside its allowed networks.
    KeyNetworkRefused,
    /// Any other admin change made outside an admin listener (today: through the CLI).
    AdminOutsideListener,
}

impl SecurityEvent {
    /// The snake_case name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEvent::AuthFailureBurst => "auth_failure_burst",
            SecurityEvent::RoleOrPermissionChange => "role_or_permission_change",
            SecurityEvent::CredentialChange => "credential_change",
            SecurityEvent::PolicyChange => "policy_change",
            SecurityEvent::ProhibitedContent => "prohibited_content",
            SecurityEvent::KeyNewAddressRange => "key_new_address_range",
            SecurityEvent::KeyNetworkRefused => "key_network_refused",
            SecurityEvent::AdminOutsideListener => "admin_outside_listener",
        }
    }
}

impl fmt::Display for SecurityEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The severity and security event name of `event`: pure, no state.
///
/// Records made by the detectors ([`EventType::Security`]) keep what they were given.
pub fn classify(event: &AuditEvent) -> (Severity, Option<SecurityEvent>) {
    use SecurityEvent as E;
    use Severity as S;
    match event.event_type {
        EventType::Security => (event.severity, event.security_event),
        EventType::Decision => match (event.result, event.error.as_deref()) {
            (Outcome::Deny, Some("content_blocked")) => (S::Medium, Some(E::ProhibitedContent)),
            (Outcome::Deny, Some(crate::identity::NETWORK_NOT_ALLOWED)) => {
                (S::Medium, Some(E::KeyNetworkRefused))
            }
            _ => (S::Info, None),
        },
        EventType::Admin => {
            let action = event.action.as_deref().unwrap_or("");
            let failed = event.result == Outcome::Failed;
            let specific = match action {
                "user.set_role" => Some((S::Medium, E::RoleOrPermissionChange)),
                "user.disable" => Some((S::Medium, E::CredentialChange)),
                "key.create" | "key.revoke" | "user.create" | "session.revoke" => {
                    Some((S::Low, E::CredentialChange))
                }
                "user.set_attr" | "service_account.create" => {
                    Some((S::Low, E::RoleOrPermissionChange))
                }
                "policy.reload" if failed => Some((S::Medium, E::PolicyChange)),
                "policy.reload" => Some((S::Low, E::PolicyChange)),
                a if a.starts_with("approval.") || a.starts_with("template.") => {
                    Some((S::Low, E::RoleOrPermissionChange))
                }
                _ => None,
            };
            let via_cli = event
                .actor
                .as_deref()
                .is_some_and(|a| a == "cli" || a.starts_with("cli:"));
            match specific {
                Some((severity, name)) => (severity, Some(name)),
                None if via_cli => (S::Low, Some(E::AdminOutsideListener)),
                None if failed => (S::Low, None),
                None => (S::Info, None),
            }
        }
    }
}

/// Whom a failed authentication is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The client address Envoy saw.
    Address(IpAddr),
    /// The id of a well-formed API key that did not authenticate.
    KeyId(String),
}

/// One subject's recent failures.
#[derive(Debug)]
struct FailureWindow {
    /// At most [`BURST_THRESHOLD`] failure times, oldest first.
    times: VecDeque<Instant>,
    /// No further alert for this subject before this time.
    quiet_until: Option<Instant>,
    last_seen: Instant,
}

/// A burst found by [`FailureBursts::failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// The address or key id.
    pub subject: Subject,
    /// Failures counted within the window (at least the threshold).
    pub failures: usize,
}

/// The sliding-window counter of failed authentications per subject (see the module docs).
#[derive(Debug)]
pub struct FailureBursts {
    threshold: usize,
    window: Duration,
    max_subjects: usize,
    subjects: HashMap<Subject, FailureWindow>,
}

impl Default for FailureBursts {
    fn default() -> Self {
        FailureBursts::new(BURST_THRESHOLD, BURST_WINDOW, MAX_SUBJECTS)
    }
}

impl FailureBursts {
    /// A detector raising a burst at `threshold` failures within `window`, tracking at most
    /// `max_subjects` subjects.
    pub fn new(threshold: usize, window: Duration, max_subjects: usize) -> FailureBursts {
        FailureBursts {
            threshold: threshold.max(1),
            window,
            max_subjects: max_subjects.max(1),
            subjects: HashMap::new(),
        }
    }

    /// How many subjects are tracked now.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Counts one failure of `subject` at `now`; returns the burst when this failure makes
    /// one and the subject has not been alerted on within the last window.
    pub fn failure(&mut self, subject: Subject, now: Instant) -> Option<Burst> {
        if !self.subjects.contains_key(&subject) && self.subjects.len() >= self.max_subjects {
            self.evict(now);
        }
        let threshold = self.threshold;
        let window = self.window;
        let entry = self
            .subjects
            .entry(subject.clone())
            .or_insert_with(|| FailureWindow {
                times: VecDeque::with_capacity(threshold),
                quiet_until: None,
                last_seen: now,
            });
        entry.last_seen = now;
        while entry
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            entry.times.pop_front();
        }
        if entry.times.len() == threshold {
            entry.times.pop_front();
        }
        entry.times.push_back(now);
        let quiet = entry.quiet_until.is_some_and(|q| now < q);
        if entry.times.len() >= threshold && !quiet {
            entry.quiet_until = Some(now + window);
            return Some(Burst {
                subject,
                failures: entry.times.len(),
            });
        }
        None
    }

    /// Makes room: drops subjects idle for a whole window, and if that is not enough the
    /// least recently seen eighth (so eviction costs amortised O(1) per new subject).
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.subjects
            .retain(|_, w| now.saturating_duration_since(w.last_seen) < window);
        if self.subjects.len() < self.max_subjects {
            return;
        }
        let drop = (self.max_subjects / 8).max(1);
        let mut seen: Vec<Instant> = self.subjects.values().map(|w| w.last_seen).collect();
        let (_, cutoff, _) = seen.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        self.subjects.retain(|_, w| {
            if dropped < drop && w.last_seen <= cutoff {
                dropped += 1;
                false
            } else {
                true
            }
        });
    }
}

/// The /24 (IPv4) or /64 (IPv6) range holding `addr` (IPv4-mapped IPv6 counts as IPv4).
pub fn address_range(addr: IpAddr) -> (IpAddr, u8) {
    match addr.to_canonical() {
        IpAddr::V4(v4) => (IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)), 24),
        IpAddr::V6(v6) => (
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0xffff_ffff_ffff_ffff_u128)),
            64,
        ),
    }
}

/// Parses the client address Envoy reports (`203.0.113.7`, or with a port).
pub fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[derive(Debug)]
struct KeyEntry {
    /// Least recently used first.
    ranges: VecDeque<IpAddr>,
    last_seen: Instant,
}

/// A key used from a range it had not used before, found by [`KeyRanges::used`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRange {
    /// The new range, e.g. `198.51.100.0/24`.
    pub range: String,
    /// How many other ranges the key is remembered to have used.
    pub known_ranges: usize,
}

/// Per key id, the address ranges it has been used from (see the module docs).
#[derive(Debug)]
pub struct KeyRanges {
    max_keys: usize,
    max_ranges: usize,
    keys: HashMap<String, KeyEntry>,
}

impl Default for KeyRanges {
    fn default() -> Self {
        KeyRanges::new(MAX_KEYS, MAX_RANGES_PER_KEY)
    }
}

impl KeyRanges {
    /// A detector remembering at most `max_ranges` ranges for each of at most `max_keys` keys.
    pub fn new(max_keys: usize, max_ranges: usize) -> KeyRanges {
        KeyRanges {
            max_keys: max_keys.max(1),
            max_ranges: max_ranges.max(1),
            keys: HashMap::new(),
        }
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Notes that `key_id` was used from `addr` at `now`; returns the new range when the key
    /// has been seen before but not from this range.
    pub fn used(&mut self, key_id: &str, addr: IpAddr, now: Instant) -> Option<NewRange> {
        let (net, bits) = address_range(addr);
        if let Some(entry) = self.keys.get_mut(key_id) {
            entry.last_seen = now;
            if let Some(pos) = entry.ranges.iter().position(|r| *r == net) {
                if pos + 1 != entry.ranges.len()
                    && let Some(r) = entry.ranges.remove(pos)
                {
                    entry.ranges.push_back(r);
                }
                return None;
            }
            let known_ranges = entry.ranges.len();
            if entry.ranges.len() >= self.max_ranges {
                entry.ranges.pop_front();
            }
            entry.ranges.push_back(net);
            return Some(NewRange {
                range: format!("{net}/{bits}"),
                known_ranges,
            });
        }
        if self.keys.len() >= self.max_keys {
            self.evict();
        }
        self.keys.insert(
            key_id.to_string(),
            KeyEntry {
                ranges: VecDeque::from([net]),
                last_seen: now,
            },
        );
        None
    }

    /// Drops the least recently seen eighth of the keys.
    fn evict(&mut self) {
        let drop = (self.max_keys / 8).max(1);
        let mut seen: Vec<Instant> = self.keys.values().map(|k| k.last_seen).collect();
        let (_, cutoff, _) = seen.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        self.keys.retain(|_, k| {
            if dropped < drop && k.last_seen <= cutoff {
                dropped += 1;
                false
            } else {
                true
            }
        });
    }
}

/// Both detectors behind locks, for the ext_authz service. Cheap: a lock and a hash lookup
/// per refused-as-unauthenticated request and per allowed API-key request.
#[derive(Debug, Default)]
pub struct SecurityMonitor {
    bursts: Mutex<FailureBursts>,
    ranges: Mutex<KeyRanges>,
}

impl SecurityMonitor {
    /// A monitor with the given detectors (tests use small thresholds).
    pub fn new(bursts: FailureBursts, ranges: KeyRanges) -> SecurityMonitor {
        SecurityMonitor {
            bursts: Mutex::new(bursts),
            ranges: Mutex::new(ranges),
        }
    }

    /// Counts one failed authentication from `address` (and for `key_id`, the id of a
    /// well-formed key that did not authenticate; never the key itself). Returns the
    /// `auth_failure_burst` records to write.
    pub fn auth_failure(
        &self,
        address: Option<IpAddr>,
        key_id: Option<&str>,
        now: Instant,
    ) -> Vec<AuditEvent> {
        let mut found = Vec::new();
        {
            let mut bursts = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(addr) = address {
                found.extend(bursts.failure(Subject::Address(addr), now));
            }
            if let Some(id) = key_id {
                found.extend(bursts.failure(Subject::KeyId(id.to_string()), now));
            }
        }
        found.into_iter().map(burst_event).collect()
    }

    /// Notes an allowed request with API key `key_id` from `address`; returns the
    /// `key_new_address_range` record to write, if the range is new for the key.
    pub fn key_used(&self, key_id: &str, address: IpAddr, now: Instant) -> Option<AuditEvent> {
        let new = {
            let mut ranges = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
            ranges.used(key_id, address, now)?
        };
        let mut event = AuditEvent::security(
            SecurityEvent::KeyNewAddressRange,
            Severity::Medium,
            Outcome::Allow,
        );
        event.key_id = Some(key_id.to_string());
        event.client_address = Some(address.to_string());
        event.details = Some(serde_json::json!({
            "range": new.range,
            "known_ranges": new.known_ranges,
        }));
        Some(event)
    }
}

fn burst_event(burst: Burst) -> AuditEvent {
    let mut event = AuditEvent::security(
        SecurityEvent::AuthFailureBurst,
        Severity::High,
        Outcome::Deny,
    );
    let by = match burst.subject {
        Subject::Address(addr) => {
            event.client_address = Some(addr.to_string());
            "client_address"
        }
        Subject::KeyId(id) => {
            event.key_id = Some(id);
            "key_id"
        }
    };
    event.status = Some(401);
    event.details = Some(serde_json::json!({
        "by": by,
        "failures": burst.failures,
        "window_seconds": BURST_WINDOW.as_secs(),
    }));
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(actor: &str, action: &str) -> AuditEvent {
        AuditEvent::admin(actor, action, "x:y", serde_json::Value::Null)
    }

    #[test]
    fn classifier_names_and_grades_events() {
        let cases = [
            (
                "cli:alice",
                "user.set_role",
                S::Medium,
                Some(E::RoleOrPermissionChange),
            ),
            (
                "cli:alice",
                "user.disable",
                S::Medium,
                Some(E::CredentialChange),
            ),
            ("cli:alice", "key.create", S::Low, Some(E::CredentialChange)),
            ("cli:alice", "key.revoke", S::Low, Some(E::CredentialChange)),
            (
                "cli:alice",
                "approval.approve",
                S::Low,
                Some(E::RoleOrPermissionChange),
            ),
            (
                "cli:alice",
                "template.approve",
                S::Low,
                Some(E::RoleOrPermissionChange),
            ),
            (
                "cli:alice",
                "something.else",
                S::Low,
                Some(E::AdminOutsideListener),
            ),
            (
                "cli",
                "something.else",
                S::Low,
                Some(E::AdminOutsideListener),
            ),
            ("admin:bob", "something.else", S::Info, None),
        ];
        use SecurityEvent as E;
        use Severity as S;
        for (actor, action, severity, name) in cases {
            let event = admin(actor, action);
            assert_eq!(classify(&event), (severity, name), "{actor} {action}");
            assert_eq!(event.severity, severity, "constructor classifies {action}");
            assert_eq!(event.security_event, name);
        }
        let ok = AuditEvent::policy_reload("p.yaml", Ok("v2"));
        assert_eq!(
            (ok.severity, ok.security_event),
            (S::Low, Some(E::PolicyChange))
        );
        let failed = AuditEvent::policy_reload("p.yaml", Err("bad"));
        assert_eq!(
            (failed.severity, failed.security_event),
            (S::Medium, Some(E::PolicyChange))
        );
    }

    #[test]
    fn classifier_grades_decisions() {
        use crate::domain::{Denial, DenyKind, Request};
        let req = Request::default();
        let blocked = Denial::new(DenyKind::BadRequest, "content_blocked", "forbidden term");
        let event = AuditEvent::decision(&req, Err(&blocked), "v1", Duration::ZERO, true);
        assert_eq!(event.severity, Severity::Medium);
        assert_eq!(event.security_event, Some(SecurityEvent::ProhibitedContent));
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["severity"], "medium");
        assert_eq!(json["security_event"], "prohibited_content");

        let other = Denial::new(DenyKind::Unauthenticated, "invalid_api_key", "no");
        let event = AuditEvent::decision(&req, Err(&other), "v1", Duration::ZERO, true);
        assert_eq!(classify(&event), (Severity::Info, None));
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["severity"], "info");
        assert!(json.get("security_event").is_none());
    }

    fn addr(s: &str) -> Subject {
        Subject::Address(s.parse().expect("ip"))
    }

    #[test]
    fn bursts_need_the_threshold_within_the_window() {
        let mut b = FailureBursts::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        assert_eq!(b.failure(addr("10.0.0.1"), t0), None);
        assert_eq!(
            b.failure(addr("10.0.0.1"), t0 + Duration::from_secs(30)),
            None
        );
        // The first failure has left the window: still two.
        assert_eq!(
            b.failure(addr("10.0.0.1"), t0 + Duration::from_secs(61)),
            None
        );
        // Another subject counts separately.
        assert_eq!(
            b.failure(addr("10.0.0.2"), t0 + Duration::from_secs(61)),
            None
        );
        let burst = b.failure(addr("10.0.0.1"), t0 + Duration::from_secs(62));
        assert_eq!(
            burst,
            Some(Burst {
                subject: addr("10.0.0.1"),
                failures: 3
            })
        );
    }

    #[test]
    fn one_alert_per_window_per_subject() {
        let mut b = FailureBursts::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let key = || Subject::KeyId("0123456789abcdef".into());
        let mut alerts = 0;
        for i in 0..50 {
            alerts += b
                .failure(key(), t0 + Duration::from_millis(i * 100))
                .is_some() as usize;
        }
        assert_eq!(alerts, 1, "50 failures in 5 s: one alert");
        // A window later, a continuing burst alerts again.
        for i in 0..3 {
            let t = t0 + Duration::from_secs(70) + Duration::from_millis(i);
            alerts += b.failure(key(), t).is_some() as usize;
        }
        assert_eq!(alerts, 2);
    }

    #[test]
    fn burst_memory_is_bounded() {
        let mut b = FailureBursts::new(20, Duration::from_secs(60), 64);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            b.failure(Subject::Address(ip), t0 + Duration::from_micros(i.into()));
            assert!(b.len() <= 64);
        }
        // The newest subject is still tracked and can alert.
        let last = Subject::Address(IpAddr::V4(Ipv4Addr::from(9_999)));
        let mut hit = false;
        for i in 0..19 {
            hit |= b
                .failure(last.clone(), t0 + Duration::from_millis(20 + i))
                .is_some();
        }
        assert!(hit);
    }

    #[test]
    fn ranges_are_slash_24_and_slash_64() {
        let r = |s: &str| {
            let (net, bits) = address_range(s.parse().expect("ip"));
            format!("{net}/{bits}")
        };
        assert_eq!(r("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(r("::ffff:203.0.113.77"), "203.0.113.0/24");
        assert_eq!(r("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(parse_address("203.0.113.7:443"), "203.0.113.7".parse().ok());
        assert_eq!(
            parse_address("[2001:db8::1]:443"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_address("unix:/x"), None);
    }

    #[test]
    fn a_key_from_a_new_range_is_noticed_after_its_first() {
        let mut k = KeyRanges::new(100, 2);
        let t = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(k.used("k1", ip("203.0.113.1"), t), None, "first range");
        assert_eq!(k.used("k1", ip("203.0.113.200"), t), None, "same /24");
        let new = k.used("k1", ip("198.51.100.9"), t).expect("new range");
        assert_eq!(new.range, "198.51.100.0/24");
        assert_eq!(new.known_ranges, 1);
        assert_eq!(k.used("k1", ip("198.51.100.10"), t), None);
        assert_eq!(k.used("k2", ip("198.51.100.10"), t), None, "per key");
        // Two ranges per key: a third evicts the least recently used (203.0.113.0/24).
        assert!(k.used("k1", ip("192.0.2.1"), t).is_some());
        assert_eq!(k.used("k1", ip("192.0.2.2"), t), None);
        assert!(k.used("k1", ip("203.0.113.1"), t).is_some(), "forgotten");
        assert_eq!(
            k.used("k1", ip("2001:db8::1"), t).map(|n| n.range),
            Some("2001:db8::/64".into())
        );
    }

    #[test]
    fn key_memory_is_bounded() {
        let mut k = KeyRanges::new(32, 4);
        let t0 = Instant::now();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        for i in 0..1000u64 {
            k.used(&format!("{i:016x}"), ip, t0 + Duration::from_micros(i));
            assert!(k.len() <= 32);
        }
    }

    #[test]
    fn monitor_events_carry_subject_and_count_but_no_secret() {
        let m = SecurityMonitor::new(
            FailureBursts::new(2, Duration::from_secs(60), 10),
            KeyRanges::new(10, 4),
        );
        let t = Instant::now();
        let a = Some("192.0.2.5".parse().expect("ip"));
        assert!(m.auth_failure(a, Some("0123456789abcdef"), t).is_empty());
        let events = m.auth_failure(a, Some("0123456789abcdef"), t);
        assert_eq!(events.len(), 2, "one per address, one per key id");
        for e in &events {
            assert_eq!(e.event_type, EventType::Security);
            assert_eq!(e.severity, Severity::High);
            assert_eq!(e.security_event, Some(SecurityEvent::AuthFailureBurst));
            assert_eq!(e.details.as_ref().expect("details")["failures"], 2);
        }
        assert_eq!(events[0].client_address.as_deref(), Some("192.0.2.5"));
        assert_eq!(events[1].key_id.as_deref(), Some("0123456789abcdef"));
        let json = serde_json::to_value(&events[0]).expect("json");
        assert_eq!(json["event_type"], "security");
        assert_eq!(json["security_event"], "auth_failure_burst");
        assert_eq!(json["severity"], "high");

        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(m.key_used("k", ip("192.0.2.5"), t).is_none());
        let e = m.key_used("k", ip("198.51.100.5"), t).expect("new range");
        assert_eq!(e.severity, Severity::Medium);
        assert_eq!(e.security_event, Some(SecurityEvent::KeyNewAddressRange));
        assert_eq!(
            e.details.as_ref().expect("details")["range"],
            "198.51.100.0/24"
        );
    }
}
