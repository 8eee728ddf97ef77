//! Quota counters: how much of a daily or monthly allowance a user, service account or key
//! has used in the current window.
//!
//! The store only counts; the policy decides which counters apply, their limits and their
//! windows (see `policy::quota`). Consumption is all-or-nothing across the counters of one
//! request, in one transaction, so concurrent requests can never overshoot a limit and a
//! refused request costs nothing. Counters are not part of the change feed: they change on
//! every request and no cache depends on them.

use std::fmt;

use super::StoreResult;

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaUnit {
    /// Generated images (Fooocus `image_number`, OpenAI images `n`).
    Images,
    /// LLM requests.
    Requests,
    /// LLM tokens asked for (`max_tokens` × choices).
    Tokens,
}

impl QuotaUnit {
    /// The stored name: `images`, `requests` or `tokens`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaUnit::Images => "images",
            QuotaUnit::Requests => "requests",
            QuotaUnit::Tokens => "tokens",
        }
    }
}

impl fmt::Display for QuotaUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a counter's window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaPeriod {
    /// From one local midnight to the next.
    Day,
    /// From the first of a month, local midnight, to the first of the next.
    Month,
}

impl QuotaPeriod {
    /// The stored name: `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        }
    }
}

impl fmt::Display for QuotaPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter a request draws on, with its limit and how much the request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCounter {
    /// Whose allowance: `user:<subject>`, `service_account:<name>` or `key:<id>`.
    pub scope: String,
    pub unit: QuotaUnit,
    pub period: QuotaPeriod,
    /// Unix seconds at which the window started; with scope, unit and period it names the
    /// counter, so a new window starts from zero.
    pub window_start: i64,
    /// Unix seconds at which the window ends (the reset).
    pub window_end: i64,
    /// The most the counter may reach within the window.
    pub limit: u64,
    /// What this request adds.
    pub amount: u64,
}

/// The result of an attempt to consume a set of counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Every counter was increased; `used[i]` is counter `i`'s total after this request.
    Consumed { used: Vec<u64> },
    /// Nothing was consumed: each `(i, used)` names a counter that this request would have
    /// taken over its limit, and what it had used before.
    Exceeded { exceeded: Vec<(usize, u64)> },
}

/// Storage of quota counters.
#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync {
    /// Adds each counter's `amount` when every counter stays within its `limit`, in one
    /// transaction; otherwise changes nothing and reports every counter that would overflow.
    /// An empty list consumes nothing and succeeds.
    async fn consume_quota(&self, counters: &[QuotaCounter]) -> StoreResult<QuotaOutcome>;

    /// What a counter has used in its window (0 when it has never been drawn on). Only
    /// `scope`, `unit`, `period` and `window_start` are read.
    async fn quota_used(&self, counter: &QuotaCounter) -> StoreResult<u64>;

    /// Deletes counters whose window ended before `ended_before` (unix seconds); returns
    /// how many were deleted.
    async fn prune_quota_counters(&self, ended_before: i64) -> StoreResult<u64>;
}
