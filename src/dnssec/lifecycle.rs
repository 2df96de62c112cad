//! The life of a zone's signing keys as RFC 7583 times it, over key metadata alone: no key
//! material and no clock (every question takes `now`), so a test moves `now` through every
//! step of a rollover.
//!
//! A zone has a KSK, which signs the DNSKEY RRset and whose DS the parent holds, and a ZSK,
//! which signs everything else. Each key carries the times of RFC 7583 §3.1: published (in
//! the DNSKEY RRset), active (signing), retired (no longer signing), removed (out of the
//! DNSKEY RRset); a KSK also has the time its CDS/CDNSKEY appear at the apex, RFC 7583's
//! submission (RFC 7344 lets the parent pick the DS up from them). A time in the future is
//! a scheduled event; a missing one is not scheduled yet. Tags are unique within a zone: the
//! key maker draws again on a clash, as Knot does.
//!
//! ZSK rollover, pre-publication (RFC 7583 §3.2.1), every `zsk_lifetime` or by command:
//!
//! ```text
//!  old ZSK  --active--------------------------|retired-------------------|removed
//!  new ZSK            |published (Ipub)-------|active---------------------------------
//!                     Tpub                    Tact = Tpub + Ipub         Trem = Tact + Iret
//!  Ipub = Dprp + TTL(DNSKEY)     Iret = Dprp + TTLsig (the largest TTL a signature covers)
//! ```
//!
//! KSK rollover, double signature (RFC 7583 §3.3.1), by command. Both KSKs sign the DNSKEY
//! RRset, so a resolver holding either DS validates throughout; the CDS/CDNSKEY move to the
//! new key once every cache can see it, and the old key goes once the parent's DS has moved
//! (the operator says when: only the parent knows) and the old DS has left the caches:
//!
//! ```text
//!  old KSK  --active, CDS---|active-----------------------------------|removed
//!  new KSK  |active---------|active, CDS------------------------------------------
//!           Tpub = Tact     Tsbm = Tpub + Ipub     Tds: DS seen       Trem = Tds + Dprp + TTL(DS)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
pub type Time = u64;

/// Hidden, for tests only: seconds added to the clock the key lifecycle and its warnings
/// go by ([`now`]), never to the times in signatures (validators check those against
/// their own clocks), so a test steps a running server through a rollover without
/// waiting. Read by `lbdns serve` and `lbdns keys` alike.
pub const CLOCK_OFFSET_ENV: &str = "LBDNS_KEY_CLOCK_OFFSET";

/// The time the key lifecycle goes by: now, plus the tests' offset. Everything below it
/// takes `now` as an argument, so unit tests inject their own.
pub fn now() -> Time {
    let offset = std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    crate::dnssec::key::unix_now() + offset
}

/// Dprp: how long lbdns allows a change of the zone to reach every server of it and every
/// re-signed answer (Knot's default `propagation-delay`).
pub const PROPAGATION_DELAY: u64 = 3600;

/// The TTL assumed for the DS RRset at the parent: a day, as most TLDs give it (.com, .net,
/// .org, .de); a parent with a longer one needs `--ds-seen` that much later.
pub const PARENT_DS_TTL: u64 = 86_400;

/// What a key signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Key-signing key: signs the DNSKEY RRset; the parent's DS points at it (flags 257).
    Ksk,
    /// Zone-signing key: signs every other RRset (flags 256).
    Zsk,
}

impl Role {
    /// The DNSKEY flags field of a key in this role (RFC 4034 §2.1.1: zone key, plus SEP for
    /// a KSK).
    pub fn flags(self) -> u16 {
        match self {
            Role::Ksk => 257,
            Role::Zsk => 256,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Ksk => "KSK",
            Role::Zsk => "ZSK",
        })
    }
}

/// One key's role and timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMeta {
    pub tag: u16,
    pub role: Role,
    #[serde(with = "text_time")]
    pub created: Time,
    #[serde(
        default,
        with = "text_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub published: Option<Time>,
    #[serde(
        default,
        with = "text_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub active: Option<Time>,
    /// KSK only: from when its CDS and CDNSKEY are at the apex.
    #[serde(
        default,
        with = "text_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub submitted: Option<Time>,
    #[serde(
        default,
        with = "text_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retired: Option<Time>,
    #[serde(
        default,
        with = "text_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub removed: Option<Time>,
}

