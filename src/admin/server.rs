//! The admin listener: `inferguard.admin.v1.Admin` plus gRPC reflection v1 and v1alpha
//! (fed the same file descriptor set), over TLS when `tls.admin` is configured, until
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use super::pb;
use super::service::{AdminParts, AdminService};
use crate::tls::ReloadableServerConfig;

/// Binds the admin listener (`listen.admin`).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin listener on {addr}"))
}

/// Serves the admin API on `listener` (TLS with `tls`) until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadableServerConfig>>,
    parts: AdminParts,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service (v1)")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;
    let admin = pb::admin_server::AdminServer::new(AdminService::new(parts));
    let router = tonic::transport::Server::builder()
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(admin);
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(crate::tls::accept(listener, tls), stop)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop,
                )
                .await
        }
    }
    .context("admin listener")
}
