//! The `dnssec:` block of a site file (SPEC §11): present, lbdns signs the zone itself.
//!
//! ```yaml
//! dnssec:
//!   algorithm: ecdsap256sha256   # ecdsap256sha256 (default) | ed25519
//!   denial: nsec                 # nsec (default) | nsec3 | compact
//!   signature_validity: 14d      # RRSIG lifetime; re-signed when less than a third is left
//!   zsk_lifetime: 90d            # automatic ZSK rollover; 0 = never
//! ```
//!
//! `dnssec:` written with no value signs with every default.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::Problem;
use super::spec::Lined;
use crate::dnssec::key::Algorithm;

/// The block as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Lined<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Lined<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_validity: Option<Lined<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zsk_lifetime: Option<Lined<String>>,
}

/// `dnssec:` with no value is the block with every default, not "no DNSSEC".
pub fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Lined<DnssecSpec>>, D::Error> {
    let lined = Lined::<Option<DnssecSpec>>::deserialize(deserializer)?;
    Ok(Some(Lined {
        value: lined.value.unwrap_or_default(),
        line: lined.line,
    }))
}

/// How a zone denies existence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Denial {
    /// NSEC records (RFC 4034), one chain over the zone's names.
    #[default]
    Nsec,
    /// NSEC3 with RFC 9276's parameters: SHA-1, no extra iteration, no salt.
    Nsec3,
    /// Compact denial (RFC 9824): NSEC records made for each queried name.
    Compact,
}

/// As `lbdns check` and `lbdns keys list` describe it.
impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nsec => "nsec (an NSEC chain over the zone's names)",
            Self::Nsec3 => {
                "nsec3 (an NSEC3 chain, RFC 9276: SHA-1, no extra iteration, no salt, no opt-out)"
            }
            Self::Compact => "compact (RFC 9824: an NSEC made for each name asked)",
        })
    }
}

/// The checked block: how lbdns signs the zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnssecPolicy {
    pub algorithm: Algorithm,
    pub denial: Denial,
    /// How long an RRSIG is valid from its inception.
    pub signature_validity: Duration,
    /// How long a ZSK signs before it is rolled; `None`: never.
    pub zsk_lifetime: Option<Duration>,
}

impl Default for DnssecPolicy {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::EcdsaP256Sha256,
            denial: Denial::Nsec,
            signature_validity: DEFAULT_VALIDITY,
            zsk_lifetime: Some(DEFAULT_ZSK_LIFETIME),
        }
    }
}

/// As `lbdns check` and `lbdns keys list` describe it.
impl std::fmt::Display for DnssecPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, denial {}, signatures valid {}, ",
            self.algorithm.mnemonic(),
            self.denial,
            span(self.signature_validity)
        )?;
        match self.zsk_lifetime {
            Some(lifetime) => write!(f, "a new ZSK every {}", span(lifetime)),
            None => f.write_str("the ZSK never rolled"),
        }
    }
}

/// A duration as the site file writes it: `14d`, `36h`, or seconds.
fn span(duration: Duration) -> String {
    match duration.as_secs() {
        s if s % DAY == 0 => format!("{}d", s / DAY),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

const DAY: u64 = 86_400;
const DEFAULT_VALIDITY: Duration = Duration::from_secs(14 * DAY);
const DEFAULT_ZSK_LIFETIME: Duration = Duration::from_secs(90 * DAY);
/// Shorter signatures would be re-signed more often than resolvers refresh their caches.
const MIN_VALIDITY: Duration = Duration::from_secs(3_600);
/// RRSIG times are 32-bit serial numbers (RFC 4034 §3.1.5); a year keeps far from that.
const MAX_VALIDITY: Duration = Duration::from_secs(366 * DAY);

/// Checks the block, adding a problem per bad key to `problems`.
pub fn validate(spec: &Lined<DnssecSpec>, problems: &mut Vec<Problem>) -> Option<DnssecPolicy> {
    let before = problems.len();
    let mut report = |key: &str, line: Option<u64>, message: String| {
        problems.push(Problem {
            line: line.or(spec.line),
            field: format!("dnssec.{key}"),
            message,
        })
    };
    let mut policy = DnssecPolicy::default();
    if let Some(text) = &spec.algorithm {
        match text.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" | "13" => policy.algorithm = Algorithm::EcdsaP256Sha256,
            "ed25519" | "15" => policy.algorithm = Algorithm::Ed25519,
            _ => report(
                "algorithm",
                text.line,
                format!(
                    "algorithm {:?} is not one lbdns signs with: ecdsap256sha256 (the default) or ed25519",
                    text.value
                ),
            ),
        }
    }
    if let Some(text) = &spec.denial {
        match text.to_ascii_lowercase().as_str() {
            "nsec" => policy.denial = Denial::Nsec,
            "nsec3" => policy.denial = Denial::Nsec3,
            "compact" => policy.denial = Denial::Compact,
            _ => report(
                "denial",
                text.line,
                format!(
                    "denial {:?} is not one of nsec (the default), nsec3 or compact",
                    text.value
                ),
            ),
        }
    }
    if let Some(text) = &spec.signature_validity {
        match parse_duration(text) {
            Some(d) if (MIN_VALIDITY..=MAX_VALIDITY).contains(&d) => policy.signature_validity = d,
            _ => report(
                "signature_validity",
                text.line,
                format!(
                    "signature_validity {:?} must be a duration from 1h to 366d (e.g. 14d)",
                    text.value
                ),
            ),
        }
    }
    if let Some(text) = &spec.zsk_lifetime {
        match parse_duration(text) {
            Some(Duration::ZERO) => policy.zsk_lifetime = None,
            Some(d) if d > policy.signature_validity => policy.zsk_lifetime = Some(d),
            _ => report(
                "zsk_lifetime",
                text.line,
                format!(
                    "zsk_lifetime {:?} must be 0 (never roll) or a duration longer than signature_validity ({}), e.g. 90d",
                    text.value,
                    humantime::format_duration(policy.signature_validity)
                ),
            ),
        }
    }
    (problems.len() == before).then_some(policy)
}

/// `14d`, `36h`, `2w`, or a number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<DnssecPolicy, Vec<Problem>> {
        let spec: Lined<DnssecSpec> = serde_saphyr::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        validate(&spec, &mut problems).ok_or(problems)
    }

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(check("{}").unwrap(), DnssecPolicy::default());
        let policy =
            check("algorithm: ed25519\ndenial: nsec3\nsignature_validity: 7d\nzsk_lifetime: 0\n")
                .unwrap();
        assert_eq!(
            policy,
            DnssecPolicy {
                algorithm: Algorithm::Ed25519,
                denial: Denial::Nsec3,
                signature_validity: Duration::from_secs(7 * DAY),
                zsk_lifetime: None,
            }
        );
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let problems =
            check("algorithm: rsasha1\ndenial: nsec5\nsignature_validity: 10m\nzsk_lifetime: 1d\n")
                .unwrap_err();
        let fields: Vec<(&str, Option<u64>)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.line))
            .collect();
        assert_eq!(
            fields,
            [
                ("dnssec.algorithm", Some(1)),
                ("dnssec.denial", Some(2)),
                ("dnssec.signature_validity", Some(3)),
                ("dnssec.zsk_lifetime", Some(4)),
            ]
        );
        assert!(problems[0].message.contains("ecdsap256sha256"));
        assert!(
            problems[3]
                .message
                .contains("longer than signature_validity (14days)")
        );
    }
}
