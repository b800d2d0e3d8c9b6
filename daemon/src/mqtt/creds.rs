//! Per-device MQTT passwords: random, unique, stored only as argon2id hashes
//! in `<state_dir>/mqtt/passwords` (0600, `name:hash` per line). A password is
//! shown once, when `moat mqtt credentials DEVICE` makes it; a device without
//! one cannot log in. The daemon re-reads the file when it changes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};

pub const FILE: &str = "passwords";
/// argon2id at 8 MiB and 3 passes: OWASP's low-memory setting, sized for a
/// router (verifications run one at a time).
const M_KIB: u32 = 8 * 1024;
const T_COST: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not `name:argon2-hash`")]
    Syntax { path: PathBuf, line: usize },
    #[error("hashing: {0}")]
    Hash(String),
    #[error("no randomness from the OS: {0}")]
    Random(getrandom::Error),
    #[error("{0:?} already has a password; add --rotate to replace it")]
    Exists(String),
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_KIB, T_COST, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Name → hash, as in the file.
fn read(path: &Path) -> Result<BTreeMap<String, String>, CredsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(CredsError::Io { path: path.to_path_buf(), source }),
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (name, hash) =
            line.rsplit_once(":$").ok_or(CredsError::Syntax { path: path.to_path_buf(), line: i + 1 })?;
        out.insert(name.to_string(), format!("${hash}"));
    }
    Ok(out)
}

fn write(path: &Path, map: &BTreeMap<String, String>) -> Result<(), CredsError> {
    let text: String = map.iter().map(|(n, h)| format!("{n}:{h}\n")).collect();
    super::pki::write_private(path, text.as_bytes(), 0o600).map_err(|e| CredsError::Hash(e.to_string()))
}

/// A new random password: 24 characters from a 60-letter alphabet (~141 bits).
fn random_password() -> Result<String, CredsError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.";
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).map_err(CredsError::Random)?;
        // Rejection sampling keeps every letter equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        out.extend(b.iter().filter(|x| (**x as usize) < limit).map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char));
    }
    out.truncate(24);
    Ok(out)
}

/// Makes (or with `rotate`, replaces) `name`'s password; returns it: the
/// only time it exists in clear.
pub fn issue(dir: &Path, name: &str, rotate: bool) -> Result<String, CredsError> {
    let path = dir.join(FILE);
    let mut map = read(&path)?;
    if map.contains_key(name) && !rotate {
        return Err(CredsError::Exists(name.to_string()));
    }
    let password = random_password()?;
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(CredsError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| CredsError::Hash(e.to_string()))?;
    let hash = hasher().hash_password(password.as_bytes(), &salt).map_err(|e| CredsError::Hash(e.to_string()))?;
    map.insert(name.to_string(), hash.to_string());
    write(&path, &map)?;
    Ok(password)
}

/// Removes `name`'s password (forgetting a device); true if it had one.
pub fn revoke(dir: &Path, name: &str) -> Result<bool, CredsError> {
    let path = dir.join(FILE);
    let mut map = read(&path)?;
    let had = map.remove(name).is_some();
    if had {
        write(&path, &map)?;
    }
    Ok(had)
}

/// The daemon's view of the password file, re-read when its mtime changes.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cached: Mutex<(Option<SystemTime>, BTreeMap<String, String>)>,
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Store { path: dir.join(FILE), cached: Mutex::new((None, BTreeMap::new())) }
    }

    fn hash_of(&self, name: &str) -> Option<String> {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut c = super::lock(&self.cached);
        if c.0 != mtime || mtime.is_none() {
            match read(&self.path) {
                Ok(map) => *c = (mtime, map),
                Err(e) => tracing::warn!(error = %e, "reading MQTT passwords failed; keeping the last good copy"),
            }
        }
        c.1.get(name).cloned()
    }

    /// Checks `password` for device `name` (slow by design: run it off the
    /// async threads).
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        let Some(hash) = self.hash_of(name) else { return false };
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        hasher().verify_password(password, &parsed).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn issue_verify_rotate_revoke() {
        let dir = std::env::temp_dir().join(format!("moat-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let _ = std::fs::remove_file(dir.join(FILE));
        let store = Store::new(&dir);
        let Ok(p1) = issue(&dir, "cam", false) else { panic!("issue failed") };
        assert_eq!(p1.len(), 24);
        assert!(store.verify("cam", p1.as_bytes()));
        assert!(!store.verify("cam", b"wrong"));
        assert!(!store.verify("bulb", p1.as_bytes()));
        assert!(matches!(issue(&dir, "cam", false), Err(CredsError::Exists(_))));
        let Ok(p2) = issue(&dir, "cam", true) else { panic!("rotate failed") };
        assert_ne!(p1, p2);
        // The file holds hashes only.
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap_or_default();
        assert!(!text.contains(&p2) && text.contains("$argon2id$"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(store.verify("cam", p2.as_bytes()));
        assert!(!store.verify("cam", p1.as_bytes()), "the old password stops working");
        assert!(matches!(revoke(&dir, "cam"), Ok(true)));
        assert!(!store.verify("cam", p2.as_bytes()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
