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

use std::path::Path;

#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
pub use client::{Mirror, MirroredSite, Presence, Probes, SiteChanged, export, import};

/// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, or `etcds://` for a cluster that speaks TLS,
/// with what reaching it takes ([`Access`], from the `--etcd-*` options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// `etcds://`: the endpoints speak TLS.
    pub tls: bool,
    pub access: Access,
}

/// What a TLS or authenticating cluster asks of its clients, read when the command starts
/// so that a wrong file is refused before anything runs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// PEM: the CA that signed the cluster's server certificates.
    pub ca: Option<Vec<u8>>,
    /// PEM: this node's client certificate and its key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The user and password to authenticate as.
    pub user: Option<(String, String)>,
}

/// Never the password or the key.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .finish()
    }
}

const URL_FORM: &str = "etcd://HOST:PORT[,HOST:PORT...]/PREFIX (or etcds:// for TLS)";

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (tls, rest) = match (text.strip_prefix("etcds://"), text.strip_prefix("etcd://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(format!("{text:?}: expected {URL_FORM}")),
        };
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: no /PREFIX after the endpoints"))?;
        let endpoints: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        let prefix = prefix.trim_matches('/');
        if endpoints.iter().any(|e| e.is_empty()) || prefix.is_empty() {
            return Err(format!("{text:?}: expected {URL_FORM}"));
        }
        Ok(Self {
            endpoints,
            prefix: prefix.to_owned(),
            tls,
            access: Access::default(),
        })
    }
}

impl EtcdUrl {
    /// The URL with `access`: TLS files need `etcds://`, and `etcds://` needs the CA.
    pub fn with_access(self, access: Access) -> Result<Self, String> {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        if !self.tls && (access.ca.is_some() || access.identity.is_some()) {
            return Err(format!(
                "--etcd-ca, --etcd-cert and --etcd-key are for a cluster that speaks TLS: write the store as etcds://{}/{}",
                self.endpoints.join(","),
                self.prefix
            ));
        }
        if self.tls && access.ca.is_none() {
            return Err(format!(
                "{scheme}:// needs --etcd-ca FILE: the CA certificate (PEM) that signed etcd's server certificates"
            ));
        }
        Ok(Self { access, ..self })
    }
}

impl Access {
    /// Reads the files the `--etcd-*` options name; an error names the option.
    pub fn read(
        ca: Option<&Path>,
        cert_and_key: Option<(&Path, &Path)>,
        user_and_password_file: Option<(&str, &Path)>,
    ) -> Result<Self, String> {
        let read = |option: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{option} {}: {e}", path.display()))
        };
        let pem = |option: &str, path: &Path| {
            let bytes = read(option, path)?;
            match bytes.windows(11).any(|w| w == b"-----BEGIN ") {
                true => Ok(bytes),
                false => Err(format!(
                    "{option} {}: not a PEM file (no -----BEGIN line)",
                    path.display()
                )),
            }
        };
        let ca = ca.map(|path| pem("--etcd-ca", path)).transpose()?;
        let identity = cert_and_key
            .map(|(cert, key)| {
                Ok::<_, String>((pem("--etcd-cert", cert)?, pem("--etcd-key", key)?))
            })
            .transpose()?;
        let user = user_and_password_file
            .map(|(user, path)| {
                let bytes = read("--etcd-password-file", path)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("--etcd-password-file {}: not UTF-8 text", path.display())
                })?;
                // The newline of `echo secret > file` is not part of the password.
                let password = text.trim_end_matches(['\n', '\r']);
                match password.is_empty() {
                    true => Err(format!("--etcd-password-file {}: empty", path.display())),
                    false => Ok((user.to_owned(), password.to_owned())),
                }
            })
            .transpose()?;
        Ok(Self { ca, identity, user })
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
    #[error(
        "{key} would be {bytes} bytes, more than etcd takes in one request ({limit} bytes, its --max-request-bytes); nothing was changed"
    )]
    TooLarge {
        key: String,
        bytes: usize,
        limit: usize,
    },
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
    pub type MirroredSite = (String, Vec<u8>, i64);

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

        pub fn when_applied<T>(&self, _read: impl FnOnce() -> T) -> Result<T, Vec<MirroredSite>> {
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
pub use disabled::{Mirror, MirroredSite, Presence, Probes, SiteChanged, export, import};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        let url: EtcdUrl = "etcd://127.0.0.1:2379,10.0.0.2:2379/lbdns".parse().unwrap();
        assert_eq!(url.endpoints, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(url.prefix, "lbdns");
        assert!(!url.tls);
        let url: EtcdUrl = "etcds://etcd.example.net:2379/fleet".parse().unwrap();
        assert_eq!(
            (url.endpoints, url.prefix, url.tls),
            (
                vec!["etcd.example.net:2379".to_owned()],
                "fleet".to_owned(),
                true
            )
        );
        for bad in [
            "http://x:1/p",
            "etcd://x:1",
            "etcd://x:1/",
            "etcd:///p",
            "etcd://a,,b/p",
            "etcdss://x:1/p",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_files_go_with_etcds_and_etcds_needs_a_ca() {
        let ca = Access {
            ca: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ..Access::default()
        };
        let plain: EtcdUrl = "etcd://127.0.0.1:2379/p".parse().unwrap();
        let error = plain.clone().with_access(ca.clone()).unwrap_err();
        assert!(error.contains("etcds://127.0.0.1:2379/p"), "{error}");
        let tls: EtcdUrl = "etcds://127.0.0.1:2379/p".parse().unwrap();
        let error = tls.clone().with_access(Access::default()).unwrap_err();
        assert!(error.contains("--etcd-ca"), "{error}");
        assert!(tls.with_access(ca).is_ok());
        let user = Access {
            user: Some(("root".into(), "hunter2".into())),
            ..Access::default()
        };
        let url = plain.with_access(user).unwrap();
        let shown = format!("{url:?}");
        assert!(
            shown.contains("root") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn access_files_are_read_and_checked_by_option() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let pem = file(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
        );
        let password = file("password", "s3cret\n");
        let access = Access::read(Some(&pem), None, Some(("root", &password))).unwrap();
        assert_eq!(access.user, Some(("root".to_owned(), "s3cret".to_owned())));
        let not_pem = file("ca.der", "\u{30}\u{82}");
        let error = Access::read(Some(&not_pem), None, None).unwrap_err();
        assert!(
            error.starts_with("--etcd-ca ") && error.contains("not a PEM file"),
            "{error}"
        );
        let missing = dir.path().join("missing");
        let error = Access::read(None, Some((&pem, &missing)), None).unwrap_err();
        assert!(error.starts_with("--etcd-key "), "{error}");
        let empty = file("empty", "\n");
        let error = Access::read(None, None, Some(("root", &empty))).unwrap_err();
        assert!(error.contains("empty"), "{error}");
    }
}
