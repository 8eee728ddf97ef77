//! Accepting TLS connections: a task accepts TCP connections and runs each handshake in its own
//! task (bounded, with a deadline), so one slow or hostile client never holds up the others;
//! finished connections are handed to tonic (as a `Stream`) or axum (as a `Listener`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ReloadableServerConfig;

/// The longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; beyond this, new connections are closed at once.
const MAX_HANDSHAKES: usize = 1024;

/// What a handler can learn about a TLS connection (tonic request extension).
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The listener's address.
    pub local_addr: Option<SocketAddr>,
    /// The caller's address.
    pub remote_addr: SocketAddr,
    /// The verified client certificate chain (leaf first), on mutual-TLS listeners.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
}

/// One accepted, handshaken TLS connection.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl TlsConn {
    /// Who is on the other end.
    pub fn info(&self) -> &TlsConnectInfo {
        &self.info
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        self.info.clone()
    }
}

/// Handshaken connections of one listener: a `Stream` for tonic's
/// `serve_with_incoming_shutdown` and an `axum::serve::Listener` for axum. Dropping it stops
/// the accept task and closes the listening socket.
pub struct TlsIncoming {
    rx: mpsc::Receiver<TlsConn>,
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
    tx: mpsc::Sender<TlsConn>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let local_addr = listener.local_addr().ok();
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
                Ok(Ok(stream)) => {
                    let peer_certificates = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect());
                    let conn = TlsConn {
                        stream,
                        info: TlsConnectInfo {
                            local_addr,
                            remote_addr,
                            peer_certificates,
                        },
                    };
                    let _ = tx.send(conn).await;
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
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => {
                let addr = conn.info.remote_addr;
                (conn, addr)
            }
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
