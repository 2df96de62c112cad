//! TSIG (RFC 8945): HMAC-SHA256 and HMAC-SHA512 signatures on zone transfers.
//!
//! A key is `keys/tsig/<name>.yaml` in the served directory:
//!
//! ```yaml
//! algorithm: hmac-sha256     # or hmac-sha512
//! secret: BASE64
//! ```
//!
//! and its DNS name is `<name>.`, as the peer knows it.
//!
//! As a secondary, lbdns signs its SOA queries and AXFR/IXFR requests to a primary with the
//! site's `primary.tsig` key ([`Key::sign`]) and checks every signed message of the answer
//! ([`Verifier`]): the first against the request's MAC, each later one against the one
//! before and the unsigned messages between (§5.3.1); a NOTIFY from the primary must be
//! signed with the key ([`Key::verify_request`]).
//!
//! As a primary, the keys `secondaries:` entries name are loaded with the configuration
//! ([`set_ring`]); a request from such a secondary is checked ([`Key::verify_request`]),
//! refused with the TSIG error when it fails ([`append_error`]), and its answer signed
//! message by message ([`Key::sign_answer`]); a NOTIFY to it is signed.

use std::path::Path;

use hickory_proto::rr::Name;
use ring::hmac;
use serde::Deserialize;

/// TSIG's RR type and the class its record has.
const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds either way a signature's time may differ from ours (RFC 8945 §10 suggests 300).
const FUDGE: u16 = 300;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    algorithm: String,
    secret: String,
}

/// A TSIG key.
#[derive(Clone)]
pub struct Key {
    /// The key's name in lowercased wire form.
    name: Vec<u8>,
    /// The algorithm's name in wire form, e.g. `hmac-sha256.`.
    algorithm: Vec<u8>,
    key: hmac::Key,
    /// The secret, to tell two keys apart (never shown).
    secret: std::sync::Arc<[u8]>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.algorithm == other.algorithm && self.secret == other.secret
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Key").field("name", &self.name).finish()
    }
}

/// `keys/tsig/<name>.yaml` under `dir`.
pub fn key_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("keys").join("tsig").join(format!("{name}.yaml"))
}

impl Key {
    /// Reads the key `name` from `keys/tsig/<name>.yaml` under `dir`; the error names the
    /// file and what is wrong.
    pub fn load(dir: &Path, name: &str) -> Result<Self, String> {
        let path = key_path(dir, name);
        let at = path.display();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{at}: cannot read the TSIG key {name:?}: {e}"))?;
        let file: KeyFile = serde_saphyr::from_str(&text).map_err(|e| format!("{at}: {e}"))?;
        let (algorithm, digest) = match file.algorithm.as_str() {
            "hmac-sha256" => ("hmac-sha256.", hmac::HMAC_SHA256),
            "hmac-sha512" => ("hmac-sha512.", hmac::HMAC_SHA512),
            other => {
                return Err(format!(
                    "{at}: algorithm: {other:?} is not hmac-sha256 or hmac-sha512"
                ));
            }
        };
        let secret = data_encoding::BASE64
            .decode(file.secret.trim().as_bytes())
            .map_err(|e| format!("{at}: secret: not base64 ({e})"))?;
        if secret.is_empty() {
            return Err(format!("{at}: secret: empty"));
        }
        let name = Name::from_ascii(format!("{name}."))
            .map_err(|e| format!("{at}: the file name is not a DNS name: {e}"))?;
        Ok(Self {
            name: wire(&name.to_lowercase()),
            algorithm: wire(&Name::from_ascii(algorithm).expect("a valid name")),
            key: hmac::Key::new(digest, &secret),
            secret: secret.into(),
        })
    }

    /// Signs the request `message` (which has no TSIG yet) at `now` (Unix seconds): appends
    /// the TSIG record and counts it. Returns the request's MAC, which the answer is
    /// checked against.
    pub fn sign(&self, message: &mut Vec<u8>, now: u64) -> Vec<u8> {
        let mut signed = message.clone();
        self.variables(&mut signed, now, FUDGE, 0, &[]);
        let mac = hmac::sign(&self.key, &signed).as_ref().to_vec();
        let id = [message[0], message[1]];
        let mut rdata = self.algorithm.clone();
        rdata.extend_from_slice(&now.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&id);
        rdata.extend_from_slice(&[0, 0, 0, 0]); // error, other length
        message.extend_from_slice(&self.name);
        message.extend_from_slice(&TYPE_TSIG.to_be_bytes());
        message.extend_from_slice(&CLASS_ANY.to_be_bytes());
        message.extend_from_slice(&[0, 0, 0, 0]);
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(&rdata);
        let arcount = u16::from_be_bytes([message[10], message[11]]) + 1;
        message[10..12].copy_from_slice(&arcount.to_be_bytes());
        mac
    }

