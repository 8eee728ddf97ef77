//! The source networks an API key may be used from: CIDR parsing (strict, at key creation)
//! and matching (on the hot path).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a network string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("`{0}` is not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    Syntax(String),
    #[error("`{text}`: prefix length {len} is longer than {max}")]
    PrefixTooLong { text: String, len: u8, max: u8 },
    #[error("`{text}` has host bits set; did you mean `{network}`?")]
    HostBits { text: String, network: String },
    #[error("an empty list of allowed networks would refuse every use; leave it out instead")]
    Empty,
}

/// One network: an address and a prefix length, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// True when `ip` lies in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl FromStr for Cidr {
    type Err = NetworkError;

    /// `ADDR/LEN`, or a bare address (a single host). Host bits must be zero.
    fn from_str(text: &str) -> Result<Cidr, NetworkError> {
        let trimmed = text.trim();
        let syntax = || NetworkError::Syntax(text.to_string());
        let (addr_text, len_text) = match trimmed.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| syntax())?;
        let addr = addr.to_canonical();
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse::<u8>().map_err(|_| syntax())?
            }
            Some(_) => return Err(syntax()),
        };
        if len > max {
            return Err(NetworkError::PrefixTooLong {
                text: text.to_string(),
                len,
                max,
            });
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask32(len)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask128(len)).into()),
        };
        if network != addr {
            return Err(NetworkError::HostBits {
                text: text.to_string(),
                network: Cidr { addr: network, len }.to_string(),
            });
        }
        Ok(Cidr { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Validates the networks given at key creation and returns them in canonical form
/// (`ADDR/LEN`, duplicates dropped, order kept).
pub fn normalize(networks: &[String]) -> Result<Vec<String>, NetworkError> {
    if networks.is_empty() {
        return Err(NetworkError::Empty);
    }
    let mut out: Vec<String> = Vec::with_capacity(networks.len());
    for text in networks {
        let canonical = text.parse::<Cidr>()?.to_string();
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

/// Parses stored networks (already validated at creation).
pub fn parse_all(networks: &[String]) -> Result<Vec<Cidr>, NetworkError> {
    networks.iter().map(|n| n.parse()).collect()
}

/// True when `ip` lies in any of `networks`.
pub fn allows(networks: &[Cidr], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let nets = parse_all(&["10.0.0.0/8".into(), "2001:db8::/32".into()]).expect("parse");
        assert!(allows(&nets, ip("10.1.2.3")));
        assert!(
            allows(&nets, ip("::ffff:10.9.9.9")),
            "mapped IPv4 counts as IPv4"
        );
        assert!(allows(&nets, ip("2001:db8:1::5")));
        assert!(!allows(&nets, ip("11.0.0.1")));
        assert!(!allows(&nets, ip("127.0.0.1")));
        assert!(!allows(&nets, ip("2001:db9::1")));

        let host = parse_all(&["127.0.0.1/32".into()]).expect("parse");
        assert!(allows(&host, ip("127.0.0.1")));
        assert!(!allows(&host, ip("127.0.0.2")));
        let all = parse_all(&["0.0.0.0/0".into()]).expect("parse");
        assert!(allows(&all, ip("203.0.113.9")));
        assert!(
            !allows(&all, ip("::1")),
            "an IPv4 network never matches IPv6"
        );
    }

    #[test]
    fn creation_input_is_validated_and_canonicalised() {
        assert_eq!(
            normalize(&[
                "127.0.0.1".into(),
                " 10.0.0.0/8 ".into(),
                "127.0.0.1/32".into(),
            ])
            .expect("valid"),
            vec!["127.0.0.1/32", "10.0.0.0/8"]
        );
        assert!(matches!(normalize(&[]), Err(NetworkError::Empty)));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/+8",
        ] {
            assert!(
                matches!(normalize(&[bad.into()]), Err(NetworkError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            normalize(&["10.0.0.0/33".into()]),
            Err(NetworkError::PrefixTooLong { .. })
        ));
        let err = normalize(&["10.1.2.3/8".into()]).expect_err("host bits");
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }
}
