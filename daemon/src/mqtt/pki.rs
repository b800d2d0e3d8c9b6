//! moat's own certificate authority: made on first start (no shipped or
//! shared key), it signs the broker's server certificate (the gateway's names
//! and LAN addresses) and, for mTLS, per-device client certificates.
//!
//! Files under `<state_dir>/mqtt/` (directory 0700, keys 0600): `ca.pem`
//! (give it to devices), `ca.key`, `server.pem`, `server.key`.

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

const CA_NAME: &str = "moat gateway CA";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
/// Server and client certificates are re-issued well before this.
const LEAF_DAYS: i64 = 825;
const CA_DAYS: i64 = 20 * 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{what}: {source}")]
    Cert { what: &'static str, source: rcgen::Error },
    #[error("{0:?} is not usable in a certificate")]
    Name(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

fn cert(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Cert { what, source }
}

/// The CA, loaded or made.
pub struct Ca {
    key: KeyPair,
    /// Re-signed from the same name and key: a valid issuer for new leaves.
    cert: Certificate,
    pub pem_path: PathBuf,
}

/// The MQTT state directory (`<state_dir>/mqtt`), created 0700.
pub fn dir(state_dir: &Path) -> Result<PathBuf, PkiError> {
    let d = state_dir.join("mqtt");
    fs::create_dir_all(&d).map_err(io(&d))?;
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(io(&d))?;
    crate::owner::like_parent(&d);
    Ok(d)
}

/// Writes `data` to `path` with `mode`, via a temporary file and rename.
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    crate::owner::like_parent(&tmp);
    fs::rename(&tmp, path).map_err(io(path))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = p.not_before + time_days(CA_DAYS);
    p
}

fn time_days(days: i64) -> time::Duration {
    time::Duration::days(days)
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("pem_path", &self.pem_path).finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or makes one (first start).
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let (key_path, pem_path) = (dir.join(CA_KEY), dir.join(CA_CERT));
        let key = if key_path.exists() && pem_path.exists() {
            let pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
            KeyPair::from_pem(&pem).map_err(cert("reading the CA key"))?
        } else {
            let key = KeyPair::generate().map_err(cert("generating the CA key"))?;
            let ca = ca_params().self_signed(&key).map_err(cert("making the CA certificate"))?;
            write_private(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&pem_path, ca.pem().as_bytes(), 0o644)?;
            tracing::info!(path = %pem_path.display(), "created moat's MQTT certificate authority");
            key
        };
        let cert = ca_params().self_signed(&key).map_err(cert("loading the CA certificate"))?;
        Ok(Ca { key, cert, pem_path })
    }

    /// The CA certificate as devices should trust it (the file on disk).
    pub fn pem(&self) -> Result<String, PkiError> {
        fs::read_to_string(&self.pem_path).map_err(io(&self.pem_path))
    }

    fn leaf(&self, params: CertificateParams, what: &'static str) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(cert(what))?;
        let mut params = params;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = time::OffsetDateTime::now_utc() - time_days(1);
        params.not_after = params.not_before + time_days(LEAF_DAYS);
        let c = params.signed_by(&key, &self.cert, &self.key).map_err(cert(what))?;
        Ok((c.pem(), key.serialize_pem()))
    }

    /// Issues the broker's server certificate for `names` and `addrs` and
    /// writes it to `dir` (re-issued on every start: addresses change).
    pub fn issue_server(&self, dir: &Path, names: &[String], addrs: &[IpAddr]) -> Result<(), PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, names.first().map_or("moat", String::as_str));
        for n in names {
            let ia5 = n.clone().try_into().map_err(|_| PkiError::Name(n.clone()))?;
            p.subject_alt_names.push(SanType::DnsName(ia5));
        }
        p.subject_alt_names.extend(addrs.iter().map(|a| SanType::IpAddress(*a)));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (pem, key) = self.leaf(p, "issuing the server certificate")?;
        write_private(&dir.join(SERVER_KEY), key.as_bytes(), 0o600)?;
        write_private(&dir.join(SERVER_CERT), format!("{pem}{}", self.cert.pem()).as_bytes(), 0o644)
    }

    /// A client certificate for device `name` (mTLS): (certificate PEM, key PEM).
    pub fn issue_client(&self, name: &str) -> Result<(String, String), PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.leaf(p, "issuing a client certificate")
    }
}

fn random_serial() -> [u8; 16] {
    let mut b = [0u8; 16];
    // A serial only needs to be unique; fall back to the clock.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        b = t.to_be_bytes();
    }
    b[0] &= 0x7f;
    b
}
