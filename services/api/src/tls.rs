//! HTTPS served by the API itself: the server certificate chain and private key read from
//! PEM files ([`TlsFiles`]), turned into a rustls server configuration (ring, TLS 1.2 and
//! 1.3, ALPN `http/1.1`), and held in a [`TlsServerConfig`] that [`crate::serve`] reads at
//! every accepted connection, so that [`TlsServerConfig::reload`] (the binary calls it on
//! SIGHUP) applies to new connections while open ones keep the certificate they started
//! with. A reload that fails keeps the previous configuration and says which file is wrong.
//!
//! Nothing here panics on bad files: every problem is a [`TlsError`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};

/// The ALPN protocol the API speaks over TLS (HTTP/1.1 only, like the plain listener).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Where the server's certificate and key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then any intermediates
    /// (`-----BEGIN CERTIFICATE-----` blocks).
    pub cert: PathBuf,
    /// The private key of the first certificate: PKCS#8 (`BEGIN PRIVATE KEY`), RSA
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`); the first key in the
    /// file is used.
    pub key: PathBuf,
}

/// Why a certificate or key could not be used. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read (missing, unreadable).
    #[error("cannot read TLS file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file is not well-formed PEM.
    #[error("TLS certificate file {} is not valid PEM: {source}", path.display())]
    CertificatePem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "TLS certificate file {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The first certificate cannot be parsed.
    #[error("TLS certificate file {} holds an unusable certificate: {source}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The key file is not well-formed PEM.
    #[error("TLS key file {} is not valid PEM: {source}", path.display())]
    KeyPem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The key file holds no private key.
    #[error(
        "TLS key file {} holds no private key (expected a PEM PKCS#8, RSA or SEC1 private key)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of a kind rustls (ring) cannot sign with, or is malformed.
    #[error("TLS key file {} holds an unusable private key: {source}", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The private key is not the key of the first certificate.
    #[error(
        "TLS key file {} does not match the certificate in {} (the private key is not the \
         certificate's)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused to build a configuration (protocol versions of the provider).
    #[error("cannot build the TLS server configuration: {0}")]
    Config(rustls::Error),
}

impl TlsError {
    /// The file the error is about (the key file for a mismatch), if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::CertificatePem { path, .. }
            | Self::NoCertificate { path }
            | Self::InvalidCertificate { path, .. }
            | Self::KeyPem { path, .. }
            | Self::NoKey { path }
            | Self::UnsupportedKey { path, .. } => Some(path),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::Config(_) => None,
        }
    }
}

/// The API's TLS settings: the files and the rustls configuration last loaded from them.
/// Cheap to clone (clones share the configuration: a [`reload`](Self::reload) through one
/// is seen by all).
#[derive(Clone)]
pub struct TlsServerConfig {
    inner: Arc<Inner>,
}

struct Inner {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsServerConfig {
    /// Reads the certificate chain and key and builds the configuration. Fails (naming the
    /// file) when a file is missing or unreadable, holds no certificate or key, or the key is
    /// not the certificate's.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = build(&files)?;
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                current: RwLock::new(config),
            }),
        })
    }

    /// Reads the files again and, when they make a valid configuration, uses it for the
    /// connections accepted from now on (open connections keep theirs). On error the
    /// previous configuration stays in use. Reads the files synchronously (they are small).
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.inner.files)?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The files this configuration is loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// The configuration in use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// An acceptor for one new connection, on the configuration in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current())
    }
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("cert", &self.inner.files.cert)
            .field("key", &self.inner.files.key)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<CertificateDer<'static>>, _>>()
        .map_err(|source| TlsError::CertificatePem {
            path: files.cert.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::KeyPem {
            path: files.key.clone(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: files.key.clone(),
        })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = certified_key(files, &provider, chain, key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The chain with its signing key, refused when the key is not the first certificate's.
fn certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: files.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // Unknown: the key type cannot tell its public key (rustls accepts it as well).
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(source) => Err(TlsError::InvalidCertificate {
            path: files.cert.clone(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    //! Load and reload against files in a temporary folder, and HTTPS served by the accept
    //! loop of [`crate::serve`] (a tiny router: no database) on 127.0.0.1, checked with a
    //! tokio-rustls client that trusts only the test CA.

    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;
    use hyper::client::conn::http1::SendRequest;
    use hyper_util::rt::TokioIo;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A test CA and the leaf certificates it issues.
    struct Pki {
        ca: rcgen::Certificate,
        ca_key: KeyPair,
    }

    /// One issued certificate: PEM files' contents and the certificate's DER.
    struct Leaf {
        cert_pem: String,
        key_pem: String,
        der: Vec<u8>,
    }

    impl Pki {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "Netledger test CA");
            let ca_key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&ca_key).unwrap();
            Self { ca, ca_key }
        }

        fn leaf(&self, cn: &str, sans: &[&str]) -> Leaf {
            let mut params =
                CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                der: cert.der().to_vec(),
            }
        }

        /// A client that trusts this CA only, speaks HTTP/1.1 and never resumes a session
        /// (each connection shows the server's current certificate).
        fn client(&self) -> tokio_rustls::TlsConnector {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
            config.resumption = rustls::client::Resumption::disabled();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        }
    }

    /// The files in a temporary folder.
    struct Files {
        _dir: tempfile::TempDir,
        files: TlsFiles,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let files = TlsFiles {
                cert: dir.path().join("api.crt"),
                key: dir.path().join("api.key"),
            };
            Self { _dir: dir, files }
        }

        fn write(&self, cert_pem: &str, key_pem: &str) {
            std::fs::write(&self.files.cert, cert_pem).unwrap();
            std::fs::write(&self.files.key, key_pem).unwrap();
        }

        fn with(leaf: &Leaf) -> Self {
            let f = Self::new();
            f.write(&leaf.cert_pem, &leaf.key_pem);
            f
        }
    }

    /// A running accept loop with TLS over a router answering `/health/live` and `/peer`
    /// (the `ConnectInfo` address).
    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        done: tokio::task::JoinHandle<io::Result<()>>,
    }

    impl Server {
        async fn start(
            tls: TlsServerConfig,
            max_connections: usize,
            header_timeout: Duration,
        ) -> Self {
            let app =
                Router::new()
                    .route("/health/live", get(|| async { "live" }))
                    .route(
                        "/peer",
                        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                            peer.to_string()
                        }),
                    );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let done = tokio::spawn(crate::serve_connections(
                listener,
                app,
                max_connections,
                header_timeout,
                Some(tls),
                async move {
                    let _ = stopped.await;
                },
            ));
            Self {
                addr,
                stop: Some(stop),
                done,
            }
        }

        /// Stops the server and waits (at most `within`) for it to finish.
        async fn stop(mut self, within: Duration) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(within, &mut self.done)
                .await
                .expect("the server stops in time")
                .unwrap()
                .unwrap();
        }
    }

    /// An HTTPS connection (kept alive) and the certificate the server showed.
    struct Client {
        send: SendRequest<Empty<Bytes>>,
        peer_cert: Vec<u8>,
        local: SocketAddr,
    }

    async fn connect(pki: &Pki, addr: SocketAddr) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            pki.client()
                .connect(ServerName::try_from("localhost").unwrap(), tcp),
        )
        .await
        .expect("the handshake finishes")
        .expect("the handshake succeeds");
        let (_, session) = tls.get_ref();
        assert_eq!(session.alpn_protocol(), Some(ALPN_HTTP11));
        let peer_cert = session.peer_certificates().unwrap()[0].to_vec();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client {
            send,
            peer_cert,
            local,
        }
    }

    impl Client {
        async fn get(&mut self, path: &str) -> (u16, String) {
            self.send.ready().await.unwrap();
            let req = hyper::Request::get(path)
                .header(hyper::header::HOST, "localhost")
                .body(Empty::new())
                .unwrap();
            let res = tokio::time::timeout(Duration::from_secs(10), self.send.send_request(req))
                .await
                .expect("an answer")
                .unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    }

    /// Reads until the server closes the connection (end of stream or reset), within
    /// `within`; returns what it sent before.
    async fn read_until_closed(s: &mut tokio::net::TcpStream, within: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(within, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .expect("the server closes the connection");
        out
    }

    #[test]
    fn load_names_a_missing_file() {
        let pki = Pki::new();
        let leaf = pki.leaf("api-a", &["localhost"]);
        let f = Files::new();
        // Neither file: the certificate is read first.
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { path, source } if *path == f.files.cert
                && source.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(e.to_string().contains("api.crt"), "{e}");
        // The certificate alone: the key is missing.
        std::fs::write(&f.files.cert, &leaf.cert_pem).unwrap();
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { path, .. } if *path == f.files.key),
            "{e:?}"
        );
        assert_eq!(e.path(), Some(f.files.key.as_path()));
        assert!(e.to_string().contains("api.key"), "{e}");
        // Both: loads, speaks HTTP/1.1.
        std::fs::write(&f.files.key, &leaf.key_pem).unwrap();
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        assert_eq!(tls.current().alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(tls.files(), &f.files);
    }

    #[test]
    fn load_refuses_files_without_a_usable_certificate_or_key() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let b = pki.leaf("api-b", &["localhost"]);
        let f = Files::new();

        f.write(&a.cert_pem, "not a key at all\n");
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::NoKey { path } if *path == f.files.key),
            "{e:?}"
        );
        assert!(e.to_string().contains("api.key"), "{e}");

        // A certificate where the key should be is no key either.
        f.write(&a.cert_pem, &a.cert_pem);
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(matches!(&e, TlsError::NoKey { .. }), "{e:?}");

        f.write(
            &a.cert_pem,
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        );
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::KeyPem { path, .. } if *path == f.files.key),
            "{e:?}"
        );

        // Well-formed PEM, but not a key ring can load.
        f.write(
            &a.cert_pem,
            "-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n",
        );
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::UnsupportedKey { path, .. } if *path == f.files.key),
            "{e:?}"
        );

        f.write(&a.cert_pem, &b.key_pem);
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::KeyMismatch { cert, key } if *cert == f.files.cert && *key == f.files.key),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("api.key") && e.to_string().contains("api.crt"),
            "{e}"
        );

        f.write("", &a.key_pem);
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::NoCertificate { path } if *path == f.files.cert),
            "{e:?}"
        );
        assert!(e.to_string().contains("api.crt"), "{e}");

        // A certificate block whose contents are no certificate.
        f.write(
            "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
            &a.key_pem,
        );
        let e = TlsServerConfig::load(f.files.clone()).unwrap_err();
        assert!(
            matches!(&e, TlsError::InvalidCertificate { path, .. } if *path == f.files.cert),
            "{e:?}"
        );

        // The key and the certificate in one file, the chain with its CA: fine.
        let chain = format!("{}{}", a.cert_pem, pki.ca.pem());
        f.write(&chain, &format!("{}{}", a.cert_pem, a.key_pem));
        TlsServerConfig::load(f.files.clone()).unwrap();
    }

    #[tokio::test]
    async fn https_is_served_with_the_configured_certificate() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let server = Server::start(tls, 16, Duration::from_secs(5)).await;
        let mut client = connect(&pki, server.addr).await;
        assert_eq!(client.peer_cert, a.der);
        assert_eq!(client.get("/health/live").await, (200, "live".to_owned()));
        // The peer address reaches the handlers as over plain HTTP.
        let local = client.local.to_string();
        assert_eq!(client.get("/peer").await, (200, local));
        // A client that does not trust the CA gets no connection.
        let other = Pki::new();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let refused = other
            .client()
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await;
        assert!(refused.is_err(), "a foreign CA's client must not connect");
        server.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn plain_http_to_the_tls_port_gets_no_answer() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let server = Server::start(tls, 16, Duration::from_secs(5)).await;
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(4)).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP was answered: {}",
            String::from_utf8_lossy(&answer)
        );
        // At most a TLS alert record (content type 21).
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
        // The server still serves HTTPS.
        let mut client = connect(&pki, server.addr).await;
        assert_eq!(client.get("/health/live").await.0, 200);
        server.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn a_client_that_never_handshakes_is_cut_off_and_frees_its_slot() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let timeout = Duration::from_millis(300);
        // One slot: the silent client holds it until it is cut off.
        let server = Server::start(tls, 1, timeout).await;
        let started = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Behind it in the backlog, served only once the silent one is gone.
        let mut client = connect(&pki, server.addr).await;
        assert_eq!(client.get("/health/live").await.0, 200);
        assert!(
            started.elapsed() >= timeout,
            "served after {:?}: the silent client did not hold the slot",
            started.elapsed()
        );
        // The silent client was closed, not merely outlived: end of stream or a reset now,
        // without waiting.
        let answer = read_until_closed(&mut silent, Duration::from_millis(100)).await;
        assert!(answer.is_empty(), "{answer:?}");
        drop(client);
        server.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_pending_handshakes() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let server = Server::start(tls, 4, Duration::from_secs(60)).await;
        let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Let the server accept it and start the handshake.
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop(Duration::from_secs(5)).await;
        let answer = read_until_closed(&mut silent, Duration::from_secs(1)).await;
        assert!(answer.is_empty(), "{answer:?}");
    }

    #[tokio::test]
    async fn reload_serves_the_new_certificate_to_new_connections() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let b = pki.leaf("api-b", &["localhost", "api.example.test"]);
        assert_ne!(a.der, b.der);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let server = Server::start(tls.clone(), 16, Duration::from_secs(5)).await;
        let mut old = connect(&pki, server.addr).await;
        assert_eq!(old.peer_cert, a.der);
        assert_eq!(old.get("/health/live").await.0, 200);

        f.write(&b.cert_pem, &b.key_pem);
        // Written, not yet reloaded: still the first.
        assert_eq!(connect(&pki, server.addr).await.peer_cert, a.der);
        tls.reload().unwrap();
        let mut new = connect(&pki, server.addr).await;
        assert_eq!(new.peer_cert, b.der);
        assert_eq!(new.get("/health/live").await.0, 200);
        // The open keep-alive connection goes on with the certificate it started with.
        assert_eq!(old.get("/health/live").await, (200, "live".to_owned()));
        assert_eq!(old.get("/health/live").await.0, 200);
        server.stop(Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_old_certificate() {
        let pki = Pki::new();
        let a = pki.leaf("api-a", &["localhost"]);
        let b = pki.leaf("api-b", &["localhost", "api.example.test"]);
        let f = Files::with(&a);
        let tls = TlsServerConfig::load(f.files.clone()).unwrap();
        let server = Server::start(tls.clone(), 16, Duration::from_secs(5)).await;

        // A new certificate with a garbage key.
        f.write(&b.cert_pem, "garbage\n");
        let e = tls.reload().unwrap_err();
        assert!(
            matches!(&e, TlsError::NoKey { path } if *path == f.files.key),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&f.files.key.display().to_string()),
            "{e}"
        );
        let mut c = connect(&pki, server.addr).await;
        assert_eq!(c.peer_cert, a.der);
        assert_eq!(c.get("/health/live").await.0, 200);

        // A new certificate with the old key (half-way through a renewal).
        f.write(&b.cert_pem, &a.key_pem);
        let e = tls.reload().unwrap_err();
        assert!(
            matches!(&e, TlsError::KeyMismatch { cert, key } if *cert == f.files.cert && *key == f.files.key),
            "{e:?}"
        );
        assert_eq!(connect(&pki, server.addr).await.peer_cert, a.der);

        // The key file gone.
        std::fs::remove_file(&f.files.key).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { path, .. } if *path == f.files.key),
            "{e:?}"
        );
        assert_eq!(connect(&pki, server.addr).await.peer_cert, a.der);

        // Both right: the new certificate.
        f.write(&b.cert_pem, &b.key_pem);
        tls.reload().unwrap();
        assert_eq!(connect(&pki, server.addr).await.peer_cert, b.der);
        assert_eq!(c.get("/health/live").await.0, 200);
        server.stop(Duration::from_secs(10)).await;
    }
}
