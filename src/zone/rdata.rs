//! Presentation format to wire format: names, strings, TTLs and the RDATA of each type.
//!
//! Each type is written straight to wire form from its fields, as Knot's and NSD's
//! scanners do; types without a field parser here are taken in the RFC 3597 form
//! (`\# len hex`), which works for every type, or through hickory's text parser.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::reader::Token;

/// Appends the wire form of the name `raw` (escapes in), relative to `origin` (wire form)
/// unless it ends in a dot.
pub fn name(raw: &[u8], origin: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    if raw == b"@" {
        out.extend_from_slice(origin);
        return Ok(());
    }
    if raw == b"." {
        out.push(0);
        return Ok(());
    }
    let bad = |why: &str| format!("bad name {}: {why}", String::from_utf8_lossy(raw));
    let mut i = 0;
    let absolute = loop {
        let length_at = out.len();
        out.push(0);
        while i < raw.len() && raw[i] != b'.' {
            let (byte, used) = escaped(raw, i).map_err(|e| bad(&e))?;
            out.push(byte);
            i += used;
        }
        let length = out.len() - length_at - 1;
        if length == 0 {
            return Err(bad("empty label"));
        }
        if length > 63 {
            return Err(bad("a label is longer than 63 bytes"));
        }
        out[length_at] = length as u8;
        if i == raw.len() {
            break false;
        }
        i += 1; // the dot
        if i == raw.len() {
            break true;
        }
    };
    if absolute {
        out.push(0);
    } else {
        out.extend_from_slice(origin);
    }
    if out.len() - start > 255 {
        return Err(bad("longer than 255 bytes"));
    }
    Ok(())
}

/// The byte at `raw[i]`, unescaped, and how many bytes of `raw` it took:
/// `\DDD` is the byte with decimal value DDD, `\X` is X itself (RFC 1035 §5.1).
fn escaped(raw: &[u8], i: usize) -> Result<(u8, usize), String> {
    if raw[i] != b'\\' {
        return Ok((raw[i], 1));
    }
    match raw.get(i + 1..i + 4) {
        Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
            let value = digits
                .iter()
                .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            u8::try_from(value)
                .map(|b| (b, 4))
                .map_err(|_| format!("\\{value} is more than 255"))
        }
        _ if raw.get(i + 1).is_some_and(u8::is_ascii_digit) => {
            Err("\\ and a digit must be \\DDD, three digits".into())
        }
        _ => raw
            .get(i + 1)
            .map(|&b| (b, 2))
            .ok_or_else(|| "a \\ ends the text".into()),
    }
}

/// Appends `raw` with its escapes resolved.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while i < raw.len() {
        let (byte, used) = escaped(raw, i)?;
        out.push(byte);
        i += used;
    }
    Ok(())
}

/// Appends a <character-string>: a length byte and the unescaped bytes.
fn char_string(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let at = out.len();
    out.push(0);
    unescape(raw, out)?;
    let length = out.len() - at - 1;
    out[at] = u8::try_from(length)
        .map_err(|_| format!("a character-string is {length} bytes, more than 255"))?;
    Ok(())
}

/// A TTL: seconds, or units as BIND writes them (`1h30m`, `2d`, `1w`).
pub fn ttl(raw: &[u8]) -> Result<u32, String> {
    let bad = || format!("bad TTL {}", String::from_utf8_lossy(raw));
    let (mut total, mut number, mut digits) = (0u32, 0u32, 0);
    for &c in raw {
        if c.is_ascii_digit() {
            number = number
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(c - b'0')))
                .ok_or_else(bad)?;
            digits += 1;
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3_600,
            b'd' => 86_400,
            b'w' => 604_800,
            _ => return Err(bad()),
        };
        if digits == 0 {
            return Err(bad());
        }
        total = number
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        (number, digits) = (0, 0);
    }
    if digits == 0 && raw.last().is_none_or(u8::is_ascii_digit) {
        return Err(bad());
    }
    total.checked_add(number).ok_or_else(bad)
}

