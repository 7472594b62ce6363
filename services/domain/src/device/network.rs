//! Which addresses a device may have: the one rule the API applies when a device's host is
//! registered or changed, and the device client applies to every address a host resolves to
//! before it connects (a DNS name can point anywhere, and can change after registration).
//!
//! Refused by default: loopback (`127.0.0.0/8`, `::1`), link-local (`169.254.0.0/16`,
//! `fe80::/10`), unspecified (`0.0.0.0`, `::`), multicast and broadcast, and the platform's
//! own service endpoints (the PostgreSQL, NATS and API addresses of its configuration). The
//! first group can be allowed per tenant with CIDRs ([`DeviceNetworkPolicy::allowed`]; the
//! tenant's `TenantDeviceSettingsSet`, plus an operator-wide list for demos and tests); the
//! service endpoints are refused always. Private ranges (`10/8`, `172.16/12`, `192.168/16`,
//! `fc00::/7`) and public addresses are allowed: device networks usually are private.
//!
//! Pure: no resolution here (the caller resolves), no IO.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IP network: address and prefix length (`10.0.0.0/8`, `fd00::/8`; a bare address is a
/// /32 or /128). Host bits are cleared when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CIDR: give an address and a prefix length, e.g. 127.0.0.0/8 or fe80::/10")]
pub struct BadCidr(pub String);

/// What [`Cidr::parse`] accepts, as an anchored regular expression (the `pattern` of a CIDR
/// in the OpenAPI document): a dotted IPv4 address (no leading zeros) with an optional
/// `/0`-`/32`, or an IPv6 address in any of its textual forms (full, `::`-compressed, with a
/// trailing dotted IPv4) with an optional `/0`-`/128`; a prefix may have leading zeros.
/// Built form by form; a test checks both directions against the parser.
pub fn cidr_pattern() -> String {
    const H: &str = "[0-9a-fA-F]{1,4}";
    const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let v4 = format!(r"{OCTET}(\.{OCTET}){{3}}");
    // Exactly `n` groups joined by `:`.
    let groups = |n: usize| match n {
        0 => String::new(),
        1 => H.to_owned(),
        _ => format!("({H}:){{{}}}{H}", n - 1),
    };
    // Up to `n` groups joined by `:`.
    let up_to = |n: usize| match n {
        0 => String::new(),
        1 => format!("({H})?"),
        _ => format!("({H}(:{H}){{0,{}}})?", n - 1),
    };
    // Eight groups in full, or `::` standing for one or more of them between `left` and at
    // most `7 - left`; then six groups and a dotted IPv4 address, the same two ways.
    let mut forms = vec![format!("({H}:){{7}}{H}")];
    forms.extend((0..8).map(|left| format!("{}::{}", groups(left), up_to(7 - left))));
    forms.push(format!("({H}:){{6}}{v4}"));
    forms.extend((0..6).map(|left| {
        let right = match 5 - left {
            0 => String::new(),
            n => format!("({H}:){{0,{n}}}"),
        };
        format!("{}::{right}{v4}", groups(left))
    }));
    format!(
        "^({v4}(/0*(3[0-2]|[12]?[0-9]))?|({})(/0*(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$",
        forms.join("|")
    )
}

impl Cidr {
    /// The network of `addr` with `prefix` bits (host bits cleared), or `None` when the
    /// prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Some(Self { addr, prefix })
    }

    /// Parses `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix = match p {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix).ok_or_else(bad)
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
impl TryFrom<String> for Cidr {
    type Error = BadCidr;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Cidr> for String {
    fn from(value: Cidr) -> Self {
        value.to_string()
    }
}

/// The class of address a default rule refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`, `255.255.255.255`.
    Multicast,
}