/// Times written as RFC 3339 UTC timestamps, so the state file reads like `lbdns keys list`.
mod text_time {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Time;

    pub fn serialize<S: Serializer>(time: &Time, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&super::rfc3339(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let text = String::deserialize(deserializer)?;
        let time = humantime::parse_rfc3339(&text).map_err(|e| {
            D::Error::custom(format!(
                "{text:?} is not a time like 2026-12-05T13:00:00Z: {e}"
            ))
        })?;
        time.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| D::Error::custom(format!("{text:?} is before 1970")))
    }

    pub mod opt {
        use serde::{Deserializer, Serializer};

        use super::Time;

        pub fn serialize<S: Serializer>(
            time: &Option<Time>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Time>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

/// Whether the event at `time` has happened by `now`.
fn reached(time: Option<Time>, now: Time) -> bool {
    time.is_some_and(|t| t <= now)
}

impl KeyMeta {
    fn new(tag: u16, role: Role, now: Time) -> KeyMeta {
        KeyMeta {
            tag,
            role,
            created: now,
            published: None,
            active: None,
            submitted: None,
            retired: None,
            removed: None,
        }
    }

    /// Where the key is in its life at `now`.
    pub fn state(&self, now: Time) -> KeyState {
        if reached(self.removed, now) {
            KeyState::Removed
        } else if reached(self.retired, now) {
            KeyState::Retired
        } else if reached(self.active, now) {
            KeyState::Active
        } else if reached(self.published, now) {
            KeyState::Published
        } else {
            KeyState::Generated
        }
    }

    fn in_dnskey(&self, now: Time) -> bool {
        reached(self.published, now) && !reached(self.removed, now)
    }

    fn signing(&self, now: Time) -> bool {
        reached(self.active, now) && !reached(self.retired, now)
    }

    /// The key's own events still to come, earliest first.
    fn upcoming(&self, now: Time) -> impl Iterator<Item = (Time, Event)> {
        let events = [
            (self.published, Event::Publish),
            (self.active, Event::Activate),
            (self.submitted, Event::Submit),
            (self.retired, Event::Retire),
            (self.removed, Event::Remove),
        ];
        let mut upcoming: Vec<(Time, Event)> = events
            .into_iter()
            .filter_map(|(time, event)| Some((time.filter(|&t| t > now)?, event)))
            .collect();
        upcoming.sort_by_key(|&(time, _)| time);
        upcoming.into_iter()
    }
}

/// A key's place in its life (RFC 7583 §3.1's states, "ready" folded into published).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Made, not yet in the DNSKEY RRset.
    Generated,
    /// In the DNSKEY RRset, not signing yet.
    Published,
    /// Signing.
    Active,
    /// In the DNSKEY RRset, no longer signing, waiting for its signatures to leave caches.
    Retired,
    /// Out of the zone.
    Removed,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Generated => "generated",
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Removed => "removed",
        })
    }
}

/// Something that happens to a key at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enters the DNSKEY RRset.
    Publish,
    /// Starts signing.
    Activate,
    /// Its CDS and CDNSKEY appear at the apex.
    Submit,
    /// Stops signing.
    Retire,
    /// Leaves the DNSKEY RRset.
    Remove,
    /// An active ZSK's successor is made and published: the start of a ZSK rollover.
    Successor,
    /// The operator confirms the parent serves the new KSK's DS (`lbdns keys roll-ksk
    /// --ds-seen`); not a time lbdns can know.
    DsSeen,
}

impl Event {
    /// The word used in `lbdns keys list`, the status page and the metric's label.
    pub fn name(self) -> &'static str {
        match self {
            Event::Publish => "publish",
            Event::Activate => "activate",
            Event::Submit => "submit",
            Event::Retire => "retire",
            Event::Remove => "remove",
            Event::Successor => "successor",
            Event::DsSeen => "ds-seen",
        }
    }
}

