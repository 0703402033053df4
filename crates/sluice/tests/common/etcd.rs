//! A real single-member etcd (Debian's `etcd-server`, installed by
//! scripts/test.sh) on free loopback ports, stopped by PID; it can be
//! stopped and started again on the same ports and data. Without etcd the
//! test fails, never skips.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    /// `host:port` clients use.
    pub client: String,
    peer: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            client: format!("127.0.0.1:{}", free_port()),
            peer: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        etcd.resume();
        etcd
    }

    /// Starts the member again on its ports and data (after `stop`).
    pub fn resume(&mut self) {
        let client_url = format!("http://{}", self.client);
        let peer_url = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd (Debian's etcd-server package; scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(Instant::now() < deadline, "etcd did not answer within 20s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        answers(&self.client)
    }

    /// SIGKILL, keeping the data for `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The `store:` value for sluice nodes.
    pub fn store_url(&self, prefix: &str, lease_ttl_seconds: u64) -> String {
        format!(
            "etcd://{}/{prefix}?lease_ttl={lease_ttl_seconds}",
            self.client
        )
    }
}

/// Whether a member serves reads (the listener opens before it does).
fn answers(client: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(client) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let body = r#"{"key":"AA=="}"#;
    let request = format!(
        "POST /v3/kv/range HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-member etcd cluster on loopback; members stopped by PID.
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    /// `host:port` of each member's client listener.
    pub clients: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub fn start(size: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
                Some(
                    Command::new("etcd")
                        .args(["--name", &format!("m{i}"), "--data-dir"])
                        .arg(dir.path().join(format!("m{i}")))
                        .args(["--listen-client-urls", &client_url])
                        .args(["--advertise-client-urls", &client_url])
                        .args(["--listen-peer-urls", &peer_url])
                        .args(["--initial-advertise-peer-urls", &peer_url])
                        .args(["--initial-cluster", &initial])
                        .args(["--initial-cluster-state", "new"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::from(log))
                        .spawn()
                        .expect("etcd (Debian's etcd-server package; scripts/test.sh installs it)"),
                )
            })
            .collect();
        let cluster = EtcdCluster {
            members,
            clients: ports
                .iter()
                .map(|(client, _)| format!("127.0.0.1:{client}"))
                .collect(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for client in &cluster.clients {
            while !answers(client) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member {client} did not answer within 30s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// SIGKILL one member.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn store_url(&self, prefix: &str, lease_ttl_seconds: u64) -> String {
        format!(
            "etcd://{}/{prefix}?lease_ttl={lease_ttl_seconds}",
            self.clients.join(",")
        )
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            self.kill(member);
        }
    }
}
