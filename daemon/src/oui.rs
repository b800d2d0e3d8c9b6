//! A few OUI prefixes, for a human hint in the inventory. Deliberately tiny:
//! a full IEEE registry would cost more flash than it is worth here.

/// Vendor of a MAC (`aa:bb:cc:…`), when known.
pub fn vendor(mac: &str) -> Option<&'static str> {
    let prefix = mac.get(..8)?.to_ascii_lowercase();
    let first = u8::from_str_radix(prefix.get(..2)?, 16).ok()?;
    if first & 0x02 != 0 {
        return Some("locally administered (random or virtual)");
    }
    match prefix.as_str() {
        "b8:27:eb" | "dc:a6:32" | "e4:5f:01" => Some("Raspberry Pi Foundation"),
        "24:0a:c4" | "30:ae:a4" => Some("Espressif"),
        _ => None,
    }
}
