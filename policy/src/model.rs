//! What a policy says a device may do, after validation.

use std::collections::BTreeSet;

use moat_common::class;

use crate::net::{Cidr, DomainPattern, Ports};

/// Where a device may go on the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Internet {
    /// Anywhere (blocked classes still apply).
    #[default]
    Open,
    /// Only to the `allow` entries.
    Allowlist,
    /// Nowhere.
    None,
}

/// Which other LAN devices a device may talk to directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lan {
    #[default]
    Open,
    /// Only devices with the same policy.
    Group,
    /// None.
    Isolated,
}

/// A service on the gateway itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Dns,
    Dhcp,
    Ntp,
    Mqtt,
    /// Anything on the gateway (e.g. an admin's laptop).
    All,
}

impl Service {
    pub const NAMES: [(&'static str, Service); 5] = [
        ("dns", Service::Dns),
        ("dhcp", Service::Dhcp),
        ("ntp", Service::Ntp),
        ("mqtt", Service::Mqtt),
        ("all", Service::All),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, s)| *s == self).map_or("?", |(n, _)| n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What an allow entry points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Addresses learned from the device's own DNS answers.
    Domain(DomainPattern),
    Cidr(Cidr),
}

/// One `allow` entry: a destination, a protocol and ports (all ports if empty).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    pub target: Target,
    pub proto: Proto,
    pub ports: Vec<Ports>,
}

impl Allow {
    /// The port ranges, with "all" spelled out.
    pub fn port_ranges(&self) -> Vec<Ports> {
        if self.ports.is_empty() {
            vec![Ports::ALL]
        } else {
            self.ports.clone()
        }
    }
}

/// A WAN-initiated connection a policy lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Inbound {
    pub proto: Proto,
    pub port: u16,
}

/// A named policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Classes dropped for devices with this policy (including the
    /// `[defaults] block` classes), as a `class::bit` mask.
    pub blocked_classes: u32,
    /// Drop everything but DHCP, DNS and ICMPv6 (in the classifier).
    pub quarantine: bool,
    pub internet: Internet,
    pub allow: Vec<Allow>,
    pub lan: Lan,
    pub services: BTreeSet<Service>,
    pub inbound: Vec<Inbound>,
    pub rate_limit_kbps: Option<u32>,
    /// Broker permissions; `None`: the policy's devices may not use the broker.
    pub mqtt: Option<crate::mqtt::PolicyMqtt>,
}

/// Gateway services a policy gets when it does not say.
pub fn default_services() -> BTreeSet<Service> {
    [Service::Dns, Service::Dhcp, Service::Ntp].into_iter().collect()
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            blocked_classes: 0,
            quarantine: false,
            internet: Internet::Open,
            allow: Vec::new(),
            lan: Lan::Open,
            services: default_services(),
            inbound: Vec::new(),
            rate_limit_kbps: None,
            mqtt: None,
        }
    }
}

impl Policy {
    /// Names of the blocked classes, in class order.
    pub fn blocked_names(&self) -> Vec<&'static str> {
        (0..class::COUNT as u8).filter(|c| self.blocked_classes & class::bit(*c) != 0).map(class::name).collect()
    }

    /// The built-in `quarantine` policy: DHCP and DNS to the gateway, nothing
    /// else (enforced in the classifier and again in nftables).
    pub fn quarantine() -> Self {
        Policy {
            quarantine: true,
            internet: Internet::None,
            lan: Lan::Isolated,
            services: [Service::Dns, Service::Dhcp].into_iter().collect(),
            ..Policy::default()
        }
    }

    /// The upstream broker plaintext MQTT of this policy's devices goes to.
    pub fn mqtt_upstream(&self) -> Option<&str> {
        self.mqtt.as_ref().and_then(|m| m.upstream.as_deref())
    }

    /// Domain patterns in the allow list.
    pub fn domains(&self) -> impl Iterator<Item = (&DomainPattern, &Allow)> {
        self.allow.iter().filter_map(|a| match &a.target {
            Target::Domain(d) => Some((d, a)),
            Target::Cidr(_) => None,
        })
    }
}