/// A class mnemonic or `CLASSnnn` (RFC 3597 §5), if `raw` is one.
pub fn class(raw: &[u8]) -> Option<u16> {
    [(b"IN".as_slice(), 1), (b"CH", 3), (b"HS", 4)]
        .iter()
        .find(|(name, _)| raw.eq_ignore_ascii_case(name))
        .map(|&(_, class)| class)
        .or_else(|| numbered(raw, b"CLASS"))
}

/// `PREFIXnnn` (prefix in any case) as a number.
fn numbered(raw: &[u8], prefix: &[u8]) -> Option<u16> {
    let (head, digits) = raw.split_at_checked(prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix)
        || digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The type mnemonics of the IANA registry that Knot DNS reads, with their codes.
const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("MD", 3),
    ("MF", 4),
    ("CNAME", 5),
    ("SOA", 6),
    ("MB", 7),
    ("MG", 8),
    ("MR", 9),
    ("NULL", 10),
    ("WKS", 11),
    ("PTR", 12),
    ("HINFO", 13),
    ("MINFO", 14),
    ("MX", 15),
    ("TXT", 16),
    ("RP", 17),
    ("AFSDB", 18),
    ("X25", 19),
    ("ISDN", 20),
    ("RT", 21),
    ("NSAP", 22),
    ("SIG", 24),
    ("KEY", 25),
    ("PX", 26),
    ("GPOS", 27),
    ("AAAA", 28),
    ("LOC", 29),
    ("NXT", 30),
    ("SRV", 33),
    ("NAPTR", 35),
    ("KX", 36),
    ("CERT", 37),
    ("A6", 38),
    ("DNAME", 39),
    ("APL", 42),
    ("DS", 43),
    ("SSHFP", 44),
    ("IPSECKEY", 45),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("DHCID", 49),
    ("NSEC3", 50),
    ("NSEC3PARAM", 51),
    ("TLSA", 52),
    ("SMIMEA", 53),
    ("HIP", 55),
    ("CDS", 59),
    ("CDNSKEY", 60),
    ("OPENPGPKEY", 61),
    ("CSYNC", 62),
    ("ZONEMD", 63),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("SPF", 99),
    ("NID", 104),
    ("L32", 105),
    ("L64", 106),
    ("LP", 107),
    ("EUI48", 108),
    ("EUI64", 109),
    ("URI", 256),
    ("CAA", 257),
    ("TA", 32768),
    ("DLV", 32769),
];

/// A type mnemonic or `TYPEnnn` (RFC 3597 §5) of data a zone may hold: not OPT nor a
/// query type (RFC 6895 §3.1).
pub fn type_code(raw: &[u8]) -> Result<u16, String> {
    let code = match numbered(raw, b"TYPE") {
        Some(code) => code,
        None => TYPES
            .iter()
            .find(|(name, _)| raw.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, code)| code)
            .ok_or_else(|| format!("unknown record type {}", String::from_utf8_lossy(raw)))?,
    };
    if code == 0 || code == 41 || (128..=255).contains(&code) {
        return Err(format!(
            "{} is not a type of data (TYPE{code})",
            String::from_utf8_lossy(raw)
        ));
    }
    Ok(code)
}

/// The mnemonic of `code`, or `TYPEnnn`, for messages.
pub fn type_name(code: u16) -> String {
    TYPES
        .iter()
        .find(|&&(_, c)| c == code)
        .map_or_else(|| format!("TYPE{code}"), |(name, _)| (*name).to_owned())
}

