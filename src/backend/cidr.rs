//! The backend peer-address allowlist (`--backend-allow CIDR`): address
//! blocks, and the list the ZAP handler ([`super::zap`]) checks every
//! worker's address against.
//!
//! Sans-IO and std only. One rule about address families runs through it:
//! an IPv4 peer may reach a dual-stack (IPv6) socket and then shows up as
//! the IPv4-mapped address `::ffff:a.b.c.d`; it is the same peer, so it
//! matches exactly the blocks its plain IPv4 address matches (see
//! [`Cidr::contains`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block: a network address and a prefix length, IPv4 or IPv6.
///
/// Parsed from `10.0.0.0/8`, `2001:db8::/32`, or a bare address meaning
/// one host (`/32` or `/128`). The network address never has host bits
/// set: `10.0.0.1/8` is refused rather than silently widened, because it
/// is more often a typo (for `10.0.0.1/32`?) than a shorthand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`]. Each displays as one line naming the
/// offending part.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The part before the `/` is not an IPv4 or IPv6 address.
    Address(String),
    /// The part after the `/` is not a decimal number.
    Prefix(String),
    /// The prefix is longer than the family allows (32 or 128).
    PrefixTooLong {
        /// The prefix given.
        prefix: u32,
        /// The family's longest prefix.
        max: u8,
    },
    /// The address has bits set past the prefix.
    HostBitsSet {
        /// The block with those bits cleared, probably what was meant.
        network: Cidr,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address(s) => write!(f, "{s:?} is not an IPv4 or IPv6 address"),
            CidrError::Prefix(s) => write!(f, "{s:?} is not a prefix length"),
            CidrError::PrefixTooLong { prefix, max } => {
                write!(f, "prefix /{prefix} is longer than /{max}")
            }
            CidrError::HostBitsSet { network } => {
                write!(
                    f,
                    "host bits set past the prefix (the network is {network})"
                )
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The block of `prefix` leading bits of `network`; refuses a prefix
    /// longer than the family's width and host bits set past it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = width(network);
        if prefix > max {
            return Err(CidrError::PrefixTooLong {
                prefix: u32::from(prefix),
                max,
            });
        }
        let masked = Cidr {
            network: mask(network, prefix),
            prefix,
        };
        if masked.network != network {
            return Err(CidrError::HostBitsSet { network: masked });
        }
        Ok(masked)
    }

    /// The block holding just `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            network: addr,
            prefix: width(addr),
        }
    }

    /// The network address (host bits clear).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in this block.
    ///
    /// Families are compared through the IPv4-mapped form: an IPv4 block
    /// contains `::ffff:a.b.c.d` exactly when it contains `a.b.c.d`, and an
    /// IPv6 block contains `a.b.c.d` exactly when it contains
    /// `::ffff:a.b.c.d` (so `::/0` contains every address, and
    /// `::ffff:10.0.0.0/104` is the same block as `10.0.0.0/8`). Other
    /// IPv6 addresses, including the deprecated IPv4-compatible `::a.b.c.d`
    /// and `::1`, are never IPv4.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => in_block(v4_bits(net), v4_bits(a), self.prefix),
            (IpAddr::V4(net), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|a| in_block(v4_bits(net), v4_bits(a), self.prefix)),
            (IpAddr::V6(net), IpAddr::V6(a)) => in_block(net.to_bits(), a.to_bits(), self.prefix),
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                in_block(net.to_bits(), a.to_ipv6_mapped().to_bits(), self.prefix)
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX` or a bare `ADDRESS`; no spaces, brackets or zone
    /// ids; the prefix is 1 to 3 decimal digits.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_owned()))?;
        let Some(prefix) = prefix else {
            return Ok(Cidr::host(network));
        };
        let digits = !prefix.is_empty() && prefix.len() <= 3;
        let prefix_bits = match prefix.parse::<u32>() {
            Ok(bits) if digits && prefix.bytes().all(|b| b.is_ascii_digit()) => bits,
            _ => return Err(CidrError::Prefix(prefix.to_owned())),
        };
        let max = width(network);
        let prefix = u8::try_from(prefix_bits).ok().filter(|&p| p <= max).ok_or(
            CidrError::PrefixTooLong {
                prefix: prefix_bits,
                max,
            },
        )?;
        Cidr::new(network, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peer addresses allowed to reach the backend endpoints.
///
/// [`Allowlist::from_config`] is the node's policy: exactly the
/// `--backend-allow` blocks when any are given (loopback included only if
/// one of them covers it), and loopback only ([`Allowlist::default`])
/// when none is. `ipc://` peers have no address and are not checked
/// against it (see [`super::zap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Cidr>,
}

