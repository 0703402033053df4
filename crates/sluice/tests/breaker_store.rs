//! Breaker policies replaced through the admin API are kept in the store: a
//! restarted sluice serves them, until the config's `breakers` section
//! changes (then the file's policies win, as on a reload).

mod common;

use std::sync::atomic::Ordering;

use common::*;

/// One service `api` on `upstream` guarded by the `default` policy, which
/// the file sets to open after `failures` consecutive failures.
fn config(upstream: &str, failures: u32) -> String {
    format!(
        r#"{CONFIG_HEAD}breakers:
  policies:
    default:
      failure_threshold: {failures}
      error_rate_threshold: null
      open_duration: 1m
      max_open_duration: 1m
services:
  - name: api
    versions:
      stable: {{ endpoints: ["{upstream}"] }}
    breaker:
      policy: default
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_replaced_through_the_api_survives_a_restart_until_the_file_changes() {
    let upstream = Upstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let sluice = Sluice::start(dir.path(), &config(&upstream.endpoint(), 5));
    assert_eq!(
        default_failure_threshold(&client, sluice.admin).await,
        Some(5)
    );

    sluice.set_policy("default", "failure_threshold: 2\nerror_rate_threshold: null\nopen_duration: 1m\nmax_open_duration: 1m\n");
    assert_eq!(
        default_failure_threshold(&client, sluice.admin).await,
        Some(2)
    );
    sluice.kill9();

    // Restarted on the same file and store: the replaced policy is served,
    // and it is what the breaker applies (two failures open it).
    let sluice = Sluice::start_existing(dir.path());
    assert_eq!(
        default_failure_threshold(&client, sluice.admin).await,
        Some(2)
    );
    upstream.behaviour.fail_every.store(1, Ordering::Relaxed);
    for _ in 0..2 {
        assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 500);
    }
    assert_eq!(fetch(&client, sluice.proxy, "/", &[]).await.status, 503);
    assert!(
        sluice
            .log_text()
            .contains("breaker policy taken from the store"),
        "{}",
        sluice.log_text()
    );
    sluice.kill9();

    // A new `breakers` section in the file wins over the stored policy.
    let sluice = Sluice::start(dir.path(), &config(&upstream.endpoint(), 4));
    assert_eq!(
        default_failure_threshold(&client, sluice.admin).await,
        Some(4)
    );
    sluice.kill9();
}
