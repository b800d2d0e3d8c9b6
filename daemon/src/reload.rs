//! Reloading the config while enforcing (SIGHUP): validate first; a bad
//! config changes nothing; a good one is applied as a diff: device-only
//! changes as element updates, anything else as one atomic table replace,
//! then the classifier's maps. Established connections are not disturbed
//! either way (conntrack is untouched, and the classifier re-reads a flow's
//! device policy when the policy generation moves).

use moat_policy::{nft as ruleset, Config, Diagnostics};
use tracing::{info, warn};

use crate::{
    kernel::{Kernel, KernelError, Limits},
    nft::{self, NftError},
};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config rejected, nothing changed:\n{0}")]
    Config(Diagnostics),
    #[error("{0} changed: restart moat to apply it (nothing changed)")]
    NeedsRestart(&'static str),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub config: Config,
    /// The tables were replaced whole (their learned elements need restoring).
    pub replaced: bool,
}

/// Applies `new` over `current` (nft first, then the classifier's maps).
pub fn apply(kernel: &mut Kernel, current: &Config, new: Config) -> Result<Reloaded, ReloadError> {
    if new.gateway.lan != current.gateway.lan {
        return Err(ReloadError::NeedsRestart("gateway.lan (the interface the classifier is attached to)"));
    }
    if Limits::from_config(&new) != Limits::from_config(current) {
        return Err(ReloadError::NeedsRestart("[classifier] table sizes"));
    }
    let mut replaced = false;
    match ruleset::device_changes(current, &new) {
        Some(changes) => nft::apply("device changes", &changes)?,
        None if &new != current => {
            nft::apply("ruleset", &ruleset::ruleset(&new))?;
            replaced = true;
        }
        None => {}
    }
    if let Err(e) = kernel.sync_devices(&new) {
        // Put the old ruleset back so nftables and the classifier agree.
        if let Err(back) = nft::apply("ruleset", &ruleset::ruleset(current)) {
            warn!(error = %back, "restoring the previous ruleset failed");
        }
        return Err(e.into());
    }
    // Ids follow config order: a slot whose device changed must not hand its
    // counters to the new one.
    for d in &new.devices {
        let before = current.devices.iter().find(|o| o.id == d.id).map(|o| o.mac);
        if before.is_some_and(|mac| mac != d.mac) {
            kernel.zero_device_stats(d.id)?;
        }
    }
    info!(devices = new.devices.len(), policies = new.policies.len(), replaced, "config reloaded");
    Ok(Reloaded { config: new, replaced })
}
