//! rustls configurations: the device-facing server (moat's CA-issued
//! certificate; with mTLS, client certificates from the same CA required) and
//! the client toward upstream brokers (verified against the configured CA).
//! One crypto provider (ring) for the whole process.

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    ClientConfig, RootCertStore, ServerConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
    #[error("{0:?} is not a valid TLS server name")]
    Name(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem { path: path.display().to_string(), message };
    let list: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(|e| pem(e.to_string()))?.collect();
    let list = list.map_err(|e| pem(e.to_string()))?;
    if list.is_empty() {
        return Err(pem("no certificates in the file".into()));
    }
    Ok(list)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(ca)? {
        store.add(c).map_err(|e| TlsError::Pem { path: ca.display().to_string(), message: e.to_string() })?;
    }
    Ok(store)
}

/// The broker's server config from `dir` (server.pem, server.key) and, for
/// mTLS, the CA client certificates must chain to.
pub fn server(dir: &Path, ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(&dir.join(super::pki::SERVER_CERT))?;
    let key_path = dir.join(super::pki::SERVER_KEY);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| TlsError::Pem { path: key_path.display().to_string(), message: e.to_string() })?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let cfg = match ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier).with_single_cert(chain, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
    };
    Ok(Arc::new(cfg))
}

/// A client config trusting only `ca` (an upstream broker's CA).
pub fn client(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::Name(host.to_string()))
}

/// The common name of a verified client certificate (mTLS), if any.
pub fn peer_name(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    common_name(cert.as_ref())
}

/// Finds the subject CN in a DER certificate: the last `2.5.4.3` attribute
/// (the subject follows the issuer in TBSCertificate). Enough for the
/// certificates moat's own CA issues; anything else yields `None`.
fn common_name(der: &[u8]) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(CN_OID.len()).rposition(|w| w == CN_OID)? + CN_OID.len();
    let (tag, len) = (*der.get(at)?, usize::from(*der.get(at + 1)?));
    if !matches!(tag, 0x0c | 0x13) || len >= 0x80 {
        return None;
    }
    String::from_utf8(der.get(at + 2..at + 2 + len)?.to_vec()).ok()
}
