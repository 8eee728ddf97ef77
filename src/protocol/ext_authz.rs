//! The `envoy.service.auth.v3.Authorization` service: thin — convert, call the authorizer,
//! convert back.
//!
//! Failure semantics: the service answers every Check with a CheckResponse, allow or deny,
//! never a gRPC error, so Envoy always shows the caller inferguard's status and body. If
//! inferguard itself cannot be reached, Envoy's own `failure_mode_allow: false` refuses the
//! request (status_on_error), which keeps the system closed.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request as GrpcRequest, Response, Status};

use crate::audit::security::parse_address;
use crate::audit::{AuditEvent, AuditTrail, SecurityMonitor};
use crate::authorizer::{Authorizer, Trace};
use crate::domain::{Allow, Denial, DenyKind, Request};
use crate::identity::{INFERGUARD_COOKIE_PREFIX, api_key, cookie_header_without_session};
use crate::protocol::response::{decision_metadata, overwrite};
use crate::protocol::{denial_response, status_for, to_request};
use crate::telemetry::{CheckOutcome, Metrics, OtlpExporter};

/// The credential inferguard sets for the upstream on every allowed request.
#[derive(Clone)]
pub struct UpstreamCredential {
    /// Lower-case header name.
    pub header: String,
    /// The full header value (`Bearer …` for `authorization`), or `None` to set nothing.
    pub value: Option<String>,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("header", &self.header)
            .field("value", &"***")
            .finish()
    }
}

/// Envoy's largest `with_request_body` buffer we accept in one Check (Fooocus v2 bodies carry
/// base64 images; tonic's default of 4 MiB would refuse them).
pub const MAX_CHECK_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The ext_authz gRPC service.
pub struct CheckService {
    authorizer: Arc<Authorizer>,
    upstream: UpstreamCredential,
    metrics: Arc<Metrics>,
    audit: Option<AuditTrail>,
    otlp: Option<Arc<OtlpExporter>>,
    security: Arc<SecurityMonitor>,
}

impl CheckService {
    /// A service deciding with `authorizer` and injecting `upstream` on allow.
    pub fn new(
        authorizer: Arc<Authorizer>,
        upstream: UpstreamCredential,
        metrics: Arc<Metrics>,
    ) -> Self {
        CheckService {
            authorizer,
            upstream,
            metrics,
            audit: None,
            otlp: None,
            security: Arc::new(SecurityMonitor::default()),
        }
    }

    /// Uses `monitor` to detect bursts of failed authentication and keys used from new
    /// address ranges (the default one has the thresholds documented in
    /// [`crate::audit::security`]). Its findings are recorded only when a trail is set.
    pub fn with_security_monitor(mut self, monitor: Arc<SecurityMonitor>) -> Self {
        self.security = monitor;
        self
    }

    /// Exports a span (joining Envoy's `traceparent`) and metrics for every Check.
    pub fn with_otlp(mut self, otlp: Option<Arc<OtlpExporter>>) -> Self {
        self.otlp = otlp;
        self
    }

    /// Records every decision in `trail` (and refuses what cannot be recorded).
    pub fn with_audit(mut self, trail: Option<AuditTrail>) -> Self {
        self.audit = trail;
        self
    }

    /// The tonic server for this service, with the large message limit.
    pub fn into_server(self) -> AuthorizationServer<CheckService> {
        AuthorizationServer::new(self).max_decoding_message_size(MAX_CHECK_MESSAGE_BYTES)
    }

    /// Decides one converted request and builds Envoy's answer.
    pub async fn decide(&self, req: &Request) -> CheckResponse {
        let started = Instant::now();
        let wall = self.otlp.as_ref().map(|_| SystemTime::now());
        let outcome = match &self.audit {
            None => self.authorizer.check(req).await,
            Some(trail) => self.decide_recorded(req, trail, started).await,
        };
        match outcome {
            Ok(allow) => {
                self.metrics.record_decision(true, "ok", started.elapsed());
                tracing::debug!(
                    target: "inferguard::decision",
                    request_id = %req.id, result = "allow", subject = %allow.principal.subject,
                    role = %allow.principal.role, auth = allow.principal.auth.as_str(),
                    action = %allow.action.name, micros = started.elapsed().as_micros() as u64,
                );
                self.export_check(req, wall, started, None);
                self.allow_response(req, &allow)
            }
            Err(denial) => {
                self.metrics
                    .record_decision(false, denial.error, started.elapsed());
                tracing::info!(
                    target: "inferguard::decision",
                    request_id = %req.id, result = "deny", status = status_for(&denial.kind),
                    error = denial.error, rule = denial.rule.as_deref().unwrap_or(""),
                    micros = started.elapsed().as_micros() as u64,
                );
                self.export_check(req, wall, started, Some(&denial));
                denial_response(&denial, &req.id)
            }
        }
    }

    /// Hands the Check's span and metrics to the OTLP exporter, if one is configured.
    fn export_check(
        &self,
        req: &Request,
        wall: Option<SystemTime>,
        started: Instant,
        denial: Option<&Denial>,
    ) {
        if let (Some(otlp), Some(wall)) = (&self.otlp, wall) {
            otlp.record_check(CheckOutcome {
                traceparent: req.header("traceparent"),
                started: wall,
                took: started.elapsed(),
                request_id: &req.id,
                allowed: denial.is_none(),
                reason: denial.map_or("ok", |d| d.error),
                status: denial.map(|d| status_for(&d.kind)),
            });
        }
    }