/// A key's next event: when (`None`: when the operator says so) and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextEvent {
    pub at: Option<Time>,
    pub event: Event,
}

/// The intervals of RFC 7583 that the timeline is built from, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// TTL of the DNSKEY RRset.
    pub dnskey_ttl: u64,
    /// TTLsig: the largest TTL of an RRset a ZSK signature covers (negative answers too).
    pub max_zone_ttl: u64,
    /// Dprp: how long a change takes to reach every server of the zone.
    pub propagation_delay: u64,
    /// TTL of the DS RRset at the parent.
    pub parent_ds_ttl: u64,
    /// Time between ZSK rollovers; 0 = never.
    pub zsk_lifetime: u64,
}

impl Timing {
    /// The intervals for a zone whose largest TTL is `max_ttl` (the DNSKEY RRset's TTL is
    /// at most that) and whose ZSK lives `zsk_lifetime` seconds (0: forever).
    pub fn new(max_ttl: u64, zsk_lifetime: u64) -> Timing {
        Timing {
            dnskey_ttl: max_ttl,
            max_zone_ttl: max_ttl,
            propagation_delay: PROPAGATION_DELAY,
            parent_ds_ttl: PARENT_DS_TTL,
            zsk_lifetime,
        }
    }

    /// Ipub: from publishing a key to every cache that holds the DNSKEY RRset holding it.
    pub fn publish_interval(&self) -> u64 {
        self.propagation_delay + self.dnskey_ttl
    }

    /// Iret of a ZSK: from its retirement to the last cached signature it made expiring.
    pub fn zsk_retire_interval(&self) -> u64 {
        self.propagation_delay + self.max_zone_ttl
    }

    /// Iret of a KSK: from the parent's DS moving to the old DS leaving every cache.
    pub fn ksk_retire_interval(&self) -> u64 {
        self.propagation_delay + self.parent_ds_ttl
    }
}

/// What the apex carries at one moment, by key tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Apex {
    /// Keys in the DNSKEY RRset.
    pub dnskey: Vec<u16>,
    /// KSKs whose signatures cover the DNSKEY RRset (and CDS/CDNSKEY).
    pub dnskey_signers: Vec<u16>,
    /// The ZSK that signs every other RRset.
    pub zone_signer: Option<u16>,
    /// The KSK whose CDS and CDNSKEY are published.
    pub cds: Option<u16>,
}

/// Why a lifecycle step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    #[error("key tag {0} is already used by a key of this zone")]
    DuplicateTag(u16),
    #[error("the zone has no active {0} to roll")]
    NothingToRoll(Role),
    #[error(
        "a {role} rollover is under way: key {tag} {event} at {}; start the next one after that",
        rfc3339(*.at)
    )]
    RollInProgress {
        role: Role,
        tag: u16,
        event: &'static str,
        at: Time,
    },
    #[error("no KSK rollover is waiting for its DS (start one with roll-ksk)")]
    NoKskRoll,
    #[error(
        "the new KSK {tag} publishes its CDS only from {}: the parent cannot have its DS before",
        rfc3339(*.at)
    )]
    DsTooEarly { tag: u16, at: Time },
}

/// The keys of one zone and their timelines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub keys: Vec<KeyMeta>,
}

impl Lifecycle {
    /// A new signed zone: its first KSK and ZSK published and signing at once (no cache can
    /// hold an older DNSKEY RRset), and the KSK's CDS/CDNSKEY published for the parent.
    pub fn start(ksk: u16, zsk: u16, now: Time) -> Result<Lifecycle, LifecycleError> {
        if ksk == zsk {
            return Err(LifecycleError::DuplicateTag(zsk));
        }
        let mut ksk = KeyMeta::new(ksk, Role::Ksk, now);
        ksk.published = Some(now);
        ksk.active = Some(now);
        ksk.submitted = Some(now);
        let mut zsk = KeyMeta::new(zsk, Role::Zsk, now);
        zsk.published = Some(now);
        zsk.active = Some(now);
        Ok(Lifecycle {
            keys: vec![ksk, zsk],
        })
    }

