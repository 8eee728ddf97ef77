//! TLS loading, mutual TLS and reload, against the committed development certificates
//! (envoy/certs, written by scripts/dev-certs) and real handshakes over loopback.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

use super::*;

fn dev(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("envoy/certs")
        .join(name)
}

fn files(stem: &str, mutual: bool) -> TlsFiles {
    TlsFiles {
        cert: dev(&format!("{stem}.crt")),
        key: dev(&format!("{stem}.key")),
        client_ca: mutual.then(|| dev("ca.crt")),
    }
}

/// A client trusting the development CA, presenting `identity` (`envoy-client`) when given.
fn client(identity: Option<&str>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dev("ca.crt")).expect("ca.crt") {
        roots.add(c.expect("ca")).expect("add ca");
    }
    let builder = rustls::ClientConfig::builder_with_provider(load::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(stem) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(dev(&format!("{stem}.crt")))
                    .expect("crt")
                    .map(|c| c.expect("cert"))
                    .collect(),
                PrivateKeyDer::from_pem_file(dev(&format!("{stem}.key"))).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Serves `tls` on loopback, echoing one line per connection; returns the address.
async fn echo_server(tls: Arc<ReloadableServerConfig>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut incoming = accept(listener, tls);
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = conn.read(&mut buf).await {
                    let _ = conn.write_all(&buf[..n]).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Connects, sends "ping", and returns the server's leaf certificate; Err on any failure
/// (handshake refused, connection closed).
async fn round_trip(
    addr: std::net::SocketAddr,
    identity: Option<&str>,
) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = client(identity)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().expect("server cert")[0].clone();
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    if buf != b"ping" {
        return Err(format!("echo returned {buf:?}"));
    }
    Ok(leaf)
}

fn leaf_of(stem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dev(&format!("{stem}.crt"))).expect("leaf")
}

#[test]
fn loads_the_development_certificates() {
    let config = build_server_config(&files("inferguard", true), Protocols::Grpc).expect("loads");
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    let config = build_server_config(&files("inferguard", false), Protocols::Http1).expect("loads");
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let f = TlsFiles {
        cert: dev("inferguard.crt"),
        key: dev("inference.key"),
        client_ca: None,
    };
    let err = build_server_config(&f, Protocols::Grpc).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
}

#[test]
fn files_without_pem_items_are_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not pem\n").expect("write");
    let f = TlsFiles {
        cert: empty.clone(),
        key: dev("inferguard.key"),
        client_ca: None,
    };
    let err = build_server_config(&f, Protocols::Grpc).expect_err("no cert");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    let f = TlsFiles {
        cert: dev("inferguard.crt"),
        key: empty.clone(),
        client_ca: None,
    };
    let err = build_server_config(&f, Protocols::Grpc).expect_err("no key");
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    let f = TlsFiles {
        cert: dev("inferguard.crt"),
        key: dev("inferguard.key"),
        client_ca: Some(dir.path().join("missing.pem")),
    };
    let err = build_server_config(&f, Protocols::Grpc).expect_err("missing ca");
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let f = TlsFiles {
        cert: "certs/a.crt".into(),
        key: "/abs/a.key".into(),
        client_ca: Some("ca.crt".into()),
    };
    let r = f.resolved(Path::new("/etc/inferguard"));
    assert_eq!(r.cert, Path::new("/etc/inferguard/certs/a.crt"));
    assert_eq!(r.key, Path::new("/abs/a.key"));
    assert_eq!(
        r.client_ca.as_deref(),
        Some(Path::new("/etc/inferguard/ca.crt"))
    );
}

