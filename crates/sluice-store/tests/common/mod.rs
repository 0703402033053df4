//! A real etcd for the store's tests (Debian's `etcd-server`, installed by
//! scripts/test.sh): a single-member cluster on loopback ports, over plain
//! HTTP or TLS, started for the test and stopped by PID. A test fails, never
//! skips, without etcd.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_store::{EtcdStore, Security};

/// A running etcd member; killed when dropped.
pub struct Etcd {
    child: Child,
    /// `127.0.0.1:PORT` of its client URL.
    pub client: String,
    dir: tempfile::TempDir,
    /// Its command line, to start it again.
    args: Vec<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A file of the test certificates (see tests/fixtures/etcd-tls/generate.sh).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/etcd-tls")
        .join(name)
}

impl Etcd {
    /// A member over plain HTTP.
    pub fn start() -> Etcd {
        Etcd::start_with("http", &[])
    }

    /// A member over TLS with the fixture server certificate, that accepts
    /// only clients with a certificate signed by the fixture CA.
    pub fn start_tls() -> Etcd {
        let (cert, key, ca) = (
            fixture("server.pem"),
            fixture("server-key.pem"),
            fixture("ca.pem"),
        );
        let args = [
            "--cert-file".to_string(),
            cert.display().to_string(),
            "--key-file".to_string(),
            key.display().to_string(),
            "--trusted-ca-file".to_string(),
            ca.display().to_string(),
            "--client-cert-auth".to_string(),
        ];
        Etcd::start_with("https", &args)
    }

    fn start_with(scheme: &str, extra: &[String]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args: Vec<String> = vec!["--name".into(), "test".into(), "--data-dir".into()];
        args.push(dir.path().join("data").display().to_string());
        for (flag, value) in [
            ("--listen-client-urls", &client_url),
            ("--advertise-client-urls", &client_url),
            ("--listen-peer-urls", &peer_url),
            ("--initial-advertise-peer-urls", &peer_url),
            ("--initial-cluster", &format!("test={peer_url}")),
        ] {
            args.push(flag.into());
            args.push(value.clone());
        }
        args.extend(extra.iter().cloned());
        let child = spawn(&args, dir.path());
        let etcd = Etcd {
            child,
            client: format!("127.0.0.1:{client}"),
            dir,
            args,
        };
        etcd.wait_listening();
        etcd
    }

    /// Kills the member (as a crash would) and starts it again on the same
    /// ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.args, self.dir.path());
        self.wait_listening();
    }

    /// Kills the member; `restart` brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.client).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen within 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A store under `prefix` over plain HTTP.
    pub fn store(&self, prefix: &str) -> EtcdStore {
        self.store_with(prefix, Security::default())
    }

    /// A store under `prefix` with TLS and/or a user; retried while the
    /// member gets ready (the listener comes up before it serves).
    pub fn store_with(&self, prefix: &str, security: Security) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match EtcdStore::connect_with(vec![self.client.clone()], prefix, security.clone()) {
                Ok(store) => return store,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("etcd store: {e}"),
            }
        }
    }

    /// What etcd logged so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

fn spawn(args: &[String], dir: &Path) -> Child {
    Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(log_file(dir))
        .spawn()
        .expect("etcd (Debian's etcd-server package; scripts/test.sh installs it)")
}

fn log_file(dir: &Path) -> Stdio {
    std::fs::File::create(dir.join("etcd.log")).unwrap().into()
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