    /// Adds a key made elsewhere (`lbdns keys import`), in the DNSKEY RRset and signing from
    /// `now`: it is already in the zone that was signed with it.
    pub fn import(&mut self, tag: u16, role: Role, now: Time) -> Result<(), LifecycleError> {
        self.check_new_tag(tag)?;
        let mut key = KeyMeta::new(tag, role, now);
        key.published = Some(now);
        key.active = Some(now);
        if role == Role::Ksk {
            key.submitted = Some(now);
        }
        self.keys.push(key);
        Ok(())
    }

    pub fn key(&self, tag: u16) -> Option<&KeyMeta> {
        self.keys.iter().find(|k| k.tag == tag)
    }

    fn check_new_tag(&self, tag: u16) -> Result<(), LifecycleError> {
        match self.key(tag) {
            Some(_) => Err(LifecycleError::DuplicateTag(tag)),
            None => Ok(()),
        }
    }

    /// What the apex carries at `now`.
    pub fn apex(&self, now: Time) -> Apex {
        let mut apex = Apex::default();
        for key in &self.keys {
            if key.in_dnskey(now) {
                apex.dnskey.push(key.tag);
            }
            if key.signing(now) {
                match key.role {
                    Role::Ksk => apex.dnskey_signers.push(key.tag),
                    // Pre-publication hands over at one instant: at most one ZSK signs.
                    Role::Zsk => apex.zone_signer = Some(key.tag),
                }
            }
        }
        // The newest submission wins: during a KSK rollover the CDS moves to the new key.
        apex.cds = self
            .keys
            .iter()
            .filter(|k| k.role == Role::Ksk && reached(k.submitted, now) && k.signing(now))
            .max_by_key(|k| k.submitted)
            .map(|k| k.tag);
        apex
    }

    /// The ZSK in charge: signing, with no retirement scheduled.
    fn current(&self, role: Role, now: Time) -> Option<&KeyMeta> {
        self.keys
            .iter()
            .filter(|k| k.role == role && k.signing(now) && k.retired.is_none())
            .max_by_key(|k| k.active)
    }

    /// A rollover of `role` under way at `now`: a key of that role not yet active, or not
    /// yet removed after its retirement (or, for a KSK, a second one still signing).
    fn roll_under_way(&self, role: Role, now: Time) -> Option<(u16, Event, Time)> {
        self.keys
            .iter()
            .filter(|k| k.role == role)
            .flat_map(|k| k.upcoming(now).map(move |(at, event)| (k.tag, event, at)))
            .max_by_key(|&(_, _, at)| at)
    }

    /// When the next ZSK rollover starts (at or before `now`: it is due), or `None` when
    /// there is none to schedule: a rollover under way, or `zsk_lifetime` 0.
    pub fn zsk_roll_due(&self, now: Time, timing: &Timing) -> Option<Time> {
        if timing.zsk_lifetime == 0 || self.roll_under_way(Role::Zsk, now).is_some() {
            return None;
        }
        let Some(current) = self.current(Role::Zsk, now) else {
            return Some(now);
        };
        let active = current.active.unwrap_or(current.created);
        // The successor takes over exactly when the lifetime ends.
        Some((active + timing.zsk_lifetime).saturating_sub(timing.publish_interval()))
    }

    /// Starts a ZSK rollover at `now` with the new key `tag`: published now, signing and the
    /// old one retired after Ipub, the old one removed Iret later.
    pub fn roll_zsk(&mut self, tag: u16, now: Time, timing: &Timing) -> Result<(), LifecycleError> {
        self.check_new_tag(tag)?;
        if let Some((tag, event, at)) = self.roll_under_way(Role::Zsk, now) {
            let event = event_phrase(event);
            return Err(LifecycleError::RollInProgress {
                role: Role::Zsk,
                tag,
                event,
                at,
            });
        }
        let handover = now + timing.publish_interval();
        let old = self
            .keys
            .iter_mut()
            .filter(|k| k.role == Role::Zsk && k.signing(now) && k.retired.is_none())
            .max_by_key(|k| k.active)
            .ok_or(LifecycleError::NothingToRoll(Role::Zsk))?;
        old.retired = Some(handover);
        old.removed = Some(handover + timing.zsk_retire_interval());
        let mut new = KeyMeta::new(tag, Role::Zsk, now);
        new.published = Some(now);
        new.active = Some(handover);
        self.keys.push(new);
        Ok(())
    }

