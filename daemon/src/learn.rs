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

/// Device addresses remembered for inbound openings (the nft sets hold 4096 per policy).
const MAX_HOSTS: usize = 4096;

/// How long nft keeps a hosts set element (the sets' `timeout 1h`).
const HOST_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// An element's lifetime from a record's TTL: at least the floor, at least a
/// second (0 would mean "never expires" to nft), at most a day; a TTL with
/// the top bit set counts as 0 (RFC 2181 §8).
pub fn lifetime(ttl: u32, floor: u32) -> u32 {
    let ttl = if ttl & 0x8000_0000 != 0 { 0 } else { ttl };
    ttl.max(floor).clamp(1, 86_400)
}

/// Learned addresses remembered (to restore them after a table replace).
const MAX_REMEMBERED: usize = 65_536;

/// A DNS-learned address: the names that led to it and when it expires.
#[derive(Debug, Clone)]
struct Remembered {
    names: Vec<String>,
    expires: Instant,
}

/// Counters and memory of the learning.
#[derive(Debug, Default)]
pub struct Learner {
    hosts_seen: HashMap<(String, IpAddr), Instant>,
    dns_seen: HashMap<(String, IpAddr), Remembered>,
    /// Addresses added to allowlists from DNS answers.
    pub dns_learned: u64,
    /// DNS answers that could not be parsed.
    pub dns_unparsed: u64,
    /// Device addresses added to hosts sets.
    pub hosts_learned: u64,
    /// Flow addresses not (yet) tied to the device's MAC by the neighbour table.
    pub hosts_unverified: u64,
}

/// Learned addresses still in the nft sets by moat's own record (their
/// timeouts have not passed): for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// (policy, address) pairs in DNS allowlist sets.
    pub dns: usize,
    /// (policy, address) pairs in hosts sets.
    pub hosts: usize,
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
    /// What the learned sets hold now, as far as moat knows.
    pub fn live(&self) -> Live {
        let now = Instant::now();
        Live {
            dns: self.dns_seen.values().filter(|r| r.expires > now).count(),
            hosts: self.hosts_seen.values().filter(|t| t.elapsed() < HOST_LIFETIME).count(),
        }
    }

    /// Appends to `script` the nft elements this event teaches, if any.
    /// Each answer is its own transaction, so one rejected element cannot
    /// cost the others.
    pub fn on_event(&mut self, cfg: &Config, e: &Event, payload: &[u8], script: &mut Vec<String>) {
        let Some((name, policy)) = policy_for(cfg, e.device_id) else { return };
        match e.kind {
            "dns_response" if policy.internet == Internet::Allowlist => self.dns(cfg, name, policy, payload, script),
            "new_flow" if !policy.inbound.is_empty() => self.host(cfg, name, e, script),
            _ => {}
        }
    }

    fn dns(&mut self, cfg: &Config, name: &str, policy: &Policy, payload: &[u8], script: &mut Vec<String>) {
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
            let ttl = lifetime(a.ttl, cfg.gateway.dns_ttl_floor);
            if let Some(elements) = nft::dns_elements(name, a.addr, &entries, ttl) {
                debug!(policy = name, name = %a.names[0], addr = %a.addr, ttl, "allowlist learned");
                script.push(elements);
                self.dns_learned += 1;
                self.remember(name, a.addr, a.names, ttl);
            }
        }
    }

    fn remember(&mut self, policy: &str, addr: IpAddr, names: Vec<String>, ttl: u32) {
        if self.dns_seen.len() >= MAX_REMEMBERED {
            self.dns_seen.retain(|_, r| r.expires > Instant::now());
        }
        if self.dns_seen.len() < MAX_REMEMBERED {
            let expires = Instant::now() + Duration::from_secs(u64::from(ttl));
            self.dns_seen.insert((policy.to_string(), addr), Remembered { names, expires });
        }
    }

    /// After the tables were replaced (which empties the sets): the elements
    /// still valid under `cfg`, with their remaining lifetimes.
    pub fn restore(&mut self, cfg: &Config) -> Vec<String> {
        let now = Instant::now();
        self.dns_seen.retain(|_, r| r.expires > now);
        let mut script = Vec::new();
        for ((policy_name, addr), r) in &self.dns_seen {
            let Some(policy) = cfg.policies.get(policy_name).filter(|p| p.internet == Internet::Allowlist) else {
                continue;
            };
            let entries: Vec<_> =
                policy.domains().filter(|(pat, _)| r.names.iter().any(|n| pat.matches(n))).map(|(_, e)| e).collect();
            let left = u32::try_from(r.expires.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX).max(1);
            if let Some(elements) = nft::dns_elements(policy_name, *addr, &entries, left) {
                script.push(elements);
            }
        }
        self.hosts_seen.retain(|(policy, _), t| {
            t.elapsed() < HOST_REFRESH && cfg.policies.get(policy).is_some_and(|p| !p.inbound.is_empty())
        });
        for (policy, addr) in self.hosts_seen.keys() {
            script.push(nft::host_elements(policy, *addr));
        }
        script
    }

    fn host(&mut self, cfg: &Config, name: &str, e: &Event, script: &mut Vec<String>) {
        let Some(addr) = e.flow.as_ref().and_then(|f| f.lan.parse::<IpAddr>().ok()) else { return };
        let key = (name.to_string(), addr);
        if self.hosts_seen.get(&key).is_some_and(|t| t.elapsed() < HOST_REFRESH) {
            return;
        }
        // A flow's source address is whatever the device wrote: only an
        // address the kernel's neighbour table gives to this MAC counts, so a
        // device cannot open its policy's ports on another device's address.
        // (Not yet resolved: the next flow tries again.)
        let owned = crate::neighbours::on(&cfg.gateway.lan)
            .map(|pairs| pairs.iter().any(|(mac, a)| *mac == e.mac && a.parse::<IpAddr>().ok() == Some(addr)));
        if !owned.unwrap_or(false) {
            self.hosts_unverified += 1;
            return;
        }
        if self.hosts_seen.len() >= MAX_HOSTS {
            self.hosts_seen.retain(|_, t| t.elapsed() < HOST_REFRESH);
            if self.hosts_seen.len() >= MAX_HOSTS {
                return;
            }
        }
        self.hosts_seen.insert(key, Instant::now());
        script.push(nft::host_elements(name, addr));
        self.hosts_learned += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(super::lifetime(0, 0), 1, "never 0: nft would keep it forever");
        assert_eq!(super::lifetime(30, 120), 120, "the floor");
        assert_eq!(super::lifetime(300, 120), 300);
        assert_eq!(super::lifetime(u32::MAX - 5, 0), 1, "top bit set means 0");
        assert_eq!(super::lifetime(0x7fff_ffff, 0), 86_400, "at most a day");
    }
}
