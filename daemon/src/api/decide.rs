//! Decisions made through the API: approve, quarantine, set a policy,
//! forget. Each is recorded, put into force like a reload (the same diff and
//! atomic apply), then saved; if it cannot be put into force it is undone
//! and the daemon keeps enforcing what it had.

use moat_policy::{config::QUARANTINE, Device, MacAddr};
use serde_json::json;
use tracing::{info, warn};

use super::view;
use crate::{decisions::Decision, http::Response, run::Daemon};

/// Whether the file config (without decisions) lists the device.
fn in_file(d: &Daemon, mac: &MacAddr) -> Option<Device> {
    d.base.devices.iter().find(|x| x.mac == *mac).cloned()
}

fn policy_exists(d: &Daemon, policy: &str) -> Result<(), Response> {
    if d.cfg.policies.contains_key(policy) {
        return Ok(());
    }
    let known: Vec<&str> = d.cfg.policies.keys().map(String::as_str).collect();
    Err(Response::error(404, format!("no policy named {policy:?} (the config has: {})", known.join(", "))))
}

/// Decisions are refused rather than silently lost when their file is unusable.
fn decidable(d: &Daemon) -> Result<(), Response> {
    if d.decisions.is_kept() {
        return Ok(());
    }
    Err(Response::error(503, "device decisions are disabled: devices.json could not be read at start (see the log)"))
}

/// Replaces the device's decision with `change(old)`, puts it into force and
/// saves it; on failure the old decision is put back.
fn decide(d: &mut Daemon, mac: MacAddr, change: impl FnOnce(Decision) -> Decision) -> Result<Option<String>, Response> {
    decidable(d)?;
    let old = d.decisions.by_mac.get(&mac).cloned();
    let new = change(old.clone().unwrap_or_default());
    let removing = new.name.is_none() && new.policy.is_none() && new.quarantine.is_none();
    if removing {
        d.decisions.by_mac.remove(&mac);
    } else {
        d.decisions
            .by_mac
            .insert(mac, Decision { since: crate::clock::unix_secs(), id: old.as_ref().and_then(|o| o.id), ..new });
    }
    let failure = match d.apply_decisions() {
        Err(e) => Some(Response::error(500, format!("not applied, the previous policy stays: {e}"))),
        Ok(()) if !removing && !d.cfg.devices.iter().any(|x| x.mac == mac) => Some(Response::error(
            409,
            format!("no device slot left for {mac}: raise [classifier] max_devices (needs a restart)"),
        )),
        Ok(()) => None,
    };
    if let Some(r) = failure {
        match old {
            Some(o) => d.decisions.by_mac.insert(mac, o),
            None => d.decisions.by_mac.remove(&mac),
        };
        if let Err(e) = d.apply_decisions() {
            warn!(%mac, error = %e, "putting the previous decisions back failed");
        }
        warn!(%mac, "device decision not applied");
        return Err(r);
    }
    Ok(d.decisions.save().err().map(|e| {
        warn!(%mac, error = %e, "device decision applied but not saved");
        format!("applied, but not saved (lost at restart): {e}")
    }))
}

/// The device as it is now, with a warning if the decision was not saved.
fn answer(d: &Daemon, mac: MacAddr, warning: Option<String>) -> Response {
    let dev = d.cfg.devices.iter().find(|x| x.mac == mac);
    let mut v = serde_json::to_value(view::device(d, mac, dev)).unwrap_or_default();
    if let (Some(m), Some(w)) = (v.as_object_mut(), warning) {
        m.insert("warning".into(), json!(w));
    }
    Response::json(200, &v)
}

pub fn approve(d: &mut Daemon, sel: &str, policy: Option<String>, name: Option<String>) -> Response {
    let (mac, _) = match view::resolve(d, sel) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let listed = in_file(d, &mac);
    if listed.is_some() && name.is_some() {
        return Response::error(400, format!("{mac} is named in the config file; rename it there"));
    }
    if let Some(n) = &name {
        if d.cfg.devices.iter().any(|x| x.name == *n && x.mac != mac) {
            return Response::error(409, format!("another device is already named {n:?}"));
        }
    }
    if policy.as_deref() == Some(QUARANTINE) {
        return Response::error(400, "use quarantine (with a reason) to quarantine a device");
    }
    // Lifting a quarantine keeps the policy decided before it.
    let policy = policy.or_else(|| d.decisions.by_mac.get(&mac).and_then(|x| x.policy.clone()));
    let policy = match (policy, &listed) {
        (Some(p), _) => Some(p),
        (None, Some(x)) if x.policy == QUARANTINE => {
            return Response::error(
                400,
                format!("the config file quarantines {}; name the policy it should have", x.name),
            );
        }
        (None, Some(_)) => None,
        (None, None) => match d.cfg.gateway.approved_policy.clone() {
            Some(p) => Some(p),
            None => {
                return Response::error(400, "name a policy for this device (or set [gateway] approved_policy)");
            }
        },
    };
    if let Some(p) = &policy {
        if let Err(r) = policy_exists(d, p) {
            return r;
        }
    }
    let keep_name = name.clone();
    let result = decide(d, mac, |old| Decision { name: keep_name.or(old.name), policy, quarantine: None, ..old });
    finish(d, mac, result, "approved")
}