    /// The TSIG variables (§4.3.3) after the message.
    fn variables(&self, c: &mut Vec<u8>, time: u64, fudge: u16, error: u16, other: &[u8]) {
        c.extend_from_slice(&self.name);
        c.extend_from_slice(&CLASS_ANY.to_be_bytes());
        c.extend_from_slice(&[0, 0, 0, 0]);
        c.extend_from_slice(&self.algorithm);
        c.extend_from_slice(&time.to_be_bytes()[2..]);
        c.extend_from_slice(&fudge.to_be_bytes());
        c.extend_from_slice(&error.to_be_bytes());
        c.extend_from_slice(&(other.len() as u16).to_be_bytes());
        c.extend_from_slice(other);
    }
}

/// The keys `secondaries:` entries name, by file name, as the last successful load found
/// them: what a request from a secondary is checked with.
static RING: std::sync::LazyLock<arc_swap::ArcSwap<Vec<(String, Key)>>> =
    std::sync::LazyLock::new(|| arc_swap::ArcSwap::from_pointee(Vec::new()));
/// True while [`RING`] holds a key: all a query pays while no secondary needs a key.
static IN_USE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Replaces the keys secondaries' requests are checked with.
pub fn set_ring(keys: Vec<(String, Key)>) {
    IN_USE.store(!keys.is_empty(), std::sync::atomic::Ordering::Relaxed);
    RING.store(std::sync::Arc::new(keys));
}

/// The key `keys/tsig/<name>.yaml` as last loaded, when a secondary names it.
pub fn ring_key(name: &str) -> Option<Key> {
    RING.load()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, k)| k.clone())
}

/// True when some secondary must sign its requests: one relaxed load.
pub fn in_use() -> bool {
    IN_USE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why a signed request is refused (RFC 8945 §5.2), as its TSIG error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not signed, though the sender must sign.
    Unsigned,
    /// Signed with a key we do not have for the sender: BADKEY.
    BadKey,
    /// The MAC does not match: BADSIG.
    BadSig,
    /// The time is outside the fudge: BADTIME.
    BadTime,
}

impl Refusal {
    /// The TSIG error code of the answer; 0 for an unsigned request, whose answer has none.
    pub fn code(self) -> u16 {
        match self {
            Self::Unsigned => 0,
            Self::BadSig => 16,
            Self::BadKey => 17,
            Self::BadTime => 18,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unsigned => "not signed, and this sender must sign with a TSIG key",
            Self::BadKey => "signed with a key this sender is not given (BADKEY)",
            Self::BadSig => "the TSIG MAC does not match (BADSIG): another secret?",
            Self::BadTime => "the TSIG time is outside the fudge (BADTIME): are the clocks set?",
        })
    }
}

/// True when `message` ends with a TSIG record.
pub fn is_signed(message: &[u8]) -> bool {
    find_tsig(message).is_some()
}

/// The name (lowercased wire form) of the key `message` is signed with.
pub fn signer(message: &[u8]) -> Option<Vec<u8>> {
    find_tsig(message).map(|t| t.name)
}

impl Key {
    /// The key's name in lowercased wire form.
    pub fn wire_name(&self) -> &[u8] {
        &self.name
    }