    /// Starts a KSK rollover at `now` with the new key `tag`: published and signing the
    /// DNSKEY RRset now beside the old one, its CDS/CDNSKEY replacing the old key's after Ipub.
    pub fn roll_ksk(&mut self, tag: u16, now: Time, timing: &Timing) -> Result<(), LifecycleError> {
        self.check_new_tag(tag)?;
        if self.current(Role::Ksk, now).is_none() {
            return Err(LifecycleError::NothingToRoll(Role::Ksk));
        }
        if let Some((tag, event, at)) = self.roll_under_way(Role::Ksk, now) {
            return Err(LifecycleError::RollInProgress {
                role: Role::Ksk,
                tag,
                event: event_phrase(event),
                at,
            });
        }
        if let Some(new) = self.awaiting_ds(now) {
            return Err(LifecycleError::RollInProgress {
                role: Role::Ksk,
                tag: new,
                event: "waits for its DS to be seen, published",
                at: self.key(new).and_then(|k| k.submitted).unwrap_or(now),
            });
        }
        let mut new = KeyMeta::new(tag, Role::Ksk, now);
        new.published = Some(now);
        new.active = Some(now);
        new.submitted = Some(now + timing.publish_interval());
        self.keys.push(new);
        Ok(())
    }

    /// The new KSK of a rollover whose old KSK has no removal scheduled yet: the rollover
    /// waits for the operator to confirm the parent's DS (its CDS may not be out yet).
    pub fn awaiting_ds(&self, now: Time) -> Option<u16> {
        let mut signing: Vec<&KeyMeta> = self
            .keys
            .iter()
            .filter(|k| k.role == Role::Ksk && k.signing(now) && k.retired.is_none())
            .collect();
        if signing.len() < 2 {
            return None;
        }
        signing.sort_by_key(|k| k.submitted);
        signing.last().map(|k| k.tag)
    }

    /// The operator confirms at `now` that the parent serves the new KSK's DS: every older
    /// KSK stops signing and leaves the DNSKEY RRset once the old DS has left the caches.
    pub fn ds_seen(&mut self, now: Time, timing: &Timing) -> Result<u16, LifecycleError> {
        let new = self.awaiting_ds(now).ok_or(LifecycleError::NoKskRoll)?;
        let submitted = self.key(new).and_then(|k| k.submitted).unwrap_or(now);
        if submitted > now {
            return Err(LifecycleError::DsTooEarly {
                tag: new,
                at: submitted,
            });
        }
        let gone = now + timing.ksk_retire_interval();
        for key in &mut self.keys {
            if key.role == Role::Ksk && key.tag != new && key.signing(now) && key.retired.is_none()
            {
                key.retired = Some(gone);
                key.removed = Some(gone);
            }
        }
        Ok(new)
    }