#[tokio::test]
async fn mutual_tls_admits_a_client_certificate_and_refuses_a_caller_without_one() {
    let tls = ReloadableServerConfig::load("test", &files("inferguard", true), Protocols::Grpc)
        .expect("load");
    assert!(tls.requires_client_certificate());
    let addr = echo_server(tls).await;
    let leaf = round_trip(addr, Some("envoy-client"))
        .await
        .expect("with a client cert");
    assert_eq!(leaf, leaf_of("inferguard"));
    let refused = round_trip(addr, None).await;
    assert!(
        refused.is_err(),
        "a caller without a certificate got through"
    );
    // A server certificate is not a client certificate (extended key usage).
    let refused = round_trip(addr, Some("inference")).await;
    assert!(
        refused.is_err(),
        "a serverAuth-only certificate was accepted as a client"
    );
}

#[tokio::test]
async fn without_client_ca_no_certificate_is_asked_for() {
    let tls = ReloadableServerConfig::load("test", &files("inferguard", false), Protocols::Grpc)
        .expect("load");
    let addr = echo_server(tls).await;
    round_trip(addr, None).await.expect("plain TLS");
}

#[tokio::test]
async fn replaced_files_serve_new_connections_and_broken_ones_keep_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(dev("inferguard.crt"), &cert).expect("copy");
    std::fs::copy(dev("inferguard.key"), &key).expect("copy");
    let f = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    };
    let tls = ReloadableServerConfig::load("test", &f, Protocols::Grpc).expect("load");
    let addr = echo_server(tls.clone()).await;
    assert_eq!(
        round_trip(addr, None).await.expect("first"),
        leaf_of("inferguard")
    );
    assert!(!tls.reload_if_changed().expect("unchanged"));

    // Half-way through a replacement: the new certificate with the old key.
    std::fs::copy(dev("inference.crt"), &cert).expect("copy");
    assert!(matches!(
        tls.reload_if_changed(),
        Err(TlsError::KeyMismatch { .. })
    ));
    assert_eq!(
        round_trip(addr, None).await.expect("old kept"),
        leaf_of("inferguard")
    );

    std::fs::copy(dev("inference.key"), &key).expect("copy");
    assert!(tls.reload_if_changed().expect("reloads"));
    assert_eq!(
        round_trip(addr, None).await.expect("new"),
        leaf_of("inference")
    );
}

#[tokio::test]
async fn the_watch_task_picks_up_new_files_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::copy(dev("inferguard.crt"), &cert).expect("copy");
    std::fs::copy(dev("inferguard.key"), &key).expect("copy");
    let f = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    };
    let tls = ReloadableServerConfig::load("test", &f, Protocols::Grpc).expect("load");
    let watch = tls.spawn_watch(std::time::Duration::from_millis(50));
    let addr = echo_server(tls.clone()).await;
    std::fs::copy(dev("inference.key"), &key).expect("copy");
    std::fs::copy(dev("inference.crt"), &cert).expect("copy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if round_trip(addr, None).await.expect("serves") == leaf_of("inference") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    watch.abort();
}

#[tokio::test]
async fn tonic_handlers_see_the_peer_address_and_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    type Seen = Option<(Option<std::net::SocketAddr>, Option<usize>)>;
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    let (reporter, _) = tonic_health::server::health_reporter();
    let health = tonic_health::pb::health_server::HealthServer::with_interceptor(
        tonic_health::server::HealthService::from_health_reporter(reporter),
        move |req: tonic::Request<()>| {
            let certs = req.peer_certs().map(|c| c.len());
            *record.lock().expect("lock") = Some((req.remote_addr(), certs));
            Ok(req)
        },
    );
    let tls = ReloadableServerConfig::load("test", &files("inferguard", true), Protocols::Grpc)
        .expect("load");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_incoming(accept(listener, tls)),
    );
    let pem = |name: &str| std::fs::read(dev(name)).expect("pem");
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem("ca.crt")))
                .identity(Identity::from_pem(
                    pem("envoy-client.crt"),
                    pem("envoy-client.key"),
                ))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("check");
    let (remote, certs) = seen.lock().expect("lock").take().expect("handler ran");
    assert_eq!(remote.map(|a| a.ip()), Some(addr.ip()));
    assert_eq!(certs, Some(1), "the client's leaf certificate");
    server.abort();
}