    /// Checks the signed request `message` at `now` (Unix seconds): its MAC, which the
    /// answer is signed against, and the request without its TSIG record.
    pub fn verify_request(&self, message: &[u8], now: u64) -> Result<Signed, Refusal> {
        let tsig = find_tsig(message).ok_or(Refusal::Unsigned)?;
        if tsig.name != self.name || tsig.algorithm != self.algorithm {
            return Err(Refusal::BadKey);
        }
        let unsigned = unsigned(message, &tsig);
        let mut covered = unsigned.clone();
        self.variables(&mut covered, tsig.time, tsig.fudge, tsig.error, &tsig.other);
        hmac::verify(&self.key, &covered, &tsig.mac).map_err(|_| Refusal::BadSig)?;
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(Refusal::BadTime);
        }
        Ok(Signed {
            mac: tsig.mac,
            unsigned,
        })
    }

    /// Signs the answer `message` (in `buf[..len]`, which has room for the TSIG record) at
    /// `now`: the first message of an answer against the request's MAC with every TSIG
    /// variable, each later one against the MAC before it with the time only (§5.3.1).
    /// Returns the new length, and keeps the MAC in `prior` for the next message.
    pub fn sign_answer(
        &self,
        buf: &mut [u8],
        len: usize,
        prior: &mut Vec<u8>,
        first: bool,
        now: u64,
    ) -> Option<usize> {
        let mut covered = Vec::with_capacity(prior.len() + len + 64);
        covered.extend_from_slice(&(prior.len() as u16).to_be_bytes());
        covered.extend_from_slice(prior);
        covered.extend_from_slice(&buf[..len]);
        if first {
            self.variables(&mut covered, now, FUDGE, 0, &[]);
        } else {
            covered.extend_from_slice(&now.to_be_bytes()[2..]);
            covered.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = hmac::sign(&self.key, &covered).as_ref().to_vec();
        let record = self.record(&buf[..2], now, &mac, 0);
        let end = len + record.len();
        buf.get_mut(len..end)?.copy_from_slice(&record);
        let arcount = u16::from_be_bytes([buf[10], buf[11]]) + 1;
        buf[10..12].copy_from_slice(&arcount.to_be_bytes());
        *prior = mac;
        Some(end)
    }

    /// The bytes a TSIG record of this key adds to a message.
    pub fn record_len(&self) -> usize {
        self.record(&[0, 0], 0, &[0; 64], 0).len()
    }

    /// A TSIG record of this key.
    fn record(&self, id: &[u8], time: u64, mac: &[u8], error: u16) -> Vec<u8> {
        record(&self.name, &self.algorithm, id, time, mac, error)
    }
}

fn record(name: &[u8], algorithm: &[u8], id: &[u8], time: u64, mac: &[u8], error: u16) -> Vec<u8> {
    let mut rdata = algorithm.to_vec();
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(id);
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&[0, 0]); // other length
    let mut out = name.to_vec();
    out.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

