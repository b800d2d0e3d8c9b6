//! The kernel's neighbour table (ARP/NDP) on the LAN interface: which MAC
//! uses which IPv4/IPv6 address, including addresses a device never opened a
//! flow from (read through iproute2's JSON output).

use std::process::Command;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Neigh {
    dst: String,
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

/// (MAC, address) pairs the kernel currently resolves on `iface`.
pub fn on(iface: &str) -> Result<Vec<(String, String)>, String> {
    let out = Command::new("ip")
        .args(["-j", "neigh", "show", "dev", iface])
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    parse(&out.stdout)
}

fn parse(json: &[u8]) -> Result<Vec<(String, String)>, String> {
    let list: Vec<Neigh> = serde_json::from_slice(json).map_err(|e| format!("ip -j neigh: {e}"))?;
    Ok(list
        .into_iter()
        .filter(|n| !n.state.iter().any(|s| s == "FAILED" || s == "INCOMPLETE"))
        .filter_map(|n| n.lladdr.map(|mac| (mac.to_ascii_lowercase(), n.dst)))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test panics
mod tests {
    #[test]
    fn parses_iproute2_json() {
        let json = br#"[{"dst":"10.77.0.10","lladdr":"02:77:00:00:00:01","state":["REACHABLE"]},
            {"dst":"fd77::10","lladdr":"02:77:00:00:00:01","router":null,"state":["STALE"]},
            {"dst":"10.77.0.99","state":["FAILED"]},
            {"dst":"10.77.0.98","lladdr":"02:77:00:00:00:02","state":["INCOMPLETE"]}]"#;
        let got = super::parse(json).unwrap();
        assert_eq!(
            got,
            vec![("02:77:00:00:00:01".into(), "10.77.0.10".into()), ("02:77:00:00:00:01".into(), "fd77::10".into())]
        );
        assert!(super::parse(b"not json").is_err());
    }
}
