//! EDNS Client Subnet (RFC 7871) read from the options of the query's OPT record.
//!
//! RFC 7871 §6 is strict where decoders often are lenient: address octets beyond the
//! source prefix, bits set past it, or a truncated option list make the query malformed
//! (FORMERR), so the option is checked here byte by byte. No allocation.

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

const SUBNET: u16 = 8;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// Reads the options of an OPT record's RDATA, looking for ECS.
pub fn from_options(mut options: &[u8]) -> Ecs {
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
    use crate::wire::Query;

    const OPT: u16 = 41;

    /// The ECS option of `packet`; a message that cannot be read has none.
    fn read(packet: &[u8]) -> Ecs {
        match Query::read(packet) {
            Ok(query) => query.edns.map_or(Ecs::Absent, |edns| edns.ecs),
            Err(_) => Ecs::Absent,
        }
    }

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

    /// `www.example.com` in wire form.
    const WWW: &[u8] = b"\x03www\x07example\x03com\x00";

    /// A resource record: owner (wire bytes), type, class IN, TTL 60, RDATA.
    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    /// A message: one question for `qname`, then the sections' records, the OPT record
    /// (root owner, with `options`) last in the additional section when given.
    fn message(qname: &[u8], sections: [&[Vec<u8>]; 3], options: Option<&[u8]>) -> Vec<u8> {
        let counts = [
            1,
            sections[0].len(),
            sections[1].len(),
            sections[2].len() + usize::from(options.is_some()),
        ];
        let mut p = vec![0x12, 0x34, 0, 0];
        for count in counts {
            p.extend_from_slice(&(count as u16).to_be_bytes());
        }
        p.extend_from_slice(qname);
        p.extend_from_slice(&[0, 1, 0, 1]);
        for record in sections.iter().flat_map(|s| s.iter()) {
            p.extend_from_slice(record);
        }
        if let Some(options) = options {
            p.extend(rr(&[0], OPT, options));
        }
        p
    }

    fn subnet(addr: &str, source: u8, scope: u8) -> Ecs {
        Ecs::Present(ClientSubnet::new(addr.parse().unwrap(), source, scope))
    }

    #[test]
    fn the_opt_record_is_found_after_every_section() {
        let option = ecs(1, 24, 0, &[198, 51, 100]);
        let want = subnet("198.51.100.0", 24, 0);
        // Names of several labels, compressed owners (a pointer to the question name),
        // records of every section, and another additional record before the OPT.
        let answer = rr(&[0xC0, 12], 1, &[192, 0, 2, 1]);
        let authority = rr(b"\x02ns\xC0\x10", 2, b"\x02ns\xC0\x10");
        let glue = rr(b"\x02ns\x07example\x03com\x00", 1, &[192, 0, 2, 53]);
        let aaaa = rr(
            &[0xC0, 12],
            28,
            &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        let packet = message(
            WWW,
            [
                &[answer.clone(), aaaa],
                std::slice::from_ref(&authority),
                std::slice::from_ref(&glue),
            ],
            Some(&option),
        );
        assert_eq!(read(&packet), want);
        assert_eq!(read(&message(WWW, [&[], &[], &[]], Some(&option))), want);
        assert_eq!(
            read(&message(WWW, [&[answer], &[authority], &[glue]], None)),
            Ecs::Absent
        );
        // An OPT record that is not last of the additional section.
        let mut packet = message(b"\x01a\x00", [&[], &[], &[]], Some(&option));
        packet[11] = 2;
        packet.extend(rr(&[0], 1, &[192, 0, 2, 1]));
        assert_eq!(read(&packet), subnet("198.51.100.0", 24, 0));
    }

    #[test]
    fn damaged_messages_have_no_ecs() {
        let option = ecs(1, 24, 0, &[198, 51, 100]);
        let packet = message(WWW, [&[], &[], &[]], Some(&option));
        // Cut anywhere before the option's end: no OPT record is found.
        let opt_at = packet.len() - option.len() - 11;
        for cut in [5, 12, 14, 20, 28, opt_at, opt_at + 9, packet.len() - 1] {
            assert_eq!(read(&packet[..cut]), Ecs::Absent, "cut at {cut}");
        }
        // A label with the reserved 0x40 or 0x80 bits ends the walk.
        for bad in [0x40, 0x80] {
            let mut p = packet.clone();
            p[12] = bad;
            assert_eq!(read(&p), Ecs::Absent);
        }
    }

    #[test]
    fn every_valid_prefix_length_and_the_scope_byte_are_read() {
        let cases = [
            (ecs(1, 32, 0, &[192, 0, 2, 1]), subnet("192.0.2.1", 32, 0)),
            (
                ecs(1, 25, 0, &[192, 0, 2, 128]),
                subnet("192.0.2.128", 25, 0),
            ),
            (ecs(1, 1, 0, &[128]), subnet("128.0.0.0", 1, 0)),
            (ecs(1, 24, 7, &[192, 0, 2]), subnet("192.0.2.0", 24, 7)),
            (ecs(1, 0, 0, &[]), subnet("0.0.0.0", 0, 0)),
            (
                ecs(
                    2,
                    128,
                    0,
                    &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                ),
                subnet("2001:db8::1", 128, 0),
            ),
            (
                ecs(2, 56, 0, &[0x20, 1, 0x0d, 0xb8, 0, 1, 2]),
                subnet("2001:db8:1:200::", 56, 0),
            ),
            (ecs(2, 0, 0, &[]), subnet("::", 0, 0)),
        ];
        for (option, want) in cases {
            assert_eq!(read(&query(&option)), want, "{option:?}");
        }
        for bad in [
            ecs(1, 25, 0, &[192, 0, 2, 192]), // bit 26 set past a /25
            ecs(1, 1, 0, &[0xC0]),            // bit 2 set past a /1
            ecs(2, 129, 0, &[0; 17]),         // longer than IPv6
            ecs(2, 56, 0, &[0x20, 1, 0x0d, 0xb8, 0, 1, 2, 0]),
            ecs(0, 0, 0, &[]), // family 0
        ] {
            assert_eq!(read(&query(&bad)), Ecs::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn options_around_ecs_are_skipped_by_their_lengths() {
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let empty = [0, 12, 0, 0]; // padding, no data
        let option = ecs(1, 24, 0, &[198, 51, 100]);
        let want = subnet("198.51.100.0", 24, 0);
        for options in [
            [&cookie[..], &option, &empty].concat(),
            [&empty[..], &cookie, &option].concat(),
            [&option[..], &empty, &cookie].concat(),
        ] {
            assert_eq!(read(&query(&options)), want, "{options:?}");
        }
        assert_eq!(read(&query(&[cookie, cookie].concat())), Ecs::Absent);
        // An option header cut short.
        assert_eq!(
            read(&query(&[&option[..], &[0, 10, 0]].concat())),
            Ecs::Malformed
        );
    }

    #[test]
    fn pointers_are_skipped_whatever_their_offset_and_other_label_types_stop_the_walk() {
        let option = ecs(1, 24, 0, &[198, 51, 100]);
        // A pointer's offset has 14 bits: 0xC1 0x02 points to 258 (where, it does not
        // matter: the walk only skips names).
        for owner in [[0xC0, 12], [0xC1, 2], [0xFF, 0xFF]] {
            let answer = rr(&owner, 1, &[192, 0, 2, 1]);
            let packet = message(WWW, [&[answer], &[], &[]], Some(&option));
            assert_eq!(read(&packet), subnet("198.51.100.0", 24, 0), "{owner:?}");
        }
        // Label types 0x40 and 0x80 are not lengths: a name starting with 0x41 and 65
        // more bytes then a root label does not lead on to the OPT record.
        for kind in [0x41, 0x81] {
            let mut qname = vec![kind];
            qname.extend_from_slice(&[b'x'; 0x41]);
            qname.push(0);
            let packet = message(&qname, [&[], &[], &[]], Some(&option));
            assert_eq!(read(&packet), Ecs::Absent, "{kind:#x}");
        }
    }
}
