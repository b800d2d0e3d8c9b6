//! Ethernet MAC addresses as written in configs (`aa:bb:cc:dd:ee:ff` or with `-`).

use std::{fmt, str::FromStr};

/// A unicast Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a usable device MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("expected six hex pairs separated by ':' or '-'")]
    Syntax,
    #[error("is a multicast/broadcast address, which no device sends from")]
    Multicast,
    #[error("is the all-zero address")]
    Zero,
}

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, MacError> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(MacError::Syntax)?;
            // from_str_radix alone would accept a sign ("+1").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacError::Syntax);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacError::Syntax)?;
        }
        if parts.next().is_some() {
            return Err(MacError::Syntax);
        }
        if out[0] & 1 == 1 {
            return Err(MacError::Multicast);
        }
        if out == [0; 6] {
            return Err(MacError::Zero);
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// As its text form, so JSON maps can be keyed by MAC.
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(|e: MacError| serde::de::Error::custom(format!("MAC {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_any_case() {
        let want = MacAddr([0x02, 0x77, 0, 0, 0xab, 0x01]);
        assert_eq!("02:77:00:00:ab:01".parse(), Ok(want));
        assert_eq!("02-77-00-00-AB-01".parse(), Ok(want));
        assert_eq!(want.to_string(), "02:77:00:00:ab:01");
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "02:77:00:00:ab",
            "02:77:00:00:ab:01:02",
            "2:77:00:00:ab:01",
            "zz:77:00:00:ab:01",
            "02:77:00:00:ab:+1",
            "02:77-00:00:ab:01",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacError::Syntax), "{bad}");
        }
        assert_eq!("ff:ff:ff:ff:ff:ff".parse::<MacAddr>(), Err(MacError::Multicast));
        assert_eq!("01:00:5e:00:00:01".parse::<MacAddr>(), Err(MacError::Multicast));
        assert_eq!("00:00:00:00:00:00".parse::<MacAddr>(), Err(MacError::Zero));
    }
}
