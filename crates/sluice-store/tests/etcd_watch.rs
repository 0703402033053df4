//! The watch that wakes cluster nodes, against a real etcd (tests/common):
//! a write under a watched prefix wakes it, one elsewhere does not, and a
//! killed and restarted etcd makes it go down and come back.

mod common;

use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::Etcd;
use sluice_store::{spawn_watch, suite, Gateway, Security, Store, Wake, WatchHandle};

/// Generous: the machine is shared.
const WAIT: Duration = Duration::from_secs(20);

fn watch(etcd: &Etcd, prefixes: &[&str]) -> (WatchHandle, Receiver<Wake>) {
    let gateway = Gateway::with_security(
        vec![etcd.client.clone()],
        Duration::from_secs(2),
        Security::default(),
    );
    let (sender, wakes) = channel();
    let prefixes = prefixes.iter().map(|p| p.to_string()).collect();
    let handle = spawn_watch(gateway, prefixes, move |wake| {
        let _ = sender.send(wake);
    })
    .unwrap();
    (handle, wakes)
}

/// Waits for `wanted`, skipping other wake-ups, within [`WAIT`].
fn wait_for(wakes: &Receiver<Wake>, wanted: Wake) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wakes.recv_timeout(left) {
            Ok(wake) if wake == wanted => return,
            Ok(_) => {}
            Err(e) => panic!("no {wanted:?} within {WAIT:?}: {e}"),
        }
    }
}

fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_write_under_a_watched_prefix_wakes_the_watcher_and_others_do_not() {
    let etcd = Etcd::start();
    let store = etcd.store("/watched/");
    let (handle, wakes) = watch(&etcd, &["/watched/rev/", "/watched/breakers/"]);
    wait_for(&wakes, Wake::Everything);
    assert!(handle.is_up());

    // A write under another prefix (the counters every node publishes) is not a change to follow.
    etcd.store("/elsewhere/")
        .commit(&suite::service_state("web", 1, None), 0, &[])
        .unwrap();
    store
        .put_breaker_policy("payments", &serde_json::json!({ "mode": "on" }))
        .unwrap();
    assert_eq!(
        wakes.recv_timeout(WAIT).unwrap(),
        Wake::Changed(1),
        "the first wake-up is the breaker policy's, not the other prefix's"
    );

    store
        .commit(&suite::service_state("web", 1, None), 0, &[])
        .unwrap();
    wait_for(&wakes, Wake::Changed(0));
    assert!(handle.is_up());
}

#[test]
fn a_killed_etcd_takes_the_watch_down_and_a_restarted_one_brings_it_back() {
    let mut etcd = Etcd::start();
    let store = etcd.store("/restart/");
    let (handle, wakes) = watch(&etcd, &["/restart/rev/"]);
    wait_for(&wakes, Wake::Everything);
    assert!(handle.is_up());

    etcd.stop();
    // Going down wakes the follower (which polls from then on).
    wait_for(&wakes, Wake::Everything);
    eventually("the watch is down", || !handle.is_up());
    assert!(handle.last_error().is_some());

    etcd.restart();
    eventually("the watch is up again", || handle.is_up());
    // Connected again: wake, for what changed while it was down.
    wait_for(&wakes, Wake::Everything);
    let deadline = Instant::now() + WAIT;
    let state = suite::service_state("web", 1, None);
    // The member may still be getting ready to take writes.
    while let Err(e) = store.commit(&state, 0, &[]) {
        assert!(Instant::now() < deadline, "etcd takes no write: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&wakes, Wake::Changed(0));
}