impl RefusedClass {
    /// The rule's name, as problem responses and logs give it.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast/broadcast",
        }
    }

    /// The class of `ip`, when a default rule refuses it.
    pub fn of(ip: IpAddr) -> Option<Self> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                if a.is_loopback() {
                    Some(Self::Loopback)
                } else if a.is_link_local() {
                    Some(Self::LinkLocal)
                } else if a.octets()[0] == 0 {
                    Some(Self::Unspecified)
                } else if a.is_multicast() || a.is_broadcast() {
                    Some(Self::Multicast)
                } else {
                    None
                }
            }
            IpAddr::V6(a) => {
                if a.is_loopback() {
                    Some(Self::Loopback)
                } else if a.segments()[0] & 0xffc0 == 0xfe80 {
                    Some(Self::LinkLocal)
                } else if a.is_unspecified() {
                    Some(Self::Unspecified)
                } else if a.is_multicast() {
                    Some(Self::Multicast)
                } else {
                    None
                }
            }
        }
    }
}

/// Why a device address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    /// A default rule refuses the address and no allowed network covers it.
    #[error(
        "device address {ip} is refused by the `{rule}` rule (loopback, link-local, \
         unspecified and multicast addresses are not device networks); a tenant admin can \
         allow it with PUT /api/v1/tenants/{{tenant_id}}/device-settings (add a CIDR to allowed_networks, e.g. \"{ip}\")",
        rule = .class.rule()
    )]
    Class {
        /// The address.
        ip: IpAddr,
        /// The rule.
        class: RefusedClass,
    },
    /// The address is one of the platform's own service endpoints.
    #[error(
        "device address {addr} is one of the platform's own service endpoints (`service-address` \
         rule: PostgreSQL, NATS or the API); it cannot be allowed, register the device's real \
         management address"
    )]
    ServiceAddress {
        /// The endpoint.
        addr: SocketAddr,
    },
}

impl AddressRefused {
    /// The rule's name (`loopback`, `link-local`, `unspecified`, `multicast/broadcast`,
    /// `service-address`).
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Class { class, .. } => class.rule(),
            Self::ServiceAddress { .. } => "service-address",
        }
    }
}

/// What the checks allow: the networks allowed beyond the defaults (the tenant's list plus
/// the operator's) and the service endpoints never allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNetworkPolicy {
    /// Networks allowed although a default rule refuses them.
    pub allowed: Vec<Cidr>,
    /// The platform's own service endpoints (refused whatever `allowed` says). A port of 0
    /// stands for every port of that address.
    pub service_endpoints: Vec<SocketAddr>,
}

