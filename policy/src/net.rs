//! Addresses, prefixes, ports and domain patterns as policies write them.

use std::{fmt, net::IpAddr, str::FromStr};

/// An IP prefix with its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected ADDRESS/PREFIX, e.g. 203.0.113.0/24 or 2001:db8::/32")]
    Syntax,
    #[error("prefix length {0} is too long for this address family")]
    Prefix(u8),
    #[error("has host bits set; the network is {0}")]
    HostBits(String),
}

impl Cidr {
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn mask_host_bits(addr: IpAddr, prefix: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().map_err(|_| CidrError::Syntax)?),
            None => (s, u8::MAX),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix == u8::MAX { max } else { prefix };
        if prefix > max {
            return Err(CidrError::Prefix(prefix));
        }
        let net = Self::mask_host_bits(addr, prefix);
        if net != addr {
            return Err(CidrError::HostBits(format!("{net}/{prefix}")));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ports {
    pub low: u16,
    pub high: u16,
}

impl Ports {
    pub const ALL: Ports = Ports { low: 0, high: 65535 };

    pub fn one(p: u16) -> Self {
        Ports { low: p, high: p }
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

/// A domain name, or `*.` + a domain for it and every name below it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainPattern {
    /// Lower case, no trailing dot, without the `*.`.
    pub name: String,
    pub wildcard: bool,
}

impl DomainPattern {
    /// Whether `qname` (any case, optional trailing dot) is covered.
    pub fn matches(&self, qname: &str) -> bool {
        let q = qname.trim_end_matches('.').to_ascii_lowercase();
        if q == self.name {
            return true;
        }
        self.wildcard
            && q.len() > self.name.len()
            && q.ends_with(&self.name)
            && q[..q.len() - self.name.len()].ends_with('.')
    }
}

impl FromStr for DomainPattern {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, &'static str> {
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let name = rest.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || name.len() > 253 {
            return Err("a domain is 1 to 253 characters");
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err("labels are 1 to 63 letters, digits, '-' or '_', not starting or ending with '-'");
            }
        }
        if !name.contains('.') {
            return Err("needs at least two labels (e.g. example.com); a bare name would match too much");
        }
        Ok(DomainPattern { name, wildcard })
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            write!(f, "{}", self.name)
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic)] // a failing test panics
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert_eq!("203.0.113.0/24".parse::<Cidr>().map(|c| c.to_string()), Ok("203.0.113.0/24".into()));
        assert_eq!("2001:db8::/32".parse::<Cidr>().map(|c| c.prefix), Ok(32));
        assert_eq!("198.51.100.10".parse::<Cidr>().map(|c| c.prefix), Ok(32), "a bare address is a /32");
        assert_eq!("203.0.113.5/24".parse::<Cidr>(), Err(CidrError::HostBits("203.0.113.0/24".into())));
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Prefix(33)));
        assert_eq!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Syntax));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().map(|c| c.prefix), Ok(0));
    }

    #[test]
    fn domains() {
        let d: DomainPattern = "*.Vendor.example.".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.to_string(), "*.vendor.example");
        assert!(d.matches("vendor.example"));
        assert!(d.matches("api.VENDOR.example."));
        assert!(!d.matches("evilvendor.example"), "suffix must be a whole label");
        let exact: DomainPattern = "api.vendor.example".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(exact.matches("api.vendor.example") && !exact.matches("x.api.vendor.example"));
        for bad in ["", "com", "a..b", "-a.com", "a b.com", "*.", "ex*ample.com"] {
            assert!(bad.parse::<DomainPattern>().is_err(), "{bad}");
        }
    }
}
