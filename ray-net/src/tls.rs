//! rustls configurations (TLS 1.3 only, `ring` provider).
//!
//! - [`server_config`]: a node's listener, presenting its node certificate (signed by the
//!   cluster CA). Clients are authenticated by the token proof of the [`crate::handshake`], not by
//!   certificates.
//! - [`client_config`] with a CA: the server's certificate must chain to the cluster CA and name
//!   the IP address connected to.
//! - [`client_config`] without a CA: for a node joining the cluster, which does not have the CA
//!   yet. The server's certificate is not checked against any root, but its handshake signature
//!   still is, and the handshake's token-bound mutual proof (bound to this TLS session's exporter
//!   secret) is what authenticates the server: a man in the middle holds two TLS sessions with
//!   different exporter secrets and cannot produce or relay the proofs without the token.
//!
//! TLS 1.3 only, because the handshake relies on the RFC 5705/8446 exporter, which in TLS 1.2 is
//! only safe with the extended master secret.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::NetError;

/// The crypto provider used everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key.
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.cert_chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// From PEM text: certificates (leaf first) and a PKCS#8, PKCS#1 or SEC1 private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, NetError> {
        let cert_chain = certs_from_pem(cert_pem, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| NetError::Pem {
            what: "private key".to_string(),
            detail: e.to_string(),
        })?;
        Ok(TlsIdentity { cert_chain, key })
    }

    /// From PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, NetError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        TlsIdentity::from_pem(&cert_pem, &key_pem)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|e| NetError::io(format!("reading {}", path.display()), e))
}

/// Parses every certificate in PEM text; at least one must be there.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Pem {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(NetError::Pem {
            what: what.to_string(),
            detail: "no CERTIFICATE block".to_string(),
        });
    }
    Ok(certs)
}

/// A server configuration presenting `identity`, TLS 1.3 only, no client certificates.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, NetError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    Ok(Arc::new(config))
}

/// A client configuration, TLS 1.3 only. With `ca_pem`, servers must present a certificate
/// chaining to it for the address connected to; without, see the module docs (only safe
/// together with the token handshake). `identity` is presented when a server asks for a client
/// certificate (etcd with `--client-cert-auth` does).
pub fn client_config(
    ca_pem: Option<&[u8]>,
    identity: Option<&TlsIdentity>,
) -> Result<Arc<ClientConfig>, NetError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certs_from_pem(pem, "CA certificate")? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TokenBoundVerifier {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    let config = match identity {
        Some(id) => builder.with_client_auth_cert(id.cert_chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate but checks the handshake signature made with its key; the
/// server is authenticated by the token proof instead (module docs).
#[derive(Debug)]
struct TokenBoundVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for TokenBoundVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".to_string()))
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
