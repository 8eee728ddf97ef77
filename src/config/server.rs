//! `inferguard.yaml`: listeners, store, upstream key, identity sources, policy file, audit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;
use crate::identity::jwt::JwtIssuerConfig;
use crate::identity::local::LocalUsersConfig;

/// The whole of `inferguard.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub listen: ListenConfig,
    /// TLS per listener (`tls.ext_authz`, `tls.http`, `tls.admin`); absent = plaintext.
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    pub policy: PolicyRef,
    /// Quota windows: time zone of the daily/monthly reset, default token budget.
    #[serde(default)]
    pub quota: crate::policy::QuotaConfig,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// SCIM 2.0 provisioning on the http listener (`/scim/v2`).
    #[serde(default)]
    pub scim: Option<crate::scim::ScimConfig>,
    /// The directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Listener addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    pub ext_authz: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            ext_authz: ([127, 0, 0, 1], 9191).into(),
            http: ([0, 0, 0, 0], 8181).into(),
            admin: ([127, 0, 0, 1], 9192).into(),
        }
    }
}

/// Where state lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE?mode=rwc` (relative to the config file) or `postgres://…`.
    pub url: String,
    /// How often a running server polls the store's change feed, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://inferguard.db?mode=rwc".into(),
            poll_interval_ms: 500,
        }
    }
}

/// The upstream's own credential, set on every allowed request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Header the upstream reads its key from (`x-api-key` for Fooocus-API,
    /// `authorization` for TGI, where the value becomes `Bearer KEY`).
    pub header: String,
    /// Environment variable holding the key.
    pub api_key_env: Option<String>,
    /// File holding the key (e.g. a mounted Secret).
    pub api_key_file: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            header: "x-api-key".into(),
            api_key_env: None,
            api_key_file: None,
        }
    }
}

/// Identity sources.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    pub api_keys: ApiKeysConfig,
    /// Trusted JWT issuers (keys by OIDC discovery or `jwks_url`).
    pub jwt: Vec<JwtIssuerConfig>,
    /// Browser single sign-on (OIDC relying party and sessions).
    pub oidc: Option<crate::identity::oidc::OidcConfig>,
    /// Local users and inferguard's own token issuer (`POST /auth/token`).
    pub local_users: LocalUsersConfig,
}

/// API key extraction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// Headers an API key may arrive in, besides `Authorization: Bearer fk_…`.
    pub headers: Vec<String>,
    /// How long a looked-up key stays cached without a change-feed event, in seconds.
    pub cache_ttl_secs: u64,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig {
            headers: vec!["x-api-key".into()],
            cache_ttl_secs: 300,
        }
    }
}

/// Where the policy lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub file: PathBuf,
}

/// The audit trail: a hash-chained local JSONL trail with signed checkpoints (see
/// [`crate::audit`]), and OpenTelemetry logs for the SIEM.
///
/// ```yaml
/// audit:
///   file: audit.jsonl             # base name: daily files audit-2026-11-22.jsonl beside it
///   redact_prompts: true          # store a SHA-256 of prompts instead of their text
///   checkpoint_every: 10s         # sign a checkpoint at least this often while records arrive
///   checkpoint_records: 10000     # … and after this many records
///   signing_key_env: AUDIT_KEY    # env var holding an Ed25519 PKCS#8 PEM; or signing_key_file;
///                                 # neither = generated at first start and kept in the store
///   on_write_failure: deny        # or allow_and_alarm
///   otlp:                         # absent = no OpenTelemetry export (see OtlpConfig)
///     endpoint: "http://127.0.0.1:4317"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Base name of the local trail, relative to the config file's directory; records go to
    /// daily files named after it (`audit.jsonl` → `audit-2026-11-22.jsonl`). Absent: no
    /// local trail.
    pub file: Option<PathBuf>,
    /// Store the SHA-256 of prompts instead of their text.
    #[serde(default = "yes")]
    pub redact_prompts: bool,
    /// OpenTelemetry export (audit events as logs, a span per Check, decision metrics).
    /// Absent: nothing is exported.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
    /// The longest time records wait for a signed checkpoint (`10s`, `1m`; 1 s … 1 h).
    #[serde(
        default = "default_checkpoint_every",
        deserialize_with = "human_duration"
    )]
    pub checkpoint_every: std::time::Duration,
    /// A checkpoint is also signed after this many records (at least 1).
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_records: u64,
    /// Environment variable holding the checkpoint key (Ed25519, PKCS#8 PEM).
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// File holding the checkpoint key (Ed25519, PKCS#8 PEM), relative to the config file.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// What a decision does when its record cannot be written.
    #[serde(default)]
    pub on_write_failure: crate::audit::OnWriteFailure,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            file: Some(PathBuf::from("audit.jsonl")),
            redact_prompts: true,
            otlp: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_records: default_checkpoint_records(),
            signing_key_env: None,
            signing_key_file: None,
            on_write_failure: crate::audit::OnWriteFailure::Deny,
        }
    }
}

