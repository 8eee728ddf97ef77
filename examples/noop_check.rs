//! A no-op ext_authz server: answers every `envoy.service.auth.v3.Authorization/Check` with
//! OK and nothing else. It is the baseline of the load benchmark (`scripts/bench-check`):
//! the cost of tonic, HTTP/2 and protobuf decoding of the same CheckRequest, without any of
//! inferguard's work.
//!
//! The server is built the way `inferguard serve` builds its ext_authz listener
//! (`src/app.rs`): a tokio `TcpListener` turned into tonic's `TcpIncoming` with `TCP_NODELAY`
//! on, fed to `serve_with_incoming_shutdown`, default `tonic::transport::Server` settings,
//! and the same 64 MiB decoding limit — so the two differ only in what the Check handler
//! does. Keep it so when the listener in `src/app.rs` changes.
//!
//! ```sh
//! cargo run --release --example noop_check -- 127.0.0.1:9291 [--nagle]
//! ```
//!
//! `--nagle` leaves Nagle's algorithm on for accepted connections (`TcpListenerStream`, as
//! inferguard did before it set `TCP_NODELAY`): answers written in two pieces then wait for
//! the client's delayed ACK, and p99 jumps to ~40 ms.
//!
//! Stops on SIGINT or SIGTERM.

use std::net::SocketAddr;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The same allocator as inferguard, so the baseline stays like-for-like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// inferguard's `MAX_CHECK_MESSAGE_BYTES` (src/protocol/ext_authz.rs), repeated here so the
/// baseline decodes under the same limit.
const MAX_CHECK_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The Check handler that allows everything.
struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Decoded by tonic already; drop it as inferguard would after deciding.
        drop(request.into_inner());
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            dynamic_metadata: None,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodelay = !args.iter().any(|a| a == "--nagle");
    let addr: SocketAddr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("127.0.0.1:9291", String::as_str)
        .parse()
        .map_err(|e| format!("usage: noop_check [ADDR:PORT] [--nagle] ({e})"))?;
    let listener = TcpListener::bind(addr).await?;
    eprintln!(
        "noop_check listening on {} (TCP_NODELAY {})",
        listener.local_addr()?,
        if nodelay { "on, as inferguard" } else { "off" }
    );

    let mut term = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let router = tonic::transport::Server::builder().add_service(
        AuthorizationServer::new(Noop).max_decoding_message_size(MAX_CHECK_MESSAGE_BYTES),
    );
    if nodelay {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming_shutdown(incoming, stop).await?;
    } else {
        // Accepted sockets keep Nagle's algorithm on (tonic ignores its tcp_nodelay setting
        // for a caller-supplied stream).
        router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
            .await?;
    }
    Ok(())
}
