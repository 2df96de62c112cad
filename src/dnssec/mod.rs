//! DNSSEC arithmetic the query path needs, none of it allocating: the canonical order of
//! names (RFC 4034 §6.1), which the NSEC chain follows, the NSEC3 hash of a name in the
//! base32hex form of NSEC3 owner labels (RFC 5155 §5), and the fields of an RRSIG; and the
//! NSEC3 RDATA signing makes.
//!
//! Serving a zone signed elsewhere (SPEC §11) uses these on the file's own records; the
//! chains themselves are indexed with the zone in `snapshot`.

use std::cmp::Ordering;

use crate::wire::MAX_NAME_LEN;

pub mod compact;
pub mod key;
pub mod keydir;
pub mod keystate;
pub mod lifecycle;
pub mod sign;

pub mod rtype {
    pub const DNSKEY: u16 = 48;
    pub const NSEC3: u16 = 50;
    pub const NSEC3PARAM: u16 = 51;
}

/// The type an RRSIG record covers: the first field of its RDATA. `record` is the record
/// after its owner (type, class, TTL, RDLENGTH, RDATA).
pub fn covered(record: &[u8]) -> u16 {
    match record.get(10..12) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Where each label of the wire name `name` starts, and how many there are (the root
/// not counted).
fn label_starts(name: &[u8], starts: &mut [u8; 128]) -> usize {
    let (mut at, mut n) = (0, 0);
    while let Some(&len) = name.get(at) {
        if len == 0 || n == starts.len() {
            break;
        }
        starts[n] = at as u8;
        n += 1;
        at += 1 + usize::from(len);
    }
    n
}

/// Compares two lowercased wire names in DNSSEC canonical order (RFC 4034 §6.1): label by
/// label from the root, each label as unsigned bytes, a name before its descendants.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut sa, mut sb) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (label_starts(a, &mut sa), label_starts(b, &mut sb));
    for i in 1..=na.min(nb) {
        let la = label(a, sa[na - i]);
        let lb = label(b, sb[nb - i]);
        match la.cmp(lb) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    na.cmp(&nb)
}

fn label(name: &[u8], start: u8) -> &[u8] {
    let start = usize::from(start);
    let len = usize::from(name[start]);
    &name[start + 1..start + 1 + len]
}

/// NSEC3 parameters of a zone (RFC 5155 §3.1): SHA-1 is the only hash algorithm. The
/// default, no extra iteration and no salt, is what RFC 9276 §3.1 asks of a signer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nsec3Params {
    pub iterations: u16,
    pub salt: Box<[u8]>,
}

impl Nsec3Params {
    /// The parameters in NSEC3 or NSEC3PARAM RDATA: algorithm, flags, iterations, salt.
    pub fn from_rdata(rdata: &[u8]) -> Option<Self> {
        let iterations = u16::from_be_bytes([*rdata.get(2)?, *rdata.get(3)?]);
        let salt_len = usize::from(*rdata.get(4)?);
        let salt = rdata.get(5..5 + salt_len)?;
        Some(Self {
            iterations,
            salt: salt.into(),
        })
    }
}

/// The length of a hashed owner label: SHA-1's 20 bytes in base32hex.
pub const HASH_LABEL_LEN: usize = 32;

/// The length of an NSEC3 hash: SHA-1's.
pub const HASH_LEN: usize = 20;

/// The NSEC3 hash of the lowercased wire name `name` (RFC 5155 §5), as the lowercase
/// base32hex text of an NSEC3 owner's first label.
pub fn nsec3_label(name: &[u8], params: &Nsec3Params) -> [u8; HASH_LABEL_LEN] {
    base32hex(&nsec3_hash(name, params))
}

/// The NSEC3 hash of the lowercased wire name `name` (RFC 5155 §5), as the Next Hashed
/// Owner Name field holds it.
pub fn nsec3_hash(name: &[u8], params: &Nsec3Params) -> [u8; HASH_LEN] {
    use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
    debug_assert!(name.len() <= MAX_NAME_LEN);
    let mut context = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    context.update(name);
    context.update(&params.salt);
    let mut digest = context.finish();
    for _ in 0..params.iterations {
        let mut context = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        context.update(digest.as_ref());
        context.update(&params.salt);
        digest = context.finish();
    }
    digest.as_ref().try_into().expect("SHA-1 is 20 bytes")
}

/// The hash an NSEC3 owner label (lowercase base32hex) stands for; `None` for a label
/// that is not one.
pub fn nsec3_label_hash(label: &[u8]) -> Option<[u8; HASH_LEN]> {
    let label: &[u8; HASH_LABEL_LEN] = label.try_into().ok()?;
    let mut out = [0u8; HASH_LEN];
    for (group, chunk) in label.chunks(8).enumerate() {
        let mut bits = 0u64;
        for &c in chunk {
            let digit = match c.to_ascii_lowercase() {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'v' => c - b'a' + 10,
                _ => return None,
            };
            bits = (bits << 5) | u64::from(digit);
        }
        out[group * 5..group * 5 + 5].copy_from_slice(&bits.to_be_bytes()[3..]);
    }
    Some(out)
}

/// NSEC3 RDATA (RFC 5155 §3.2): SHA-1, `flags`, the zone's parameters, the next hashed
/// owner and the type bit maps of `types`.
pub fn nsec3_rdata(
    flags: u8,
    params: &Nsec3Params,
    next: &[u8; HASH_LEN],
    types: &[u16],
) -> Vec<u8> {
    let mut rdata = nsec3param_rdata(params);
    rdata[1] = flags;
    rdata.push(HASH_LEN as u8);
    rdata.extend_from_slice(next);
    rdata.extend_from_slice(&sign::type_bitmap(types));
    rdata
}

/// NSEC3PARAM RDATA (RFC 5155 §4.2): SHA-1, flags 0, the zone's parameters.
pub fn nsec3param_rdata(params: &Nsec3Params) -> Vec<u8> {
    let mut rdata = vec![1, 0];
    rdata.extend_from_slice(&params.iterations.to_be_bytes());
    rdata.push(u8::try_from(params.salt.len()).expect("a salt is at most 255 bytes"));
    rdata.extend_from_slice(&params.salt);
    rdata
}

/// 20 bytes in lowercase base32hex without padding (RFC 4648 §7): 32 characters, which
/// sort as the bytes do.
pub fn base32hex(bytes: &[u8; HASH_LEN]) -> [u8; HASH_LABEL_LEN] {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = [0u8; HASH_LABEL_LEN];
    for (group, chunk) in bytes.chunks(5).enumerate() {
        let bits = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        for i in 0..8 {
            out[group * 8 + i] = DIGITS[((bits >> (35 - 5 * i)) & 31) as usize];
        }
    }
    out
}

/// `text` (a name in presentation form, no escapes) as wire bytes, for unit tests.
#[cfg(test)]
pub(crate) fn wire(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_rfc_4034_canonical_order() {
        // RFC 4034 §6.1's example, in order.
        let names = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "z.a.example.",
            "zabc.a.example.",
            "z.example.",
            "\u{1}.z.example.",
            "*.z.example.",
        ];
        let names: Vec<Vec<u8>> = names.iter().map(|n| wire(n)).collect();
        for pair in names.windows(2) {
            assert_eq!(
                canonical_cmp(&pair[0], &pair[1]),
                Ordering::Less,
                "{pair:?}"
            );
            assert_eq!(canonical_cmp(&pair[1], &pair[0]), Ordering::Greater);
        }
        assert_eq!(canonical_cmp(&names[2], &names[2]), Ordering::Equal);
    }

    #[test]
    fn nsec3_hashes_match_rfc_5155_appendix_a() {
        // RFC 5155 Appendix A: salt aabbccdd, 12 iterations.
        let params = Nsec3Params {
            iterations: 12,
            salt: vec![0xaa, 0xbb, 0xcc, 0xdd].into(),
        };
        let cases = [
            ("example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"),
            ("a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"),
            ("ns1.example.", "2t7b4g4vsa5smi47k61mv5bv1a22bojr"),
            ("*.w.example.", "r53bq7cc2uvmubfu5ocmm6pers9tk9en"),
            ("x.y.w.example.", "2vptu5timamqttgl4luu9kg21e0aor3s"),
        ];
        for (name, hash) in cases {
            assert_eq!(
                std::str::from_utf8(&nsec3_label(&wire(name), &params)).unwrap(),
                hash,
                "{name}"
            );
            assert_eq!(
                nsec3_label_hash(hash.as_bytes()),
                Some(nsec3_hash(&wire(name), &params)),
                "{name}"
            );
        }
    }
}
