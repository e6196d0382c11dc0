//! The cluster's certificates, made with rcgen (only `ray-rs` links rcgen).
//!
//! The head generates a per-cluster CA (ECDSA P-256) and its own node certificate. A joining
//! node generates its key pair locally and sends only the public key; the head signs a node
//! certificate for the joiner's IP addresses, so private keys never travel. Node certificates
//! serve both as TLS server certificates (a node's listener, etcd) and as client certificates
//! (etcd's `--client-cert-auth`). The CA's private key stays in the head's memory.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SignatureAlgorithm,
};

use crate::error::{CliError, Result};

fn pki(e: impl std::fmt::Display) -> CliError {
    CliError::Pki(e.to_string())
}

/// The cluster's certificate authority (in the head's memory).
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCa(<key redacted>)")
    }
}

/// A node's key pair (generated locally) and certificate.
pub struct NodeIdentity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeIdentity(<key redacted>)")
    }
}

/// A raw P-256 public key received from a joining node.
struct RawP256(Vec<u8>);

impl PublicKeyData for RawP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl ClusterCa {
    /// A fresh CA for `cluster_id`.
    pub fn generate(cluster_id: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(
            DnType::CommonName,
            format!("ray-rs cluster {cluster_id} CA"),
        );
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(pki)?;
        Ok(ClusterCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a node certificate for `public_key` (raw uncompressed P-256 point, 65 bytes) valid
    /// for `ips` (and `localhost`).
    pub fn issue(&self, public_key: &[u8], ips: &[IpAddr], name: &str) -> Result<String> {
        if public_key.len() != 65 || public_key[0] != 4 {
            return Err(CliError::Pki(
                "node public key must be an uncompressed P-256 point (65 bytes)".into(),
            ));
        }
        let params = node_params(ips, name)?;
        let cert = params
            .signed_by(&RawP256(public_key.to_vec()), &self.issuer)
            .map_err(pki)?;
        Ok(cert.pem())
    }

    /// A key pair and certificate for a node, generated here (the head's own).
    pub fn issue_local(&self, ips: &[IpAddr], name: &str) -> Result<NodeIdentity> {
        let key = new_node_key()?;
        let cert_pem = self.issue(key.public_key_raw(), ips, name)?;
        Ok(NodeIdentity {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// A fresh P-256 key pair for a node.
pub fn new_node_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki)
}

fn node_params(ips: &[IpAddr], name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(pki)?;
    let mut seen = Vec::new();
    for ip in ips {
        if !seen.contains(ip) {
            seen.push(*ip);
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
    }
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// Where a node keeps its TLS files: `<temp-dir>/tls/{ca.crt,node.crt,node.key}`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// The node certificate.
    pub cert: PathBuf,
    /// The node's private key (mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The default locations under `temp_dir`.
    pub fn under(temp_dir: &Path) -> Self {
        let dir = temp_dir.join("tls");
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("node.crt"),
            key: dir.join("node.key"),
        }
    }

    /// Writes the three files (replacing old ones; the directory is created 0700).
    pub fn write(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        if let Some(dir) = self.key.parent() {
            crate::tempdir::ensure_private_dir(dir)?;
        }
        write_file(&self.ca, ca_pem.as_bytes(), 0o644)?;
        write_file(&self.cert, cert_pem.as_bytes(), 0o644)?;
        write_file(&self.key, key_pem.as_bytes(), 0o600)
    }
}

/// Writes a file anew (removing an old one first; never following a symlink) with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CliError::io(format!("removing {}", path.display()), e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CliError::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_verify_against_the_ca() {
        let ca = ClusterCa::generate("c1").unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let node = ca.issue_local(&[ip, ip], "node-1").unwrap();
        let id = ray_net::TlsIdentity::from_pem(node.cert_pem.as_bytes(), node.key_pem.as_bytes())
            .unwrap();
        ray_net::server_config(&id).unwrap();
        ray_net::client_config(Some(ca.cert_pem().as_bytes()), Some(&id)).unwrap();
        assert!(ca.issue(&[4; 10], &[ip], "x").is_err());
    }
}
