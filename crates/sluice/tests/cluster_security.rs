//! Cluster mode against an etcd over TLS (the fixture certificates of
//! sluice-store's tests) with etcd users (auth enabled through the gateway
//! API): two real nodes elect a leader, register and serve a policy one of
//! them stored; a node with a wrong password does not start and says why,
//! and so does one facing an etcd that wants client certificates and users
//! at once (which its JSON gateway cannot serve).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sluice_model::StoreLocation;
use sluice_store::{b64, range_end, Gateway, Security};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sluice-store/tests/fixtures/etcd-tls")
        .join(name)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A TLS etcd member; killed when dropped.
struct TlsEtcd {
    child: Child,
    client: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `client_cert_auth`, it wants a client certificate signed by the fixture CA.
fn start_etcd(client_cert_auth: bool) -> TlsEtcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = Command::new("etcd")
        .args(["--name", "tls", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("tls={peer_url}")])
        .arg("--cert-file")
        .arg(fixture("server.pem"))
        .arg("--key-file")
        .arg(fixture("server-key.pem"))
        // etcd asks for client certificates whenever it has a CA to check them.
        .args(
            client_cert_auth
                .then(|| {
                    [
                        "--trusted-ca-file".into(),
                        fixture("ca.pem").into_os_string(),
                        "--client-cert-auth".into(),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("etcd (Debian's etcd-server package; scripts/test.sh installs it)");
    TlsEtcd {
        child,
        client: format!("127.0.0.1:{client}"),
        _dir: dir,
    }
}

/// The `store:` URL's TLS options.
fn tls_options() -> String {
    format!(
        "ca={}&cert={}&key={}",
        fixture("ca.pem").display(),
        fixture("client.pem").display(),
        fixture("client-key.pem").display()
    )
}

/// A gateway client over TLS without a user, as root before auth is on.
fn admin_gateway(etcd: &TlsEtcd) -> Gateway {
    let url = format!("etcds://{}?{}", etcd.client, tls_options());
    let Ok(StoreLocation::Etcd(location)) = StoreLocation::parse(&url) else {
        panic!("{url}")
    };
    let security = Security::from_location(&location).expect("fixture files");
    Gateway::with_security(vec![etcd.client.clone()], Duration::from_secs(5), security)
}

/// Adds `root` and `sluice` (read-write under `/cluster-tls/`) and enables auth.
fn enable_auth(gateway: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway
        .call("/v3/kv/range", &json!({ "key": b64(b"x") }))
        .is_err()
    {
        assert!(Instant::now() < deadline, "etcd did not serve within 20s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let perm = json!({
        "permType": "READWRITE",
        "key": b64(b"/cluster-tls/"),
        "range_end": b64(&range_end(b"/cluster-tls/")),
    });
    for (path, body) in [
        (
            "/v3/auth/user/add",
            json!({ "name": "root", "password": "root-pw" }),
        ),
        (
            "/v3/auth/user/grant",
            json!({ "user": "root", "role": "root" }),
        ),
        (
            "/v3/auth/user/add",
            json!({ "name": "sluice", "password": "node-pw" }),
        ),
        ("/v3/auth/role/add", json!({ "name": "sluice" })),
        (
            "/v3/auth/role/grant",
            json!({ "name": "sluice", "perm": perm }),
        ),
        (
            "/v3/auth/user/grant",
            json!({ "user": "sluice", "role": "sluice" }),
        ),
        ("/v3/auth/enable", json!({})),
    ] {
        gateway
            .call(path, &body)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

fn node_config(store: &str, v1: &Upstream, v2: &Upstream) -> String {
    let plan = "      interval: 1s\n      step_weights: [10, 50]\n";
    service_config(&v1.endpoint(), &v2.endpoint(), plan)
        .replace("store: sluice.db", &format!("store: \"{store}\""))
}

fn start_node(dir: &Path, name: &str, config: &str) -> Sluice {
    std::fs::write(dir.join("sluice.yaml"), config).unwrap();
    let path = dir.join("sluice.yaml");
    Sluice::start_with(
        dir,
        &["run", "-c", path.to_str().unwrap()],
        &[("SLUICE_NODE_NAME", name)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lead_and_follow_over_tls_as_an_etcd_user() {
    let etcd = start_etcd(false);
    enable_auth(&admin_gateway(&etcd));
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let password = dirs[0].path().join("etcd-password");
    std::fs::write(&password, "node-pw\n").unwrap();
    let store = format!(
        "etcds://{}/cluster-tls?ca={}&user=sluice&password_file={}&lease_ttl=2",
        etcd.client,
        fixture("ca.pem").display(),
        password.display()
    );
    let config = node_config(&store, &v1, &v2);
    let a = start_node(dirs[0].path(), "a", &config);
    let b = start_node(dirs[1].path(), "b", &config);
    let client = client();

    // Both nodes registered (leased puts), one leads (a leased campaign).
    let cluster = eventually(
        Duration::from_secs(20),
        "both nodes registered, watching etcd, and one leader",
        || async {
            let (status, _, body) = get(&client, b.admin, "/api/v1/cluster", &[]).await;
            let cluster: Value = serde_json::from_str(&body).ok()?;
            let nodes = cluster["nodes"].as_array()?;
            // Each node's etcd watch runs over TLS as the user too.
            let watching = nodes.iter().all(|n| n["watching"] == true);
            (status == 200 && nodes.len() == 2 && watching && cluster["leader"].is_string())
                .then_some(cluster)
        },
    )
    .await;
    assert!(
        ["a", "b"].contains(&cluster["leader"].as_str().unwrap()),
        "{cluster}"
    );
    for node in [&a, &b] {
        let (status, _, body) = get(&client, node.admin, "/readyz", &[]).await;
        assert_eq!(status, 200, "{body}");
    }

    // Reads and writes through etcd: a policy stored through one node is
    // served by the other.
    a.set_policy(
        "default",
        "failure_threshold: 2\nerror_rate_threshold: null\n",
    );
    eventually(
        Duration::from_secs(5),
        "node b to serve the policy node a stored",
        || async { (default_failure_threshold(&client, b.admin).await == Some(2)).then_some(()) },
    )
    .await;
    a.kill9();
    b.kill9();

    // A wrong password: the node does not start, and says why.
    std::fs::write(&password, "wrong-pw\n").unwrap();
    let stderr = fails_to_start(dirs[0].path());
    assert!(
        stderr.contains("refused user \"sluice\"")
            && stderr.contains("invalid user ID or password")
            && !stderr.contains("wrong-pw"),
        "{stderr}"
    );
}

/// Runs `sluice run` on the config in `dir`, which must exit (bounded) with
/// an error; returns what it printed.
fn fails_to_start(dir: &Path) -> String {
    let path = dir.join("sluice.yaml");
    let mut child = Command::new(binary())
        .args(["run", "-c", path.to_str().unwrap()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_users_at_once_is_a_clear_error() {
    let etcd = start_etcd(true);
    enable_auth(&admin_gateway(&etcd));
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "etcds://{}/cluster-tls?{}&user=sluice&password_env=SLUICE_TEST_NODE_PW",
        etcd.client,
        tls_options(),
    );
    std::fs::write(
        dir.path().join("sluice.yaml"),
        node_config(&store, &v1, &v2),
    )
    .unwrap();
    std::env::set_var("SLUICE_TEST_NODE_PW", "node-pw");
    let stderr = fails_to_start(dir.path());
    assert!(
        stderr.contains("refused user \"sluice\"")
            && stderr.contains("use users without --client-cert-auth")
            && !stderr.contains("node-pw"),
        "{stderr}"
    );
}
