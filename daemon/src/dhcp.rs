//! DHCP requests from devices → what they say about themselves: host name
//! (option 12), vendor class (60), the parameter-request-list fingerprint
//! (55), the requested address (50) and a MUD URL (161, RFC 8520).

use std::net::Ipv4Addr;

use dhcproto::{
    v4::{DhcpOption, Message, OptionCode},
    Decodable, Decoder,
};

/// The option code of the MUD URL (RFC 8520 §10).
const OPT_MUD_URL: u8 = 161;
/// Longest text kept from a device (names, classes, URLs): inventory rows
/// must not grow with what a device chooses to send.
const MAX_TEXT: usize = 255;

/// Facts from one DHCP message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DhcpFacts {
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    /// Option 55 as comma-separated codes: the classic DHCP fingerprint.
    pub fingerprint: Option<String>,
    pub mud_url: Option<String>,
    pub requested_ip: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a DHCP message: {0}")]
pub struct DhcpError(String);

/// Printable text only, bounded.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().filter(|c| !c.is_control()).take(MAX_TEXT).collect()
}

pub fn parse(payload: &[u8]) -> Result<DhcpFacts, DhcpError> {
    let msg = Message::decode(&mut Decoder::new(payload)).map_err(|e| DhcpError(e.to_string()))?;
    let mut f = DhcpFacts::default();
    if let Ok(mac) = <[u8; 6]>::try_from(msg.chaddr().get(..6).unwrap_or(&[])) {
        f.mac = Some(mac);
    }
    let opts = msg.opts();
    if let Some(DhcpOption::Hostname(h)) = opts.get(OptionCode::Hostname) {
        f.hostname = Some(text(h.as_bytes()));
    }
    if let Some(DhcpOption::ClassIdentifier(v)) = opts.get(OptionCode::ClassIdentifier) {
        f.vendor_class = Some(text(v));
    }
    if let Some(DhcpOption::ParameterRequestList(codes)) = opts.get(OptionCode::ParameterRequestList) {
        let list: Vec<String> = codes.iter().map(|c| u8::from(*c).to_string()).collect();
        f.fingerprint = Some(list.join(","));
    }
    if let Some(DhcpOption::RequestedIpAddress(ip)) = opts.get(OptionCode::RequestedIpAddress) {
        f.requested_ip = Some(*ip);
    }
    if let Some(DhcpOption::Unknown(u)) = opts.get(OptionCode::Unknown(OPT_MUD_URL)) {
        f.mud_url = Some(text(u.data()));
    }
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)] // a failing test panics
mod tests {
    use dhcproto::{v4, Encodable, Encoder};

    use super::*;

    fn request() -> Vec<u8> {
        let mac = [2, 0x77, 0, 0, 0, 9];
        let mut msg = v4::Message::default();
        msg.set_flags(v4::Flags::default().set_broadcast()).set_chaddr(&mac);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(v4::MessageType::Request));
        opts.insert(DhcpOption::Hostname("kitchen-cam".into()));
        opts.insert(DhcpOption::ClassIdentifier(b"vendor-cam 1.0\x07".to_vec()));
        opts.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
        ]));
        opts.insert(DhcpOption::RequestedIpAddress("10.77.1.120".parse().unwrap()));
        let url = b"https://cam.example/mud/cam.json".to_vec();
        opts.insert(DhcpOption::Unknown(v4::UnknownOption::new(OptionCode::Unknown(161), url)));
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    #[test]
    fn reads_what_a_device_says() {
        let f = parse(&request()).unwrap();
        assert_eq!(f.mac, Some([2, 0x77, 0, 0, 0, 9]));
        assert_eq!(f.hostname.as_deref(), Some("kitchen-cam"));
        assert_eq!(f.vendor_class.as_deref(), Some("vendor-cam 1.0"), "control characters are dropped");
        assert_eq!(f.fingerprint.as_deref(), Some("1,3,6"));
        assert_eq!(f.mud_url.as_deref(), Some("https://cam.example/mud/cam.json"));
        assert_eq!(f.requested_ip, Some("10.77.1.120".parse().unwrap()));
        assert!(parse(&[1, 2, 3]).is_err());
    }
}
