//! A fleet's shared configuration in etcd (issue 10, first part): every node mirrors the
//! zone and site files kept under `PREFIX/zones/` into its own cache directory, and serves
//! that directory as it would serve `--dir`. The mirror is also the node's copy for when
//! etcd cannot be reached: a node keeps serving it, and starts from it.
//!
//! A site change made through any node's API is one etcd transaction guarded by the
//! revision of the site's key that the node last saw: of two simultaneous changes, one
//! wins, and the other node makes its change again on the winner's version (the store's
//! writer keeps changes as data for this); only a change that then cannot be made (the
//! same new task, a deleted group) is refused. The watch brings every change, this node's own
//! included, into the mirror; a site file another node changed is handed to the store,
//! which applies it as it applies its own API's changes (that site alone), and any other
//! file is reloaded by the file watcher.

#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
pub use client::{Mirror, Presence, Probes, SiteChanged, export, import};

/// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    pub endpoints: Vec<String>,
    pub prefix: String,
}

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{text:?}: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"))?;
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: no /PREFIX after the endpoints"))?;
        let endpoints: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        let prefix = prefix.trim_matches('/');
        if endpoints.iter().any(|e| e.is_empty()) || prefix.is_empty() {
            return Err(format!(
                "{text:?}: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"
            ));
        }
        Ok(Self {
            endpoints,
            prefix: prefix.to_owned(),
        })
    }
}

/// Why etcd did not take a change.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(
        "{key} changed in etcd since this node last saw it; retry once the change has reached this node"
    )]
    Stale { key: String },
    #[error("etcd cannot be reached ({0}); nothing was changed, retry when it is back")]
    Unavailable(String),
}

/// Without the `etcd` feature: `--store` and `import` say how to get it.
#[cfg(not(feature = "etcd"))]
mod disabled {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;

    use super::{EtcdError, EtcdUrl};

    /// A node's entry in the fleet (see the `etcd` feature's `client::Presence`).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Presence {
        pub files: HashMap<String, i64>,
        pub geoip_build_epoch: Option<u64>,
        pub health_ready: bool,
    }

    pub type SiteChanged = Box<dyn Fn(&str, &[u8], i64) + Send + Sync>;

    pub struct Probes {
        pub geoip_build_epoch: Box<dyn Fn() -> Option<u64> + Send + Sync>,
        pub health_ready: Box<dyn Fn() -> bool + Send + Sync>,
    }

    const NOT_BUILT: &str = "this lbdns was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc: apt-get install protobuf-compiler)";

    /// Never made: [`Mirror::start`] refuses.
    pub enum Mirror {}

    impl Mirror {
        pub fn start(_url: EtcdUrl, _dir: &Path, _node_id: String) -> Result<Arc<Self>, String> {
            Err(NOT_BUILT.to_owned())
        }

        pub fn commit(
            &self,
            _name: &str,
            _bytes: &[u8],
            _still_valid: impl FnOnce() -> bool,
        ) -> Result<i64, EtcdError> {
            match *self {}
        }

        pub fn fetch(&self, _name: &str) -> Result<Option<(Vec<u8>, i64)>, EtcdError> {
            match *self {}
        }

        pub fn mirrored(&self) -> HashMap<String, i64> {
            match *self {}
        }

        pub fn set_loaded(&self, _files: HashMap<String, i64>) {
            match *self {}
        }

        pub fn mark_loaded(&self, _name: &str, _revision: i64) {
            match *self {}
        }

        pub fn revision_of(&self, _name: &str) -> Option<i64> {
            match *self {}
        }

        pub fn fleet_serving(&self, _name: &str) -> Vec<(String, i64, bool)> {
            match *self {}
        }

        pub fn fleet(&self) -> Vec<(String, Presence)> {
            match *self {}
        }

        pub fn set_probes(&self, _probes: Probes) {
            match *self {}
        }

        pub fn node_id(&self) -> &str {
            match *self {}
        }

        pub fn on_site_change(&self, _call: SiteChanged) {
            match *self {}
        }

        pub fn link(&self) -> (String, Option<String>) {
            match *self {}
        }
    }

    pub fn import(_dir: &Path, _url: &EtcdUrl, _force: bool) -> Result<String, String> {
        Err(NOT_BUILT.to_owned())
    }

    pub fn export(_url: &EtcdUrl, _dir: &Path) -> Result<usize, String> {
        Err(NOT_BUILT.to_owned())
    }
}
#[cfg(not(feature = "etcd"))]
pub use disabled::{Mirror, Presence, Probes, SiteChanged, export, import};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        let url: EtcdUrl = "etcd://127.0.0.1:2379,10.0.0.2:2379/lbdns".parse().unwrap();
        assert_eq!(url.endpoints, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(url.prefix, "lbdns");
        for bad in [
            "http://x:1/p",
            "etcd://x:1",
            "etcd://x:1/",
            "etcd:///p",
            "etcd://a,,b/p",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }
}