/// The fields of one record's RDATA, taken in order.
struct Fields<'a> {
    text: &'a [u8],
    tokens: std::slice::Iter<'a, Token>,
    origin: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next(&mut self, what: &str) -> Result<&'a [u8], String> {
        self.tokens
            .next()
            .map(|t| t.text(self.text))
            .ok_or_else(|| format!("missing {what}"))
    }

    /// An unsigned integer written in decimal digits only (no sign, as Knot reads it).
    fn digits<T: FromStr>(&mut self, what: &str) -> Result<T, String> {
        let raw = self.next(what)?;
        std::str::from_utf8(raw)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad {what} {}", String::from_utf8_lossy(raw)))
    }

    fn number<T: FromStr>(&mut self, what: &str) -> Result<T, String> {
        let raw = self.next(what)?;
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad {what} {}", String::from_utf8_lossy(raw)))
    }

    fn u8(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        out.push(self.digits::<u8>(what)?);
        Ok(())
    }

    fn u16(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&self.digits::<u16>(what)?.to_be_bytes());
        Ok(())
    }

    fn u32(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&self.digits::<u32>(what)?.to_be_bytes());
        Ok(())
    }

    fn ttl(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&ttl(self.next(what)?)?.to_be_bytes());
        Ok(())
    }

    fn name(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        name(self.next(what)?, self.origin, out)
    }

    fn string(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), String> {
        char_string(self.next(what)?, out)
    }

    /// The remaining tokens joined (base64 and hex may be split by blanks).
    fn rest<'s>(&mut self, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        scratch.clear();
        for token in self.tokens.by_ref() {
            scratch.extend_from_slice(token.text(self.text));
        }
        scratch
    }

    fn end(&mut self) -> Result<(), String> {
        match self.tokens.next() {
            None => Ok(()),
            Some(t) => Err(format!(
                "unexpected {} after the record data",
                String::from_utf8_lossy(t.text(self.text))
            )),
        }
    }
}

