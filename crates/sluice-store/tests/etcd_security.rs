//! The etcd store over TLS (a real etcd with `--client-cert-auth` and the
//! fixture certificates) and with etcd's user authentication (enabled on a
//! real etcd through its own gateway API): what works with the right
//! certificates and password, and the clear errors with wrong ones.

mod common;

use std::time::{Duration, Instant};

use common::{fixture, Etcd};
use serde_json::json;
use sluice_model::StoreLocation;
use sluice_store::{b64, suite, EtcdStore, Gateway, Store, StoreError};

/// `etcds://` URL options for the fixture CA and client certificate.
fn tls_options(ca: &str) -> String {
    format!(
        "ca={}&cert={}&key={}",
        fixture(ca).display(),
        fixture("client.pem").display(),
        fixture("client-key.pem").display()
    )
}

/// Opens the store a `store:` value names, as the server does.
fn open(store: &str) -> Result<EtcdStore, StoreError> {
    match StoreLocation::parse(store) {
        Ok(StoreLocation::Etcd(location)) => EtcdStore::open(&location),
        other => panic!("{store}: {other:?}"),
    }
}

/// Opens it, retrying while the member gets ready.
fn open_eventually(store: &str) -> EtcdStore {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match open(store) {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{store}: {e}"),
        }
    }
}

#[test]
fn the_store_suite_passes_over_tls_with_a_client_certificate() {
    let etcd = Etcd::start_tls();
    let base = format!("etcds://{}", etcd.client);
    let options = tls_options("ca.pem");
    suite::run_all(&open_eventually(&format!("{base}/tls-suite?{options}")));
    suite::survives_reopen(&|| Box::new(open_eventually(&format!("{base}/tls-reopen?{options}"))));
    // The certificate is checked against another name than the endpoint's host.
    let named = open_eventually(&format!("{base}/tls-named?{options}&server_name=etcd.test"));
    named
        .commit(&suite::service_state("web", 1, None), 0, &[])
        .expect("commit over TLS");
    assert_eq!(
        named.load("web").expect("load").map(|s| s.revision),
        Some(1)
    );
}

#[test]
fn a_wrong_ca_name_or_missing_client_certificate_is_a_clear_error() {
    let etcd = Etcd::start_tls();
    let base = format!("etcds://{}", etcd.client);
    open_eventually(&format!("{base}/ok?{}", tls_options("ca.pem")));

    let text = open(&format!("{base}/x?{}", tls_options("other-ca.pem")))
        .err()
        .expect("a CA that did not sign etcd's certificate")
        .to_string();
    assert!(
        text.contains(&format!("cannot open store {base}/x/"))
            && text.contains("TLS handshake failed")
            && text.contains("not signed by a CA that ca= names"),
        "{text}"
    );

    let text = open(&format!(
        "{base}/x?{}&server_name=other.test",
        tls_options("ca.pem")
    ))
    .err()
    .expect("a name the certificate does not carry")
    .to_string();
    assert!(
        text.contains("set server_name= to a name it carries"),
        "{text}"
    );

    let ca_only = format!("ca={}", fixture("ca.pem").display());
    let text = open(&format!("{base}/x?{ca_only}"))
        .err()
        .expect("etcd wants a client certificate")
        .to_string();
    assert!(
        text.contains(&format!("cannot open store {base}/x/")),
        "{text}"
    );
    assert!(text.contains("set cert= and key="), "{text}");

    // Plain HTTP to a TLS member does not get through either.
    let text = open(&format!("etcd://{}/x", etcd.client))
        .err()
        .expect("plain HTTP to a TLS port")
        .to_string();
    assert!(text.contains("cannot open store etcd://"), "{text}");

    let missing = fixture("no-such-ca.pem");
    let text = open(&format!("{base}/x?ca={}", missing.display()))
        .err()
        .expect("a CA file that does not exist")
        .to_string();
    assert!(
        text.contains(&format!("ca={}: cannot read it", missing.display())),
        "{text}"
    );
}

