//! EDNS Client Subnet (RFC 7871) read straight from the query's wire bytes.
//!
//! hickory-proto's decoder is lenient where RFC 7871 §6 is strict: it ignores address
//! octets beyond the source prefix and drops every option of an OPT record with a
//! truncated one. lbdns needs to tell those queries apart (they get FORMERR), so it finds
//! the OPT record in the raw message and checks the option itself. The walk only skips
//! names and lengths: no allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::opt::ClientSubnet;

/// The ECS option of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ecs {
    Absent,
    Present(ClientSubnet),
    /// Unknown family, prefix longer than the address, wrong address length, bits set
    /// beyond the prefix, a truncated option list, or two ECS options.
    Malformed,
}

const OPT: u16 = 41;
const SUBNET: u16 = 8;

/// Reads the ECS option of the DNS message `packet`.
pub fn read(packet: &[u8]) -> Ecs {
    match opt_rdata(packet) {
        Some(rdata) => from_options(rdata),
        None => Ecs::Absent,
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// The position just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The RDATA of the OPT record in the additional section, if any.
fn opt_rdata(packet: &[u8]) -> Option<&[u8]> {
    let counts = |i: usize| u16_at(packet, 4 + 2 * i).map(usize::from);
    let (questions, answers, authority, additional) =
        (counts(0)?, counts(1)?, counts(2)?, counts(3)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    for _ in 0..answers + authority {
        at = skip_name(packet, at)?;
        at += 10 + usize::from(u16_at(packet, at + 8)?);
    }
    for _ in 0..additional {
        at = skip_name(packet, at)?;
        let rtype = u16_at(packet, at)?;
        let len = usize::from(u16_at(packet, at + 8)?);
        let rdata = packet.get(at + 10..at + 10 + len)?;
        if rtype == OPT {
            return Some(rdata);
        }
        at += 10 + len;
    }
    None
}

fn from_options(mut options: &[u8]) -> Ecs {
    let mut found = Ecs::Absent;
    while !options.is_empty() {
        let (Some(code), Some(len)) = (u16_at(options, 0), u16_at(options, 2)) else {
            return Ecs::Malformed;
        };
        let Some(data) = options.get(4..4 + usize::from(len)) else {
            return Ecs::Malformed;
        };
        if code == SUBNET {
            if found != Ecs::Absent {
                return Ecs::Malformed;
            }
            found = parse_subnet(data).map_or(Ecs::Malformed, Ecs::Present);
        }
        options = &options[4 + usize::from(len)..];
    }
    found
}

/// FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS (exactly the prefix's octets).
fn parse_subnet(data: &[u8]) -> Option<ClientSubnet> {
    let family = u16_at(data, 0)?;
    let (source, scope) = (*data.get(2)?, *data.get(3)?);
    let address = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max || address.len() != usize::from(source.div_ceil(8)) {
        return None;
    }
    let mut octets = [0u8; 16];
    octets[..address.len()].copy_from_slice(address);
    let bits = u128::from_be_bytes(octets);
    // Bits past the source prefix must be zero (RFC 7871 §6).
    if source < 128 && bits << source != 0 {
        return None;
    }
    let addr = if family == 1 {
        let [a, b, c, d, ..] = octets;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    Some(ClientSubnet::new(addr, source, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.` with an OPT record carrying `options`.
    fn query(options: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        p.extend_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(options);
        p
    }

    fn ecs(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&((4 + address.len()) as u16).to_be_bytes());
        o.extend_from_slice(&family.to_be_bytes());
        o.extend_from_slice(&[source, scope]);
        o.extend_from_slice(address);
        o
    }

    #[test]
    fn valid_options() {
        let got = read(&query(&ecs(1, 24, 0, &[192, 0, 2])));
        assert_eq!(
            got,
            Ecs::Present(ClientSubnet::new("192.0.2.0".parse().unwrap(), 24, 0))
        );
        let got = read(&query(&ecs(2, 0, 0, &[])));
        assert!(matches!(got, Ecs::Present(s) if s.source_prefix() == 0));
        assert_eq!(read(&query(&[])), Ecs::Absent);
        // Another option before ECS is skipped.
        let mut both = vec![0, 10, 0, 2, 1, 2];
        both.extend(ecs(2, 32, 0, &[0x20, 1, 0x0d, 0xb8]));
        assert!(matches!(read(&query(&both)), Ecs::Present(_)));
    }

    #[test]
    fn malformed_options() {
        for bad in [
            ecs(3, 24, 0, &[192, 0, 2]),       // unknown family
            ecs(1, 33, 0, &[192, 0, 2, 1, 0]), // prefix longer than IPv4
            ecs(1, 24, 0, &[192, 0, 2, 0]),    // more octets than the prefix needs
            ecs(1, 24, 0, &[192, 0]),          // fewer
            ecs(1, 23, 0, &[192, 0, 3]),       // a bit set past the prefix
            ecs(1, 0, 0, &[0]),                // /0 carries no address
        ] {
            assert_eq!(read(&query(&bad)), Ecs::Malformed, "{bad:?}");
        }
        let mut truncated = ecs(1, 24, 0, &[192, 0, 2]);
        truncated.truncate(truncated.len() - 1);
        let mut packet = query(&truncated);
        // The option says 7 bytes, the OPT holds 6.
        let len_at = packet.len() - truncated.len() - 2;
        packet[len_at..len_at + 2].copy_from_slice(&(truncated.len() as u16).to_be_bytes());
        assert_eq!(read(&packet), Ecs::Malformed);
        let twice = [ecs(1, 24, 0, &[192, 0, 2]), ecs(1, 24, 0, &[192, 0, 2])].concat();
        assert_eq!(read(&query(&twice)), Ecs::Malformed);
    }

    #[test]
    fn no_opt_and_garbage() {
        let mut p = query(&[]);
        p[11] = 0; // no additional records
        assert_eq!(read(&p), Ecs::Absent);
        assert_eq!(read(&[0; 5]), Ecs::Absent);
    }
}