/// Appends the wire RDATA of a record of type `rtype` from its presentation `tokens`.
pub fn rdata(
    rtype: u16,
    text: &[u8],
    tokens: &[Token],
    origin: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    let mut f = Fields {
        text,
        tokens: tokens.iter(),
        origin,
    };
    if tokens
        .first()
        .is_some_and(|t| !t.quoted && t.text(text) == b"\\#")
    {
        f.next("\\#")?;
        let at = out.len();
        generic(&mut f, out, scratch)?;
        // A known type's data must be what that type holds (RFC 3597 §5): an NS of four
        // bytes or a name with a compression pointer would go out as a malformed reply.
        return check_wire(rtype, &out[at..]);
    }
    match rtype {
        1 => {
            let address: Ipv4Addr = f.number("IPv4 address")?;
            out.extend_from_slice(&address.octets());
        }
        28 => {
            let address: Ipv6Addr = f.number("IPv6 address")?;
            out.extend_from_slice(&address.octets());
        }
        // NS, MD, MF, CNAME, MB, MG, MR, PTR, DNAME.
        2..=5 | 7..=9 | 12 | 39 => f.name("name", out)?,
        6 => {
            f.name("MNAME", out)?;
            f.name("RNAME", out)?;
            f.u32("serial", out)?;
            for what in ["refresh", "retry", "expire", "minimum"] {
                f.ttl(what, out)?;
            }
        }
        // MINFO and RP: two names.
        14 | 17 => {
            f.name("first name", out)?;
            f.name("second name", out)?;
        }
        // MX, AFSDB, RT, KX, LP: a preference and a name.
        15 | 18 | 21 | 36 | 107 => {
            f.u16("preference", out)?;
            f.name("name", out)?;
        }
        33 => {
            for what in ["priority", "weight", "port"] {
                f.u16(what, out)?;
            }
            f.name("target", out)?;
        }
        // TXT and SPF (RFC 7208 §3.1: the same format).
        16 | 99 => {
            f.string("text", out)?;
            while f.tokens.len() > 0 {
                f.string("text", out)?;
            }
        }
        13 => {
            f.string("CPU", out)?;
            f.string("OS", out)?;
        }
        35 => {
            f.u16("order", out)?;
            f.u16("preference", out)?;
            for what in ["flags", "services", "regexp"] {
                f.string(what, out)?;
            }
            f.name("replacement", out)?;
        }
        257 => {
            f.u8("flags", out)?;
            let tag = f.next("tag")?;
            if tag.is_empty() || tag.len() > 255 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return Err(format!("bad CAA tag {}", String::from_utf8_lossy(tag)));
            }
            out.push(tag.len() as u8);
            out.extend_from_slice(tag);
            // The value runs to the end of the RDATA, with no length byte (RFC 8659 §4.1).
            unescape(f.next("value")?, out)?;
        }
        // URI (RFC 7553 §4.5): the target runs to the end, with no length byte.
        256 => {
            f.u16("priority", out)?;
            f.u16("weight", out)?;
            let target = f.next("target")?;
            unescape(target, out)?;
        }
        44 => {
            f.u8("algorithm", out)?;
            f.u8("fingerprint type", out)?;
            hex(f.rest(scratch), out)?;
        }
        52 | 53 => {
            for what in ["usage", "selector", "matching type"] {
                f.u8(what, out)?;
            }
            hex(f.rest(scratch), out)?;
        }
        // OPENPGPKEY, DHCID.
        61 | 49 => base64(f.rest(scratch), out)?,
        43 | 59 | 32768 | 32769 => {
            f.u16("key tag", out)?;
            f.u8("algorithm", out)?;
            f.u8("digest type", out)?;
            hex(f.rest(scratch), out)?;
        }
        // DNSKEY, CDNSKEY, KEY.
        48 | 60 | 25 => {
            f.u16("flags", out)?;
            f.u8("protocol", out)?;
            f.u8("algorithm", out)?;
            base64(f.rest(scratch), out)?;
        }
        46 => {
            out.extend_from_slice(&type_code(f.next("type covered")?)?.to_be_bytes());
            f.u8("algorithm", out)?;
            f.u8("labels", out)?;
            f.u32("original TTL", out)?;
            for what in ["expiration", "inception"] {
                out.extend_from_slice(&time(f.next(what)?)?.to_be_bytes());
            }
            f.u16("key tag", out)?;
            f.name("signer", out)?;
            base64(f.rest(scratch), out)?;
        }
        47 => {
            f.name("next name", out)?;
            type_bitmap(&mut f, out)?;
        }
        50 => {
            f.u8("hash algorithm", out)?;
            f.u8("flags", out)?;
            f.u16("iterations", out)?;
            salt(f.next("salt")?, out)?;
            let at = out.len();
            out.push(0);
            base32hex(f.next("next hashed owner")?, out)?;
            out[at] = u8::try_from(out.len() - at - 1).map_err(|_| "next hashed owner too long")?;
            type_bitmap(&mut f, out)?;
        }
        51 => {
            f.u8("hash algorithm", out)?;
            f.u8("flags", out)?;
            f.u16("iterations", out)?;
            salt(f.next("salt")?, out)?;
        }
        // CSYNC (RFC 7477 §2.1.1).
        62 => {
            f.u32("SOA serial", out)?;
            f.u16("flags", out)?;
            type_bitmap(&mut f, out)?;
        }
        // ZONEMD (RFC 8976 §2.3).
        63 => {
            f.u32("serial", out)?;
            f.u8("scheme", out)?;
            f.u8("hash algorithm", out)?;
            hex(f.rest(scratch), out)?;
        }
        // EUI48 and EUI64 (RFC 7043 §3.2, §4.2): hex pairs joined by hyphens.
        108 | 109 => eui(f.next("address")?, if rtype == 108 { 6 } else { 8 }, out)?,
        // NID and L64 (RFC 6742 §2.3): a preference and four groups of four hex digits.
        104 | 106 => {
            f.u16("preference", out)?;
            let raw = f.next("locator")?;
            let groups: Vec<&[u8]> = raw.split(|&b| b == b':').collect();
            if groups.len() != 4 || groups.iter().any(|g| g.len() != 4) {
                return Err(format!("bad locator {}", String::from_utf8_lossy(raw)));
            }
            hex(&groups.concat(), out)?;
        }
        // L32: a preference and an IPv4 address.
        105 => {
            f.u16("preference", out)?;
            let address: Ipv4Addr = f.number("locator")?;
            out.extend_from_slice(&address.octets());
        }
        29 => loc(&mut f, out)?,
        45 => ipseckey(&mut f, out, scratch)?,
        // The rest of Knot's types through hickory's parser (SVCB, HTTPS, CERT, ...);
        // others only in the RFC 3597 form.
        64 | 65 | 37 => return hickory(RecordType::from(rtype), &mut f, out),
        _ => {
            return Err(format!(
                "{} needs its data in the RFC 3597 form: \\# length hex",
                type_name(rtype)
            ));
        }
    }
    f.end()
}

