//! OpenTelemetry export (`audit.otlp`): audit events as OTLP logs, one span per ext_authz
//! Check, and decision metrics, sent over OTLP/gRPC to a collector.
//!
//! * **Logs** — every event the [`AuditTrail`](crate::audit::AuditTrail) records is handed to
//!   [`OtlpExporter`] (an [`EventSink`]) once written. Body = `event_type` (`decision` or
//!   `admin`); attributes = the event's JSON fields (`user_id`, `result`, `error`, `reason`,
//!   `request_id`, …: the same fields as the trail, so never a secret); severity `INFO` for
//!   `allow`/`ok`, `WARN` for `deny`/`failed` or an audit `severity` of `medium`, `ERROR`
//!   for `high` (see [`crate::audit::security`]).
//! * **Spans** — `ext_authz.Check` (kind server) per decision, a child of the trace in Envoy's
//!   `traceparent` header when there is one (W3C trace context), with the request id, result,
//!   reason and refusal status as attributes.
//! * **Metrics** — `inferguard.decisions` (counter by `result`, `reason`) and
//!   `inferguard.check.duration` (histogram, seconds), every 10 s.
//!
//! # Never blocking a decision
//!
//! Handing a record or span over is a counter check and a non-blocking queue push. Export runs
//! on the SDK's batch threads. When the collector is slow or down, a failed batch is retried
//! with backoff (200 ms doubling to 5 s) until it is accepted, so records wait in the queue
//! and arrive once the collector is back. At most `audit.otlp.queue_size` records (and,
//! separately, spans) wait; beyond that new ones are dropped and counted in the Prometheus
//! counter `inferguard_otlp_dropped_total`. The local trail still holds every event. At
//! shutdown what is queued gets one last try, then is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Counter as OtelCounter, Histogram, MeterProvider as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, Key, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder as LogBatchConfig, BatchLogProcessor, LogBatch, LogExporter, SdkLogRecord,
    SdkLogger, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder as SpanBatchConfig, BatchSpanProcessor, Sampler, SdkTracer,
    SdkTracerProvider, SpanData, SpanExporter,
};
use prometheus_client::metrics::counter::Counter;

use crate::audit::{AuditEvent, EventSink, EventType, Outcome, Severity as AuditSeverity};
use crate::config::OtlpConfig;

/// How often batches leave when the queue is not full.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How often metrics are exported.
const METRICS_INTERVAL: Duration = Duration::from_secs(10);
/// The first wait after a failed export; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts at one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last batches.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One Check as the span and metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct CheckOutcome<'a> {
    /// Envoy's `traceparent` header, if any.
    pub traceparent: Option<&'a str>,
    /// When the Check arrived (wall clock).
    pub started: SystemTime,
    /// How long the decision took.
    pub took: Duration,
    /// The request id.
    pub request_id: &'a str,
    /// Allowed or refused.
    pub allowed: bool,
    /// `ok` or the refusal's error code.
    pub reason: &'static str,
    /// The HTTP status of a refusal.
    pub status: Option<u16>,
}

/// The running exporter: cheap to call from the hot path; [`OtlpExporter::shutdown`] at exit.
pub struct OtlpExporter {
    logs: SdkLoggerProvider,
    logger: SdkLogger,
    traces: SdkTracerProvider,
    tracer: SdkTracer,
    meters: SdkMeterProvider,
    decisions: OtelCounter<u64>,
    latency: Histogram<f64>,
    log_gate: Arc<Gate>,
    span_gate: Arc<Gate>,
    stopping: Arc<AtomicBool>,
    dropped: Counter,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter").finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Builds the exporters and their batch threads. Must run inside the Tokio runtime (the
    /// gRPC channel lives there); connects lazily, so a collector that is down does not stop
    /// the start. `dropped` counts records and spans dropped because the queue was full.
    pub fn start(cfg: &OtlpConfig, dropped: Counter) -> anyhow::Result<Arc<OtlpExporter>> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let resource = Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let stopping = Arc::new(AtomicBool::new(false));
        // The SDK queues hold a little more than the gates admit, so the SDK never drops
        // silently: every drop happens (and is counted) at the gate.
        let sdk_queue = cfg.queue_size + 64;

