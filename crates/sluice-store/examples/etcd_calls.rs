//! Prints how long one store read takes through the etcd gateway client, for
//! each `store:` URL given (e.g. plain `etcd://` against `etcds://`): the
//! first call (connection, TLS handshake, token) and the mean of the next N
//! on the kept-alive connection. Run by scripts/bench-etcd.sh.
//!
//! Usage: `etcd_calls N URL...`

use std::time::Instant;

use sluice_model::StoreLocation;
use sluice_store::{EtcdStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: etcd_calls N URL...");
    for url in args {
        let StoreLocation::Etcd(location) = StoreLocation::parse(&url).expect("a store URL") else {
            panic!("{url} is not an etcd URL");
        };
        let started = Instant::now();
        let store = EtcdStore::open(&location).unwrap_or_else(|e| panic!("{url}: {e}"));
        let first = started.elapsed();
        let started = Instant::now();
        for _ in 0..calls {
            store.load("bench").expect("read");
        }
        let mean = started.elapsed() / calls.max(1);
        let scheme = url.split("://").next().unwrap_or("");
        println!(
            "{scheme:6} open (connect, handshake): {:>8.1} µs   read, mean of {calls}: {:>7.1} µs",
            first.as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6
        );
    }
}
