//! One DNSSEC signing key (RFC 4034 §2): its DNSKEY RDATA, key tag and DS, signatures
//! over ring, and BIND's key files both ways, so that `dnssec-dsfromkey`, `dnssec-signzone`
//! and `dnssec-settime` read the keys lbdns makes and lbdns loads keys BIND made.
//!
//! BIND keeps a key as two files named `K<zone>+<alg>+<tag>`: `.key` holds the DNSKEY
//! record in presentation form (after `;` comment lines), `.private` the private key
//! (`Private-key-format: v1.3`, mode 0600) and the key's timing metadata. ECDSA P-256's
//! private key there is the 32-byte scalar, Ed25519's the 32-byte seed (RFC 6605, 8080).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};

/// The DNSSEC algorithms lbdns signs with (IANA numbers, RFC 8624 "MUST implement").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 13, RFC 6605: the default, as Knot's and BIND's.
    #[default]
    EcdsaP256Sha256,
    /// 15, RFC 8080.
    Ed25519,
}

impl Algorithm {
    /// The algorithm number in DNSKEY, RRSIG and DS records.
    pub fn number(self) -> u8 {
        match self {
            Self::EcdsaP256Sha256 => 13,
            Self::Ed25519 => 15,
        }
    }

    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            13 => Some(Self::EcdsaP256Sha256),
            15 => Some(Self::Ed25519),
            _ => None,
        }
    }

    /// The mnemonic of the IANA registry, as BIND writes it in `.private` files.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Self::Ed25519 => "ED25519",
        }
    }

    /// The length of the public key field of a DNSKEY and of an RRSIG's signature.
    fn public_len(self) -> usize {
        match self {
            Self::EcdsaP256Sha256 => 64,
            Self::Ed25519 => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// DNSKEY flags of a zone-signing key (Zone Key bit).
pub const ZSK: u16 = 256;
/// DNSKEY flags of a key-signing key (Zone Key and Secure Entry Point bits).
pub const KSK: u16 = 257;

/// When a key enters and leaves each state (RFC 7583 §3.3), in seconds since the Unix
/// epoch; the fields BIND keeps in a `.private` file. lbdns's own lifecycle reads and
/// writes them; a key without `activate` is not used to sign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTimes {
    pub created: Option<u64>,
    pub publish: Option<u64>,
    pub activate: Option<u64>,
    pub inactive: Option<u64>,
    pub delete: Option<u64>,
    pub sync_publish: Option<u64>,
    pub sync_delete: Option<u64>,
}

impl KeyTimes {
    /// The `.private` file's names for each field, in BIND's order.
    fn fields_mut(&mut self) -> [(&'static str, &mut Option<u64>); 7] {
        [
            ("Created", &mut self.created),
            ("Publish", &mut self.publish),
            ("Activate", &mut self.activate),
            ("Inactive", &mut self.inactive),
            ("Delete", &mut self.delete),
            ("SyncPublish", &mut self.sync_publish),
            ("SyncDelete", &mut self.sync_delete),
        ]
    }
}

/// Makes the key directory `dir` (and its parents) when missing, readable by its owner
/// only: it holds private keys.
pub fn create_key_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: the private key does not match the public key in {public}")]
    Mismatch { path: PathBuf, public: PathBuf },
    #[error("the key generator failed (ring): {0}")]
    Generate(&'static str),
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A zone's signing key: the key pair, its DNSKEY flags and timing metadata.
pub struct ZoneKey {
    algorithm: Algorithm,
    flags: u16,
    /// The DNSKEY public key field: x||y for P-256 (RFC 6605 §4), the key for Ed25519.
    public: Vec<u8>,
    /// The private key as BIND stores it: the P-256 scalar or the Ed25519 seed.
    private: Vec<u8>,
    pair: Pair,
    pub times: KeyTimes,
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneKey")
            .field("algorithm", &self.algorithm)
            .field("flags", &self.flags)
            .field("key_tag", &self.key_tag())
            .finish_non_exhaustive()
    }
}

impl ZoneKey {
    /// A new key with `flags` ([`ZSK`] or [`KSK`]), from the system's random source,
    /// published and active from now.
    pub fn generate(algorithm: Algorithm, flags: u16) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let (pair, public, private) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate("ECDSA P-256"))?;
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .map_err(|_| KeyError::Generate("ECDSA P-256 PKCS#8"))?;
                let private = p256_scalar(pkcs8.as_ref())
                    .ok_or(KeyError::Generate("ECDSA P-256 PKCS#8 layout"))?
                    .to_vec();
                // ring gives the uncompressed point 04||x||y; DNSKEY holds x||y.
                let public = pair.public_key().as_ref()[1..].to_vec();
                (Pair::Ecdsa(pair), public, private)
            }
            Algorithm::Ed25519 => {
                let mut seed = [0u8; 32];
                ring::rand::SecureRandom::fill(&rng, &mut seed)
                    .map_err(|_| KeyError::Generate("Ed25519"))?;
                let (pair, public) =
                    ed25519_pair(&seed, None).ok_or(KeyError::Generate("Ed25519 key from seed"))?;
                (pair, public, seed.to_vec())
            }
        };
        let now = unix_now();
        Ok(Self {
            algorithm,
            flags,
            public,
            private,
            pair,
            times: KeyTimes {
                created: Some(now),
                publish: Some(now),
                activate: Some(now),
                ..KeyTimes::default()
            },
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// True for a key-signing key (the Secure Entry Point bit).
    pub fn is_ksk(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Sets or clears the REVOKE bit (RFC 5011), which changes the key tag.
    pub fn set_flags(&mut self, flags: u16) {
        self.flags = flags;
    }

    /// The DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut rdata = Vec::with_capacity(4 + self.public.len());
        rdata.extend_from_slice(&self.flags.to_be_bytes());
        rdata.push(3);
        rdata.push(self.algorithm.number());
        rdata.extend_from_slice(&self.public);
        rdata
    }

    /// The key tag of RFC 4034 Appendix B, which RRSIG and DS records name the key by.
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.dnskey_rdata())
    }

    /// The signature field of an RRSIG over `data` (RFC 4034 §3.1.8.1: the RRSIG RDATA
    /// without its signature, then the RRset in canonical form). ECDSA's is r||s, 64
    /// bytes (RFC 6605 §4); Ed25519's 64 bytes (RFC 8080 §4).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.sign_into(data, &mut out);
        out
    }

    /// [`ZoneKey::sign`], the signature appended to `out`.
    pub fn sign_into(&self, data: &[u8], out: &mut Vec<u8>) {
        match &self.pair {
            Pair::Ecdsa(pair) => out.extend_from_slice(
                pair.sign(&SystemRandom::new(), data)
                    .expect("ECDSA signing with the system random source")
                    .as_ref(),
            ),
            Pair::Ed25519(pair) => out.extend_from_slice(pair.sign(data).as_ref()),
        }
    }

    /// The DS RDATA for this key with digest type 2, SHA-256 (RFC 4509): `owner` is the
    /// zone's name in wire form (lowercased here, as the canonical form wants).
    pub fn ds_rdata(&self, owner: &[u8]) -> Vec<u8> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&owner.to_ascii_lowercase());
        context.update(&self.dnskey_rdata());
        let digest = context.finish();
        let mut rdata = Vec::with_capacity(4 + digest.as_ref().len());
        rdata.extend_from_slice(&self.key_tag().to_be_bytes());
        rdata.push(self.algorithm.number());
        rdata.push(2);
        rdata.extend_from_slice(digest.as_ref());
        rdata
    }

    /// BIND's base name of the key's files for `zone` (presentation form, with or without
    /// the final dot): `Kexample.com.+013+12345`.
    pub fn file_stem(&self, zone: &str) -> String {
        file_stem(zone, self.algorithm, self.key_tag())
    }

    /// The DNSKEY record in presentation form, as the `.key` file holds it:
    /// `example.com. IN DNSKEY 257 3 13 BASE64`.
    pub fn dnskey_text(&self, zone: &str) -> String {
        format!(
            "{} IN DNSKEY {} 3 {} {}",
            fqdn(zone),
            self.flags,
            self.algorithm.number(),
            BASE64.encode(&self.public)
        )
    }

    /// Writes the key's two files for `zone` into `dir` as BIND does, each written whole
    /// before it replaces an older one: `.key` readable by all, `.private` by the owner
    /// only (0600). Returns the `.key` file's path.
    pub fn write_files(&self, dir: &Path, zone: &str) -> Result<PathBuf, KeyError> {
        let stem = self.file_stem(zone);
        let kind = if self.is_ksk() {
            "key-signing"
        } else {
            "zone-signing"
        };
        let mut public = format!(
            "; This is a {kind} key, keyid {}, for {}\n",
            self.key_tag(),
            fqdn(zone)
        );
        let mut private = format!(
            "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
            self.algorithm.number(),
            self.algorithm.mnemonic(),
            BASE64.encode(&self.private)
        );
        let mut times = self.times.clone();
        for (name, value) in times.fields_mut() {
            if let Some(at) = *value {
                let stamp = timestamp(at);
                public.push_str(&format!("; {name}: {stamp}\n"));
                private.push_str(&format!("{name}: {stamp}\n"));
            }
        }
        public.push_str(&self.dnskey_text(zone));
        public.push('\n');
        let key_path = dir.join(format!("{stem}.key"));
        write_file(&dir.join(format!("{stem}.private")), &private, 0o600)?;
        write_file(&key_path, &public, 0o644)?;
        Ok(key_path)
    }

    /// Reads a key from BIND's files: `path` is either one (`K...+013+12345.key` or
    /// `.private`); the other is found beside it.
    pub fn read_files(path: &Path) -> Result<Self, KeyError> {
        let key_path = path.with_extension("key");
        let private_path = path.with_extension("private");
        let key_text = read(&key_path)?;
        let private_text = read(&private_path)?;
        let format = |path: &Path, message: String| KeyError::Format {
            path: path.to_owned(),
            message,
        };
        let (flags, algorithm_number, public) =
            parse_dnskey(&key_text).map_err(|m| format(&key_path, m))?;
        let algorithm = Algorithm::from_number(algorithm_number).ok_or_else(|| {
            format(
                &key_path,
                format!(
                    "algorithm {algorithm_number} is not one lbdns signs with \
                     (13 ECDSAP256SHA256 or 15 ED25519)"
                ),
            )
        })?;
        if public.len() != algorithm.public_len() {
            return Err(format(
                &key_path,
                format!(
                    "the public key is {} bytes; {algorithm} keys are {}",
                    public.len(),
                    algorithm.public_len()
                ),
            ));
        }
        let mut times = KeyTimes::default();
        let mut private = None;
        let mut private_algorithm = None;
        for line in private_text.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim() {
                "PrivateKey" => {
                    private = Some(BASE64.decode(value.as_bytes()).map_err(|e| {
                        format(&private_path, format!("PrivateKey is not base64: {e}"))
                    })?)
                }
                "Algorithm" => {
                    private_algorithm = value.split_whitespace().next().map(str::to_owned)
                }
                name => {
                    for (field, slot) in times.fields_mut() {
                        if field == name {
                            *slot = Some(parse_timestamp(value).ok_or_else(|| {
                                format(
                                    &private_path,
                                    format!("{name}: {value:?} is not a time YYYYMMDDHHMMSS"),
                                )
                            })?);
                        }
                    }
                }
            }
        }
        if private_algorithm.as_deref() != Some(&algorithm.number().to_string()) {
            return Err(format(
                &private_path,
                format!(
                    "Algorithm is {}, the .key file says {}",
                    private_algorithm.as_deref().unwrap_or("missing"),
                    algorithm.number()
                ),
            ));
        }
        let mut private =
            private.ok_or_else(|| format(&private_path, "no PrivateKey line".into()))?;
        let mismatch = || KeyError::Mismatch {
            path: private_path.clone(),
            public: key_path.clone(),
        };
        let pair = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                // OpenSSL writes the scalar without its leading zero bytes (one key in 256
                // from dnssec-keygen has 31); ring wants all 32.
                if private.len() < 32 {
                    let mut padded = vec![0u8; 32 - private.len()];
                    padded.extend_from_slice(&private);
                    private = padded;
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&public);
                Pair::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &private,
                        &point,
                        &SystemRandom::new(),
                    )
                    .map_err(|_| mismatch())?,
                )
            }
            Algorithm::Ed25519 => {
                ed25519_pair(&private, Some(&public))
                    .ok_or_else(mismatch)?
                    .0
            }
        };
        Ok(Self {
            algorithm,
            flags,
            public,
            private,
            pair,
            times,
        })
    }
}