/// The loopback networks (`127.0.0.0/8`, `::1/128`): what a simulated fleet on this host
/// needs allowed ([`DeviceNetworkPolicy::with_loopback`]).
pub fn loopback_networks() -> [Cidr; 2] {
    [
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}

impl DeviceNetworkPolicy {
    /// This policy with loopback allowed: the explicit opt-in of the demo fleet and the
    /// test harnesses, whose simulated devices listen on this host.
    pub fn with_loopback(self) -> Self {
        self.allowing(loopback_networks())
    }

    /// This policy with `more` allowed networks too.
    pub fn allowing(mut self, more: impl IntoIterator<Item = Cidr>) -> Self {
        self.allowed.extend(more);
        self
    }

    /// Checks one address a device would be reached at on `port`.
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<(), AddressRefused> {
        let ip = ip.to_canonical();
        let service = self.service_endpoints.iter().any(|s| {
            s.ip().to_canonical() == ip && (s.port() == port || s.port() == 0)
                || (s.ip().is_unspecified() && s.port() == port && RefusedClass::of(ip).is_some())
        });
        if service {
            return Err(AddressRefused::ServiceAddress {
                addr: SocketAddr::new(ip, port),
            });
        }
        match RefusedClass::of(ip) {
            Some(class) if !self.allowed.iter().any(|c| c.contains(ip)) => {
                Err(AddressRefused::Class { ip, class })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    proptest::proptest! {
        /// Every string the pattern describes parses (the fuzzer generates from the pattern).
        #[test]
        fn what_the_pattern_describes_parses(
            s in proptest::string::string_regex(
                cidr_pattern().trim_start_matches('^').trim_end_matches('$')
            ).unwrap()
        ) {
            proptest::prop_assert!(Cidr::parse(&s).is_ok(), "{s}");
        }

        /// Every form the parser reads matches the pattern: each address as Rust and as the
        /// long form print it, with and without a prefix (leading zeros included).
        #[test]
        fn what_parses_matches_the_pattern(
            bits in proptest::prelude::any::<u128>(),
            zeros in 0u32..128,
            prefix in 0u8..=128,
            pad in 0usize..3,
        ) {
            let re = regex::Regex::new(&cidr_pattern()).unwrap();
            let v6 = Ipv6Addr::from(bits >> zeros << zeros);
            let v4 = Ipv4Addr::from(u32::try_from(bits >> 96).unwrap());
            let long = v6.segments().map(|g| format!("{g:x}")).join(":");
            let mapped = format!("::ffff:{v4}");
            let mut forms = vec![v6.to_string(), long, v4.to_string(), mapped];
            forms.push(format!("{v6}/{}{prefix}", "0".repeat(pad)));
            forms.push(format!("{v4}/{}{}", "0".repeat(pad), prefix % 33));
            for form in forms {
                proptest::prop_assert!(Cidr::parse(&form).is_ok(), "{form}");
                proptest::prop_assert!(re.is_match(&form), "{form} parses but does not match");
            }
        }
    }

    #[test]
    fn the_pattern_refuses_what_the_parser_refuses() {
        let re = regex::Regex::new(&cidr_pattern()).unwrap();
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "01.2.3.4",
            "1.2.3",
            "::/129",
            "1:::2",
            "1:2:3:4:5:6:7:8:9",
            "fe80::1%eth0",
            " 10.0.0.0/8",
            "10.0.0.0/-1",
            "::g",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_refuse_loopback_link_local_unspecified_multicast_and_allow_private() {
        let p = DeviceNetworkPolicy::default();
        for (a, rule) in [
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast/broadcast"),
            ("255.255.255.255", "multicast/broadcast"),
            ("ff02::1", "multicast/broadcast"),
        ] {
            assert_eq!(p.check(ip(a), 8729).unwrap_err().rule(), rule, "{a}");
        }
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.88.1",
            "fd00::1",
            "fc00::1",
            "192.0.2.1",
            "2001:db8::1",
        ] {
            assert!(p.check(ip(a), 8729).is_ok(), "{a}");
        }
    }

    #[test]
    fn allowed_networks_lift_class_rules_but_never_service_endpoints() {
        let p = DeviceNetworkPolicy {
            allowed: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            service_endpoints: vec!["127.0.0.1:5432".parse().unwrap()],
        };
        assert!(p.check(ip("127.0.0.1"), 8728).is_ok());
        assert_eq!(
            p.check(ip("127.0.0.1"), 5432).unwrap_err().rule(),
            "service-address"
        );
        assert_eq!(p.check(ip("::1"), 8728).unwrap_err().rule(), "loopback");
        // A service listening on every address: its port on any local address is refused.
        let any = DeviceNetworkPolicy {
            allowed: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            service_endpoints: vec!["0.0.0.0:4222".parse().unwrap()],
        };
        assert_eq!(
            any.check(ip("127.0.0.1"), 4222).unwrap_err().rule(),
            "service-address"
        );
        // A service on a private address is refused on its port only.
        let private = DeviceNetworkPolicy {
            allowed: vec![],
            service_endpoints: vec!["10.0.0.5:5432".parse().unwrap()],
        };
        assert!(private.check(ip("10.0.0.5"), 8729).is_ok());
        assert!(private.check(ip("10.0.0.5"), 5432).is_err());
    }

    #[test]
    fn cidrs_parse_clear_host_bits_and_contain() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.200.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
        assert!(Cidr::parse("fe80::/10").unwrap().contains(ip("fe80::abcd")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("127.0.0.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "x/1",
            "::/129",
            "1.2.3.4/+1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
