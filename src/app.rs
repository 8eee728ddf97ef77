//! The composition root: builds the store, the authorizer and the listeners, runs the
//! background tasks (change feed, policy reload) and shuts down cleanly on SIGTERM/SIGINT.

mod background;
mod http;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use crate::authorizer::{Authorizer, AuthorizerParts};
use crate::cli::{Cli, Command, PolicyCommand};
use crate::commands::CliContext;
use crate::commands::audit::AuditCommand;
use crate::config::{self, ServerConfig};
use crate::identity::jwt::{JwtIssuerConfig, JwtVerifier};
use crate::identity::local::{LocalIssuer, TokenEndpoint};
use crate::policy::Policy;
use crate::protocol::{CheckService, UpstreamCredential};
use crate::store::{self, DynStore};
use crate::telemetry::{Metrics, OtlpExporter};

/// Runs one CLI invocation.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Policy(PolicyCommand::Check { files }) = &cli.command {
        return check_files(files);
    }
    if let Command::Audit(AuditCommand::Verify { files, key }) = &cli.command {
        return crate::commands::audit::verify(files, key.as_deref());
    }
    if let Some(server) = &cli.server {
        // Through a server's admin API: no configuration or store needed here.
        return crate::admin::client::run(server, &cli.token_env, cli.command);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cfg = ServerConfig::load(&cli.config)?;
        match cli.command {
            Command::Serve => serve(cfg).await,
            Command::Users(cmd) => cmd.run(&cli_context(&cfg).await?).await,
            Command::ServiceAccounts(cmd) => cmd.run(&cli_context(&cfg).await?).await,
            Command::Keys(cmd) => cmd.run(&cli_context(&cfg).await?).await,
            Command::Sessions(cmd) => cmd.run(&cli_context(&cfg).await?).await,
            Command::Approvals(cmd) => {
                let policy = load_policy(&cfg.policy_path())?;
                cmd.run(&cli_context(&cfg).await?, &policy).await
            }
            Command::Templates(cmd) => {
                let policy = load_policy(&cfg.policy_path())?;
                cmd.run(&cli_context(&cfg).await?, &policy).await
            }
            Command::Audit(cmd) => cmd.run(&cfg, open_store(&cfg).await?).await,
            Command::Report(cmd) => {
                // Read-only: the trail files are read directly, never opened for writing.
                let policy = load_policy(&cfg.policy_path())?;
                let sources = crate::commands::report::ReportSources::from_config(
                    &cfg,
                    open_store(&cfg).await?,
                    policy.default_role.clone(),
                );
                cmd.run(&sources).await
            }
            Command::Policy(_) => unreachable!("handled above"),
        }
    })
}

fn check_files(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for f in files {
        match config::check_file(f) {
            Ok(kind) => println!(
                "{}: ok ({})",
                f.display(),
                match kind {
                    config::FileKind::Server => "inferguard.yaml",
                    config::FileKind::Policy => "policy.yaml",
                }
            ),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files invalid", files.len());
    }
    Ok(())
}

fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = config::read_file(path)?;
    Ok(config::compile_policy(path, &text)?)
}

async fn open_store(cfg: &ServerConfig) -> anyhow::Result<DynStore> {
    let url = cfg.store_url();
    store::open(&url)
        .await
        .with_context(|| format!("opening the store {}", store::redacted_url(&url)))
}

async fn cli_context(cfg: &ServerConfig) -> anyhow::Result<CliContext> {
    let policy = load_policy(&cfg.policy_path())?;
    let known_roles: BTreeSet<String> = policy.roles.keys().cloned().collect();
    let store = open_store(cfg).await?;
    let audit = crate::commands::audit::open_trail(cfg, &store).await?;
    Ok(CliContext {
        store,
        known_roles,
        audit,
    })
}

fn upstream_credential(cfg: &ServerConfig) -> anyhow::Result<UpstreamCredential> {
    let key = cfg.upstream_key().map_err(anyhow::Error::msg)?;
    let header = cfg.upstream.header.clone();
    let value = key.map(|k| {
        if header == "authorization" {
            format!("Bearer {k}")
        } else {
            k
        }
    });
    if value.is_none() {
        tracing::warn!(
            "no upstream key configured (upstream.api_key_env/api_key_file): the upstream receives no credential from inferguard"
        );
    }
    Ok(UpstreamCredential { header, value })
}

/// State shared by the listeners and background tasks of one `serve`.
pub struct Shared {
    pub authorizer: Arc<Authorizer>,
    pub store: DynStore,
    /// False once the change feed has failed and not yet recovered.
    pub store_healthy: AtomicBool,
    pub metrics: Arc<Metrics>,
}

