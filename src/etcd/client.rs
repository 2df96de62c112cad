//! The etcd client side of a fleet node (built with the `etcd` feature).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, WatchOptions,
};
use tracing::{info, warn};

use super::{EtcdError, EtcdUrl};
use crate::persist;

/// How long a node waits for etcd before it says etcd cannot be reached.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A node's link to etcd: its client, the mirror directory, and the revision of every
/// key it has mirrored.
pub struct Mirror {
    url: EtcdUrl,
    zones_dir: PathBuf,
    /// Drives the watch. Commits (from the store's writer) and the presence loop run on
    /// runtimes of their own: a commit holds `files` while it waits on etcd, and the watch
    /// may then be blocked on that lock, so the two must never share a driver.
    runtime: tokio::runtime::Runtime,
    commits: tokio::runtime::Runtime,
    /// Mod revision of each mirrored key, by file name (`example.com.lb.yaml`).
    revisions: Mutex<HashMap<String, i64>>,
    /// This node's name in the fleet (`PREFIX/nodes/{id}`).
    node_id: String,
    /// The revision of each file this node serves (never newer than what it loaded).
    loaded: Mutex<HashMap<String, i64>>,
    /// The live nodes and what each serves, as their keys say.
    fleet: Mutex<BTreeMap<String, Presence>>,
    /// Set by the store once it is open.
    probes: Mutex<Option<Probes>>,
    /// Why the last exchange with etcd failed; `None` while etcd answers (`/healthz`).
    link_error: Mutex<Option<String>>,
    /// Told of every site file another node changed, once it is in the mirror (set by
    /// the store: it applies the change as it applies its own API's).
    on_site_change: Mutex<Option<SiteChanged>>,
    /// Held while a mirrored file changes, by the watch or by this node's own commit:
    /// a commit checks that what it was validated on is still on disk, commits, and
    /// writes its file, with no watch event in between.
    files: Mutex<()>,
}

/// Called with a site file's name (`example.com.lb.yaml`), its new contents and their
/// mod revision.
pub type SiteChanged = Box<dyn Fn(&str, &[u8], i64) + Send + Sync>;

/// A site file in the mirror: its name, contents and mod revision.
pub type MirroredSite = (String, Vec<u8>, i64);

/// A node's entry under `PREFIX/nodes/`, kept under a lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Presence {
    /// The revision of each zone and site file the node serves.
    pub files: HashMap<String, i64>,
    /// The build time of the node's GeoIP database: nodes with different databases can
    /// answer the same client differently.
    #[serde(default)]
    pub geoip_build_epoch: Option<u64>,
    /// True once every origin the node checks has a first result (SPEC §6).
    #[serde(default)]
    pub health_ready: bool,
}

/// What the store tells the presence loop, asked at each beat.
pub struct Probes {
    pub geoip_build_epoch: Box<dyn Fn() -> Option<u64> + Send + Sync>,
    pub health_ready: Box<dyn Fn() -> bool + Send + Sync>,
}

/// How long a node stays in the fleet after its last keep-alive: a stopped node drops out
/// this long after it stopped.
const LEASE_SECONDS: i64 = 4;