    /// Drops the keys removed by `now` and returns them (their files can go).
    pub fn purge(&mut self, now: Time) -> Vec<KeyMeta> {
        let (gone, kept) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|k| reached(k.removed, now));
        self.keys = kept;
        gone
    }

    /// The next event of the key `tag` after `now`.
    pub fn next_event(&self, tag: u16, now: Time, timing: &Timing) -> Option<NextEvent> {
        let key = self.key(tag)?;
        let own = key.upcoming(now).next();
        if key.role == Role::Ksk && key.retired.is_none() && self.awaiting_ds(now).is_some() {
            // Both KSKs wait on the parent: the new one's CDS first, if it is not out yet.
            return Some(match own {
                Some((at, event)) => NextEvent {
                    at: Some(at),
                    event,
                },
                None => NextEvent {
                    at: None,
                    event: Event::DsSeen,
                },
            });
        }
        if let Some((at, event)) = own {
            return Some(NextEvent {
                at: Some(at),
                event,
            });
        }
        if key.role == Role::Zsk && self.current(Role::Zsk, now).is_some_and(|k| k.tag == tag) {
            let at = self.zsk_roll_due(now, timing)?;
            return Some(NextEvent {
                at: Some(at.max(now)),
                event: Event::Successor,
            });
        }
        None
    }

    /// The earliest timed event of the zone after `now` (a ZSK rollover that is due counts
    /// as now): when the apex must next be recomputed.
    pub fn next_change(&self, now: Time, timing: &Timing) -> Option<Time> {
        self.keys
            .iter()
            .filter_map(|k| self.next_event(k.tag, now, timing)?.at)
            .min()
    }
}

/// `time` as an RFC 3339 UTC timestamp to the second, as logs and `lbdns keys list` show it.
pub fn rfc3339(time: Time) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(time))
}

