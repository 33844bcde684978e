//! Ethernet MAC addresses.

use std::{fmt, net::Ipv4Addr, str::FromStr};

/// A 48-bit Ethernet address (stored and printed as `02:42:0a:00:00:02`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct MacAddr(pub [u8; 6]);

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> Self {
        mac.to_string()
    }
}

impl TryFrom<String> for MacAddr {
    type Error = ParseMacError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl MacAddr {
    /// The MAC Docker derives from an IPv4 address: `02:42` followed by the
    /// four address bytes (locally administered, unicast, stable).
    pub const fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Self([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// Unicast and not all-zero: usable as an endpoint address.
    pub const fn is_valid_unicast(&self) -> bool {
        let b = self.0;
        b[0] & 0x01 == 0
            && !(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 0)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A string that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:42:0a:00:00:02")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let mac: MacAddr = "02:42:0A:00:00:02".parse().expect("valid MAC");
        assert_eq!(mac.0, [0x02, 0x42, 0x0a, 0, 0, 2]);
        assert_eq!(mac.to_string(), "02:42:0a:00:00:02");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:42:0a:00:00",
            "02:42:0a:00:00:02:03",
            "2:42:0a:00:00:02",
            "zz:42:0a:00:00:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn docker_style_from_ip() {
        let mac = MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(mac.to_string(), "02:42:0a:00:01:02");
        assert!(mac.is_valid_unicast());
        assert!(!MacAddr([1, 0, 0, 0, 0, 0]).is_valid_unicast());
        assert!(!MacAddr::default().is_valid_unicast());
    }
}
