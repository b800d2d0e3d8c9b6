//! Files in moat's state directory belong to whoever owns the directory.
//! The daemon runs as the user `moat`; an administrator runs `moat mqtt
//! credentials` or `moat forget` as root. Without this, what root writes
//! (0600/0640, root-owned) could not be read by the daemon afterwards.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use tracing::warn;

/// Gives `path` the owner and group of its parent directory, if they differ.
/// Only root can do so; anyone else already writes as the owner (or cannot
/// write there at all), so a refusal is not an error worth stopping for.
pub fn like_parent(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::symlink_metadata(path)) else { return };
    if (d.uid(), d.gid()) == (f.uid(), f.gid()) {
        return;
    }
    if let Err(e) = std::os::unix::fs::lchown(path, Some(d.uid()), Some(d.gid())) {
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            warn!(path = %path.display(), error = %e, "could not give the file its directory's owner");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn a_file_takes_its_directorys_owner() {
        let dir = std::env::temp_dir().join(format!("moat-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        // Running as root (the test suite does): hand the directory to nobody.
        if std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).is_ok() {
            like_parent(&file);
            let m = std::fs::metadata(&file).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