async fn serve(cfg: ServerConfig) -> anyhow::Result<()> {
    let policy_path = cfg.policy_path();
    let policy = load_policy(&policy_path)?;
    let store = open_store(&cfg).await?;
    // None without `audit.file`; an unwritable trail stops the start (fail closed).
    let audit = crate::commands::audit::open_trail(&cfg, &store).await?;
    let upstream = upstream_credential(&cfg)?;
    let local = &cfg.identity.local_users;
    let issuer = Arc::new(
        LocalIssuer::load(local, store.clone(), &cfg.base_dir)
            .await
            .context("loading inferguard's signing key (identity.local_users)")?,
    );
    let token_endpoint = if local.enabled {
        Some(Arc::new(TokenEndpoint::new(
            local,
            issuer.clone(),
            store.clone(),
        )?))
    } else {
        None
    };
    let jwt = token_verifier(&cfg, local.enabled.then_some(&*issuer))?;
    let cache_ttl = Duration::from_secs(cfg.identity.api_keys.cache_ttl_secs.max(1));
    let sso = match &cfg.identity.oidc {
        Some(oidc) => {
            let sso =
                crate::identity::oidc::Sso::build(oidc, store.clone(), &cfg.base_dir, cache_ttl)
                    .context("identity.oidc")?;
            sso.spawn_background();
            tracing::info!(issuer = %oidc.issuer, "browser single sign-on enabled");
            Some(sso)
        }
        None => None,
    };
    let authorizer = Arc::new(Authorizer::new(AuthorizerParts {
        policy,
        store: store.clone(),
        key_headers: cfg.identity.api_keys.headers.clone(),
        cache_ttl,
        jwt: jwt.clone(),
        assertions: Some(issuer.clone()),
        sessions: sso
            .as_ref()
            .map(|s| s.sessions.clone() as Arc<dyn crate::identity::SessionAuthenticator>),
        login: sso
            .as_ref()
            .map(|_| crate::identity::oidc::Sso::login_redirect()),
        quota: cfg.quota.clone(),
    }));
    let metrics = Arc::new(Metrics::new());
    let (audit, otlp) = start_otlp(&cfg, audit, &metrics)?;
    let shared = Arc::new(Shared {
        authorizer: authorizer.clone(),
        store,
        store_healthy: AtomicBool::new(true),
        metrics: metrics.clone(),
    });

    let ext_listener = TcpListener::bind(cfg.listen.ext_authz)
        .await
        .with_context(|| format!("binding the ext_authz listener on {}", cfg.listen.ext_authz))?;
    let http_listener = TcpListener::bind(cfg.listen.http)
        .await
        .with_context(|| format!("binding the http listener on {}", cfg.listen.http))?;
    // TLS per listener (`tls:`); files that cannot serve stop the start (never fall back to
    // plaintext).
    let ext_tls = listener_tls(&cfg, "ext_authz", crate::tls::Protocols::Grpc)?;
    let admin_listener = crate::admin::server::bind(cfg.listen.admin).await?;
    let admin_tls = listener_tls(&cfg, "admin", crate::tls::Protocols::Grpc)?;
    let http_tls = listener_tls(&cfg, "http", crate::tls::Protocols::Http1)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let feed = tokio::spawn(background::follow_changes(
        shared.clone(),
        Duration::from_millis(cfg.store.poll_interval_ms),
        shutdown_rx.clone(),
    ));
    // API key `last_used_at`, noted on the hot path and written in batches.
    let key_uses = tokio::spawn(crate::identity::key_uses::flush_periodically(
        shared.authorizer.keys().uses(),
        shared.store.clone(),
        crate::identity::key_uses::FLUSH_EVERY,
        shutdown_rx.clone(),
    ));
    let reload = tokio::spawn(background::reload_policy(
        authorizer.clone(),
        policy_path,
        audit.clone(),
        shutdown_rx.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<envoy_types::ext_authz::v3::pb::AuthorizationServer<CheckService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let check = CheckService::new(authorizer, upstream, metrics)
        .with_audit(audit.clone())
        .with_otlp(otlp.clone())
        .into_server();
    let mut grpc_shutdown = shutdown_rx.clone();
    let grpc_shutdown = async move {
        let _ = grpc_shutdown.wait_for(|s| *s).await;
    };
    let grpc_router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(check);
    let grpc: BoxFuture<Result<(), tonic::transport::Error>> = match ext_tls {
        Some(tls) => Box::pin(
            grpc_router
                .serve_with_incoming_shutdown(crate::tls::accept(ext_listener, tls), grpc_shutdown),
        ),
        None => Box::pin(grpc_router.serve_with_incoming_shutdown(
            TcpIncoming::from(ext_listener).with_nodelay(Some(true)),
            grpc_shutdown,
        )),
    };
    let http_state = http::HttpState {
        shared: shared.clone(),
        local: http::LocalLogin {
            issuer: Some(issuer.clone()),
            token: token_endpoint,
        },
        sso: sso.as_ref().map(|s| s.endpoints.clone()),
        scim: crate::scim::from_config(cfg.scim.as_ref(), shared.store.clone(), audit.clone())
            .context("scim")?,
    };
    let http: BoxFuture<std::io::Result<()>> = match http_tls {
        Some(tls) => Box::pin(http::serve(
            crate::tls::accept(http_listener, tls),
            http_state,
            shutdown_rx.clone(),
        )),
        None => Box::pin(http::serve(http_listener, http_state, shutdown_rx.clone())),
    };

    tracing::info!(ext_authz = %cfg.listen.ext_authz, http = %cfg.listen.http, admin = %cfg.listen.admin, "inferguard serving");
    let grpc_task = tokio::spawn(grpc);
    let http_task = tokio::spawn(http);
    let admin_task = tokio::spawn(crate::admin::server::serve(
        admin_listener,
        admin_tls,
        crate::admin::service::AdminParts::new(&cfg, &shared, audit.clone()),
        shutdown_rx.clone(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down: answering Checks in flight, then exiting");
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    shared.store_healthy.store(false, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);

    grpc_task.await?.context("ext_authz listener")?;
    http_task.await?.context("http listener")?;
    admin_task.await??;
    // The last batch of key uses (the listeners are closed: no more are noted).
    let _ = key_uses.await;
    feed.abort();
    reload.abort();
    if let Some(trail) = &audit
        && let Err(e) = trail.close().await
    {
        tracing::error!(error = %e, "audit: final fsync/checkpoint failed");
    }
    if let Some(otlp) = otlp {
        // Blocking: a last try at what is queued, bounded by the exporter's timeouts.
        let _ = tokio::task::spawn_blocking(move || otlp.shutdown()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A boxed listener future (plaintext and TLS listeners have different future types).
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Loads the TLS files of listener `name` (`ext_authz`, `http` or `admin`) from `tls.<name>` and
/// re-reads them every second, so new connections see replaced certificates without a
/// restart; `None` when the listener is configured for plaintext. Unusable files are an error.
pub fn listener_tls(
    cfg: &ServerConfig,
    name: &'static str,
    protocols: crate::tls::Protocols,
) -> anyhow::Result<Option<Arc<crate::tls::ReloadableServerConfig>>> {
    let Some(files) = cfg.listener_tls(name) else {
        return Ok(None);
    };
    let tls = crate::tls::ReloadableServerConfig::load(name, &files, protocols)
        .with_context(|| format!("tls.{name}"))?;
    tls.spawn_watch(crate::tls::RELOAD_EVERY);
    tracing::info!(
        listener = name,
        client_certificates = tls.requires_client_certificate(),
        "TLS enabled"
    );
    Ok(Some(tls))
}

/// Starts the OTLP exporter when `audit.otlp` is set and makes the trail hand it every event.
fn start_otlp(
    cfg: &ServerConfig,
    audit: Option<crate::audit::AuditTrail>,
    metrics: &Metrics,
) -> anyhow::Result<(Option<crate::audit::AuditTrail>, Option<Arc<OtlpExporter>>)> {
    let Some(otlp_cfg) = cfg.audit.as_ref().and_then(|a| a.otlp.as_ref()) else {
        return Ok((audit, None));
    };
    let otlp = OtlpExporter::start(otlp_cfg, metrics.otlp_dropped())?;
    let audit = match audit {
        Some(trail) => Some(trail.with_sink(otlp.clone())),
        None => {
            tracing::warn!(
                "audit.otlp is set without audit.file: Check spans and metrics are exported, audit events are not"
            );
            None
        }
    };
    Ok((audit, Some(otlp)))
}

/// How often cached JWKS are refreshed in the background (unknown `kid`s refetch sooner).
const JWKS_REFRESH: Duration = Duration::from_secs(300);

fn token_verifier(
    cfg: &ServerConfig,
    local: Option<&LocalIssuer>,
) -> anyhow::Result<Option<Arc<JwtVerifier>>> {
    if cfg.identity.jwt.is_empty() && local.is_none() {
        return Ok(None);
    }
    let mut verifier = JwtVerifier::new(cfg.identity.jwt.clone()).context("identity.jwt")?;
    if let Some(local) = local {
        // inferguard's own access tokens: EdDSA only, keys known locally (no HTTP).
        let (issuer, audiences) = local.issuer_config();
        let mut own = JwtIssuerConfig::new(issuer, audiences);
        own.algorithms = Some(vec!["EdDSA".into()]);
        verifier
            .add_static_issuer(own, local.jwks())
            .context("identity.local_users")?;
    }
    let verifier = Arc::new(verifier);
    verifier.spawn_refresh(JWKS_REFRESH);
    Ok(Some(verifier))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