pub fn quarantine(d: &mut Daemon, sel: &str, reason: String) -> Response {
    let (mac, _) = match view::resolve(d, sel) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let why = reason.clone();
    let result = decide(d, mac, |old| Decision { quarantine: Some(why), ..old });
    if result.is_ok() {
        info!(%mac, reason = %reason, "device quarantined");
    }
    finish(d, mac, result, "quarantined")
}

pub fn set_policy(d: &mut Daemon, sel: &str, policy: String) -> Response {
    let (mac, _) = match view::resolve(d, sel) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = policy_exists(d, &policy) {
        return r;
    }
    if policy == QUARANTINE {
        return Response::error(400, "use quarantine (with a reason) to quarantine a device");
    }
    let result = decide(d, mac, |old| Decision { policy: Some(policy), ..old });
    finish(d, mac, result, "policy")
}

/// Publishes the decision on the event stream and answers with the device.
fn finish(d: &mut Daemon, mac: MacAddr, result: Result<Option<String>, Response>, kind: &str) -> Response {
    match result {
        Ok(warning) => {
            let dev = d.cfg.devices.iter().find(|x| x.mac == mac);
            let (name, policy) = dev.map_or((None, None), |x| (Some(x.name.clone()), Some(x.policy.clone())));
            let reason = d.decisions.by_mac.get(&mac).and_then(|x| x.quarantine.clone());
            d.feed.publish(kind, json!({ "device": name, "mac": mac.to_string(), "policy": policy, "reason": reason }));
            answer(d, mac, warning)
        }
        Err(r) => r,
    }
}

/// Deletes what moat holds about the device: its decision, inventory rows,
/// MQTT password, counters and recent events. A device the config file
/// lists stays configured (the file is the operator's), with fresh counters.
pub fn forget(d: &mut Daemon, sel: &str) -> Response {
    let (mac, dev) = match view::resolve(d, sel) {
        Ok((mac, dev)) => (mac, dev.cloned()),
        Err(r) => return r,
    };
    let text = mac.to_string();
    // First, and alone able to fail whole: an approved device leaves the
    // config (its slot is not reused: slots are kept per decision).
    let had_decision = d.decisions.by_mac.contains_key(&mac);
    if had_decision {
        if let Err(r) = decide(d, mac, |_| Decision::default()) {
            return r;
        }
    }
    let mut problems = Vec::new();
    let inventory = match &mut d.inventory {
        Ok(inv) => inv.forget(&text).unwrap_or_else(|e| {
            problems.push(format!("inventory: {e}"));
            false
        }),
        Err(_) => false,
    };
    let mqtt = match &dev {
        Some(x) => crate::mqtt::cli::revoke(&d.cfg, &x.name).unwrap_or_else(|e| {
            problems.push(format!("MQTT password: {e}"));
            false
        }),
        None => false,
    };
    let counters = match &dev {
        Some(x) => match d.kernel.zero_device_stats(x.id) {
            Ok(()) => true,
            Err(e) => {
                problems.push(format!("counters: {e}"));
                false
            }
        },
        None => false,
    };
    let before = d.events.recent.len();
    d.events.recent.retain(|e| e.mac != text);
    let events = before - d.events.recent.len();
    if !(had_decision || inventory || mqtt || counters || events > 0) {
        return Response::error(404, format!("moat holds nothing about {mac}"));
    }
    info!(%mac, inventory, decision = had_decision, counters, mqtt, events, "device forgotten");
    d.feed.publish("forgotten", json!({ "mac": text, "device": dev.as_ref().map(|x| x.name.clone()) }));
    let mut body = json!({ "mac": text, "decision": had_decision, "inventory": inventory, "mqtt_password": mqtt,
                           "counters": counters, "events": events });
    if problems.is_empty() {
        return Response::json(200, &body);
    }
    if let Some(m) = body.as_object_mut() {
        m.insert("error".into(), json!(format!("forgotten in part; failed: {}", problems.join("; "))));
    }
    Response::json(500, &body)
}
