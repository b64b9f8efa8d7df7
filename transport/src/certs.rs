//! Development certificates: a cluster CA and node certificates signed by it
//! (`needle certs generate --out DIR --nodes 3`). Production clusters bring their
//! own PKI; these files have the same shape (`ca.pem`, `node-N.pem`, `node-N-key.pem`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::TransportError;

/// The name every node certificate carries and every client verifies, so that
/// peers are checked against the cluster CA whatever address they were dialled at.
pub const CLUSTER_SERVER_NAME: &str = "needle";

fn cert_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Certificates(e.to_string())
}

/// A certificate authority that issues node certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// One issued certificate and its private key, PEM-encoded.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Validity of an issued certificate: `None` is ten years from now.
pub type Validity = Option<(time::OffsetDateTime, time::OffsetDateTime)>;

impl CertAuthority {
    pub fn new(common_name: &str) -> Result<CertAuthority, TransportError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.self_signed(&key).map_err(cert_error)?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A node certificate for `name`, valid as server and client, naming
    /// [`CLUSTER_SERVER_NAME`], `name`, localhost and the loopback addresses plus
    /// `hosts`.
    pub fn issue(
        &self,
        name: &str,
        hosts: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, TransportError> {
        let mut names = vec![
            CLUSTER_SERVER_NAME.to_string(),
            name.to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(cert_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some((not_before, not_after)) = validity {
            params.not_before = not_before;
            params.not_after = not_after;
        } else {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - std::time::Duration::from_secs(3600);
            params.not_after = now + std::time::Duration::from_secs(10 * 365 * 24 * 3600);
        }
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The files [`generate_cluster`] wrote.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// `(cert, key)` per node, `node-1` first.
    pub nodes: Vec<(PathBuf, PathBuf)>,
}

impl ClusterFiles {
    /// Mutual TLS for node `node` (1-based) with these files; `None` past the last.
    pub fn security(&self, node: usize) -> Option<crate::Security> {
        let (cert_path, key_path) = self.nodes.get(node.checked_sub(1)?)?.clone();
        Some(crate::Security::Mutual(crate::TlsFiles {
            cert_path,
            key_path,
            ca_path: self.ca_cert.clone(),
        }))
    }
}

/// Writes `ca.pem`, `ca-key.pem` and `node-N.pem` / `node-N-key.pem` for N in
/// 1..=nodes into `out` (created if missing). Keys are written readable by the owner
/// only.
pub fn generate_cluster(
    out: &Path,
    nodes: usize,
    hosts: &[String],
) -> Result<ClusterFiles, TransportError> {
    std::fs::create_dir_all(out)
        .map_err(|e| cert_error(format!("creating {}: {e}", out.display())))?;
    let ca = CertAuthority::new("needle cluster CA")?;
    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, TransportError> {
        let path = out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| cert_error(format!("writing {}: {e}", path.display())))?;
        if private {
            restrict(&path)?;
        }
        Ok(path)
    };
    let files = ClusterFiles {
        ca_cert: write("ca.pem", ca.cert_pem(), false)?,
        ca_key: write("ca-key.pem", ca.key_pem(), true)?,
        nodes: (1..=nodes)
            .map(|i| {
                let name = format!("node-{i}");
                let issued = ca.issue(&name, hosts, None)?;
                Ok((
                    write(&format!("{name}.pem"), &issued.cert_pem, false)?,
                    write(&format!("{name}-key.pem"), &issued.key_pem, true)?,
                ))
            })
            .collect::<Result<_, TransportError>>()?,
    };
    Ok(files)
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), TransportError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| cert_error(format!("chmod {}: {e}", path.display())))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> Result<(), TransportError> {
    Ok(())
}
