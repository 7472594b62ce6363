//! A device registered with CA-verified TLS (`TlsVerified`) is pushed to and backed up by the
//! netops workflows, through the same endpoint-to-client mapping the poller uses
//! (`netledger-device-client`): the device's API-SSL presents a leaf issued by a test CA
//! for its address, the workflows trust that CA. Before the shared mapping, the workflows
//! refused such a device ("not supported yet") although the poller could poll it.
//!
//! devsim's own API-SSL certificate is self-signed for a name that is not its address, so
//! the test puts a TLS front with the CA-issued certificate before the device's plain API
//! (a TLS-terminating relay, as a device's API-SSL service would be).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use netledger_domain::device::{Endpoint, Host, Transport};
use netledger_domain::workflow::Outcome;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};

use support::env_with;

const CHANGE: &str = "/system identity\nset name=pushed-over-tls\n";

/// A fresh CA and a leaf for `127.0.0.1` it issued: (CA DER, leaf chain, leaf key).
fn ca_issued() -> (
    CertificateDer<'static>,
    Vec<CertificateDer<'static>>,
    PrivatePkcs8KeyDer<'static>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (
        ca.der().clone(),
        vec![leaf.der().clone()],
        PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    )
}

/// API-SSL in front of `upstream` (the device's plain API) with `chain`: every accepted
/// connection is relayed until either side closes.
async fn tls_front(
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    upstream: SocketAddr,
) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, PrivateKeyDer::Pkcs8(key))
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_ca_verified_device_is_pushed_and_backed_up(owner: PgPool) {
    let (ca, chain, key) = ca_issued();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let roots = Arc::new(roots);
    let e = env_with(owner, 1, "netops-test", |o| o.tls_roots = Some(roots)).await;
    let front = tls_front(chain, key, e.fleet.manifest()[0].api).await;
    let device = e
        .register_at(
            0,
            Endpoint {
                host: Host::parse("127.0.0.1").unwrap(),
                port: front.port(),
                transport: Transport::TlsVerified,
                ssh: None,
            },
        )
        .await;

    let wf = e
        .start(
            "config_push",
            device,
            json!({ "device_id": device, "change_id": "tls-c1", "script": CHANGE }),
        )
        .await;
    let (outcome, _) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Committed);
    let d = e.fleet.device(0).unwrap();
    assert_eq!(d.change_counts().get("tls-c1").copied(), Some(1));

    let wf = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    let (outcome, _) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Succeeded);
    e.stop().await;
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_ca_verified_device_is_refused_without_ca_roots(owner: PgPool) {
    let (_, chain, key) = ca_issued();
    let e = env_with(owner, 1, "netops-test", |_| {}).await;
    let front = tls_front(chain, key, e.fleet.manifest()[0].api).await;
    let device = e
        .register_at(
            0,
            Endpoint {
                host: Host::parse("127.0.0.1").unwrap(),
                port: front.port(),
                transport: Transport::TlsVerified,
                ssh: None,
            },
        )
        .await;
    let wf = e
        .start("backup", device, json!({ "device_id": device }))
        .await;
    let (outcome, _) = e.finish(wf).await;
    assert_eq!(outcome, Outcome::Failed);
    assert!(e.fleet.device(0).unwrap().change_counts().is_empty());
    e.stop().await;
}