/// Appends to the refusal `answer` of the signed `request` a TSIG record with `error` and
/// no MAC (RFC 8945 §5.2: BADKEY and BADSIG answers are not signed), under the request's
/// key name and algorithm. Nothing when the request is not signed.
pub fn append_error(answer: &mut Vec<u8>, request: &[u8], refusal: Refusal, now: u64) {
    let Some(tsig) = find_tsig(request) else {
        return;
    };
    if answer.len() < 12 {
        return;
    }
    let id = tsig.original_id.to_be_bytes();
    answer.extend_from_slice(&record(
        &tsig.name,
        &tsig.algorithm,
        &id,
        now,
        &[],
        refusal.code(),
    ));
    let arcount = u16::from_be_bytes([answer[10], answer[11]]) + 1;
    answer[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// `message` as it was before it was signed (its original ID, without the TSIG record);
/// `None` when it is not signed.
pub fn unsigned_request(message: &[u8]) -> Option<Vec<u8>> {
    find_tsig(message).map(|tsig| unsigned(message, &tsig))
}

/// A request whose signature checked.
#[derive(Debug)]
pub struct Signed {
    /// Its MAC, which the answer's first message covers.
    pub mac: Vec<u8>,
    /// The request as it was before signing: its original ID, without the TSIG record.
    pub unsigned: Vec<u8>,
}

/// `message` as it was before `tsig` was added: the original ID, one record fewer.
fn unsigned(message: &[u8], tsig: &Tsig) -> Vec<u8> {
    let mut out = message[..tsig.start].to_vec();
    out[..2].copy_from_slice(&tsig.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([out[10], out[11]]).saturating_sub(1);
    out[10..12].copy_from_slice(&arcount.to_be_bytes());
    out
}

/// Checks the messages of one answer in order (§5.3.1).
pub struct Verifier {
    key: Key,
    /// The MAC the next signed message covers: the request's, then the last one checked.
    prior: Vec<u8>,
    /// Unsigned messages since the last signed one, which the next signature covers.
    unsigned: Vec<u8>,
    /// How many in a row: RFC 8945 allows 99.
    unsigned_count: usize,
    first: bool,
}

impl Verifier {
    pub fn new(key: Key, request_mac: Vec<u8>) -> Self {
        Self {
            key,
            prior: request_mac,
            unsigned: Vec::new(),
            unsigned_count: 0,
            first: true,
        }
    }

    /// Checks the next message of the answer at `now` (Unix seconds).
    pub fn verify(&mut self, message: &[u8], now: u64) -> Result<(), String> {
        let Some(tsig) = find_tsig(message) else {
            if self.first {
                return Err("the answer is not signed (TSIG expected)".to_owned());
            }
            self.unsigned_count += 1;
            if self.unsigned_count > 99 {
                return Err("more than 99 unsigned messages in a row".to_owned());
            }
            self.unsigned.extend_from_slice(message);
            return Ok(());
        };
        if tsig.name != self.key.name || tsig.algorithm != self.key.algorithm {
            return Err("signed with another key or algorithm".to_owned());
        }
        if tsig.error != 0 {
            return Err(format!(
                "TSIG error {} from the primary",
                error_name(tsig.error)
            ));
        }
        let mut signed = Vec::with_capacity(self.unsigned.len() + message.len() + 128);
        signed.extend_from_slice(&(self.prior.len() as u16).to_be_bytes());
        signed.extend_from_slice(&self.prior);
        signed.extend_from_slice(&self.unsigned);
        // The message as it was before signing: its original ID and one record fewer.
        let mut header = [0u8; 12];
        header.copy_from_slice(&message[..12]);
        header[..2].copy_from_slice(&tsig.original_id.to_be_bytes());
        let arcount = u16::from_be_bytes([header[10], header[11]]).saturating_sub(1);
        header[10..12].copy_from_slice(&arcount.to_be_bytes());
        signed.extend_from_slice(&header);
        signed.extend_from_slice(&message[12..tsig.start]);
        if self.first {
            self.key
                .variables(&mut signed, tsig.time, tsig.fudge, tsig.error, &tsig.other);
        } else {
            signed.extend_from_slice(&tsig.time.to_be_bytes()[2..]);
            signed.extend_from_slice(&tsig.fudge.to_be_bytes());
        }
        // In constant time; a truncated MAC (RFC 8945 §5.2.2.1) is not accepted.
        if hmac::verify(&self.key.key, &signed, &tsig.mac).is_err() {
            return Err("TSIG MAC does not match: is the secret the primary's?".to_owned());
        }
        if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(format!(
                "TSIG time {} is more than {} s from ours ({now}): are the clocks set?",
                tsig.time, tsig.fudge
            ));
        }
        self.prior = tsig.mac;
        self.unsigned.clear();
        self.unsigned_count = 0;
        self.first = false;
        Ok(())
    }
}

fn error_name(error: u16) -> String {
    match error {
        16 => "BADSIG".to_owned(),
        17 => "BADKEY".to_owned(),
        18 => "BADTIME".to_owned(),
        22 => "BADTRUNC".to_owned(),
        other => other.to_string(),
    }
}

/// A TSIG record as received.
struct Tsig {
    /// Where the record starts in the message.
    start: usize,
    name: Vec<u8>,
    algorithm: Vec<u8>,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// The message's last record, when it is a TSIG record.
fn find_tsig(message: &[u8]) -> Option<Tsig> {
    let count = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *message.get(i)?,
            *message.get(i + 1)?,
        ])))
    };
    let questions = count(4)?;
    let records = count(6)? + count(8)? + count(10)?;
    if records == 0 {
        return None;
    }
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut start = at;
    for _ in 0..records {
        start = at;
        at = skip_name(message, at)?;
        let rdlength = count(at + 8)?;
        at += 10 + rdlength;
    }
    let name_end = skip_name(message, start)?;
    if count(name_end)? != usize::from(TYPE_TSIG) || at != message.len() {
        return None;
    }
    let rdata = message.get(name_end + 10..at)?;
    let algorithm_end = skip_name(rdata, 0)?;
    let field = |i: usize, n: usize| rdata.get(algorithm_end + i..algorithm_end + i + n);
    let time = field(0, 6)?
        .iter()
        .fold(0u64, |t, b| (t << 8) | u64::from(*b));
    let fudge = u16::from_be_bytes(field(6, 2)?.try_into().ok()?);
    let mac_len = usize::from(u16::from_be_bytes(field(8, 2)?.try_into().ok()?));
    let mac = field(10, mac_len)?.to_vec();
    let rest = 10 + mac_len;
    let original_id = u16::from_be_bytes(field(rest, 2)?.try_into().ok()?);
    let error = u16::from_be_bytes(field(rest + 2, 2)?.try_into().ok()?);
    let other_len = usize::from(u16::from_be_bytes(field(rest + 4, 2)?.try_into().ok()?));
    let other = field(rest + 6, other_len)?.to_vec();
    Some(Tsig {
        start,
        name: lowercase_name(message, start)?,
        algorithm: lowercase_name(rdata, 0)?,
        time,
        fudge,
        mac,
        original_id,
        error,
        other,
    })
}

