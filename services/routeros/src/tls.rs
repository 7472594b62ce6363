//! API-SSL (TCP 8729) with rustls: how the router's certificate is trusted.
//!
//! RouterOS api-ssl certificates are usually self-signed and do not name the host, so besides
//! ordinary CA verification a certificate can be pinned by the SHA-256 of its DER encoding
//! (pinning ignores the server name and validity dates: the pin *is* the identity). Trusting an
//! unknown certificate is only possible by choosing [`TlsPolicy::TrustOnFirstUse`], and even
//! then the observed fingerprint is handed back ([`PeerCertificate`], available from
//! [`crate::Client::peer_certificate`]) so the caller records it and pins it next time.
//!
//! Every policy still checks the handshake signature against the presented certificate's key,
//! so a pinned certificate cannot be replayed without its private key.
//!
//! Limits: a router with `certificate=none` on api-ssl offers only anonymous Diffie-Hellman
//! suites (ROUTEROS-NOTES §2.3), which rustls does not implement; give the service a
//! certificate (RouterOS can generate a self-signed one) and pin it.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::Error;

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    /// Lowercase hex, 64 characters (the form RouterOS `/certificate print` shows).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint string that is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
pub struct FingerprintParseError;

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Accepts 64 hex digits, upper or lower case, optionally separated by `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|&c| c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|_| FingerprintParseError)?;
        Ok(Fingerprint(out))
    }
}

/// How to trust the router's certificate.
#[derive(Debug, Clone)]
pub enum TlsPolicy {
    /// Ordinary WebPKI verification against these roots, including the server name.
    Ca(RootCertStore),
    /// Accept exactly the certificate with this SHA-256 fingerprint; name and dates ignored.
    PinnedSha256([u8; 32]),
    /// Accept whatever certificate is presented and report its fingerprint in
    /// [`PeerCertificate`] so the caller can record it and pin it from then on.
    TrustOnFirstUse,
}

/// How the connection's certificate came to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Verified against the CA roots.
    Ca,
    /// Matched the pinned fingerprint.
    Pinned,
    /// Accepted on first use: record [`PeerCertificate::fingerprint`].
    FirstUse,
}

/// The certificate the router presented on an API-SSL connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of its DER encoding.
    pub fingerprint: Fingerprint,
    /// Why it was accepted.
    pub trust: Trust,
}

/// Runs the TLS handshake over `tcp` according to `policy`.
pub(crate) async fn handshake(
    tcp: TcpStream,
    policy: &TlsPolicy,
    server_name: &str,
) -> Result<(TlsStream<TcpStream>, PeerCertificate), Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|_| Error::InvalidServerName {
            name: server_name.to_owned(),
        })?;
    let verify_by = match policy {
        TlsPolicy::Ca(roots) => VerifyBy::Ca(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
                .build()
                .map_err(|e| tls_error(server_name, rustls::Error::General(e.to_string())))?,
        ),
        TlsPolicy::PinnedSha256(pin) => VerifyBy::Pin(Fingerprint(*pin)),
        TlsPolicy::TrustOnFirstUse => VerifyBy::FirstUse,
    };
    let verifier = Arc::new(Verifier {
        policy: verify_by,
        algorithms: provider.signature_verification_algorithms,
        seen: Mutex::new(None),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(server_name, e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    // Every connection gets its own config, so a session cache could never be used again; it
    // would only hold the server's tickets for as long as the connection lives (memory that
    // adds up over the thousands of sessions a poller keeps).
    config.resumption = rustls::client::Resumption::disabled();
    let result = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let seen = *verifier.seen.lock().unwrap_or_else(PoisonError::into_inner);
    match (result, seen) {
        (Ok(stream), Some(fingerprint)) => {
            let trust = match policy {
                TlsPolicy::Ca(_) => Trust::Ca,
                TlsPolicy::PinnedSha256(_) => Trust::Pinned,
                TlsPolicy::TrustOnFirstUse => Trust::FirstUse,
            };
            Ok((stream, PeerCertificate { fingerprint, trust }))
        }
        (Ok(_), None) => Err(tls_error(
            server_name,
            rustls::Error::General("handshake completed without a server certificate".into()),
        )),
        (Err(source), seen) => match (policy, seen) {
            (TlsPolicy::PinnedSha256(pin), Some(actual)) if actual.0 != *pin => {
                Err(Error::PinMismatch {
                    expected: Fingerprint(*pin),
                    actual,
                })
            }
            _ => Err(Error::Tls {
                server: server_name.to_owned(),
                source,
            }),
        },
    }
}

fn tls_error(server: &str, e: rustls::Error) -> Error {
    Error::Tls {
        server: server.to_owned(),
        source: std::io::Error::other(e),
    }
}

#[derive(Debug)]
enum VerifyBy {
    Ca(Arc<WebPkiServerVerifier>),
    Pin(Fingerprint),
    FirstUse,
}

/// Records the presented certificate's fingerprint, then applies the policy.
#[derive(Debug)]
struct Verifier {
    policy: VerifyBy,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Fingerprint>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = Fingerprint::of_der(end_entity);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        match &self.policy {
            VerifyBy::Ca(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            VerifyBy::Pin(pin) if *pin == fingerprint => Ok(ServerCertVerified::assertion()),
            VerifyBy::Pin(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            VerifyBy::FirstUse => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_hex_with_or_without_colons() {
        let fp = Fingerprint([0xAB; 32]);
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(plain.parse::<Fingerprint>(), Ok(fp));
        let colons =
            fp.0.iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
        assert_eq!(colons.parse::<Fingerprint>(), Ok(fp));
        assert_eq!("abcd".parse::<Fingerprint>(), Err(FingerprintParseError));
        assert_eq!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(FingerprintParseError)
        );
    }
}
