//! TLS client side: one rustls (ring) `ClientConfig` trusting only the given CA, shared by
//! every connection; SNI is the configured host name, TCP goes to a fixed socket address.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Target;

/// A TLS connection to the broker.
pub type Stream = tokio_rustls::client::TlsStream<TcpStream>;

/// Everything needed to open a TLS connection to the broker; cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    addrs: Vec<SocketAddr>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("server_name", &self.server_name).field("addrs", &self.addrs).finish()
    }
}

impl Endpoint {
    /// Loads the CA, builds the client config and resolves the address to connect to.
    pub async fn new(target: &Target) -> Result<Self> {
        let roots = load_roots(&target.ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(target.host.clone())
            .map_err(|e| anyhow!("--host {:?} is not a valid TLS server name: {e}", target.host))?;
        let addrs = resolve(target).await?;
        eprintln!("target {addrs:?} (TLS server name {:?})", target.host);
        Ok(Self { connector: TlsConnector::from(Arc::new(config)), server_name, addrs })
    }

    /// TCP connect (to the first address that accepts; no Nagle) and TLS handshake.
    pub async fn connect(&self) -> Result<Stream> {
        let tcp = TcpStream::connect(self.addrs.as_slice())
            .await
            .with_context(|| format!("TCP connect to {:?}", self.addrs))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        self.connector.connect(self.server_name.clone(), tcp).await.context("TLS handshake")
    }
}

fn load_roots(ca: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).with_context(|| format!("reading CA file {}", ca.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("parsing CA file {}", ca.display()))?;
        roots.add(cert).with_context(|| format!("adding a CA certificate from {}", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate found in CA file {}", ca.display());
    }
    Ok(roots)
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>> {
    if let Some(ip) = target.connect_addr {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("resolving {:?}", target.host))?
        .collect();
    if addrs.is_empty() {
        bail!("{:?} resolves to no address", target.host);
    }
    Ok(addrs)
}