impl AuditConfig {
    /// Checks what serde cannot: checkpoint cadence in range, at most one key source.
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoint_every < std::time::Duration::from_secs(1)
            || self.checkpoint_every > std::time::Duration::from_secs(3600)
        {
            return Err("audit.checkpoint_every must be between 1s and 1h".into());
        }
        if self.checkpoint_records == 0 {
            return Err("audit.checkpoint_records must be at least 1".into());
        }
        if self.signing_key_env.is_some() && self.signing_key_file.is_some() {
            return Err("audit.signing_key_env and audit.signing_key_file are both set".into());
        }
        if let Some(otlp) = &self.otlp {
            otlp.validate()?;
        }
        Ok(())
    }
}

/// Wire protocol of the OTLP exporter (`audit.otlp.protocol`). Only gRPC is built in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP over gRPC (tonic), usually port 4317.
    #[default]
    Grpc,
}

/// OpenTelemetry export to an OTLP collector (`audit.otlp`).
///
/// ```yaml
/// otlp:
///   endpoint: "http://127.0.0.1:4317"   # the collector's OTLP/gRPC receiver
///   protocol: grpc                      # the only protocol supported
///   timeout_ms: 5000                    # one export attempt's deadline
///   queue_size: 2048                    # records (and spans) buffered while the collector is
///                                       # slow or down; beyond it new ones are dropped, counted
///                                       # in inferguard_otlp_dropped_total
///   service_name: inferguard            # the `service.name` resource attribute
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's URL (`http://host:4317`).
    #[serde(default = "default_otlp_endpoint")]
    pub endpoint: String,
    /// `grpc`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The deadline of one export attempt, in milliseconds.
    #[serde(default = "default_otlp_timeout_ms")]
    pub timeout_ms: u64,
    /// The most records (and, separately, spans) waiting for the collector (at least 1).
    #[serde(default = "default_otlp_queue_size")]
    pub queue_size: usize,
    /// The `service.name` resource attribute.
    #[serde(default = "default_otlp_service_name")]
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: default_otlp_endpoint(),
            protocol: OtlpProtocol::Grpc,
            timeout_ms: default_otlp_timeout_ms(),
            queue_size: default_otlp_queue_size(),
            service_name: default_otlp_service_name(),
        }
    }
}

impl OtlpConfig {
    /// Checks what serde cannot: an http(s) endpoint, a non-empty queue, a timeout.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err("audit.otlp.endpoint must be an http:// or https:// URL".into());
        }
        if self.queue_size == 0 || self.timeout_ms == 0 {
            return Err(
                "audit.otlp.queue_size and audit.otlp.timeout_ms must be at least 1".into(),
            );
        }
        Ok(())
    }
}

fn default_otlp_endpoint() -> String {
    "http://127.0.0.1:4317".into()
}

fn default_otlp_timeout_ms() -> u64 {
    5000
}

fn default_otlp_queue_size() -> usize {
    2048
}

fn default_otlp_service_name() -> String {
    "inferguard".into()
}

fn yes() -> bool {
    true
}

fn default_checkpoint_every() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_checkpoint_records() -> u64 {
    10_000
}

/// Parses `"10s"`, `"1m"` with `humantime`.
fn human_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. 10s or 1m"
        ))
    })
}

