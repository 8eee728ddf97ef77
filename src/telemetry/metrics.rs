//! Prometheus metrics served at `/metrics`: decisions by result and reason, Check latency,
//! OTLP export drops.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `inferguard_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// `allow` or `deny`.
    result: &'static str,
    /// `ok` for allows, the refusal's error code otherwise.
    reason: &'static str,
}

/// The process's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    check_duration: Histogram,
    otlp_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "inferguard_decisions",
            "Check decisions by result and reason",
            decisions.clone(),
        );
        // 25 µs … ~0.4 s: the hot path lives in the first buckets, store and IdP calls later.
        let check_duration = Histogram::new([
            0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
            0.1, 0.4,
        ]);
        registry.register(
            "inferguard_check_duration_seconds",
            "Time to decide one Check",
            check_duration.clone(),
        );
        let otlp_dropped = Counter::default();
        registry.register(
            "inferguard_otlp_dropped",
            "Audit records and Check spans not exported because the OTLP queue was full",
            otlp_dropped.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            decisions,
            check_duration,
            otlp_dropped,
        }
    }

    /// Counts one decision and its latency.
    pub fn record_decision(&self, allowed: bool, reason: &'static str, took: Duration) {
        let result = if allowed { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels { result, reason })
            .inc();
        self.check_duration.observe(took.as_secs_f64());
    }

    /// `inferguard_otlp_dropped_total`, for the OTLP exporter to count its drops.
    pub fn otlp_dropped(&self) -> Counter {
        self.otlp_dropped.clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_decisions_and_latency() {
        let m = Metrics::new();
        m.record_decision(true, "ok", Duration::from_micros(40));
        m.record_decision(false, "invalid_api_key", Duration::from_micros(40));
        m.record_decision(false, "invalid_api_key", Duration::from_micros(40));
        let text = m.render();
        assert!(
            text.contains(
                r#"inferguard_decisions_total{result="deny",reason="invalid_api_key"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"inferguard_decisions_total{result="allow",reason="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("inferguard_check_duration_seconds_count 3"),
            "{text}"
        );
        m.otlp_dropped().inc();
        assert!(
            m.render().contains("inferguard_otlp_dropped_total 1"),
            "{}",
            m.render()
        );
    }
}
