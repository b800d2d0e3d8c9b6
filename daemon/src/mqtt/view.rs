//! What the MQTT front needs of the config, rebuilt on every reload and
//! swapped in whole: connections read the newest view at CONNECT time and
//! on every PUBLISH/SUBSCRIBE check, so a permission change applies at once.

use std::collections::HashMap;

use moat_policy::{
    mqtt::{MqttSettings, PolicyMqtt, Upstream},
    Config,
};

/// One configured device, as the broker sees it.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub name: String,
    pub mac: [u8; 6],
    pub policy: String,
    /// `None`: the policy gives no broker access.
    pub acl: Option<PolicyMqtt>,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub settings: MqttSettings,
    /// By classifier device id.
    pub by_id: HashMap<u32, DeviceView>,
}

impl View {
    pub fn from_config(cfg: &Config) -> Self {
        let by_id = cfg
            .devices
            .iter()
            .map(|d| {
                let policy = cfg.policy_of(d);
                (d.id, DeviceView { name: d.name.clone(), mac: d.mac.0, policy: d.policy.clone(), acl: policy.mqtt })
            })
            .collect();
        View { settings: cfg.mqtt.clone().unwrap_or_default(), by_id }
    }

    /// The device with classifier id `id`, if its MAC is still the one seen.
    pub fn device(&self, id: u32, mac: &[u8; 6]) -> Option<&DeviceView> {
        self.by_id.get(&id).filter(|d| d.mac == *mac)
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.settings.upstreams.get(name)
    }
}
