//! The store suite against a real etcd (Debian's `etcd-server`, installed by
//! scripts/test.sh): a single-member cluster on loopback ports, started for
//! the test and stopped by PID (tests/common). The test fails, never skips,
//! without etcd.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, Etcd};
use sluice_store::{suite, EtcdStore, Store};

#[test]
fn the_store_suite_passes_against_etcd() {
    let etcd = Etcd::start();
    suite::run_all(&etcd.store("/sluice-suite/"));
    suite::survives_reopen(&|| Box::new(etcd.store("/sluice-reopen/")));
    suite::flags::flags_survive_reopen(&|| Box::new(etcd.store("/sluice-flags-reopen/")));
}

#[test]
fn prefixes_keep_clusters_apart_and_unreachable_etcd_is_a_clear_error() {
    let etcd = Etcd::start();
    let a = etcd.store("/team-a");
    let b = etcd.store("/team-b/");
    let state = suite::service_state("web", 1, None);
    a.commit(&state, 0, &[]).unwrap();
    assert_eq!(a.load("web").unwrap(), Some(state));
    assert_eq!(b.load("web").unwrap(), None);
    assert!(b.load_all().unwrap().is_empty());
    // A service whose name holds a slash does not share another's log.
    let slashed = suite::service_state("web/v2", 1, None);
    a.commit(&slashed, 0, &[suite::decision("web/v2", 1, 0)])
        .unwrap();
    assert_eq!(a.history("web", None, None).unwrap(), vec![]);
    assert_eq!(a.history("web/v2", None, None).unwrap().len(), 1);
    let names: Vec<String> = a
        .load_all()
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect();
    assert_eq!(names, ["web", "web/v2"]);

    let port = free_port();
    let error = EtcdStore::connect(vec![format!("127.0.0.1:{port}")], "/x/")
        .err()
        .expect("nothing listens there");
    let text = error.to_string();
    assert!(
        text.contains(&format!("etcd://127.0.0.1:{port}/x/"))
            && text.contains("no etcd endpoint answered"),
        "{text}"
    );
}

#[test]
fn a_second_endpoint_serves_when_the_first_is_down() {
    let etcd = Etcd::start();
    let dead = format!("127.0.0.1:{}", free_port());
    let store = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match EtcdStore::connect(vec![dead.clone(), etcd.client.clone()], "/failover/") {
                Ok(store) => break store,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    store
        .commit(&suite::service_state("api", 1, None), 0, &[])
        .unwrap();
    assert_eq!(store.load("api").unwrap().unwrap().revision, 1);
}