/// Where the name at `at` ends (after its terminal label or pointer).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l if l < 64 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The uncompressed name at `at`, lowercased (TSIG names are never compressed).
fn lowercase_name(message: &[u8], at: usize) -> Option<Vec<u8>> {
    let end = skip_name(message, at)?;
    let bytes = message.get(at..end)?;
    if bytes.len() >= 2 && bytes[bytes.len() - 2] & 0xC0 == 0xC0 {
        return None;
    }
    Some(bytes.iter().map(u8::to_ascii_lowercase).collect())
}

fn wire(name: &Name) -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in name.iter() {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> Key {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "transfer-key");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("algorithm: hmac-sha256\nsecret: {secret}\n")).unwrap();
        Key::load(dir.path(), "transfer-key").unwrap()
    }

    #[test]
    fn a_key_file_is_checked_and_named_in_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(dir.path(), "k");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "algorithm: hmac-md5\nsecret: AAAA\n").unwrap();
        let error = Key::load(dir.path(), "k").unwrap_err();
        assert!(
            error.ends_with("k.yaml: algorithm: \"hmac-md5\" is not hmac-sha256 or hmac-sha512"),
            "{error}"
        );
        std::fs::write(&path, "algorithm: hmac-sha256\nsecret: not base64!\n").unwrap();
        assert!(
            Key::load(dir.path(), "k")
                .unwrap_err()
                .contains("secret: not base64")
        );
        assert!(
            Key::load(dir.path(), "absent")
                .unwrap_err()
                .contains("cannot read the TSIG key")
        );
    }

    /// A response signed as a primary would: the same construction, from the other side.
    fn respond(key: &Key, request_mac: &[u8], id: u16, now: u64) -> Vec<u8> {
        let mut message = vec![0u8; 12];
        message[..2].copy_from_slice(&id.to_be_bytes());
        message[2] = 0x84;
        let mut prior = (request_mac.len() as u16).to_be_bytes().to_vec();
        prior.extend_from_slice(request_mac);
        let mut signed = prior.clone();
        signed.extend_from_slice(&message);
        key.variables(&mut signed, now, FUDGE, 0, &[]);
        let mac = hmac::sign(&key.key, &signed).as_ref().to_vec();
        let mut rdata = key.algorithm.clone();
        rdata.extend_from_slice(&now.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&id.to_be_bytes());
        rdata.extend_from_slice(&[0, 0, 0, 0]);
        message.extend_from_slice(&key.name);
        message.extend_from_slice(&TYPE_TSIG.to_be_bytes());
        message.extend_from_slice(&CLASS_ANY.to_be_bytes());
        message.extend_from_slice(&[0, 0, 0, 0]);
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(&rdata);
        message[11] = 1;
        message
    }

    #[test]
    fn a_signed_answer_verifies_and_a_changed_one_does_not() {
        let key = key("c2VjcmV0IGtleSBieXRlcw==");
        let mut request = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
        let mac = key.sign(&mut request, 1_000_000);
        assert!(find_tsig(&request).is_some());
        let answer = respond(&key, &mac, 0x1234, 1_000_010);
        assert_eq!(
            Verifier::new(key.clone(), mac.clone()).verify(&answer, 1_000_020),
            Ok(())
        );
        let mut changed = answer.clone();
        changed[3] ^= 1;
        assert!(
            Verifier::new(key.clone(), mac.clone())
                .verify(&changed, 1_000_020)
                .unwrap_err()
                .contains("MAC does not match")
        );
        let other = self::key("b3RoZXIgc2VjcmV0");
        assert!(
            Verifier::new(other, mac.clone())
                .verify(&answer, 1_000_020)
                .is_err()
        );
        assert!(
            Verifier::new(key.clone(), mac.clone())
                .verify(&answer, 1_010_000)
                .unwrap_err()
                .contains("clocks")
        );
        let unsigned = &answer[..12];
        assert!(
            Verifier::new(key, mac)
                .verify(unsigned, 1_000_020)
                .unwrap_err()
                .contains("not signed")
        );
    }
}
