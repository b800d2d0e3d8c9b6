//! Which device a TCP connection comes from, as the kernel saw it: the
//! classifier's flow table (pinned `FLOWS`) keys every connection by its
//! 5-tuple and records the device id from the frames' source MAC. A device
//! that borrows another's IP address still shows up as itself, so its
//! credentials stay tied to its own MAC.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Mutex,
};

use aya::maps::{HashMap, Map, MapData};
use moat_common::{
    classify::IPPROTO_TCP,
    maps::{self as m, FAMILY_V4, FAMILY_V6},
    FlowKey, FlowValue,
};

/// The kernel's view of one connection's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub device_id: u32,
    pub mac: [u8; 6],
}

#[derive(Debug)]
pub struct Identity {
    path: PathBuf,
    flows: Mutex<Option<HashMap<MapData, FlowKey, FlowValue>>>,
}

fn key_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, b)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

impl Identity {
    pub fn new(pin_dir: &std::path::Path) -> Self {
        Identity { path: crate::pins::versioned(pin_dir).join(m::FLOWS), flows: Mutex::new(None) }
    }

    /// The device behind a connection from `device` to `remote` (the
    /// address it dialled, before any NAT), if the classifier tracks it.
    pub fn lookup(&self, device: SocketAddr, remote: SocketAddr) -> Option<Seen> {
        let (family, lan_addr) = key_bytes(device.ip());
        let (rfamily, remote_addr) = key_bytes(remote.ip());
        if family != rfamily {
            return None;
        }
        let key = FlowKey {
            lan_addr,
            remote_addr,
            lan_port: device.port(),
            remote_port: remote.port(),
            proto: IPPROTO_TCP,
            family,
            pad: [0; 2],
        };
        let mut guard = super::lock(&self.flows);
        if guard.is_none() {
            *guard = self.open();
        }
        let v = guard.as_ref()?.get(&key, 0).ok()?;
        Some(Seen { device_id: v.device_id, mac: v.mac })
    }

    fn open(&self) -> Option<HashMap<MapData, FlowKey, FlowValue>> {
        let opened = MapData::from_pin(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|d| HashMap::try_from(Map::LruHashMap(d)).map_err(|e| e.to_string()));
        match opened {
            Ok(map) => Some(map),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot open the flow table: MQTT logins refused");
                None
            }
        }
    }
}