/// RFC 3597 §5: `\# length hex...`.
fn generic(f: &mut Fields, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<(), String> {
    let length: usize = f.digits("RDATA length")?;
    let at = out.len();
    hex(f.rest(scratch), out)?;
    let got = out.len() - at;
    if got != length {
        return Err(format!(
            "\\# says {length} bytes of RDATA, the hex has {got}"
        ));
    }
    Ok(())
}

/// EUI-48 or EUI-64: `len` hex pairs joined by hyphens.
fn eui(raw: &[u8], len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let pairs: Vec<&[u8]> = raw.split(|&b| b == b'-').collect();
    if pairs.len() != len || pairs.iter().any(|p| p.len() != 2) {
        return Err(format!(
            "bad address {}: {len} pairs of hex digits joined by '-'",
            String::from_utf8_lossy(raw)
        ));
    }
    hex(&pairs.concat(), out)
}

/// IPSECKEY (RFC 4025 §3.1): precedence, gateway type, algorithm, gateway, key.
fn ipseckey(f: &mut Fields, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<(), String> {
    f.u8("precedence", out)?;
    let kind: u8 = f.digits("gateway type")?;
    out.push(kind);
    f.u8("algorithm", out)?;
    match kind {
        0 => {
            if f.next("gateway")? != b"." {
                return Err("gateway type 0 takes '.' as its gateway".into());
            }
        }
        1 => out.extend_from_slice(&f.number::<Ipv4Addr>("IPv4 gateway")?.octets()),
        2 => out.extend_from_slice(&f.number::<Ipv6Addr>("IPv6 gateway")?.octets()),
        3 => f.name("gateway", out)?,
        other => return Err(format!("bad gateway type {other}")),
    }
    base64(f.rest(scratch), out)
}

/// LOC (RFC 1876 §3): `d [m [s]] N|S d [m [s]] E|W alt[m] [size[m] [hp[m] [vp[m]]]]`.
fn loc(f: &mut Fields, out: &mut Vec<u8>) -> Result<(), String> {
    let mut words: Vec<&[u8]> = Vec::new();
    while let Ok(word) = f.next("") {
        words.push(word);
    }
    let bad =
        || "bad LOC data: d [m [s]] N|S d [m [s]] E|W altitude[m] [size [hp [vp]]]".to_owned();
    let mut i = 0;
    let mut angle = |hemispheres: [&[u8]; 2], max: u64| -> Result<u32, String> {
        let mut fields = [0f64; 3];
        let mut n = 0;
        while n < 3
            && words
                .get(i)
                .is_some_and(|w| w.first().is_some_and(u8::is_ascii_digit))
        {
            fields[n] = std::str::from_utf8(words[i])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            n += 1;
            i += 1;
        }
        let hemisphere = words.get(i).ok_or_else(bad)?;
        i += 1;
        let sign = if hemisphere.eq_ignore_ascii_case(hemispheres[0]) {
            1i64
        } else if hemisphere.eq_ignore_ascii_case(hemispheres[1]) {
            -1
        } else {
            return Err(bad());
        };
        if n == 0 || fields[1] >= 60.0 || fields[2] >= 60.0 {
            return Err(bad());
        }
        let thousandths =
            ((fields[0] * 3600.0 + fields[1] * 60.0 + fields[2]) * 1000.0).round() as u64;
        if thousandths > max * 3_600_000 {
            return Err(bad());
        }
        Ok(((1i64 << 31) + sign * thousandths as i64) as u32)
    };
    let latitude = angle([b"N", b"S"], 90)?;
    let longitude = angle([b"E", b"W"], 180)?;
    let metres = |word: &[u8]| -> Result<f64, String> {
        let word = word.strip_suffix(b"m").unwrap_or(word);
        std::str::from_utf8(word)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(bad)
    };
    let altitude = metres(words.get(i).ok_or_else(bad)?)?;
    let altitude = (altitude * 100.0).round() as i64 + 10_000_000;
    let altitude = u32::try_from(altitude).map_err(|_| bad())?;
    // Size, horizontal and vertical precision, as mantissa and power of ten of centimetres.
    let mut sizes = [0x12u8, 0x16, 0x13];
    for (n, size) in sizes.iter_mut().enumerate() {
        let Some(word) = words.get(i + 1 + n) else {
            break;
        };
        let mut cm = (metres(word)? * 100.0).round() as u64;
        if cm > 9_000_000_000 {
            return Err(bad());
        }
        let mut exponent = 0u8;
        while cm >= 10 {
            cm /= 10;
            exponent += 1;
        }
        *size = (cm as u8) << 4 | exponent;
    }
    if words.len() > i + 4 {
        return Err(bad());
    }
    out.push(0);
    out.extend_from_slice(&sizes);
    out.extend_from_slice(&latitude.to_be_bytes());
    out.extend_from_slice(&longitude.to_be_bytes());
    out.extend_from_slice(&altitude.to_be_bytes());
    Ok(())
}

/// What one field of a type's wire RDATA is, for checking RDATA given in the RFC 3597
/// form and for finding the names a reply may compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A domain name, uncompressed; `true` when RFC 3597 §4 lets a reply compress it.
    Name(bool),
    /// A fixed number of bytes.
    Fixed(usize),
    /// One <character-string>.
    String,
    /// One or more <character-string>s, to the end.
    Strings,
    /// Anything, to the end.
    Rest,
}

/// The wire layout of `rtype`'s RDATA, as far as the fields are known; unknown types
/// are all [`Field::Rest`].
pub fn layout(rtype: u16) -> &'static [Field] {
    use Field::*;
    match rtype {
        1 => &[Fixed(4)],
        28 => &[Fixed(16)],
        // RFC 3597 §4: the names of the RFC 1035 types may be compressed.
        2..=5 | 7..=9 | 12 => &[Name(true)],
        6 => &[Name(true), Name(true), Fixed(20)],
        14 => &[Name(true), Name(true)],
        15 => &[Fixed(2), Name(true)],
        // DNAME's target is never compressed (RFC 6672 §2.5), nor later types' names.
        39 => &[Name(false)],
        17 => &[Name(false), Name(false)],
        18 | 21 | 36 | 107 => &[Fixed(2), Name(false)],
        33 => &[Fixed(6), Name(false)],
        35 => &[Fixed(4), String, String, String, Name(false)],
        13 => &[String, String],
        16 | 99 => &[Strings],
        46 => &[Fixed(18), Name(false), Rest],
        47 => &[Name(false), Rest],
        64 | 65 => &[Fixed(2), Name(false), Rest],
        108 => &[Fixed(6)],
        109 => &[Fixed(8)],
        105 => &[Fixed(6)],
        104 | 106 => &[Fixed(10)],
        29 => &[Fixed(16)],
        _ => &[Rest],
    }
}

