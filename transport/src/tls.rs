//! QUIC's TLS 1.3 configuration: mutual TLS against a cluster CA, or, behind an
//! explicit development switch, an unauthenticated mode.

use std::path::PathBuf;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::certs::{CertAuthority, CLUSTER_SERVER_NAME};
use crate::TransportError;

/// ALPN protocol id: a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"needle/1";

/// PEM files of a node: its certificate chain, its key, and the cluster CA that
/// every peer's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
}

/// How a transport authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Both sides present certificates chaining to the cluster CA; others are refused.
    Mutual(TlsFiles),
    /// No authentication at all (encryption only, with a throwaway certificate).
    /// Only for development, behind an explicit `--insecure-dev` switch.
    InsecureDev,
}

fn tls_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(e.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// quinn's server and client configurations for `security`.
pub(crate) fn configs(
    security: &Security,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let provider = provider();
    let (mut server, mut client) = match security {
        Security::Mutual(files) => mutual(files, &provider)?,
        Security::InsecureDev => {
            tracing::warn!("transport running with --insecure-dev: peers are NOT authenticated");
            insecure(&provider)?
        }
    };
    server.alpn_protocols = vec![ALPN.to_vec()];
    client.alpn_protocols = vec![ALPN.to_vec()];
    let server = QuicServerConfig::try_from(server).map_err(tls_error)?;
    let client = QuicClientConfig::try_from(client).map_err(tls_error)?;
    let transport = Arc::new(quic_transport());
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok((server, client))
}

/// Flow-control windows sized for bulk region transfers between nodes in one data
/// centre (quinn's defaults target the internet: a 1.25 MB stream window caps one
/// stream at window / RTT).
fn quic_transport() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
    config.receive_window(quinn::VarInt::from_u32(64 << 20));
    config.send_window(64 << 20);
    config.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    config
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn mutual(
    files: &TlsFiles,
    provider: &Arc<CryptoProvider>,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TransportError> {
    let certs = read_certs(&files.cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_path)
        .map_err(|e| tls_error(format!("{}: {e}", files.key_path.display())))?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca_path)? {
        roots.add(ca).map_err(tls_error)?;
    }
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(tls_error)?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(tls_error)?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(tls_error)?;
    Ok((server, client))
}

fn insecure(
    provider: &Arc<CryptoProvider>,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TransportError> {
    let ca = CertAuthority::new("needle insecure-dev")?;
    let issued = ca.issue(CLUSTER_SERVER_NAME, &[], None)?;
    let certs =
        vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).map_err(tls_error)?];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(tls_error)?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider.clone())))
        .with_no_client_auth();
    Ok((server, client))
}

/// `--insecure-dev` only: accepts any server certificate (signatures are still
/// checked, so the handshake itself is sound; the peer is just not authenticated).
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