/// RFC 4034 Appendix B over DNSKEY RDATA.
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, &byte) in rdata.iter().enumerate() {
        sum += if i & 1 == 0 {
            u32::from(byte) << 8
        } else {
            u32::from(byte)
        };
    }
    sum += (sum >> 16) & 0xffff;
    (sum & 0xffff) as u16
}

/// `Kexample.com.+013+01234`, BIND's name for a key's files.
pub fn file_stem(zone: &str, algorithm: Algorithm, tag: u16) -> String {
    format!("K{}+{:03}+{tag:05}", fqdn(zone), algorithm.number())
}

/// `zone` lowercased, with its final dot.
fn fqdn(zone: &str) -> String {
    let zone = zone.to_ascii_lowercase();
    if zone.ends_with('.') {
        zone
    } else {
        format!("{zone}.")
    }
}

/// The flags, algorithm and public key of the DNSKEY record in a `.key` file.
fn parse_dnskey(text: &str) -> Result<(u16, u8, Vec<u8>), String> {
    let line = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or_default())
        .find(|l| {
            l.split_whitespace()
                .any(|w| w.eq_ignore_ascii_case("DNSKEY"))
        })
        .ok_or("no DNSKEY record")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case("DNSKEY"))
        .expect("found above");
    let field = |i: usize, name: &str| {
        words
            .get(at + i)
            .copied()
            .ok_or(format!("the DNSKEY record has no {name}"))
    };
    let flags = field(1, "flags")?
        .parse::<u16>()
        .map_err(|_| "the DNSKEY flags are not a number 0..65535".to_owned())?;
    if field(2, "protocol")? != "3" {
        return Err("the DNSKEY protocol is not 3".to_owned());
    }
    let algorithm = field(3, "algorithm")?
        .parse::<u8>()
        .map_err(|_| "the DNSKEY algorithm is not a number".to_owned())?;
    let public = words[(at + 4).min(words.len())..].concat();
    let public = BASE64
        .decode(public.as_bytes())
        .map_err(|e| format!("the DNSKEY public key is not base64: {e}"))?;
    Ok((flags, algorithm, public))
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `text` to `path` with `mode`, through a temporary file renamed over it.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile creates the file 0600, so the private key is never readable by others.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYYMMDDHHMMSS` in UTC, BIND's key times and RRSIG's presentation form.
pub fn timestamp(unix: u64) -> String {
    let text = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix),
    )
    .to_string();
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Reads `YYYYMMDDHHMMSS` (UTC).
pub fn parse_timestamp(text: &str) -> Option<u64> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[8..10],
        &text[10..12],
        &text[12..14]
    );
    let at = humantime::parse_rfc3339(&rfc3339).ok()?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The private scalar inside ring's P-256 PKCS#8 document: the OCTET STRING of 32 bytes
/// that follows `version 1` in the ECPrivateKey (RFC 5915 §3).
fn p256_scalar(pkcs8: &[u8]) -> Option<&[u8]> {
    const BEFORE: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8.windows(BEFORE.len()).position(|w| w == BEFORE)? + BEFORE.len();
    pkcs8.get(at..at + 32)
}

fn ed25519_pair(seed: &[u8], public: Option<&[u8]>) -> Option<(Pair, Vec<u8>)> {
    let pair = match public {
        Some(public) => Ed25519KeyPair::from_seed_and_public_key(seed, public).ok()?,
        None => Ed25519KeyPair::from_seed_unchecked(seed).ok()?,
    };
    let public = pair.public_key().as_ref().to_vec();
    Some((Pair::Ed25519(pair), public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_of_rfc_4034_example() {
        // RFC 4034 §5.4's DS example: the DNSKEY of dskey.example.com has key tag 60485.
        let public = BASE64
            .decode(
                b"AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
            )
            .unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&public);
        assert_eq!(key_tag(&rdata), 60485);
    }

    #[test]
    fn a_bind_scalar_without_its_leading_zero_byte_is_read() {
        // Written by dnssec-keygen (BIND 9.18): the base64 PrivateKey holds 31 bytes.
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("Kexample.com.+013+21286");
        std::fs::write(
            stem.with_extension("key"),
            "example.com. IN DNSKEY 256 3 13 vElg3rKiWI5rdzCbwdFAAnII5BwcA2bkvcBFyRRhe03R9rNKTR4Qaa7/ rwCywL4y+H3x/eC7IMyi3xgSNTiOqQ==\n",
        )
        .unwrap();
        std::fs::write(
            stem.with_extension("private"),
            "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: 64dSxvoJbTSrCYYYG4HHg2zLw3p2nkdpOErR/GaplA==\n",
        )
        .unwrap();
        let key = ZoneKey::read_files(&stem.with_extension("key")).unwrap();
        assert_eq!(key_tag(&key.dnskey_rdata()), 21286);
        assert_signs_verifiably(&key);
    }

    /// The key's signature verifies with ring against its public key alone.
    fn assert_signs_verifiably(key: &ZoneKey) {
        let (verifier, public): (&dyn ring::signature::VerificationAlgorithm, _) =
            match key.algorithm {
                Algorithm::EcdsaP256Sha256 => (
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    [&[4u8][..], &key.public].concat(),
                ),
                Algorithm::Ed25519 => (&ring::signature::ED25519, key.public.clone()),
            };
        ring::signature::UnparsedPublicKey::new(verifier, &public)
            .verify(b"data", &key.sign(b"data"))
            .unwrap();
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(timestamp(0), "19700101000000");
        assert_eq!(parse_timestamp("20240229123456"), Some(1709210096));
        assert_eq!(timestamp(1709210096), "20240229123456");
        assert_eq!(parse_timestamp("2024022912345"), None);
    }

    #[test]
    fn keys_written_are_read_back_and_sign_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        for algorithm in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let key = ZoneKey::generate(algorithm, KSK).unwrap();
            let path = key.write_files(dir.path(), "example.com").unwrap();
            let again = ZoneKey::read_files(&path).unwrap();
            assert_eq!(again.dnskey_rdata(), key.dnskey_rdata());
            assert_eq!(again.times, key.times);
            assert_signs_verifiably(&again);
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::metadata(path.with_extension("private")).unwrap();
            assert_eq!(private.permissions().mode() & 0o777, 0o600);
        }
    }
}
