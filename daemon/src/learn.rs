//! What the daemon learns from the classifier's events and writes into the
//! nftables sets: addresses of allowed domains (from DNS answers to devices)
//! and device addresses (for a policy's inbound openings).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use moat_policy::{model::Internet, nft, Config, Policy};
use tracing::debug;

use crate::{dns, events::Event};

/// A device address is re-announced to nft at most this often (the hosts
/// sets time out after an hour).
const HOST_REFRESH: Duration = Duration::from_secs(30 * 60);

/// Counters and memory of the learning.
#[derive(Debug, Default)]
pub struct Learner {
    hosts_seen: HashMap<(String, IpAddr), Instant>,
    /// Addresses added to allowlists from DNS answers.
    pub dns_learned: u64,
    /// DNS answers that could not be parsed.
    pub dns_unparsed: u64,
    /// Device addresses added to hosts sets.
    pub hosts_learned: u64,
}

/// The policy of a device id (0 = unknown devices).
pub fn policy_for(cfg: &Config, device_id: u32) -> Option<(&str, &Policy)> {
    let name = match cfg.devices.iter().find(|d| d.id == device_id) {
        Some(d) => d.policy.as_str(),
        None if device_id == 0 => cfg.gateway.unknown_policy.as_str(),
        None => return None,
    };
    cfg.policies.get(name).map(|p| (name, p))
}

impl Learner {
    /// Appends to `script` the nft elements this event teaches, if any.
    pub fn on_event(&mut self, cfg: &Config, e: &Event, payload: &[u8], script: &mut String) {
        let Some((name, policy)) = policy_for(cfg, e.device_id) else { return };
        match e.kind {
            "dns_response" if policy.internet == Internet::Allowlist => self.dns(cfg, name, policy, payload, script),
            "new_flow" if !policy.inbound.is_empty() => self.host(name, e, script),
            _ => {}
        }
    }

    fn dns(&mut self, cfg: &Config, name: &str, policy: &Policy, payload: &[u8], script: &mut String) {
        let answers = match dns::answers(payload) {
            Ok(a) => a,
            Err(err) => {
                self.dns_unparsed += 1;
                debug!(error = %err, "DNS answer not used");
                return;
            }
        };
        for a in answers {
            let entries: Vec<_> =
                policy.domains().filter(|(pat, _)| a.names.iter().any(|n| pat.matches(n))).map(|(_, e)| e).collect();
            let ttl = a.ttl.max(cfg.gateway.dns_ttl_floor);
            if let Some(elements) = nft::dns_elements(name, a.addr, &entries, ttl) {
                debug!(policy = name, name = %a.names[0], addr = %a.addr, ttl, "allowlist learned");
                script.push_str(&elements);
                self.dns_learned += 1;
            }
        }
    }

    fn host(&mut self, name: &str, e: &Event, script: &mut String) {
        let Some(addr) = e.flow.as_ref().and_then(|f| f.lan.parse::<IpAddr>().ok()) else { return };
        let key = (name.to_string(), addr);
        if self.hosts_seen.get(&key).is_some_and(|t| t.elapsed() < HOST_REFRESH) {
            return;
        }
        self.hosts_seen.insert(key, Instant::now());
        script.push_str(&nft::host_elements(name, addr));
        self.hosts_learned += 1;
    }
}
