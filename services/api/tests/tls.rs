//! The whole API served over HTTPS by [`netledger_api::serve`] with `ApiConfig::tls`, against
//! a real PostgreSQL: `/health/live` answers through a client that trusts only the test CA,
//! a reload through the configuration's handle reaches new connections, and the metrics
//! address stays plain HTTP. (The accept loop's TLS details — silent clients, plain HTTP,
//! failed reloads — are unit tests of `netledger_api::tls`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use netledger_api::{TlsFiles, TlsServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use sqlx::PgPool;

mod support;
use support::{config, setup};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Netledger test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// Issues a certificate for `localhost` and writes it and its key to `files`; returns
    /// its DER.
    fn issue(&self, cn: &str, files: &TlsFiles) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(c))
    }
}

/// One HTTPS GET on a new connection: the server's certificate, the status and the body.
async fn https_get(ca: &Ca, addr: SocketAddr, path: &str) -> (Vec<u8>, u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(30),
        ca.connector()
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("the handshake finishes")
    .expect("the handshake succeeds");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .expect("an answer")
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (cert, status, String::from_utf8_lossy(&body).into_owned())
}

async fn plain_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn tls_the_api_serves_https_and_reloads_its_certificate(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("api.crt"),
        key: dir.path().join("api.key"),
    };
    let ca = Ca::new();
    let first = ca.issue("api-1", &files);
    let tls = TlsServerConfig::load(files.clone()).unwrap();

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let mut c = config();
    c.tls = Some(tls.clone());
    c.metrics_listen = Some(metrics_addr);
    let parts = setup(&pool, c, |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(netledger_api::serve(
        listener,
        parts.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let (cert, status, body) = https_get(&ca, addr, "/health/live").await;
    assert_eq!(cert, first);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "ok"})
    );

    // Renewed on disk, reloaded through the handle the binary keeps (the SIGHUP path).
    let second = ca.issue("api-2", &files);
    assert_ne!(first, second);
    tls.reload().unwrap();
    let (cert, status, _) = https_get(&ca, addr, "/health/live").await;
    assert_eq!(cert, second);
    assert_eq!(status, 200);

    // Metrics on their own address: plain HTTP.
    let mut scraped = None;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(metrics_addr).await.is_ok() {
            scraped = Some(plain_get(metrics_addr, "/metrics").await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let scraped = scraped.expect("the metrics address listens");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