impl Allowlist {
    /// Loopback: all of `127.0.0.0/8` and `::1/128` (and, through the
    /// mapping rule of [`Cidr::contains`], `::ffff:127.0.0.0/104`).
    pub const LOOPBACK: [Cidr; 2] = [
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
            prefix: 8,
        },
        Cidr {
            network: IpAddr::V6(Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ];

    /// Exactly `entries`, in order, duplicates removed; empty allows no
    /// address at all.
    pub fn new(entries: impl IntoIterator<Item = Cidr>) -> Allowlist {
        let mut all: Vec<Cidr> = Vec::new();
        for cidr in entries {
            if !all.contains(&cidr) {
                all.push(cidr);
            }
        }
        Allowlist { entries: all }
    }

    /// What `--backend-allow` builds: exactly the `configured` blocks when
    /// there is at least one, so an operator who wants local workers too
    /// lists `127.0.0.1/32` or `127.0.0.0/8` (and `::1` for IPv6); loopback
    /// only ([`Allowlist::default`]) when there is none.
    pub fn from_config(configured: impl IntoIterator<Item = Cidr>) -> Allowlist {
        let list = Allowlist::new(configured);
        if list.entries.is_empty() {
            Allowlist::default()
        } else {
            list
        }
    }

    /// Whether a peer at `addr` may connect: some entry contains it.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.entries.iter().any(|cidr| cidr.contains(addr))
    }

    /// The blocks, in the order given, duplicates removed.
    pub fn entries(&self) -> &[Cidr] {
        &self.entries
    }
}

impl Default for Allowlist {
    /// Loopback only: [`Allowlist::LOOPBACK`].
    fn default() -> Allowlist {
        Allowlist::new(Self::LOOPBACK)
    }
}

fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix.min(32)));
            IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & keep.unwrap_or(0)))
        }
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & v6_mask(prefix))),
    }
}

/// An IPv4 address in the top 32 bits of a `u128`, so that both families
/// share [`in_block`].
fn v4_bits(addr: Ipv4Addr) -> u128 {
    u128::from(addr.to_bits()) << 96
}