impl ServerConfig {
    /// Reads and validates an inferguard.yaml.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = crate::config::read_file(path)?;
        ServerConfig::parse(path, &text)
    }

    /// Validates inferguard.yaml text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<ServerConfig, ConfigError> {
        let mut cfg: ServerConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::from_yaml(path, &e))?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let line = |keys: &[&str]| super::locate::line_of(text, keys);
        if let Err(e) = cfg.identity.local_users.validate() {
            return Err(ConfigError::new(
                path,
                line(&["identity", "local_users"]),
                e.to_string(),
            ));
        }
        if let Some(otlp) = cfg.audit.as_ref().and_then(|a| a.otlp.as_ref())
            && let Err(e) = otlp.validate()
        {
            return Err(ConfigError::new(path, line(&["audit", "otlp"]), e));
        }
        if let Some(oidc) = cfg.identity.oidc.take() {
            match oidc.validated() {
                Ok(oidc) => cfg.identity.oidc = Some(oidc),
                Err(e) => {
                    return Err(ConfigError::new(
                        path,
                        line(&["identity", "oidc"]),
                        e.to_string(),
                    ));
                }
            }
        }
        if !(cfg.store.url.starts_with("sqlite:")
            || cfg.store.url.starts_with("postgres://")
            || cfg.store.url.starts_with("postgresql://"))
        {
            return Err(
                ConfigError::new(path, line(&["store", "url"]), "unsupported store url")
                    .with_fix("use sqlite://FILE?mode=rwc or postgres://USER@HOST/DB"),
            );
        }
        if cfg.store.poll_interval_ms == 0 || cfg.store.poll_interval_ms > 1500 {
            return Err(ConfigError::new(
                path,
                line(&["store", "poll_interval_ms"]),
                "store.poll_interval_ms must be between 1 and 1500",
            )
            .with_fix("changes must reach running servers within 2 s; keep the default 500"));
        }
        let header = cfg.upstream.header.to_ascii_lowercase();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError::new(
                path,
                line(&["upstream", "header"]),
                format!("`{}` is not a valid header name", cfg.upstream.header),
            ));
        }
        cfg.upstream.header = header;
        if cfg.upstream.api_key_env.is_some() && cfg.upstream.api_key_file.is_some() {
            return Err(ConfigError::new(
                path,
                line(&["upstream"]),
                "upstream.api_key_env and upstream.api_key_file are both set",
            )
            .with_fix("keep one of them"));
        }
        for h in &mut cfg.identity.api_keys.headers {
            *h = h.to_ascii_lowercase();
            if h.starts_with("x-inferguard-") || h == "authorization" || h.is_empty() {
                return Err(ConfigError::new(
                    path,
                    line(&["identity", "api_keys", "headers"]),
                    format!("`{h}` cannot carry API keys"),
                )
                .with_fix(
                    "use a header such as x-api-key; Authorization: Bearer is always accepted",
                ));
            }
        }
        Ok(cfg)
    }

    /// The TLS files of a listener (`ext_authz`, `http` or `admin`) with paths resolved
    /// against the config's directory; `None` when that listener speaks plaintext.
    pub fn listener_tls(&self, listener: &str) -> Option<crate::tls::TlsFiles> {
        let files = match listener {
            "ext_authz" => self.tls.ext_authz.as_ref(),
            "http" => self.tls.http.as_ref(),
            "admin" => self.tls.admin.as_ref(),
            _ => None,
        };
        files.map(|f| f.resolved(&self.base_dir))
    }

    /// The policy file path, resolved against the config's directory.
    pub fn policy_path(&self) -> PathBuf {
        self.base_dir.join(&self.policy.file)
    }

    /// The store url with a relative SQLite file resolved against the config's directory.
    pub fn store_url(&self) -> String {
        let url = &self.store.url;
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return url.clone();
        };
        let (file, query) = match rest.split_once('?') {
            Some((f, q)) => (f, Some(q)),
            None => (rest, None),
        };
        if file.starts_with('/') || file == ":memory:" || file.is_empty() {
            return url.clone();
        }
        let abs = self.base_dir.join(file);
        match query {
            Some(q) => format!("sqlite://{}?{q}", abs.display()),
            None => format!("sqlite://{}", abs.display()),
        }
    }

    /// Reads the upstream key from the environment or file; `None` when none is configured.
    pub fn upstream_key(&self) -> Result<Option<String>, String> {
        if let Some(var) = &self.upstream.api_key_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("upstream.api_key_env names `{var}`, which is not set"));
        }
        if let Some(file) = &self.upstream.api_key_file {
            let path = self.base_dir.join(file);
            return std::fs::read_to_string(&path)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| format!("cannot read upstream.api_key_file {}: {e}", path.display()));
        }
        Ok(None)
    }
}
