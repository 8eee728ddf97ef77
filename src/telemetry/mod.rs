//! Structured logs: JSON lines on stderr, filtered by `RUST_LOG` (default `info`); Prometheus
//! metrics ([`Metrics`]); OpenTelemetry export of audit events, Check spans and metrics
//! ([`OtlpExporter`], `audit.otlp`).

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. Logs go to stderr so command output on stdout
/// (a new API key, a JSON listing) stays clean; `default_level` applies without `RUST_LOG`.
pub fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("INFERGUARD_LOG_FORMAT")
        .map(|f| f != "text")
        .unwrap_or(true);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

mod metrics;
pub mod otlp;

pub use metrics::Metrics;
pub use otlp::{CheckOutcome, OtlpExporter};