/// The top `prefix` bits set (`prefix` at most 128).
fn v6_mask(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

fn in_block(network: u128, addr: u128, prefix: u8) -> bool {
    (addr ^ network) & v6_mask(prefix) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_blocks_and_bare_addresses() {
        let table: &[(&str, &str, u8)] = &[
            ("10.0.0.0/8", "10.0.0.0", 8),
            ("0.0.0.0/0", "0.0.0.0", 0),
            ("192.168.1.7", "192.168.1.7", 32),
            ("192.168.1.7/32", "192.168.1.7", 32),
            ("172.16.0.0/12", "172.16.0.0", 12),
            ("::1/128", "::1", 128),
            ("::1", "::1", 128),
            ("::/0", "::", 0),
            ("2001:db8::/32", "2001:db8::", 32),
            ("fe80::/10", "fe80::", 10),
            ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0", 104),
            ("10.0.0.0/008", "10.0.0.0", 8),
        ];
        for &(input, network, prefix) in table {
            let got = cidr(input);
            assert_eq!(got.network(), ip(network), "{input}");
            assert_eq!(got.prefix(), prefix, "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["10.0.0.0/8", "::1/128", "2001:db8::/32", "0.0.0.0/0"] {
            assert_eq!(cidr(s).to_string(), s);
            assert_eq!(cidr(&cidr(s).to_string()), cidr(s));
        }
        assert_eq!(cidr("127.0.0.1").to_string(), "127.0.0.1/32");
    }

    #[test]
    fn rejects_malformed_with_one_line_errors() {
        let table: &[(&str, CidrError)] = &[
            ("", CidrError::Address(String::new())),
            ("/8", CidrError::Address(String::new())),
            ("10.0.0/8", CidrError::Address("10.0.0".into())),
            ("10/8", CidrError::Address("10".into())),
            ("example.com", CidrError::Address("example.com".into())),
            (" 10.0.0.0/8", CidrError::Address(" 10.0.0.0".into())),
            ("[::1]/128", CidrError::Address("[::1]".into())),
            ("fe80::1%eth0", CidrError::Address("fe80::1%eth0".into())),
            ("10.0.0.0/", CidrError::Prefix(String::new())),
            ("10.0.0.0/+8", CidrError::Prefix("+8".into())),
            ("10.0.0.0/-1", CidrError::Prefix("-1".into())),
            ("10.0.0.0/8 ", CidrError::Prefix("8 ".into())),
            ("10.0.0.0/8/8", CidrError::Prefix("8/8".into())),
            ("10.0.0.0/0008", CidrError::Prefix("0008".into())),
            ("10.0.0.0/x", CidrError::Prefix("x".into())),
            (
                "10.0.0.0/33",
                CidrError::PrefixTooLong {
                    prefix: 33,
                    max: 32,
                },
            ),
            (
                "::/129",
                CidrError::PrefixTooLong {
                    prefix: 129,
                    max: 128,
                },
            ),
            (
                "::/999",
                CidrError::PrefixTooLong {
                    prefix: 999,
                    max: 128,
                },
            ),
            (
                "10.0.0.1/8",
                CidrError::HostBitsSet {
                    network: cidr("10.0.0.0/8"),
                },
            ),
            (
                "2001:db8::1/32",
                CidrError::HostBitsSet {
                    network: cidr("2001:db8::/32"),
                },
            ),
        ];
        for (input, want) in table {
            let got = input.parse::<Cidr>();
            assert_eq!(got.as_ref(), Err(want), "{input:?}");
            let line = want.to_string();
            assert!(!line.contains('\n') && !line.is_empty(), "{line}");
        }
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().map_err(|e| e.to_string()),
            Err("host bits set past the prefix (the network is 10.0.0.0/8)".into())
        );
    }

    #[test]
    fn contains_by_family_and_mapping() {
        // (block, address, contained)
        let table: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.0.0.0", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "255.255.255.255", true),
            ("0.0.0.0/0", "::1", false),
            ("0.0.0.0/0", "2001:db8::1", false),
            // IPv4-mapped peers match IPv4 blocks.
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::ffff:11.1.2.3", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            // IPv4-compatible and ::1 are not IPv4 (Ipv6Addr::to_ipv4 would say 0.0.0.1).
            ("10.0.0.0/8", "::10.1.2.3", false),
            ("0.0.0.0/8", "::1", false),
            ("0.0.0.0/0", "::", false),
            // IPv6 blocks.
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
            ("::1/128", "127.0.0.1", false),
            // IPv6 blocks over the mapped range see IPv4 peers.
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.0.0.0", false),
            ("::/0", "10.0.0.1", true),
            ("::/0", "2001:db8::1", true),
        ];
        for &(block, addr, want) in table {
            assert_eq!(cidr(block).contains(ip(addr)), want, "{block} ∋ {addr}");
        }
    }

    #[test]
    fn new_and_host() {
        assert_eq!(Cidr::new(ip("10.0.0.0"), 8), Ok(cidr("10.0.0.0/8")));
        assert_eq!(
            Cidr::new(ip("10.0.0.0"), 33),
            Err(CidrError::PrefixTooLong {
                prefix: 33,
                max: 32
            })
        );
        assert_eq!(Cidr::host(ip("::1")), cidr("::1/128"));
        assert_eq!(Allowlist::LOOPBACK[0], cidr("127.0.0.0/8"));
        assert_eq!(Allowlist::LOOPBACK[1], cidr("::1/128"));
    }

    #[test]
    fn backend_allow_means_exactly_its_blocks() {
        let remote = Allowlist::from_config([cidr("10.0.0.0/8"), cidr("2001:db8::/32")]);
        let one_host = Allowlist::from_config([cidr("127.0.0.1/32")]);
        let unset = Allowlist::from_config([]);
        let nothing = Allowlist::new([]);
        // (address, remote blocks, 127.0.0.1/32 only, flag unset, empty)
        let table: &[(&str, bool, bool, bool, bool)] = &[
            ("127.0.0.1", false, true, true, false),
            ("127.0.0.2", false, false, true, false),
            ("127.255.0.9", false, false, true, false),
            ("::1", false, false, true, false),
            ("::ffff:127.0.0.1", false, true, true, false),
            ("::ffff:127.0.0.2", false, false, true, false),
            ("10.1.2.3", true, false, false, false),
            ("::ffff:10.1.2.3", true, false, false, false),
            ("2001:db8::7", true, false, false, false),
            ("192.0.2.1", false, false, false, false),
            ("::ffff:192.0.2.1", false, false, false, false),
            ("::2", false, false, false, false),
        ];
        for &(addr, a, b, c, d) in table {
            let addr = ip(addr);
            assert_eq!(remote.allows(addr), a, "remote blocks: {addr}");
            assert_eq!(one_host.allows(addr), b, "127.0.0.1/32: {addr}");
            assert_eq!(unset.allows(addr), c, "flag unset: {addr}");
            assert_eq!(nothing.allows(addr), d, "empty: {addr}");
        }
        assert_eq!(unset, Allowlist::default());
        assert_eq!(unset.entries(), &Allowlist::LOOPBACK);
        assert_eq!(one_host.entries(), &[cidr("127.0.0.1/32")]);
    }

    #[test]
    fn allowlist_entries_dedupe_and_keep_order() {
        let blocks = [cidr("10.0.0.0/8"), cidr("127.0.0.0/8"), cidr("10.0.0.0/8")];
        let want = [cidr("10.0.0.0/8"), cidr("127.0.0.0/8")];
        assert_eq!(Allowlist::new(blocks).entries(), &want);
        assert_eq!(Allowlist::from_config(blocks).entries(), &want);
    }
}
