//! `sluice cluster status`: the nodes of a cluster-mode sluice, the leader,
//! each node's config digest, revisions and lag, through any node's admin API.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::cli::Remote;
use crate::client::AdminClient;
use crate::output;
use crate::watch::{self, WatchArgs};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// The nodes (from their leased registrations), the leader, config digests and lag.
    Status {
        #[command(flatten)]
        watch: WatchArgs,
    },
}

pub async fn run(command: ClusterCommand, remote: Remote) -> anyhow::Result<ExitCode> {
    let api = AdminClient::new(&remote)?;
    let output = remote.output;
    match command {
        ClusterCommand::Status { watch } => {
            watch::repeat(watch, output, || async {
                let answer: Value = api.get("/api/v1/cluster").await?;
                output::render(&answer, output, status_table)
            })
            .await
        }
    }
}

fn status_table(status: &Value) -> String {
    let mut out = format!(
        "leader: {}\n{:<24} {:<22} {:<7} {:<17} {:<8} {:>4}  REVISIONS\n",
        status["leader"].as_str().unwrap_or("(none)"),
        "NODE",
        "ADMIN",
        "LEADER",
        "CONFIG",
        "FOLLOWS",
        "LAG"
    );
    for node in status["nodes"].as_array().into_iter().flatten() {
        let revisions = node["revisions"]
            .as_object()
            .map(|r| {
                r.iter()
                    .map(|(service, revision)| format!("{service}={revision}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<7} {:<17} {:<8} {:>4}  {}",
            node["node"].as_str().unwrap_or(""),
            node["admin"].as_str().unwrap_or(""),
            if node["leader"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            node["config_digest"].as_str().unwrap_or(""),
            // A node watching etcd sees a change at once; one polling, within a second.
            if node["watching"].as_bool() == Some(true) {
                "watch"
            } else {
                "poll"
            },
            node["lag"].as_u64().unwrap_or(0),
            revisions
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::status_table;

    #[test]
    fn the_table_names_the_leader_and_each_node() {
        let status = serde_json::json!({
            "leader": "a",
            "nodes": [
                { "node": "a", "admin": "10.0.0.1:9090", "leader": true, "config_digest": "00ff", "watching": true, "lag": 0, "revisions": { "web": 7 } },
                { "node": "b", "admin": "10.0.0.2:9090", "leader": false, "config_digest": "00ff", "lag": 1, "revisions": { "web": 6 } },
            ],
        });
        let table = status_table(&status);
        assert!(table.starts_with("leader: a\n"), "{table}");
        assert!(table.contains("yes") && table.contains("web=6"), "{table}");
        let follows: Vec<_> = table
            .lines()
            .skip(2)
            .map(|line| line.split_whitespace().nth(4))
            .collect();
        assert_eq!(follows, [Some("watch"), Some("poll")], "{table}");
        assert_eq!(table.lines().count(), 4, "{table}");
    }
}