        let log_gate = Arc::new(Gate::new(cfg.queue_size));
        let log_exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.endpoint.clone())
            .with_timeout(timeout)
            .build()
            .context("audit.otlp: building the log exporter")?;
        let logs = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_log_processor(
                BatchLogProcessor::builder(Retrying::new(
                    log_exporter,
                    "logs",
                    &log_gate,
                    &stopping,
                ))
                .with_batch_config(
                    LogBatchConfig::default()
                        .with_max_queue_size(sdk_queue)
                        .with_scheduled_delay(BATCH_DELAY)
                        .build(),
                )
                .build(),
            )
            .build();

        let span_gate = Arc::new(Gate::new(cfg.queue_size));
        let span_exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.endpoint.clone())
            .with_timeout(timeout)
            .build()
            .context("audit.otlp: building the span exporter")?;
        let traces = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            // Every Check gets a span, whatever the caller's sampling flag: gate accounting
            // relies on each admitted span reaching the exporter.
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(
                BatchSpanProcessor::builder(Retrying::new(
                    span_exporter,
                    "traces",
                    &span_gate,
                    &stopping,
                ))
                .with_batch_config(
                    SpanBatchConfig::default()
                        .with_max_queue_size(sdk_queue)
                        .with_scheduled_delay(BATCH_DELAY)
                        .build(),
                )
                .build(),
            )
            .build();

        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.endpoint.clone())
            .with_timeout(timeout)
            .build()
            .context("audit.otlp: building the metric exporter")?;
        let meters = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(
                PeriodicReader::builder(metric_exporter)
                    .with_interval(METRICS_INTERVAL)
                    .build(),
            )
            .build();
        let meter = meters.meter("inferguard");
        let decisions = meter
            .u64_counter("inferguard.decisions")
            .with_description("Check decisions by result and reason")
            .build();
        let latency = meter
            .f64_histogram("inferguard.check.duration")
            .with_description("Time to decide one Check")
            .with_unit("s")
            .with_boundaries(vec![
                0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                0.05, 0.1, 0.4,
            ])
            .build();

        let scope = InstrumentationScope::builder("inferguard")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let logger = logs.logger_with_scope(scope.clone());
        let tracer = traces.tracer_with_scope(scope);
        tracing::info!(
            service_name = %cfg.service_name, queue_size = cfg.queue_size,
            "OpenTelemetry export enabled (audit logs, Check spans, metrics)"
        );
        Ok(Arc::new(OtlpExporter {
            logs,
            logger,
            traces,
            tracer,
            meters,
            decisions,
            latency,
            log_gate,
            span_gate,
            stopping,
            dropped,
        }))
    }

    /// Records one Check: its span (joining Envoy's trace) and its metrics.
    pub fn record_check(&self, check: CheckOutcome<'_>) {
        let result = if check.allowed { "allow" } else { "deny" };
        let labels = [
            KeyValue::new("result", result),
            KeyValue::new("reason", check.reason),
        ];
        self.decisions.add(1, &labels);
        self.latency.record(check.took.as_secs_f64(), &[]);

        if !self.span_gate.admit() {
            self.dropped.inc();
            return;
        }
        let parent = match check.traceparent.and_then(parse_traceparent) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let mut attributes = vec![
            KeyValue::new("inferguard.request_id", check.request_id.to_string()),
            KeyValue::new("inferguard.result", result),
            KeyValue::new("inferguard.reason", check.reason),
        ];
        if let Some(status) = check.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let mut span = self
            .tracer
            .span_builder("ext_authz.Check")
            .with_kind(SpanKind::Server)
            .with_start_time(check.started)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(check.started + check.took);
    }

    /// Records and spans dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Stops retrying, gives what is queued one last try (a few seconds at most) and stops
    /// the batch threads. Blocking: call from `spawn_blocking`.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for (signal, result) in [
            ("logs", self.logs.shutdown_with_timeout(SHUTDOWN_TIMEOUT)),
            (
                "traces",
                self.traces.shutdown_with_timeout(SHUTDOWN_TIMEOUT),
            ),
            (
                "metrics",
                self.meters.shutdown_with_timeout(SHUTDOWN_TIMEOUT),
            ),
        ] {
            if let Err(e) = result {
                tracing::warn!(signal, error = %e, "otlp: shutdown incomplete");
            }
        }
        let dropped = self.dropped.get();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "otlp: records/spans dropped because the export queue was full"
            );
        }
    }
}

impl EventSink for OtlpExporter {
    fn emit(&self, event: &AuditEvent) {
        if !self.log_gate.admit() {
            self.dropped.inc();
            return;
        }
        let (severity, text) = log_severity(event);
        let event_type = match event.event_type {
            EventType::Decision => "decision",
            EventType::Admin => "admin",
            EventType::Security => "security",
        };
        let now = SystemTime::now();
        let mut record = self.logger.create_log_record();
        record.set_event_name(event_type);
        record.set_body(AnyValue::from(event_type));
        record.set_severity_number(severity);
        record.set_severity_text(text);
        record.set_timestamp(now);
        record.set_observed_timestamp(now);
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) {
            for (key, value) in fields {
                if let Some(value) = any_value(value) {
                    record.add_attribute(Key::from(key), value);
                }
            }
        }
        self.logger.emit(record);
    }
}

