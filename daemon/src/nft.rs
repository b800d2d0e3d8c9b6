//! Applies nftables rulesets by piping them to `nft -f -`: one file is one
//! atomic transaction, so a rejected ruleset changes nothing.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

/// A failed nft transaction, carrying nft's own message.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft: {0} (is the nftables package installed?)")]
    Spawn(std::io::Error),
    #[error("nft rejected the {what} transaction (nothing was changed): {stderr}")]
    Rejected { what: &'static str, stderr: String },
}

/// Runs `script` as one transaction; `what` names it in errors.
pub fn apply(what: &'static str, script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(NftError::Rejected { what, stderr })
}
