//! Devices as the API shows them: what the config (with the runtime
//! decisions) says, what the inventory saw, and the kernel's counters.

use moat_policy::{Device, MacAddr};
use serde::Serialize;

use crate::{
    decisions::Decision,
    http::Response,
    inventory::Record,
    run::Daemon,
    status::{self, DeviceReport},
};

#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub mac: String,
    /// From the config or an approval; `None` for a device moat only saw.
    pub name: Option<String>,
    /// Classifier slot (`None`: counted with all unknown devices).
    pub id: Option<u32>,
    /// `known`, `unknown` or `quarantined`.
    pub state: &'static str,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// What was decided through the API, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// What the inventory learned (first/last seen, DHCP facts, addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Record>,
    /// Counters, for devices with their own slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<DeviceReport>,
}

/// A device named by MAC or by name: its MAC, and its config entry if any.
pub fn resolve<'d>(d: &'d Daemon, sel: &str) -> Result<(MacAddr, Option<&'d Device>), Response> {
    let parsed = sel.parse::<MacAddr>();
    if let Ok(mac) = parsed {
        return Ok((mac, d.cfg.devices.iter().find(|x| x.mac == mac)));
    }
    match d.cfg.devices.iter().find(|x| x.name == sel) {
        Some(dev) => Ok((dev.mac, Some(dev))),
        None if sel.contains(':') || (sel.contains('-') && sel.len() == 17) => {
            let why = parsed.err().map_or_else(String::new, |e| format!(": {e}"));
            Err(Response::error(400, format!("{sel:?} is not a device MAC address (like 02:00:5e:10:00:01){why}")))
        }
        None => Err(Response::error(
            404,
            format!("no device named {sel:?}; give the MAC of a device the config does not list"),
        )),
    }
}

pub fn device(d: &Daemon, mac: MacAddr, dev: Option<&Device>) -> DeviceView {
    let text = mac.to_string();
    let decision = d.decisions.by_mac.get(&mac).cloned();
    let seen = d.inventory.as_ref().ok().and_then(|inv| inv.get(&text)).cloned();
    let (policy_name, policy) = match dev {
        Some(x) => (x.policy.clone(), d.cfg.policy_of(x)),
        None => (d.cfg.gateway.unknown_policy.clone(), d.cfg.unknown_policy()),
    };
    let state = match dev {
        Some(_) if policy.quarantine => "quarantined",
        Some(_) => "known",
        None => "unknown",
    };
    let traffic = dev.and_then(|x| {
        let stats = d.kernel.device_stats(x.id).ok()?;
        Some(status::report(&x.name, x.id, text.clone(), &x.policy, &policy, &stats))
    });
    let quarantine_reason = match (&decision, dev) {
        (Some(Decision { quarantine: Some(r), .. }), _) => Some(r.clone()),
        (_, None) if policy.quarantine => Some("unknown device: not in the config".into()),
        (_, Some(_)) if policy.quarantine => Some(format!("policy {policy_name:?} quarantines")),
        _ => None,
    };
    DeviceView {
        mac: text,
        name: dev.map(|x| x.name.clone()),
        id: dev.map(|x| x.id),
        state,
        policy: policy_name,
        quarantine_reason,
        decision,
        seen,
        traffic,
    }
}

/// Every configured device, then every seen device the config does not list.
pub fn all(d: &Daemon) -> Vec<DeviceView> {
    let mut out: Vec<DeviceView> = d.cfg.devices.iter().map(|x| device(d, x.mac, Some(x))).collect();
    if let Ok(inv) = &d.inventory {
        for r in inv.records() {
            let Ok(mac) = r.mac.parse::<MacAddr>() else { continue };
            if !d.cfg.devices.iter().any(|x| x.mac == mac) {
                out.push(device(d, mac, None));
            }
        }
    }
    out
}
