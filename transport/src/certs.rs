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
/// It is also what makes a certificate a member's (see [`crate::quic::PeerRole`]).
pub const CLUSTER_SERVER_NAME: &str = "needle";

/// The name every client certificate carries instead of [`CLUSTER_SERVER_NAME`]: a
/// client can prove who it is, but cannot serve as (or pass for) a member.
pub const CLIENT_NAME: &str = "needle-client";

/// A certificate's own name among its DNS names: the first that is not a shared
/// role name, `localhost` or an address (`node-3`, `client-1`).
pub fn node_name(names: &[String]) -> Option<&str> {
    names.iter().map(String::as_str).find(|n| {
        *n != CLUSTER_SERVER_NAME
            && *n != CLIENT_NAME
            && *n != "localhost"
            && n.parse::<std::net::IpAddr>().is_err()
    })
}

/// The DNS names of the first certificate in a PEM file.
pub fn names_in_cert_file(path: &Path) -> Result<Vec<String>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|mut it| it.next().transpose())
        .map_err(|e| cert_error(format!("{}: {e}", path.display())))?
        .ok_or_else(|| cert_error(format!("{}: no certificate in it", path.display())))?;
    let parsed = webpki::EndEntityCert::try_from(&cert)
        .map_err(|e| cert_error(format!("{}: {e}", path.display())))?;
    Ok(parsed.valid_dns_names().map(str::to_string).collect())
}

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

    /// A client certificate for `name` (`client-1`): client authentication only,
    /// naming [`CLIENT_NAME`] and `name` but not [`CLUSTER_SERVER_NAME`], so it can
    /// neither serve as a member nor be given a member's powers.
    pub fn issue_client(
        &self,
        name: &str,
        validity: Validity,
    ) -> Result<IssuedCert, TransportError> {
        self.issue_with(
            name,
            vec![CLIENT_NAME.to_string(), name.to_string()],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
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
        self.issue_with(
            name,
            names,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            validity,
        )
    }

    fn issue_with(
        &self,
        name: &str,
        names: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<IssuedCert, TransportError> {
        let mut params = CertificateParams::new(names).map_err(cert_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
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
    /// `(cert, key)` per client, `client-1` first.
    pub clients: Vec<(PathBuf, PathBuf)>,
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
/// 1..=nodes into `out` (created if missing); no client certificates.
pub fn generate_cluster(
    out: &Path,
    nodes: usize,
    hosts: &[String],
) -> Result<ClusterFiles, TransportError> {
    generate_cluster_with_clients(out, nodes, 0, hosts)
}

/// [`generate_cluster`], plus `client-N.pem` / `client-N-key.pem` for N in
/// 1..=clients. Keys are created readable by the owner only: never, not even for an
/// instant, readable by others.
pub fn generate_cluster_with_clients(
    out: &Path,
    nodes: usize,
    clients: usize,
    hosts: &[String],
) -> Result<ClusterFiles, TransportError> {
    std::fs::create_dir_all(out)
        .map_err(|e| cert_error(format!("creating {}: {e}", out.display())))?;
    let ca = CertAuthority::new("needle cluster CA")?;
    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, TransportError> {
        let path = out.join(name);
        write_file(&path, text.as_bytes(), private)
            .map_err(|e| cert_error(format!("writing {}: {e}", path.display())))?;
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
        clients: (1..=clients)
            .map(|i| {
                let name = format!("client-{i}");
                let issued = ca.issue_client(&name, None)?;
                Ok((
                    write(&format!("{name}.pem"), &issued.cert_pem, false)?,
                    write(&format!("{name}-key.pem"), &issued.key_pem, true)?,
                ))
            })
            .collect::<Result<_, TransportError>>()?,
    };
    Ok(files)
}

/// Writes `bytes` to `path`, replacing it. A private file is created with mode 0600
/// (an existing one is truncated and set to 0600 before anything is written).
#[cfg(unix)]
fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    if private {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_file(path: &Path, bytes: &[u8], _private: bool) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