/// The length of the uncompressed wire name at the start of `bytes`, if it is one.
pub fn name_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = usize::from(*bytes.get(at)?);
        if len == 0 {
            return (at < 255).then_some(at + 1);
        }
        // A pointer (0xC0) or a reserved label type: not a name of RDATA in a zone.
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

/// Checks that `rdata` is valid wire data for `rtype` (names uncompressed).
fn check_wire(rtype: u16, rdata: &[u8]) -> Result<(), String> {
    let bad = |why: &str| {
        format!(
            "the \\# data is not valid {} RDATA: {why}",
            type_name(rtype)
        )
    };
    let mut at = 0;
    for field in layout(rtype) {
        let rest = &rdata[at..];
        at += match *field {
            Field::Name(_) => name_len(rest).ok_or_else(|| {
                bad("a name is cut short, too long or compressed (names in zone data are written out)")
            })?,
            Field::Fixed(n) if rest.len() >= n => n,
            Field::Fixed(_) => return Err(bad("it is too short")),
            Field::String => match rest.first() {
                Some(&len) if rest.len() > usize::from(len) => 1 + usize::from(len),
                _ => return Err(bad("a character-string is cut short")),
            },
            Field::Strings => {
                let mut used = 0;
                while used < rest.len() {
                    used += 1 + usize::from(rest[used]);
                }
                if used != rest.len() || rest.is_empty() {
                    return Err(bad("a character-string is cut short"));
                }
                used
            }
            Field::Rest => rest.len(),
        };
    }
    if at != rdata.len() {
        return Err(bad("it is too long"));
    }
    Ok(())
}

