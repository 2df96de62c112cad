use super::*;
use crate::select::Client;
use crate::site::spec::{GroupSpec, TaskSpec};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rand::SeedableRng;

const ZONE: &str =
    "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 900 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n";
const GROUP: &str = r#"{"origins": [{"address": "192.0.2.10"}]}"#;
const TASK: &str = r#"{"hostname": "api.example.com", "origin_group": "web"}"#;

fn open() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/example.com.zone"), ZONE).unwrap();
    let sources = Sources {
        dir: dir.path().to_owned(),
        geoip: None,
        asn_db: None,
    };
    let store = Store::open(sources, Arc::new(Metrics::new())).unwrap();
    (dir, store)
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn group(json: &str) -> GroupSpec {
    serde_json::from_str(json).unwrap()
}

fn task(json: &str) -> TaskSpec {
    serde_json::from_str(json).unwrap()
}

fn rcode(store: &Store, name: &str) -> ResponseCode {
    let client = Client {
        addr: "192.0.2.1".parse().unwrap(),
        source_prefix: 32,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let name = Name::from_ascii(name).unwrap();
    store
        .serving()
        .load()
        .answer(&name, RecordType::A, &client, &mut rng)
        .rcode
}

#[test]
fn a_change_is_written_then_served() {
    let (dir, store) = open();
    block_on(store.put_group("example.com", "web", group(GROUP))).unwrap();
    let task = block_on(store.create_task("example.com", task(TASK))).unwrap();
    assert_eq!(
        (task.id.as_str(), task.status),
        ("api.example.com", Status::Effective)
    );
    assert_eq!(rcode(&store, "api.example.com."), ResponseCode::NoError);
    let file = std::fs::read_to_string(dir.path().join("zones/example.com.lb.yaml")).unwrap();
    let spec = site::parse(&file).unwrap();
    assert_eq!(spec.tasks.len(), 1);
    // Our own write is not a change to reload.
    assert!(!store.reload().unwrap());
}

#[test]
fn a_failed_write_changes_nothing() {
    let (dir, store) = open();
    // A non-empty directory where the rename must land: the write fails after the
    // temp file is written, the worst place for it to fail.
    let path = dir.path().join("zones/example.com.lb.yaml");
    std::fs::create_dir_all(path.join("blocker")).unwrap();
    let error = block_on(store.put_group("example.com", "web", group(GROUP))).unwrap_err();
    assert!(matches!(error, ChangeError::Write(_)), "{error}");
    assert!(error.to_string().contains("nothing was changed"), "{error}");
    assert!(store.groups("example.com").unwrap().is_empty());
    assert_eq!(store.generation(), 1, "nothing was published");
    let entries = std::fs::read_dir(dir.path().join("zones")).unwrap().count();
    assert_eq!(
        entries, 2,
        "the zone file and the blocker, no temp file left"
    );
}

/// Creates tasks `t0`, `t1`, ... until one is refused; returns how many were created and
/// the refusal, having checked that the refused change left the site file (`path`) byte
/// for byte as it was.
fn create_until_refused(store: &Store, path: &std::path::Path) -> (usize, ChangeError) {
    for i in 0..200 {
        let before = std::fs::read(path).unwrap();
        let json =
            format!(r#"{{"id": "t{i}", "hostname": "t{i}.example.com", "origin_group": "web"}}"#);
        if let Err(error) = block_on(store.create_task("example.com", task(&json))) {
            assert!(
                std::fs::read(path).unwrap() == before,
                "the refused change wrote"
            );
            return (i, error);
        }
    }
    panic!("no limit was reached");
}

#[test]
fn a_change_past_a_limit_of_the_loader_is_refused_and_nothing_is_written() {
    for (limits, named) in [
        (
            site::Limits {
                file_bytes: 4096,
                yaml_nodes: 1_000_000,
            },
            "4096 bytes",
        ),
        (
            site::Limits {
                file_bytes: 1 << 20,
                yaml_nodes: 300,
            },
            "more than 300 YAML nodes",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        std::fs::write(dir.path().join("zones/example.com.zone"), ZONE).unwrap();
        let sources = Sources {
            dir: dir.path().to_owned(),
            geoip: None,
            asn_db: None,
        };
        let store = Store::open_within(sources, limits).unwrap();
        block_on(store.put_group("example.com", "web", group(GROUP))).unwrap();
        let path = dir.path().join("zones/example.com.lb.yaml");
        let (created, error) = create_until_refused(&store, &path);
        assert!(created > 5, "{created} tasks before the limit");
        assert!(matches!(error, ChangeError::Limit(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(named), "{message}");
        assert!(message.contains("nothing was changed"), "{message}");
        // The file holds every acknowledged task and nothing else, and loads within the
        // limits; the refused task is not served.
        let text = std::fs::read_to_string(&path).unwrap();
        let origin = Name::from_ascii("example.com.").unwrap();
        let (spec, _) = site::from_text_within(&path, &text, &origin, limits).unwrap();
        assert_eq!(spec.tasks.len(), created);
        assert_eq!(
            rcode(&store, &format!("t{created}.example.com.")),
            ResponseCode::NXDomain
        );
        assert_eq!(rcode(&store, "t0.example.com."), ResponseCode::NoError);
    }
}