/// Root's gateway calls while auth is being set up or toggled.
fn as_root(gateway: &Gateway, path: &str, body: serde_json::Value) {
    gateway
        .call(path, &body)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// Adds `root` and `sluice` (read-write under `/sluice-auth/` only) and
/// enables etcd's authentication; returns root's token.
fn enable_auth(etcd: &Etcd) -> String {
    // Wait for the member to serve before setting it up.
    etcd.store("/ready/");
    let admin = Gateway::new(vec![etcd.client.clone()], Duration::from_secs(5));
    as_root(
        &admin,
        "/v3/auth/user/add",
        json!({ "name": "root", "password": "root-pw" }),
    );
    as_root(
        &admin,
        "/v3/auth/user/grant",
        json!({ "user": "root", "role": "root" }),
    );
    as_root(
        &admin,
        "/v3/auth/user/add",
        json!({ "name": "sluice", "password": "right-pw" }),
    );
    as_root(&admin, "/v3/auth/role/add", json!({ "name": "sluice" }));
    let perm = json!({
        "permType": "READWRITE",
        "key": b64(b"/sluice-auth/"),
        "range_end": b64(&sluice_store::range_end(b"/sluice-auth/")),
    });
    as_root(
        &admin,
        "/v3/auth/role/grant",
        json!({ "name": "sluice", "perm": perm }),
    );
    as_root(
        &admin,
        "/v3/auth/user/grant",
        json!({ "user": "sluice", "role": "sluice" }),
    );
    as_root(&admin, "/v3/auth/enable", json!({}));
    let answer = admin
        .call(
            "/v3/auth/authenticate",
            &json!({ "name": "root", "password": "root-pw" }),
        )
        .expect("root authenticates");
    answer["token"].as_str().expect("a token").to_string()
}

#[test]
fn a_user_reads_and_writes_with_the_right_password_and_is_refused_with_a_wrong_one() {
    let etcd = Etcd::start();
    let root_token = enable_auth(&etcd);
    let dir = tempfile::tempdir().expect("temp dir");
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "right-pw\n").expect("write");
    std::fs::write(&wrong, "wrong-pw\n").expect("write");
    let base = format!("etcd://{}/sluice-auth", etcd.client);

    let store = open(&format!(
        "{base}?user=sluice&password_file={}",
        right.display()
    ))
    .expect("the right password");
    suite::run_all(&store);
    std::env::set_var("SLUICE_TEST_ETCD_PASSWORD", "right-pw");
    let from_env = open(&format!(
        "{base}?user=sluice&password_env=SLUICE_TEST_ETCD_PASSWORD"
    ))
    .expect("the right password from the environment");
    assert!(from_env.load("round-trip-web").expect("load").is_some());

    let text = open(&format!(
        "{base}?user=sluice&password_file={}",
        wrong.display()
    ))
    .err()
    .expect("a wrong password")
    .to_string();
    assert!(
        text.contains(&format!("cannot open store {base}/"))
            && text.contains("refused user \"sluice\"")
            && text.contains("invalid user ID or password")
            && !text.contains("wrong-pw"),
        "{text}"
    );
    let text = open(&base).err().expect("no user").to_string();
    assert!(text.contains("user name is empty"), "{text}");
    // The user may not leave its prefix.
    let text = open(&format!(
        "etcd://{}/other?user=sluice&password_file={}",
        etcd.client,
        right.display()
    ))
    .err()
    .expect("outside the user's keys")
    .to_string();
    assert!(text.contains("permission denied"), "{text}");

    // Disabling and enabling auth drops every token: the store gets a new
    // one and goes on.
    let admin = Gateway::new(vec![etcd.client.clone()], Duration::from_secs(5));
    let disable = format!(
        "POST /v3/auth/disable HTTP/1.1\r\nHost: x\r\nAuthorization: {root_token}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    raw_request(&etcd.client, &disable);
    as_root(&admin, "/v3/auth/enable", json!({}));
    let state = store
        .load("round-trip-web")
        .expect("load after a new token");
    let mut next = state.expect("stored by the suite");
    let revision = next.revision;
    next.revision += 1;
    store
        .commit(&next, revision, &[])
        .expect("commit after a new token");
}

/// One request on its own connection, for a header the gateway client does not send.
fn raw_request(address: &str, request: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Watches `prefix` with `store`'s TLS and user; Err if no change under it
/// wakes the watch within a generous bound.
fn a_write_wakes_a_watch(etcd: &Etcd, store: &EtcdStore, prefix: &str) -> Result<(), String> {
    use sluice_store::{spawn_watch, Wake};
    let gateway = Gateway::with_security(
        vec![etcd.client.clone()],
        Duration::from_secs(2),
        store.security(),
    );
    let (sender, wakes) = std::sync::mpsc::channel();
    let handle = spawn_watch(gateway, vec![format!("{prefix}rev/")], move |wake| {
        let _ = sender.send(wake);
    })
    .expect("watch thread");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !handle.is_up() {
        if Instant::now() > deadline {
            return Err(format!("no watch: {:?}", handle.last_error()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    store
        .commit(&suite::service_state("watched", 1, None), 0, &[])
        .map_err(|e| e.to_string())?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wakes.recv_timeout(left) {
            Ok(Wake::Changed(0)) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("not woken: {e}")),
        }
    }
}

#[test]
fn the_watch_works_over_tls_and_with_a_user() {
    let tls = Etcd::start_tls();
    let options = tls_options("ca.pem");
    let store = open_eventually(&format!("etcds://{}/tls-watch?{options}", tls.client));
    a_write_wakes_a_watch(&tls, &store, "/tls-watch/").expect("a watch over TLS");

    let etcd = Etcd::start();
    enable_auth(&etcd);
    std::env::set_var("SLUICE_TEST_ETCD_WATCH_PASSWORD", "right-pw");
    let store = open(&format!(
        "etcd://{}/sluice-auth/watch?user=sluice&password_env=SLUICE_TEST_ETCD_WATCH_PASSWORD",
        etcd.client
    ))
    .expect("the right password");
    a_write_wakes_a_watch(&etcd, &store, "/sluice-auth/watch/").expect("a watch with a user");
}