/// The types this module has no field parser for, through hickory's text parser; its
/// lexer mishandles `\DDD`, so RDATA with a backslash is refused (the `\#` form is exact).
fn hickory(rtype: RecordType, f: &mut Fields, out: &mut Vec<u8>) -> Result<(), String> {
    let mut joined = Vec::new();
    for (i, token) in f.tokens.by_ref().enumerate() {
        let raw = token.text(f.text);
        // hickory reads the target without an origin: a relative one would lose it.
        if matches!(rtype, RecordType::SVCB | RecordType::HTTPS) && i == 1 && !raw.ends_with(b".") {
            return Err(format!(
                "the {rtype} target must be fully qualified (end in a dot)"
            ));
        }
        if raw.contains(&b'\\') {
            return Err(format!(
                "escapes in {rtype} data are not supported: write it as \\# length hex"
            ));
        }
        if token.quoted {
            joined.push(b'"');
        }
        joined.extend_from_slice(raw);
        if token.quoted {
            joined.push(b'"');
        }
        joined.push(b' ');
    }
    let joined = String::from_utf8(joined).map_err(|_| format!("{rtype} data is not UTF-8"))?;
    let data = RData::try_from_str(rtype, &joined).map_err(|e| format!("{rtype}: {e}"))?;
    let mut encoder = BinEncoder::new(out);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    data.emit(&mut encoder)
        .map_err(|e| format!("{rtype} data does not encode: {e}"))
}