/// The OTLP log severity of a record: the higher of what its result says (`INFO` for
/// `allow`/`ok`, `WARN` for `deny`/`failed`) and what its audit severity says (`WARN` for
/// `medium`, `ERROR` for `high`).
fn log_severity(event: &AuditEvent) -> (Severity, &'static str) {
    match (event.severity, event.result) {
        (AuditSeverity::High, _) => (Severity::Error, "ERROR"),
        (AuditSeverity::Medium, _) | (_, Outcome::Deny | Outcome::Failed) => {
            (Severity::Warn, "WARN")
        }
        _ => (Severity::Info, "INFO"),
    }
}

/// A JSON value as an OTLP attribute value (`null` has none).
fn any_value(value: serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value;
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => AnyValue::String(s.into()),
        Value::Array(items) => {
            AnyValue::ListAny(Box::new(items.into_iter().filter_map(any_value).collect()))
        }
        Value::Object(map) => AnyValue::Map(Box::new(
            map.into_iter()
                .filter_map(|(k, v)| any_value(v).map(|v| (Key::from(k), v)))
                .collect::<HashMap<_, _>>(),
        )),
    })
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`) as a remote span context;
/// `None` when malformed (the span then starts a new trace).
pub fn parse_traceparent(header: &str) -> Option<SpanContext> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version.len() != 2
        || !hex(version)
        || version == "ff"
        || (version == "00" && parts.next().is_some())
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || !hex(trace)
        || !hex(span)
        || !hex(flags)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// Admission to the export queue: at most `capacity` items between hand-over and the end of
/// their export.
#[derive(Debug)]
struct Gate {
    pending: AtomicUsize,
    capacity: usize,
}

impl Gate {
    fn new(capacity: usize) -> Gate {
        Gate {
            pending: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Takes a place if one is free.
    fn admit(&self) -> bool {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Frees `n` places (their items were exported or given up).
    fn release(&self, n: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }
}

/// Wraps an OTLP exporter: retries a failed batch with backoff until it is accepted or the
/// exporter is stopping, then frees the batch's places in the gate. Runs on the SDK's batch
/// thread (under `block_on`), so waiting there blocks no decision.
#[derive(Debug)]
struct Retrying<E> {
    inner: E,
    signal: &'static str,
    gate: Arc<Gate>,
    stopping: Arc<AtomicBool>,
}

impl<E> Retrying<E> {
    fn new(inner: E, signal: &'static str, gate: &Arc<Gate>, stopping: &Arc<AtomicBool>) -> Self {
        Retrying {
            inner,
            signal,
            gate: gate.clone(),
            stopping: stopping.clone(),
        }
    }

    async fn retry<F, Fut>(&self, count: usize, mut attempt: F) -> OTelSdkResult
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = OTelSdkResult>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        let result = loop {
            match attempt().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            signal = self.signal,
                            count,
                            failures,
                            "otlp: collector reachable again; queued items sent"
                        );
                    }
                    break Ok(());
                }
                Err(e) => {
                    failures += 1;
                    if self.stopping.load(Ordering::SeqCst) {
                        tracing::warn!(
                            signal = self.signal, count, error = %e,
                            "otlp: export failed at shutdown; items dropped (the audit file has every event)"
                        );
                        break Err(e);
                    }
                    if failures == 1 {
                        tracing::warn!(
                            signal = self.signal, count, error = %e,
                            "otlp: export failed; retrying (new items are dropped once the queue is full)"
                        );
                    }
                    self.pause(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        self.gate.release(count);
        result
    }

    /// Sleeps `total` on the batch thread, waking early when shutdown starts.
    fn pause(&self, total: Duration) {
        let step = Duration::from_millis(50);
        let mut slept = Duration::ZERO;
        while slept < total && !self.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            slept += step;
        }
    }
}

impl<E: LogExporter> LogExporter for Retrying<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let items: Vec<(&SdkLogRecord, &InstrumentationScope)> = batch.iter().collect();
        self.retry(items.len(), || self.inner.export(LogBatch::new(&items)))
            .await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for Retrying<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        self.retry(count, || self.inner.export(batch.clone())).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_severity_follows_result_and_audit_severity() {
        use crate::audit::SecurityEvent;
        let ok = AuditEvent::admin("system", "noop", "x:y", serde_json::Value::Null);
        assert_eq!(log_severity(&ok).1, "INFO");
        let failed = AuditEvent::policy_reload("p.yaml", Err("bad"));
        assert_eq!(log_severity(&failed).1, "WARN");
        let role = AuditEvent::admin("cli:a", "user.set_role", "user:b", serde_json::Value::Null);
        assert_eq!(log_severity(&role), (Severity::Warn, "WARN"), "medium");
        let burst = AuditEvent::security(
            SecurityEvent::AuthFailureBurst,
            AuditSeverity::High,
            Outcome::Deny,
        );
        assert_eq!(log_severity(&burst), (Severity::Error, "ERROR"));
    }

    #[test]
    fn parses_w3c_traceparent() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(sc.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
    }

    #[test]
    fn refuses_malformed_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn config_defaults_and_fields() {
        let cfg: crate::config::AuditConfig =
            serde_yaml::from_str("{file: a.jsonl, otlp: {endpoint: \"http://collector:4317\"}}")
                .expect("valid");
        let otlp = cfg.otlp.expect("otlp");
        assert_eq!(otlp.endpoint, "http://collector:4317");
        assert_eq!(otlp.protocol, crate::config::OtlpProtocol::Grpc);
        assert_eq!(
            (otlp.timeout_ms, otlp.queue_size, otlp.service_name.as_str()),
            (5000, 2048, "inferguard")
        );
        let full: crate::config::OtlpConfig = serde_yaml::from_str(
            "{endpoint: \"https://c:4317\", protocol: grpc, timeout_ms: 10, queue_size: 3, service_name: ig}",
        )
        .expect("valid");
        assert_eq!((full.timeout_ms, full.queue_size), (10, 3));
        assert!(serde_yaml::from_str::<crate::config::OtlpConfig>("{protocol: http}").is_err());
        assert!(serde_yaml::from_str::<crate::config::OtlpConfig>("{endpint: x}").is_err());
        let bad = crate::config::OtlpConfig {
            endpoint: "collector:4317".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let empty = crate::config::OtlpConfig {
            queue_size: 0,
            ..Default::default()
        };
        assert!(empty.validate().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_down_collector_never_blocks_and_drops_are_counted() {
        let cfg = OtlpConfig {
            // Nothing listens on port 1: every export fails at once and is retried.
            endpoint: "http://127.0.0.1:1".into(),
            queue_size: 4,
            timeout_ms: 200,
            ..Default::default()
        };
        let dropped = Counter::default();
        let otlp = OtlpExporter::start(&cfg, dropped.clone()).expect("starts without a collector");
        let event = AuditEvent::policy_reload("policy.yaml", Ok("v1"));
        let started = std::time::Instant::now();
        for _ in 0..10 {
            otlp.emit(&event);
        }
        for i in 0..10 {
            otlp.record_check(CheckOutcome {
                traceparent: None,
                started: SystemTime::now(),
                took: Duration::from_micros(50),
                request_id: &format!("r{i}"),
                allowed: i % 2 == 0,
                reason: "ok",
                status: None,
            });
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "hand-over blocked"
        );
        assert_eq!(
            otlp.dropped(),
            12,
            "4 records and 4 spans wait, the rest is dropped"
        );
        assert_eq!(dropped.get(), 12);
        let stop = std::time::Instant::now();
        tokio::task::spawn_blocking(move || otlp.shutdown())
            .await
            .expect("shutdown");
        assert!(stop.elapsed() < Duration::from_secs(10), "shutdown hung");
    }

    #[test]
    fn gate_bounds_pending_items() {
        let gate = Gate::new(2);
        assert!(gate.admit());
        assert!(gate.admit());
        assert!(!gate.admit());
        gate.release(1);
        assert!(gate.admit());
        gate.release(5);
        assert!(gate.admit());
    }

    #[test]
    fn json_fields_become_attribute_values() {
        let v =
            serde_json::json!({"a": "x", "n": 3, "f": 1.5, "b": true, "l": ["p", "q"], "z": null});
        let AnyValue::Map(map) = any_value(v).expect("object") else {
            panic!("not a map");
        };
        assert_eq!(
            map.get(&Key::from("a")),
            Some(&AnyValue::String("x".into()))
        );
        assert_eq!(map.get(&Key::from("n")), Some(&AnyValue::Int(3)));
        assert_eq!(map.get(&Key::from("f")), Some(&AnyValue::Double(1.5)));
        assert_eq!(map.get(&Key::from("b")), Some(&AnyValue::Boolean(true)));
        assert!(map.get(&Key::from("z")).is_none());
        assert!(matches!(
            map.get(&Key::from("l")),
            Some(AnyValue::ListAny(_))
        ));
    }
}