impl Mirror {
    /// Connects and mirrors everything under the prefix into `dir/zones/`, then keeps
    /// watching on a thread of its own. When etcd cannot be reached and `dir` already
    /// holds a mirror, the node starts from it (and keeps trying to reconnect).
    pub fn start(url: EtcdUrl, dir: &Path, node_id: String) -> Result<Arc<Self>, String> {
        let zones_dir = dir.join("zones");
        std::fs::create_dir_all(&zones_dir)
            .map_err(|e| format!("{}: cannot create the mirror: {e}", zones_dir.display()))?;
        let runtime = runtime()?;
        let mirror = Arc::new(Self {
            url,
            zones_dir,
            runtime,
            commits: self::runtime()?,
            revisions: Mutex::new(HashMap::new()),
            node_id,
            loaded: Mutex::new(HashMap::new()),
            fleet: Mutex::new(BTreeMap::new()),
            probes: Mutex::new(None),
            link_error: Mutex::new(None),
            on_site_change: Mutex::new(None),
            files: Mutex::new(()),
        });
        let synced = mirror.runtime.block_on(mirror.sync());
        let start_revision = match synced {
            Ok(revision) => Some(revision),
            Err(error) => {
                let cached = std::fs::read_dir(&mirror.zones_dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if !cached {
                    return Err(format!(
                        "etcd at {} cannot be reached ({error}) and {} holds no copy to start from",
                        mirror.url.endpoints.join(","),
                        mirror.zones_dir.display()
                    ));
                }
                warn!(%error, dir = %mirror.zones_dir.display(), "etcd cannot be reached; serving the copy from the last run");
                None
            }
        };
        let watching = mirror.clone();
        std::thread::Builder::new()
            .name("lbdns-etcd".into())
            .spawn(move || watching.runtime.block_on(watching.follow(start_revision)))
            .map_err(|e| e.to_string())?;
        let present = mirror.clone();
        let presence_runtime = self::runtime()?;
        std::thread::Builder::new()
            .name("lbdns-presence".into())
            .spawn(move || presence_runtime.block_on(present.stay_present()))
            .map_err(|e| e.to_string())?;
        Ok(mirror)
    }

    /// The mod revision of each mirrored file now: what a reload that starts now loads
    /// at least.
    pub fn mirrored(&self) -> HashMap<String, i64> {
        self.revisions.lock().expect("never poisoned").clone()
    }

    /// Records what this node serves after a reload (see [`Mirror::mirrored`]).
    pub fn set_loaded(&self, files: HashMap<String, i64>) {
        *self.loaded.lock().expect("never poisoned") = files;
    }

    /// Records that this node serves `name` at `revision` (its own write, published).
    pub fn mark_loaded(&self, name: &str, revision: i64) {
        let mut loaded = self.loaded.lock().expect("never poisoned");
        let entry = loaded.entry(name.to_owned()).or_default();
        *entry = (*entry).max(revision);
    }

    /// The revision of `name` this node knows to be the newest.
    pub fn revision_of(&self, name: &str) -> Option<i64> {
        self.revisions
            .lock()
            .expect("never poisoned")
            .get(name)
            .copied()
    }

    /// The live nodes, the revision of `name` each serves (0: not at all), and whether
    /// each has a first health result for every origin it checks.
    pub fn fleet_serving(&self, name: &str) -> Vec<(String, i64, bool)> {
        self.fleet
            .lock()
            .expect("never poisoned")
            .iter()
            .map(|(id, p)| {
                let revision = p.files.get(name).copied().unwrap_or(0);
                (id.clone(), revision, p.health_ready)
            })
            .collect()
    }

    /// Every live node, as its key says.
    pub fn fleet(&self) -> Vec<(String, Presence)> {
        let fleet = self.fleet.lock().expect("never poisoned");
        fleet
            .iter()
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect()
    }

    /// What the presence loop asks the store.
    pub fn set_probes(&self, probes: Probes) {
        *self.probes.lock().expect("never poisoned") = Some(probes);
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What to call when a site file changes in etcd (not for this node's own commits):
    /// the mirror is written first, so the file and the call agree.
    pub fn on_site_change(&self, call: SiteChanged) {
        *self.on_site_change.lock().expect("never poisoned") = Some(call);
    }

    /// The etcd endpoints, and why the last exchange with them failed (`None`: it did not).
    pub fn link(&self) -> (String, Option<String>) {
        let error = self.link_error.lock().expect("never poisoned").clone();
        (self.url.endpoints.join(","), error)
    }

    /// Records how the last exchange with etcd went.
    fn note<T>(&self, result: &Result<T, String>) {
        *self.link_error.lock().expect("never poisoned") = result.as_ref().err().cloned();
    }

    /// Keeps `PREFIX/nodes/{id}` under a lease saying what this node serves, and reads
    /// the other nodes' keys; reconnects after an outage.
    async fn stay_present(&self) {
        // A node joins the fleet once it serves: when the store, opened, sets the probes.
        while self.probes.lock().expect("never poisoned").is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let result = self.present_once().await;
            self.note(&result);
            if let Err(error) = result {
                tracing::debug!(%error, "fleet presence lost; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn present_once(&self) -> Result<(), String> {
        let mut client = self.connect().await?;
        let lease = client
            .lease_grant(LEASE_SECONDS, None)
            .await
            .map_err(|e| describe(&e))?
            .id();
        let (mut keeper, mut acks) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| describe(&e))?;
        let key = format!("{}/nodes/{}", self.url.prefix, self.node_id);
        let nodes = format!("{}/nodes/", self.url.prefix);
        let mut said: Option<Presence> = None;
        let mut beat = tokio::time::interval(Duration::from_millis(250));
        let mut ticks = 0u32;
        loop {
            beat.tick().await;
            ticks += 1;
            if ticks.is_multiple_of(4) {
                keeper.keep_alive().await.map_err(|e| describe(&e))?;
                acks.message().await.map_err(|e| describe(&e))?;
            }
            let presence = {
                let probes = self.probes.lock().expect("never poisoned");
                Presence {
                    files: self.loaded.lock().expect("never poisoned").clone(),
                    geoip_build_epoch: probes.as_ref().and_then(|p| (p.geoip_build_epoch)()),
                    health_ready: probes.as_ref().is_some_and(|p| (p.health_ready)()),
                }
            };
            if said.as_ref() != Some(&presence) {
                let value = serde_json::to_vec(&presence).map_err(|e| e.to_string())?;
                let options = etcd_client::PutOptions::new().with_lease(lease);
                client
                    .put(key.as_str(), value, Some(options))
                    .await
                    .map_err(|e| describe(&e))?;
                said = Some(presence);
            }
            let got = client
                .get(nodes.as_str(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| describe(&e))?;
            let fleet = got
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let id = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&nodes)?;
                    let presence: Presence = serde_json::from_slice(kv.value()).ok()?;
                    Some((id.to_owned(), presence))
                })
                .collect();
            *self.fleet.lock().expect("never poisoned") = fleet;
            self.note(&Ok(()));
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        connect(&self.url).await
    }

    fn key_prefix(&self) -> String {
        format!("{}/zones/", self.url.prefix)
    }

    /// Mirrors every key now; returns the revision the mirror is at.
    async fn sync(&self) -> Result<i64, String> {
        let mut client = self.connect().await?;
        let prefix = self.key_prefix();
        let got = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| describe(&e))?;
        let revision = got.header().map_or(0, |h| h.revision());
        let mut present = Vec::new();
        for kv in got.kvs() {
            let Some(name) = self.file_name(kv.key()) else {
                continue;
            };
            // What etcd holds now, whatever was mirrored before (a restored cluster
            // starts its revisions again).
            self.mirror_file(&name, Some(kv.value()), kv.mod_revision(), Order::Any);
            present.push(name);
        }
        // Files etcd no longer has go from the mirror too.
        if let Ok(entries) = std::fs::read_dir(&self.zones_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_served_file(&name) && !present.contains(&name) {
                    self.mirror_file(&name, None, 0, Order::Any);
                }
            }
        }
        info!(
            revision,
            files = present.len(),
            "mirrored the configuration from etcd"
        );
        Ok(revision)
    }

    /// Watches for changes from `revision` on, forever, syncing again after an outage.
    async fn follow(&self, mut revision: Option<i64>) {
        loop {
            if revision.is_none() {
                match self.sync().await {
                    Ok(r) => revision = Some(r),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let from = revision.expect("synced above") + 1;
            if let Err(error) = self.watch_from(from, &mut revision).await {
                warn!(%error, "lost the etcd watch; serving the last copy until etcd is back");
                revision = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn watch_from(&self, from: i64, revision: &mut Option<i64>) -> Result<(), String> {
        let mut client = self.connect().await?;
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut stream = client
            .watch(self.key_prefix().as_str(), Some(options))
            .await
            .map_err(|e| describe(&e))?;
        while let Some(response) = stream.message().await.map_err(|e| describe(&e))? {
            if response.canceled() {
                return Err("the watch was cancelled (compacted?)".into());
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Some(name) = self.file_name(kv.key()) else {
                    continue;
                };
                let deleted = matches!(event.event_type(), etcd_client::EventType::Delete);
                let value = (!deleted).then(|| kv.value());
                self.mirror_file(&name, value, kv.mod_revision(), Order::NewerOnly);
                *revision = Some(kv.mod_revision().max(revision.unwrap_or(0)));
            }
        }
        Err("the watch ended".into())
    }

    /// The file name a key mirrors to, when it is one lbdns serves.
    fn file_name(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let name = key.strip_prefix(&self.key_prefix())?;
        (is_served_file(name) && !name.contains('/')).then(|| name.to_owned())
    }

    /// Writes (or, for `None`, removes) one mirrored file, atomically; a site file whose
    /// contents changed is then handed to [`Mirror::on_site_change`].
    fn mirror_file(&self, name: &str, value: Option<&[u8]>, mod_revision: i64, order: Order) {
        let files = self.files.lock().expect("never poisoned");
        let known = self.revision_of(name);
        // An event older than what a fetch already mirrored: the watch catching up.
        if order == Order::NewerOnly
            && value.is_some()
            && known.is_some_and(|known| known > mod_revision)
        {
            return;
        }
        let path = self.zones_dir.join(name);
        let mut written = false;
        let result = match value {
            Some(bytes) => {
                let unchanged = std::fs::read(&path).is_ok_and(|old| old == bytes);
                written = !unchanged;
                match unchanged {
                    true => Ok(()),
                    false => persist::write_atomically(&path, bytes),
                }
            }
            None => std::fs::remove_file(&path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        };
        if let Err(error) = &result {
            warn!(%error, path = %path.display(), "cannot update the mirror");
        }
        let mut revisions = self.revisions.lock().expect("never poisoned");
        match value {
            Some(_) => revisions.insert(name.to_owned(), mod_revision),
            None => revisions.remove(name),
        };
        drop(revisions);
        // Called with `files` still held, so that what a reload finds not applied yet
        // (see [`Mirror::when_applied`]) is on disk at its revision.
        if let (true, Ok(()), Some(bytes)) = (written, &result, value)
            && name.ends_with(".lb.yaml")
            && let Some(call) = &*self.on_site_change.lock().expect("never poisoned")
        {
            call(name, bytes, mod_revision);
        }
        drop(files);
    }

    /// Runs `read` with no mirrored file changing meanwhile, once every site file in the
    /// mirror is served at the revision mirrored; until then returns the site files not
    /// applied yet (name, contents, revision): other nodes' changes whose hand-over to
    /// the writer ([`Mirror::on_site_change`]) is still queued, or was dropped by a full
    /// queue. The store's reload applies those first, as it applies its own API's
    /// changes, so that it never loads every file for them; the file watcher sees them
    /// replaced before the writer has them, and under load long before.
    pub fn when_applied<T>(&self, read: impl FnOnce() -> T) -> Result<T, Vec<MirroredSite>> {
        let _files = self.files.lock().expect("never poisoned");
        let revisions = self.revisions.lock().expect("never poisoned");
        let loaded = self.loaded.lock().expect("never poisoned");
        let unapplied: Vec<MirroredSite> = revisions
            .iter()
            .filter(|&(name, &revision)| {
                name.ends_with(".lb.yaml") && loaded.get(name).is_none_or(|&l| l < revision)
            })
            .filter_map(|(name, &revision)| {
                let text = std::fs::read(self.zones_dir.join(name)).ok()?;
                Some((name.clone(), text, revision))
            })
            .collect();
        drop((revisions, loaded));
        match unapplied.is_empty() {
            true => Ok(read()),
            false => Err(unapplied),
        }
    }

    /// The newest version of the file `name` in etcd, mirrored before it is returned
    /// (`None`: etcd has no such file): what a change made on an older copy is made
    /// again on.
    pub fn fetch(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, EtcdError> {
        let key = format!("{}{name}", self.key_prefix());
        let got = self.commits.block_on(async {
            let mut client = self.connect().await?;
            client
                .get(key.as_str(), None)
                .await
                .map_err(|e| describe(&e))
        });
        self.note(&got);
        let got = got.map_err(EtcdError::Unavailable)?;
        let Some(kv) = got.kvs().first() else {
            return Ok(None);
        };
        self.mirror_file(name, Some(kv.value()), kv.mod_revision(), Order::NewerOnly);
        Ok(Some((kv.value().to_vec(), kv.mod_revision())))
    }

    /// Commits `bytes` as the file `name`: in etcd, if its key is still at the revision
    /// this node mirrored last (or still absent, when it had none), then in the mirror.
    /// `still_valid` runs first, with no mirror update possible until the commit is done:
    /// it checks that the file on disk is still the one the change was made on, since a
    /// newer version mirrored but not yet loaded must make the change stale (409), not be
    /// overwritten by it. Returns the revision committed.
    pub fn commit(
        &self,
        name: &str,
        bytes: &[u8],
        still_valid: impl FnOnce() -> bool,
    ) -> Result<i64, EtcdError> {
        let key = format!("{}{name}", self.key_prefix());
        if key.len() + bytes.len() > MAX_REQUEST_BYTES {
            return Err(EtcdError::TooLarge {
                key,
                bytes: bytes.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        let _files = self.files.lock().expect("never poisoned");
        if !still_valid() {
            return Err(EtcdError::Stale { key });
        }
        let seen = self
            .revisions
            .lock()
            .expect("never poisoned")
            .get(name)
            .copied();
        let guard = match seen {
            Some(revision) => Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
            None => Compare::version(key.as_str(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(key.as_str(), bytes, None)]);
        let response = self.commits.block_on(async {
            let mut client = self.connect().await?;
            client.txn(txn).await.map_err(|e| describe(&e))
        });
        self.note(&response);
        match response {
            Ok(r) if r.succeeded() => {
                let revision = r.header().map_or(0, |h| h.revision());
                let path = self.zones_dir.join(name);
                if let Err(error) = persist::write_atomically(&path, bytes) {
                    // Committed all the same: the watch writes it again when it comes.
                    warn!(%error, path = %path.display(), "cannot update the mirror");
                }
                self.revisions
                    .lock()
                    .expect("never poisoned")
                    .insert(name.to_owned(), revision);
                Ok(revision)
            }
            Ok(_) => Err(EtcdError::Stale { key }),
            Err(error) => Err(EtcdError::Unavailable(error)),
        }
    }
}

/// Whether a version of a file may replace a newer one in the mirror.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Only a newer revision: the watch and a fetch may deliver one version twice, or out
    /// of order with each other.
    NewerOnly,
    /// Any: a full sync mirrors what etcd holds now.
    Any,
}

/// A client of the cluster at `url`, or why there is none.
async fn connect(url: &EtcdUrl) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(TIMEOUT)
        .with_timeout(TIMEOUT);
    if url.tls {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &url.access.ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &url.access.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        options = options.with_tls(tls);
    }
    if let Some((user, password)) = &url.access.user {
        options = options.with_user(user.as_str(), password.as_str());
    }
    Client::connect(&url.endpoints, Some(options))
        .await
        .map_err(|e| {
            // A cluster that wants a client certificate closes the connection without
            // saying why.
            let hint = match url.tls && url.access.identity.is_none() {
                true => {
                    " (a cluster started with --client-cert-auth needs --etcd-cert and --etcd-key)"
                }
                false => "",
            };
            format!(
                "etcd at {}: {}{hint}",
                url.endpoints.join(","),
                describe(&e)
            )
        })
}

/// An etcd client error in one line an operator can read: a gRPC status by its code's
/// description and its message, then the root cause in its own words ("Connection
/// refused (os error 111)"), not the status's debug dump of its source.
fn describe(error: &etcd_client::Error) -> String {
    use std::error::Error;
    let (mut text, cause): (String, Option<&(dyn Error + 'static)>) = match error {
        etcd_client::Error::GRpcStatus(status) => {
            let text = match status.message() {
                "" => status.code().description().to_owned(),
                message => format!("{}: {message}", status.code().description()),
            };
            (text, status.source())
        }
        etcd_client::Error::TransportError(e) => (error.to_string(), e.source()),
        other => (other.to_string(), None),
    };
    if let Some(mut root) = cause {
        while let Some(next) = root.source() {
            root = next;
        }
        let root = root.to_string();
        if !text.contains(&root) {
            text = format!("{text}: {root}");
        }
    }
    one_line(&text)
}

/// `text` on one line, at most 200 characters.
fn one_line(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// A runtime for the etcd client's async calls, driven by the thread that blocks on it.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The most one request to etcd may carry: etcd's default `--max-request-bytes` (1.5 MiB)
/// less room for the keys and guards around the values. A zone file larger than this is
/// not kept in etcd: its site file names a primary instead (every node transfers it).
const MAX_REQUEST_BYTES: usize = 1_572_864 - 16 * 1024;

fn is_served_file(name: &str) -> bool {
    name.ends_with(".zone") || name.ends_with(".lb.yaml")
}

/// Copies `dir/zones/*.zone` and `*.lb.yaml` into etcd under `url`'s prefix; returns what
/// it did, in a line. A prefix that already holds files is a live fleet's configuration:
/// without `force` nothing is written and the error lists what would change (files added,
/// changed, removed); with `force` the prefix is made to hold exactly the directory's
/// files, in one transaction that fails if etcd changed since it was compared.
pub fn import(dir: &Path, url: &EtcdUrl, force: bool) -> Result<String, String> {
    let zones = dir.join("zones");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&zones).map_err(|e| format!("{}: {e}", zones.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_served_file(&name) {
            let bytes = crate::load::read_bounded(
                &entry.path(),
                crate::zone::MAX_FILE_BYTES,
                "a zone file",
            )
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            if bytes.len() + url.prefix.len() + name.len() + 7 > MAX_REQUEST_BYTES {
                return Err(too_large_to_import(&entry.path(), &name, bytes.len()));
            }
            files.insert(name, bytes);
        }
    }
    let prefix = format!("{}/zones/", url.prefix);
    runtime()?.block_on(async {
        let mut client = connect(url).await?;
        let got = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| describe(&e))?;
        // What etcd holds now: name -> (contents, mod revision).
        let held: BTreeMap<String, (Vec<u8>, i64)> = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&prefix)?;
                Some((name.to_owned(), (kv.value().to_vec(), kv.mod_revision())))
            })
            .collect();
        let changes = differences(&held, &files);
        if changes.is_empty() && !held.is_empty() {
            return Ok(format!(
                "{} already holds these {} files; nothing to import",
                url.prefix,
                files.len()
            ));
        }
        if !held.is_empty() && !force {
            return Err(format!(
                "{} already holds a fleet's configuration ({} files); importing {} would:\n{}\nnothing was imported: run again with --force to replace what etcd holds with these files (lbdns export saves it first)",
                url.prefix,
                held.len(),
                zones.display(),
                changes.join("\n")
            ));
        }
        // Guarded: nothing changed in etcd since it was compared.
        let mut guards = Vec::new();
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (name, (_, revision)) in &held {
            let key = format!("{prefix}{name}");
            guards.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *revision));
            if !files.contains_key(name) {
                deletes.push(TxnOp::delete(key, None));
            }
        }
        // Zone files before site files: a node that sees a site sees its zone.
        let (zones, sites): (Vec<_>, Vec<_>) =
            files.iter().partition(|(name, _)| name.ends_with(".zone"));
        for (name, bytes) in zones.into_iter().chain(sites) {
            let key = format!("{prefix}{name}");
            if !held.contains_key(name) {
                guards.push(Compare::version(key.as_str(), CompareOp::Equal, 0));
            }
            if held.get(name).is_none_or(|(old, _)| old != bytes) {
                puts.push((key.len() + bytes.len(), TxnOp::put(key, bytes.clone(), None)));
            }
        }
        // One transaction when the files fit in one request, else several: the first
        // carries every guard, so nothing is written unless etcd still holds what was
        // compared; the removals come last.
        let mut batches: Vec<Vec<TxnOp>> = vec![Vec::new()];
        let mut size = 0;
        for (bytes, op) in puts {
            if size + bytes > MAX_REQUEST_BYTES && !batches[batches.len() - 1].is_empty() {
                batches.push(Vec::new());
                size = 0;
            }
            size += bytes;
            batches.last_mut().expect("one at least").push(op);
        }
        batches.last_mut().expect("one at least").extend(deletes);
        let transactions = batches.len();
        for (i, ops) in batches.into_iter().enumerate() {
            let txn = match i {
                0 => Txn::new().when(std::mem::take(&mut guards)).and_then(ops),
                _ => Txn::new().and_then(ops),
            };
            let done = client.txn(txn).await.map_err(|e| describe(&e))?;
            if !done.succeeded() {
                return Err("the configuration in etcd changed while it was compared; nothing was imported: run again to see the new differences".to_owned());
            }
        }
        if transactions > 1 {
            info!(transactions, "imported in several etcd transactions: the files exceed one request");
        }
        Ok(match held.is_empty() {
            true => format!("imported {} files into {}", files.len(), url.prefix),
            false => format!(
                "replaced the configuration in {} with {} files:\n{}",
                url.prefix,
                files.len(),
                changes.join("\n")
            ),
        })
    })
}

/// Why `name` cannot be kept in etcd, and what to do instead.
fn too_large_to_import(path: &Path, name: &str, bytes: usize) -> String {
    let size = format!(
        "{}: {:.1} MiB, more than etcd takes in one request (1.5 MiB, its --max-request-bytes)",
        path.display(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    match name.strip_suffix(".zone") {
        Some(origin) => format!(
            "{size}; nothing was imported: keep a zone this large on a primary server and name it in {origin}.lb.yaml (`primary: {{addresses: [...]}}`, without the zone file): every node of the fleet then transfers the zone from it"
        ),
        None => format!("{size}; nothing was imported"),
    }
}

/// What importing `files` over `held` changes, one line a file: added, changed (with the
/// tasks of a site file before and after) or removed.
fn differences(
    held: &BTreeMap<String, (Vec<u8>, i64)>,
    files: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let tasks = |name: &str, bytes: &[u8]| -> String {
        if !name.ends_with(".lb.yaml") {
            return String::new();
        }
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| crate::site::parse(text).ok())
            .map_or_else(
                || " (does not parse)".to_owned(),
                |spec| format!(" ({} tasks)", spec.tasks.len()),
            )
    };
    let mut lines = Vec::new();
    for (name, bytes) in files {
        match held.get(name) {
            None => lines.push(format!("  add     {name}{}", tasks(name, bytes))),
            Some((old, _)) if old != bytes => {
                let (before, after) = (tasks(name, old), tasks(name, bytes));
                let counts = match before.is_empty() {
                    true => String::new(),
                    false => format!(
                        " ({} -> {})",
                        before.trim().trim_matches(['(', ')']),
                        after.trim().trim_matches(['(', ')'])
                    ),
                };
                lines.push(format!("  change  {name}{counts}"));
            }
            Some(_) => {}
        }
    }
    for (name, (old, _)) in held {
        if !files.contains_key(name) {
            lines.push(format!("  remove  {name}{}", tasks(name, old)));
        }
    }
    lines
}

/// Writes every zone and site file under `url`'s prefix into `dir/zones/` (created if
/// missing, each file replaced atomically); returns how many files were written.
pub fn export(url: &EtcdUrl, dir: &Path) -> Result<usize, String> {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).map_err(|e| format!("{}: {e}", zones.display()))?;
    let prefix = format!("{}/zones/", url.prefix);
    let got = runtime()?.block_on(async {
        let mut client = connect(url).await?;
        client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| describe(&e))
    })?;
    let mut written = 0;
    for kv in got.kvs() {
        let Ok(key) = std::str::from_utf8(kv.key()) else {
            continue;
        };
        let Some(name) = key.strip_prefix(&prefix) else {
            continue;
        };
        if !is_served_file(name) || name.contains('/') {
            continue;
        }
        let path = zones.join(name);
        persist::write_atomically(&path, kv.value())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        written += 1;
    }
    Ok(written)
}
