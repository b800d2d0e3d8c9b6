//! Who may connect: the device behind the connection (from the kernel's flow
//! table), its credentials (its own password, or its client certificate with
//! mTLS), its connection rate, and its policy's permissions (including the
//! will it asks the broker to publish).

use std::{net::SocketAddr, sync::Arc};

use moat_policy::mqtt::may_publish;
use tracing::{info, warn};

use super::{
    codec::{Connect, Refusal},
    stats::{inc, DeviceCounters},
    view::DeviceView,
    Front,
};

/// A connection that passed admission.
#[derive(Debug)]
pub struct Admitted {
    pub device: DeviceView,
    pub device_id: u32,
    pub counters: Arc<DeviceCounters>,
    pub quota: Arc<super::quota::DeviceQuota>,
}

/// How the connection reached moat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tls,
    Plaintext,
}

/// Decides whether `connect`, arriving from `peer` at `local`, may proceed.
pub async fn admit(
    front: &Front,
    connect: &Connect,
    peer: SocketAddr,
    local: SocketAddr,
    cert_name: Option<&str>,
    listener: Listener,
) -> Result<Admitted, (Refusal, Arc<DeviceCounters>)> {
    let view = front.view();
    let unknown = || front.stats.device("unknown");
    let Some(seen) = front.identity.lookup(peer, local) else {
        warn!(%peer, "MQTT connection the classifier does not know; refused");
        let c = unknown();
        inc(&c.identity_mismatch);
        return Err((Refusal::NotAuthorized, c));
    };
    let Some(device) = view.device(seen.device_id, &seen.mac).cloned() else {
        warn!(%peer, id = seen.device_id, "MQTT connection from an unconfigured device; refused");
        let c = unknown();
        inc(&c.identity_mismatch);
        return Err((Refusal::NotAuthorized, c));
    };
    let counters = front.stats.device(&device.name);
    inc(&counters.connections);
    let refuse = |why: Refusal| Err((why, counters.clone()));
    let quota = front.quotas.of(seen.device_id);
    if !quota.allow_connect(view.settings.connections_per_minute) {
        inc(&counters.rate_limited);
        return refuse(Refusal::RateExceeded);
    }
    if let Err(why) = check_login(front, &device, connect, cert_name).await {
        info!(device = %device.name, %peer, "MQTT login refused");
        match why {
            Refusal::NotAuthorized => inc(&counters.identity_mismatch),
            _ => inc(&counters.auth_failures),
        }
        return refuse(why);
    }
    let Some(acl) = &device.acl else {
        info!(device = %device.name, policy = %device.policy, "policy gives no MQTT access; refused");
        return refuse(Refusal::NotAuthorized);
    };
    if listener == Listener::Plaintext && !acl.plaintext {
        info!(device = %device.name, "plaintext MQTT not allowed for this policy; refused");
        return refuse(Refusal::NotAuthorized);
    }
    if let Some(topic) = connect.will_topic() {
        if !may_publish(&acl.publish, &topic, &device.name, connect.client_id()) {
            info!(device = %device.name, "will topic outside the device's permissions; refused");
            inc(&counters.publish_denied);
            return refuse(Refusal::NotAuthorized);
        }
    }
    Ok(Admitted { device, device_id: seen.device_id, counters, quota })
}

/// The username must be the device's own name; the password its own (or, with
/// mTLS, the certificate's name the device's). Credentials of another device
/// are refused as not authorized, whatever the password.
async fn check_login(
    front: &Front,
    device: &DeviceView,
    connect: &Connect,
    cert_name: Option<&str>,
) -> Result<(), Refusal> {
    if front.view().settings.client_certificates {
        if cert_name != Some(device.name.as_str()) {
            return Err(Refusal::NotAuthorized);
        }
        // The certificate is the credential; a username, if sent, must still
        // be the device's, and a password, if sent, must be right.
        match connect.login() {
            None => return Ok(()),
            Some((user, _)) if user != device.name => return Err(Refusal::NotAuthorized),
            Some((_, "")) => return Ok(()),
            Some(_) => {}
        }
    }
    let Some((user, pass)) = connect.login() else { return Err(Refusal::BadCredentials) };
    if user != device.name {
        return Err(Refusal::NotAuthorized);
    }
    // argon2 is slow and memory-hungry by design: one at a time, off the
    // async threads.
    let Ok(_slot) = front.verify_slots.acquire().await else { return Err(Refusal::Busy) };
    let (creds, name, pass) = (front.creds.clone(), device.name.clone(), pass.as_bytes().to_vec());
    match tokio::task::spawn_blocking(move || creds.verify(&name, &pass)).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::BadCredentials),
        Err(_) => Err(Refusal::Busy),
    }
}