    /// Decides and records the decision; a decision that cannot be recorded is refused.
    async fn decide_recorded(
        &self,
        req: &Request,
        trail: &AuditTrail,
        started: Instant,
    ) -> Result<Allow, Denial> {
        let mut trace = Trace::default();
        let outcome = self.authorizer.check_traced(req, Some(&mut trace)).await;
        let redact = trail.redact_prompts();
        let version = match &outcome {
            Ok(allow) => allow.policy_version.clone(),
            Err(_) => self.authorizer.policy().version.clone(),
        };
        let mut event =
            AuditEvent::decision(req, outcome.as_ref(), &version, started.elapsed(), redact);
        if let Err(d) = &outcome {
            event = event.with_status(status_for(&d.kind));
            if let Some(p) = &trace.principal {
                event = event.with_principal(p);
            }
            if let Some(a) = &trace.action {
                event = event.with_action(a, redact);
            }
            // A key refused for its source network: the record names the key (its public id).
            if d.error == crate::identity::NETWORK_NOT_ALLOWED {
                event.key_id = self.presented_key_id(req).map(str::to_string);
            }
        }
        match trail.record(event).await {
            Ok(()) => {
                self.record_security_events(req, &outcome, trail).await;
                outcome
            }
            // The trail logged why; never answer a decision that left no record.
            Err(_) => Err(Denial::new(
                DenyKind::Unavailable,
                "audit_unavailable",
                "the decision could not be recorded in the audit trail; try again",
            )),
        }
    }

    /// Feeds the decision to the security detectors and records what they find, each as its
    /// own record (a failure to write one is logged by the trail and does not change the
    /// decision, which is already recorded).
    async fn record_security_events(
        &self,
        req: &Request,
        outcome: &Result<Allow, Denial>,
        trail: &AuditTrail,
    ) {
        let now = Instant::now();
        let events = match outcome {
            Err(denial) if matches!(denial.kind, DenyKind::Unauthenticated) => {
                let address = req.peer.as_deref().and_then(parse_address);
                let key_id = self.presented_key_id(req);
                self.security.auth_failure(address, key_id, now)
            }
            Ok(allow) => match (
                allow.principal.key_id.as_deref(),
                req.peer.as_deref().and_then(parse_address),
            ) {
                (Some(key_id), Some(address)) => self
                    .security
                    .key_used(key_id, address, now)
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        for event in events {
            let _ = trail.record(event).await;
        }
    }

    /// The id of a well-formed API key in the request's credential headers (the id is
    /// public; the key never leaves this function).
    fn presented_key_id<'r>(&self, req: &'r Request) -> Option<&'r str> {
        self.authorizer.credential_headers().find_map(|name| {
            let value = req.header(name)?.trim();
            let value = match value.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => value,
            };
            api_key::parse(value).map(|k| k.id)
        })
    }

    fn allow_response(&self, req: &Request, allow: &Allow) -> CheckResponse {
        let p = &allow.principal;
        let mut set: Vec<(&str, String)> = vec![
            ("x-inferguard-subject", p.subject.clone()),
            ("x-inferguard-role", p.role.clone()),
            ("x-inferguard-auth", p.auth.as_str().to_string()),
            ("x-request-id", req.id.clone()),
        ];
        if let Some(email) = &p.email {
            set.push(("x-inferguard-email", email.clone()));
        }
        if !p.groups.is_empty() {
            set.push(("x-inferguard-groups", p.groups.join(",")));
        }
        if let Some(key_id) = &p.key_id {
            set.push(("x-inferguard-key-id", key_id.clone()));
        }
        for (k, v) in &allow.extra_headers {
            set.push((k.as_str(), v.clone()));
        }
        if let Some(value) = &self.upstream.value {
            set.push((self.upstream.header.as_str(), value.clone()));
        }
        // The session cookie is the caller's credential: the upstream never sees it.
        let mut drop_cookie = false;
        if let Some(cookies) = req.header("cookie")
            && cookies.contains(INFERGUARD_COOKIE_PREFIX)
        {
            match cookie_header_without_session(cookies) {
                Some(rest) => set.push(("cookie", rest)),
                None => drop_cookie = true,
            }
        }

        let is_set = |name: &str| set.iter().any(|(k, _)| *k == name);
        let mut remove: Vec<String> = req
            .headers
            .keys()
            .filter(|k| k.starts_with("x-inferguard-") && !is_set(k))
            .cloned()
            .collect();
        remove.extend(
            self.authorizer
                .credential_headers()
                .filter(|h| req.headers.contains_key(*h) && !is_set(h))
                .map(str::to_string),
        );
        if drop_cookie {
            remove.push("cookie".to_string());
        }
        remove.sort();
        remove.dedup();

        let headers = set
            .iter()
            .map(|(k, v)| overwrite(k, header_safe(v)))
            .collect();
        CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove: remove,
                ..Default::default()
            })),
            dynamic_metadata: Some(decision_metadata(&[
                ("decision", "allow"),
                ("status", "200"),
                ("subject", &p.subject),
                ("role", &p.role),
                ("auth", p.auth.as_str()),
            ])),
        }
    }
}

/// Strips characters that cannot appear in a header value.
fn header_safe(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).collect()
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: GrpcRequest<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let req = to_request(request.into_inner());
        Ok(Response::new(self.decide(&req).await))
    }
}
