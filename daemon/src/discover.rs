//! Discovery: classifier events → inventory. New MACs, the addresses
//! devices use, and what their DHCP requests say about them.

use moat_policy::Config;
use tracing::debug;

use crate::{dhcp, events::Event, inventory::Inventory, learn::policy_for};

/// Updates the inventory from one event (and its copied payload).
pub fn observe(inv: &mut Inventory, cfg: &Config, e: &Event, payload: &[u8]) {
    if e.mac.is_empty() {
        return;
    }
    let t = crate::clock::unix_secs();
    let (policy, quarantined) = match policy_for(cfg, e.device_id) {
        Some((name, p)) => (name.to_string(), p.quarantine),
        None => (cfg.gateway.unknown_policy.clone(), true),
    };
    let reason = (e.device_id == 0).then_some("unknown device: not in the config");
    match e.kind {
        "new_device" | "blocked" => inv.seen(&e.mac, t, &policy, quarantined, reason),
        "new_flow" => {
            inv.seen(&e.mac, t, &policy, quarantined, reason);
            if let Some(f) = &e.flow {
                inv.address(&e.mac, t, &f.lan);
            }
        }
        "dhcp_request" => match dhcp::parse(payload) {
            Ok(facts) => {
                debug!(mac = %e.mac, hostname = ?facts.hostname, mud_url = ?facts.mud_url, "DHCP request");
                inv.dhcp(&e.mac, t, &facts);
            }
            Err(err) => debug!(mac = %e.mac, error = %err, "DHCP request not parsed"),
        },
        _ => {}
    }
}
