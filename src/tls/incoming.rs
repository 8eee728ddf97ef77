//! Accepting TLS connections: a task accepts TCP connections and runs each handshake in its own
//! task (bounded, with a deadline), so one slow or hostile client never holds up the others;
//! finished connections are handed to tonic (as a `Stream`) or axum (as a `Listener`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ReloadableServerConfig;

/// The longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; beyond this, new connections are closed at once.
const MAX_HANDSHAKES: usize = 1024;

/// One accepted, handshaken TLS connection. tonic (feature `tls-ring`) knows this type: a
/// handler's `request.remote_addr()` and `request.peer_certs()` (the verified client chain on
/// mutual-TLS listeners) work as on tonic's own TLS server.
pub type TlsConn = TlsStream<TcpStream>;

/// Handshaken connections of one listener: a `Stream` for tonic's
/// `serve_with_incoming_shutdown` and an `axum::serve::Listener` for axum. Dropping it stops
/// the accept task and closes the listening socket.
pub struct TlsIncoming {
    rx: mpsc::Receiver<(TlsConn, SocketAddr)>,
    local_addr: io::Result<SocketAddr>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Starts accepting TLS connections on `listener` with the (reloadable) configuration `tls`.
/// Connections get TCP_NODELAY; failed handshakes (no or untrusted client certificate, wrong
/// protocol) are logged and never reach the server.
pub fn accept(listener: TcpListener, tls: Arc<ReloadableServerConfig>) -> TlsIncoming {
    let local_addr = listener.local_addr();
    let (tx, rx) = mpsc::channel(64);
    let accept_task = tokio::spawn(accept_loop(listener, tls, tx));
    TlsIncoming {
        rx,
        local_addr,
        accept_task,
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ReloadableServerConfig>,
    tx: mpsc::Sender<(TlsConn, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, remote_addr) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(peer = %remote_addr, "too many TLS handshakes in progress; connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current());
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(conn)) => {
                    let _ = tx.send((conn, remote_addr)).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(peer = %remote_addr, error = %e, "TLS handshake refused")
                }
                Err(_) => tracing::info!(peer = %remote_addr, "TLS handshake timed out"),
            }
        });
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsConn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(|(conn, _)| Ok(conn)))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConn, SocketAddr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when this is dropped; never hand out a connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.local_addr {
            Ok(a) => Ok(*a),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}
