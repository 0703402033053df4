//! Config pieces and breaker-policy steps that many end-to-end tests share:
//! the listeners/admin/store head of a config file, replacing a policy
//! through the CLI and reading it back from the admin API.

use std::net::SocketAddr;

use super::{admin_json, HttpClient, Sluice};

/// The head of a test config: proxy and admin on ephemeral loopback ports,
/// the embedded store in `sluice.db` beside the config. Tests append their
/// own top-level sections (`services:`, `breakers:` …) after it.
pub const CONFIG_HEAD: &str = "listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
store: sluice.db
";

impl Sluice {
    /// Replaces breaker policy `name` with `policy_yaml` through
    /// `sluice breakers set-policy NAME --file FILE` (the file written in
    /// this instance's directory); panics when the CLI fails.
    pub fn set_policy(&self, name: &str, policy_yaml: &str) {
        let file = self.dir.join(format!("{name}-policy.yaml"));
        std::fs::write(&file, policy_yaml).unwrap();
        let output = self.cli(&[
            "breakers",
            "set-policy",
            name,
            "--file",
            file.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{output:?}");
    }
}

/// The `failure_threshold` of breaker policy `default` as the admin API at
/// `admin` serves it (None when the policy has none).
pub async fn default_failure_threshold(client: &HttpClient, admin: SocketAddr) -> Option<u64> {
    let policy = admin_json(client, admin, "/api/v1/breakers/policies/default").await;
    policy["policy"]["failure_threshold"].as_u64()
}