fn event_phrase(event: Event) -> &'static str {
    match event {
        Event::Publish => "is published",
        Event::Activate => "starts signing",
        Event::Submit => "publishes its CDS",
        Event::Retire => "stops signing",
        Event::Remove => "leaves the DNSKEY RRset",
        Event::Successor => "gets its successor",
        Event::DsSeen => "waits for its DS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    const DAY: u64 = 86400;
    const T0: Time = 1_800_000_000;

    // DNSKEY TTL 1 h, largest zone TTL 1 d, Dprp 1 h, parent DS TTL 2 d, ZSK lifetime 30 d.
    // Hence Ipub = 2 h, ZSK Iret = 25 h, KSK Iret = 49 h.
    const TIMING: Timing = Timing {
        dnskey_ttl: HOUR,
        max_zone_ttl: DAY,
        propagation_delay: HOUR,
        parent_ds_ttl: 2 * DAY,
        zsk_lifetime: 30 * DAY,
    };

    fn apex(dnskey: &[u16], dnskey_signers: &[u16], zone_signer: u16, cds: u16) -> Apex {
        Apex {
            dnskey: dnskey.to_vec(),
            dnskey_signers: dnskey_signers.to_vec(),
            zone_signer: Some(zone_signer),
            cds: Some(cds),
        }
    }

    #[test]
    fn a_new_zone_publishes_and_signs_with_both_keys_at_once() {
        let keys = Lifecycle::start(1, 2, T0).unwrap();
        assert_eq!(keys.apex(T0), apex(&[1, 2], &[1], 2, 1));
        assert_eq!(keys.key(1).unwrap().state(T0), KeyState::Active);
        // The first rollover starts Ipub before the ZSK's 30 days are up.
        let start = T0 + 30 * DAY - 2 * HOUR;
        assert_eq!(keys.zsk_roll_due(T0, &TIMING), Some(start));
        let next = keys.next_event(2, T0, &TIMING).unwrap();
        assert_eq!((next.at, next.event), (Some(start), Event::Successor));
        assert_eq!(keys.next_event(1, T0, &TIMING), None);
        assert_eq!(keys.next_change(T0, &TIMING), Some(start));
    }

    #[test]
    fn zsk_pre_publication_follows_rfc_7583_step_by_step() {
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        let tpub = keys.zsk_roll_due(T0, &TIMING).unwrap();
        assert_eq!(keys.apex(tpub - 1), apex(&[1, 2], &[1], 2, 1));
        keys.roll_zsk(3, tpub, &TIMING).unwrap();

        // Published: in the DNSKEY RRset, the old ZSK still signs.
        let tact = tpub + 2 * HOUR; // Tpub + Dprp + TTL(DNSKEY)
        assert_eq!(keys.apex(tpub), apex(&[1, 2, 3], &[1], 2, 1));
        assert_eq!(keys.apex(tact - 1), apex(&[1, 2, 3], &[1], 2, 1));
        assert_eq!(keys.key(3).unwrap().state(tpub), KeyState::Published);
        let next = keys.next_event(3, tpub, &TIMING).unwrap();
        assert_eq!((next.at, next.event), (Some(tact), Event::Activate));
        let next = keys.next_event(2, tpub, &TIMING).unwrap();
        assert_eq!((next.at, next.event), (Some(tact), Event::Retire));

        // Handover: the new ZSK signs, the old one stays until its signatures expire.
        let trem = tact + DAY + HOUR; // Tact + Dprp + TTLsig
        assert_eq!(keys.apex(tact), apex(&[1, 2, 3], &[1], 3, 1));
        assert_eq!(keys.apex(trem - 1), apex(&[1, 2, 3], &[1], 3, 1));
        assert_eq!(keys.key(2).unwrap().state(tact), KeyState::Retired);
        assert_eq!(keys.zsk_roll_due(tact, &TIMING), None);

        // Removed.
        assert_eq!(keys.apex(trem), apex(&[1, 3], &[1], 3, 1));
        assert_eq!(keys.key(2).unwrap().state(trem), KeyState::Removed);
        assert_eq!(
            keys.purge(trem).iter().map(|k| k.tag).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(keys.apex(trem), apex(&[1, 3], &[1], 3, 1));

        // The next rollover: the new key's 30 days counted from when it started signing.
        assert_eq!(
            keys.zsk_roll_due(trem, &TIMING),
            Some(tact + 30 * DAY - 2 * HOUR)
        );
    }

    #[test]
    fn a_zsk_rollover_waits_for_the_previous_one_to_finish() {
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        keys.roll_zsk(3, T0 + HOUR, &TIMING).unwrap();
        let removal = T0 + HOUR + 2 * HOUR + DAY + HOUR;
        let err = keys.roll_zsk(4, T0 + 5 * HOUR, &TIMING).unwrap_err();
        assert_eq!(
            err,
            LifecycleError::RollInProgress {
                role: Role::Zsk,
                tag: 2,
                event: "leaves the DNSKEY RRset",
                at: removal
            }
        );
        assert!(
            err.to_string()
                .contains("key 2 leaves the DNSKEY RRset at 2027-01-")
        );
        keys.roll_zsk(4, removal, &TIMING).unwrap();
        assert_eq!(keys.apex(removal + 2 * HOUR), apex(&[1, 3, 4], &[1], 4, 1));
        assert_eq!(
            keys.roll_zsk(4, removal, &TIMING),
            Err(LifecycleError::DuplicateTag(4))
        );
    }

    #[test]
    fn a_lifetime_shorter_than_a_rollover_is_delayed_to_the_end_of_the_last() {
        let timing = Timing {
            zsk_lifetime: HOUR,
            ..TIMING
        };
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        // Due at once (lifetime < Ipub): the successor is published now.
        assert_eq!(keys.zsk_roll_due(T0, &timing), Some(T0 - HOUR));
        keys.roll_zsk(3, T0, &timing).unwrap();
        let removal = T0 + 2 * HOUR + DAY + HOUR;
        assert_eq!(keys.zsk_roll_due(removal - 1, &timing), None);
        assert_eq!(keys.next_change(removal - 1, &timing), Some(removal));
        assert_eq!(keys.zsk_roll_due(removal, &timing), Some(T0 + HOUR));
    }

    #[test]
    fn zsk_lifetime_zero_never_rolls() {
        let timing = Timing {
            zsk_lifetime: 0,
            ..TIMING
        };
        let keys = Lifecycle::start(1, 2, T0).unwrap();
        assert_eq!(keys.zsk_roll_due(T0 + 1000 * DAY, &timing), None);
        assert_eq!(keys.next_change(T0, &timing), None);
    }

    #[test]
    fn ksk_double_signature_rollover_follows_rfc_7583_step_by_step() {
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        let tpub = T0 + 10 * DAY;
        keys.roll_ksk(5, tpub, &TIMING).unwrap();

        // Both KSKs sign the DNSKEY RRset; the CDS stays on the old key until every cache
        // can see the new one.
        let tsbm = tpub + 2 * HOUR; // Tpub + Dprp + TTL(DNSKEY)
        assert_eq!(keys.apex(tpub), apex(&[1, 2, 5], &[1, 5], 2, 1));
        assert_eq!(keys.apex(tsbm - 1), apex(&[1, 2, 5], &[1, 5], 2, 1));
        let next = keys.next_event(5, tpub, &TIMING).unwrap();
        assert_eq!((next.at, next.event), (Some(tsbm), Event::Submit));
        assert_eq!(
            keys.ds_seen(tsbm - 1, &TIMING),
            Err(LifecycleError::DsTooEarly { tag: 5, at: tsbm })
        );

        // The CDS moves to the new key; nothing more happens until the operator says so.
        assert_eq!(keys.apex(tsbm), apex(&[1, 2, 5], &[1, 5], 2, 5));
        assert_eq!(keys.apex(tsbm + 100 * DAY), apex(&[1, 2, 5], &[1, 5], 2, 5));
        assert_eq!(keys.awaiting_ds(tsbm), Some(5));
        for tag in [1, 5] {
            let next = keys.next_event(tag, tsbm, &TIMING).unwrap();
            assert_eq!((next.at, next.event), (None, Event::DsSeen));
        }
        let err = keys.roll_ksk(6, tsbm, &TIMING).unwrap_err();
        assert!(
            matches!(err, LifecycleError::RollInProgress { tag: 5, .. }),
            "{err}"
        );

        // DS seen: the old KSK signs and stays until the old DS has left every cache.
        let tds = tsbm + 3 * DAY;
        assert_eq!(keys.ds_seen(tds, &TIMING), Ok(5));
        let trem = tds + HOUR + 2 * DAY; // Tds + Dprp + TTL(DS)
        assert_eq!(keys.apex(trem - 1), apex(&[1, 2, 5], &[1, 5], 2, 5));
        let next = keys.next_event(1, tds, &TIMING).unwrap();
        assert_eq!((next.at, next.event), (Some(trem), Event::Retire));
        assert_eq!(keys.apex(trem), apex(&[2, 5], &[5], 2, 5));
        assert_eq!(keys.ds_seen(trem, &TIMING), Err(LifecycleError::NoKskRoll));
        keys.purge(trem);
        keys.roll_ksk(6, trem, &TIMING).unwrap();
        assert_eq!(keys.apex(trem), apex(&[2, 5, 6], &[5, 6], 2, 5));
    }

    #[test]
    fn a_zsk_and_a_ksk_rollover_can_overlap() {
        let mut keys = Lifecycle::start(1, 2, T0).unwrap();
        keys.roll_ksk(5, T0, &TIMING).unwrap();
        keys.roll_zsk(3, T0, &TIMING).unwrap();
        assert_eq!(keys.apex(T0 + 2 * HOUR), apex(&[1, 2, 5, 3], &[1, 5], 3, 5));
    }

    #[test]
    fn imported_keys_sign_from_the_start_and_roll_like_made_ones() {
        let mut keys = Lifecycle::default();
        keys.import(7, Role::Ksk, T0).unwrap();
        keys.import(8, Role::Zsk, T0).unwrap();
        assert_eq!(
            keys.import(8, Role::Zsk, T0),
            Err(LifecycleError::DuplicateTag(8))
        );
        assert_eq!(keys.apex(T0), apex(&[7, 8], &[7], 8, 7));
        keys.roll_zsk(9, T0 + DAY, &TIMING).unwrap();
        assert_eq!(keys.apex(T0 + DAY + 2 * HOUR), apex(&[7, 8, 9], &[7], 9, 7));
    }

    #[test]
    fn rolling_a_zone_without_keys_says_so() {
        let mut keys = Lifecycle::default();
        assert_eq!(
            keys.roll_zsk(1, T0, &TIMING),
            Err(LifecycleError::NothingToRoll(Role::Zsk))
        );
        assert_eq!(
            keys.roll_ksk(1, T0, &TIMING),
            Err(LifecycleError::NothingToRoll(Role::Ksk))
        );
        assert_eq!(keys.zsk_roll_due(T0, &TIMING), Some(T0));
    }
}