/// The NSEC/NSEC3 type bitmap from the remaining type names (RFC 4034 §4.1.2).
fn type_bitmap(f: &mut Fields, out: &mut Vec<u8>) -> Result<(), String> {
    let mut types = Vec::new();
    for token in f.tokens.by_ref() {
        types.push(type_code(token.text(f.text))?);
    }
    types.sort_unstable();
    types.dedup();
    let mut window_types = &types[..];
    while let Some(&first) = window_types.first() {
        let window = (first >> 8) as u8;
        let end = window_types
            .iter()
            .position(|t| (t >> 8) as u8 != window)
            .unwrap_or(window_types.len());
        let mut bits = [0u8; 32];
        let mut used = 0;
        for &t in &window_types[..end] {
            let low = (t & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            used = low / 8 + 1;
        }
        out.push(window);
        out.push(used as u8);
        out.extend_from_slice(&bits[..used]);
        window_types = &window_types[end..];
    }
    Ok(())
}

/// An NSEC3 salt: `-` for none, else hex, after its length byte.
fn salt(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let at = out.len();
    out.push(0);
    if raw != b"-" {
        hex(raw, out)?;
    }
    out[at] = u8::try_from(out.len() - at - 1).map_err(|_| "the salt is longer than 255 bytes")?;
    Ok(())
}

/// An RRSIG time: `YYYYMMDDHHmmSS` in UTC, or seconds since the epoch (RFC 4034 §3.2);
/// both modulo 2^32, as the field is serial arithmetic.
fn time(raw: &[u8]) -> Result<u32, String> {
    let bad = || format!("bad time {}", String::from_utf8_lossy(raw));
    if !raw.iter().all(u8::is_ascii_digit) || raw.is_empty() {
        return Err(bad());
    }
    let number = |r: std::ops::Range<usize>| {
        raw[r]
            .iter()
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'))
    };
    if raw.len() != 14 {
        return u32::try_from(number(0..raw.len())).map_err(|_| bad());
    }
    let (year, month, day) = (number(0..4), number(4..6), number(6..8));
    let (hour, minute, second) = (number(8..10), number(10..12), number(12..14));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Ok(seconds as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn hex(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if !raw.len().is_multiple_of(2) {
        return Err("hex data has an odd number of digits".into());
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("bad hex digit {:?}", c as char))
    };
    for pair in raw.chunks_exact(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Ok(())
}

fn base64(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let decoded = data_encoding::BASE64
        .decode(raw)
        .map_err(|e| format!("bad base64: {e}"))?;
    out.extend_from_slice(&decoded);
    Ok(())
}

/// Base32 with the extended hex alphabet, no padding, either case (RFC 4648 §7, RFC 5155 §3.3).
fn base32hex(raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let (mut buffer, mut bits) = (0u32, 0);
    for &c in raw {
        let value = (c as char)
            .to_digit(32)
            .ok_or_else(|| format!("bad base32hex digit {:?}", c as char))?;
        buffer = buffer << 5 | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding of a whole last byte.
    if bits >= 5 || buffer & ((1 << bits) - 1) != 0 {
        return Err("bad base32hex length".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        for (text, seconds) in [
            ("0", 0),
            ("3600", 3600),
            ("1h30m", 5400),
            ("1W2d", 777_600),
            ("90s", 90),
            ("1h5", 3605),
        ] {
            assert_eq!(ttl(text.as_bytes()), Ok(seconds), "{text}");
        }
        for text in ["", "h", "1x", "4294967296", "5000000w"] {
            assert!(ttl(text.as_bytes()).is_err(), "{text}");
        }
    }

    #[test]
    fn rrsig_times() {
        // 1970-01-01 is 0; 2000-03-01 is 951,868,800 (a leap year's day after February).
        assert_eq!(time(b"19700101000000"), Ok(0));
        assert_eq!(time(b"20000301000000"), Ok(951_868_800));
        assert_eq!(time(b"1234"), Ok(1234));
        // Past 2106 the field wraps (serial arithmetic, RFC 4034 §3.1.5).
        assert_eq!(time(b"21060207062816"), Ok(0));
        assert!(time(b"20001301000000").is_err());
        assert!(time(b"2000-01-01").is_err());
    }

    #[test]
    fn types_and_classes() {
        assert_eq!(type_code(b"aaaa"), Ok(28));
        assert_eq!(type_code(b"type65280"), Ok(65280));
        assert_eq!(type_code(b"NSEC3PARAM"), Ok(51));
        for meta in [
            "ANY",
            "AXFR",
            "OPT",
            "TYPE0",
            "TYPE200",
            "BOGUS",
            "TYPE65536",
        ] {
            assert!(type_code(meta.as_bytes()).is_err(), "{meta}");
        }
        assert_eq!(class(b"in"), Some(1));
        assert_eq!(class(b"CLASS1"), Some(1));
        assert_eq!(class(b"CLASS"), None);
        assert_eq!(class(b"A"), None);
    }

    #[test]
    fn names() {
        let origin = b"\x07example\x00";
        let wire = |text: &str| {
            let mut out = Vec::new();
            name(text.as_bytes(), origin, &mut out).map(|()| out)
        };
        assert_eq!(wire("@").unwrap(), origin);
        assert_eq!(wire(".").unwrap(), b"\x00");
        assert_eq!(wire("a.b.").unwrap(), b"\x01a\x01b\x00");
        assert_eq!(wire("*").unwrap(), b"\x01*\x07example\x00");
        assert_eq!(wire("a\\032b").unwrap(), b"\x03a b\x07example\x00");
        assert_eq!(wire("\\\\.").unwrap(), b"\x01\\\x00");
        assert!(wire("a..b").is_err());
        assert!(wire(&"a".repeat(64)).is_err());
        assert!(wire(&"a.".repeat(128)).is_err());
        assert!(wire("a\\").is_err());
    }

    #[test]
    fn base32hex_of_rfc_4648() {
        // RFC 4648 §10 test vectors, lowercase as NSEC3 zone files write them.
        for (text, bytes) in [
            ("", ""),
            ("co", "f"),
            ("cpng", "fo"),
            ("cpnmu", "foo"),
            ("cpnmuog", "foob"),
        ] {
            let mut out = Vec::new();
            base32hex(text.as_bytes(), &mut out).unwrap();
            assert_eq!(out, bytes.as_bytes(), "{text}");
        }
        assert!(base32hex(b"c", &mut Vec::new()).is_err());
        assert!(base32hex(b"cz", &mut Vec::new()).is_err());
    }
}
