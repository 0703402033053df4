//! Test support: the behaviour every `Store` backend must have, as plain
//! functions that panic on a violation. A backend's tests call
//! [`run_all`] with one store and [`survives_reopen`] with a way to reopen it
//! (see this crate's tests for the file and memory backends).
//!
//! Each check uses its own service names (prefixed by the check's name), so
//! all of them can share one store, e.g. one etcd key prefix. The flag checks
//! are in [`flags`], the breaker-policy checks in [`breakers`]; `run_all` and
//! `survives_reopen` include them.

use std::time::Duration;

use sluice_model::{CheckSpec, Metric, Step, Timestamp, Weight};
use sluice_rollout::{Decision, DecisionKind, Phase, Rollout, ServiceState};

use crate::{Store, StoreError};

pub mod breakers;
pub mod flags;

/// Runs every check that needs only one open store, the flag checks included.
pub fn run_all(store: &dyn Store) {
    round_trip(store);
    compare_and_swap(store);
    concurrent_commits_one_wins(store);
    history_order_filter_limit(store);
    commit_is_atomic(store);
    load_all_lists_every_service(store);
    flags::run_all(store);
    breakers::run_all(store);
}

/// What is committed is loaded back unchanged; an unknown service is `None`.
pub fn round_trip(store: &dyn Store) {
    let name = "round-trip-web";
    assert_eq!(store.load(name).expect("load"), None);

    let first = service_state(name, 1, None);
    store.commit(&first, 0, &[]).expect("first commit");
    assert_eq!(store.load(name).expect("load").as_ref(), Some(&first));

    let mut second = service_state(name, 2, Some(rollout(name, 1)));
    second.canary = Some(vec!["127.0.0.1:8082".to_string()]);
    second.canary_weight = weight(12.5);
    store.commit(&second, 1, &[]).expect("second commit");
    assert_eq!(store.load(name).expect("load"), Some(second));
    assert_eq!(store.load("round-trip-other").expect("load"), None);
}

/// A commit against a stale or wrong revision fails and changes nothing.
pub fn compare_and_swap(store: &dyn Store) {
    let name = "cas-web";
    let first = service_state(name, 1, None);
    store.commit(&first, 0, &[]).expect("create");

    // Creating again ("must not exist yet") conflicts.
    let err = store.commit(&first, 0, &[]).expect_err("create twice");
    assert_conflict(&err, name, 0, 1);

    // A writer that read revision 1 wins; a second one that read it too loses.
    store
        .commit(&service_state(name, 2, None), 1, &[decision(name, 1, 0)])
        .expect("commit at revision 1");
    let err = store
        .commit(&service_state(name, 2, None), 1, &[decision(name, 1, 1)])
        .expect_err("stale revision");
    assert_conflict(&err, name, 1, 2);
    assert_eq!(store.history(name, None, None).expect("history").len(), 1);

    // Expecting a revision of a service that does not exist conflicts with 0.
    let err = store
        .commit(&service_state("cas-missing", 4, None), 3, &[])
        .expect_err("missing service");
    assert_conflict(&err, "cas-missing", 3, 0);
    assert_eq!(store.load("cas-missing").expect("load"), None);

    // A state that does not carry the next revision is refused before any I/O.
    let err = store
        .commit(&service_state(name, 7, None), 2, &[])
        .expect_err("revision must be expected + 1");
    assert!(matches!(err, StoreError::BadRevision { .. }), "{err}");
    assert_eq!(store.load(name).expect("load").map(|s| s.revision), Some(2));
}

/// Of several writers racing on one revision, exactly one succeeds.
pub fn concurrent_commits_one_wins(store: &dyn Store) {
    let name = "race-web";
    store
        .commit(&service_state(name, 1, None), 0, &[])
        .expect("create");
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                scope.spawn(move || {
                    let state = service_state(name, 2, None);
                    store.commit(&state, 1, &[decision(name, 1, writer)])
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .collect()
    });
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one racing commit wins: {results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_conflict(err, name, 1, 2);
    }
    assert_eq!(store.history(name, None, None).expect("history").len(), 1);
}

/// History is ordered by (rollout, seq), filtered by rollout, cut to the newest N.
pub fn history_order_filter_limit(store: &dyn Store) {
    let name = "history-web";
    // Rollout 2's decisions are committed before some of rollout 1's and out
    // of order inside one commit: the log is ordered by key, not by arrival.
    let commits: [(u64, Vec<Decision>); 3] = [
        (1, vec![decision(name, 1, 1), decision(name, 1, 0)]),
        (2, vec![decision(name, 2, 0)]),
        (3, vec![decision(name, 1, 2), decision(name, 2, 1)]),
    ];
    for (revision, decisions) in &commits {
        let state = service_state(name, *revision, None);
        store
            .commit(&state, revision - 1, decisions)
            .expect("commit");
    }
    // Another service's log, whose name sorts right after, stays apart.
    store
        .commit(
            &service_state("history-web2", 1, None),
            0,
            &[decision("history-web2", 1, 9)],
        )
        .expect("other service");

    let keys = |ds: Vec<Decision>| ds.iter().map(|d| (d.rollout_id, d.seq)).collect::<Vec<_>>();
    let all = store.history(name, None, None).expect("history");
    assert!(all.iter().all(|d| d.service == name));
    assert_eq!(keys(all), [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]);
    assert_eq!(
        keys(store.history(name, Some(1), None).expect("history")),
        [(1, 0), (1, 1), (1, 2)]
    );
    assert_eq!(
        keys(store.history(name, Some(2), Some(1)).expect("history")),
        [(2, 1)]
    );
    assert_eq!(
        keys(store.history(name, None, Some(3)).expect("history")),
        [(1, 2), (2, 0), (2, 1)]
    );
    assert_eq!(
        keys(store.history(name, Some(1), Some(10)).expect("history")),
        [(1, 0), (1, 1), (1, 2)]
    );
    assert!(store
        .history(name, None, Some(0))
        .expect("history")
        .is_empty());
    assert!(store
        .history(name, Some(3), None)
        .expect("history")
        .is_empty());
    assert!(store
        .history("history-none", None, None)
        .expect("history")
        .is_empty());

    // A decision is stored whole.
    let stored = store.history(name, Some(2), Some(1)).expect("history");
    assert_eq!(stored, [decision(name, 2, 1)]);
}

/// A commit that fails writes neither its state nor any of its decisions.
pub fn commit_is_atomic(store: &dyn Store) {
    let name = "atomic-web";
    store
        .commit(&service_state(name, 1, None), 0, &[decision(name, 1, 0)])
        .expect("create");

    // The last decision repeats a logged one: the whole commit is refused.
    let attempt = service_state(name, 2, Some(rollout(name, 1)));
    let err = store
        .commit(
            &attempt,
            1,
            &[
                decision(name, 1, 1),
                decision(name, 1, 2),
                decision(name, 1, 0),
            ],
        )
        .expect_err("duplicate decision");
    assert!(
        matches!(
            err,
            StoreError::DuplicateDecision {
                rollout_id: 1,
                seq: 0,
                ..
            }
        ),
        "{err}"
    );
    // A repeat inside one commit is refused too.
    let err = store
        .commit(&attempt, 1, &[decision(name, 1, 5), decision(name, 1, 5)])
        .expect_err("duplicate inside one commit");
    assert!(matches!(err, StoreError::DuplicateDecision { .. }), "{err}");
    // So is another service's decision.
    let err = store
        .commit(
            &attempt,
            1,
            &[decision(name, 1, 1), decision("atomic-other", 1, 0)],
        )
        .expect_err("foreign decision");
    assert!(matches!(err, StoreError::ForeignDecision { .. }), "{err}");

    assert_eq!(store.load(name).expect("load").map(|s| s.revision), Some(1));
    assert_eq!(store.history(name, None, None).expect("history").len(), 1);
    assert!(store
        .history("atomic-other", None, None)
        .expect("history")
        .is_empty());

    // The same commit without the faults goes through whole.
    let decisions = [decision(name, 1, 1), decision(name, 1, 2)];
    store.commit(&attempt, 1, &decisions).expect("commit");
    assert_eq!(store.load(name).expect("load"), Some(attempt));
    assert_eq!(store.history(name, None, None).expect("history").len(), 3);
}

/// `load_all` returns every service, ordered by name.
pub fn load_all_lists_every_service(store: &dyn Store) {
    let names = ["load-all-c", "load-all-a", "load-all-b"];
    for (i, name) in names.iter().enumerate() {
        let with_rollout = (i == 1).then(|| rollout(name, 3));
        store
            .commit(&service_state(name, 1, with_rollout), 0, &[])
            .expect("create");
    }
    let listed: Vec<ServiceState> = store
        .load_all()
        .expect("load_all")
        .into_iter()
        .filter(|s| s.service.starts_with("load-all-"))
        .collect();
    let listed_names: Vec<&str> = listed.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(listed_names, ["load-all-a", "load-all-b", "load-all-c"]);
    assert_eq!(listed[0].rollout.as_ref().map(|r| r.id), Some(3));
    let all = store.load_all().expect("load_all");
    let mut sorted: Vec<&str> = all.iter().map(|s| s.service.as_str()).collect();
    sorted.sort_unstable();
    assert!(all.iter().map(|s| s.service.as_str()).eq(sorted));
}

/// What was committed through one handle is found after it is dropped and
/// the store opened again, the flag document and log included. `open` opens
/// (or reconnects to) the same store.
pub fn survives_reopen(open: &dyn Fn() -> Box<dyn Store>) {
    let name = "reopen-web";
    let state = service_state(name, 1, Some(rollout(name, 1)));
    let decisions = [decision(name, 1, 0), decision(name, 1, 1)];
    {
        let store = open();
        store.commit(&state, 0, &decisions).expect("commit");
    }
    {
        let store = open();
        assert_eq!(store.load(name).expect("load").as_ref(), Some(&state));
        assert_eq!(store.history(name, None, None).expect("history"), decisions);
        assert!(store.load_all().expect("load_all").contains(&state));
        // The revision survived too: the next commit must expect it.
        let stale = service_state(name, 1, None);
        let err = store
            .commit(&stale, 0, &[])
            .expect_err("stale after reopen");
        assert_conflict(&err, name, 0, 1);
        let next = service_state(name, 2, None);
        store.commit(&next, 1, &[]).expect("commit after reopen");
    }
    let store = open();
    assert_eq!(store.load(name).expect("load").map(|s| s.revision), Some(2));
    drop(store);
    flags::flags_survive_reopen(open);
    breakers::policies_survive_reopen(open);
}

// === fixtures ===

/// A service with one stable endpoint at `revision`, optionally with a rollout.
pub fn service_state(service: &str, revision: u64, rollout: Option<Rollout>) -> ServiceState {
    ServiceState {
        service: service.to_string(),
        stable: vec!["127.0.0.1:8081".to_string()],
        canary: rollout.as_ref().map(|r| r.canary.clone()),
        canary_weight: rollout.as_ref().map_or(Weight::ZERO, |r| r.canary_weight),
        rollout,
        revision,
        config_stable: vec!["127.0.0.1:8081".to_string()],
        revisions: Vec::new(),
        warm: None,
    }
}

/// A rollout half-way through a plan with a weight, a timed pause and a manual pause.
pub fn rollout(service: &str, id: u64) -> Rollout {
    let at = Timestamp::from_millis(1_700_000_000_000 + id);
    Rollout {
        id,
        service: service.to_string(),
        plan: vec![
            Step::Weight(weight(0.1)),
            Step::Pause(Some(Duration::from_secs(600))),
            Step::Weight(weight(25.0)),
            Step::Pause(None),
        ],
        interval: Duration::from_secs(30),
        threshold: 3,
        min_requests: 20,
        checks: vec![
            CheckSpec::builtin_min(Metric::SuccessRate, 99.5),
            CheckSpec {
                name: Some("slow".to_string()),
                ..CheckSpec::latency_max(99.0, Duration::from_millis(250))
            },
        ],
        canary: vec!["127.0.0.1:8082".to_string()],
        phase: Phase::Progressing,
        step_index: 2,
        canary_weight: weight(0.1),
        steps_taken: 2,
        failed_runs: 1,
        passed_runs: 4,
        inconclusive_runs: 2,
        started_at: at,
        step_started_at: at,
        next_analysis_at: Some(Timestamp::from_millis(at.millis() + 30_000)),
        updated_at: at,
        last_analysis: None,
        decisions: 3,
        max_inconclusive: 10,
        inconclusive_streak: 0,
        check_memory: Vec::new(),
        judge: Default::default(),
        sequential: Default::default(),
        sequential_evidence: Default::default(),
        keep_warm: None,
        tenant_header: None,
    }
}

/// Decision `seq` of rollout `rollout_id` of `service`; its content depends on the key.
pub fn decision(service: &str, rollout_id: u64, seq: u64) -> Decision {
    Decision {
        service: service.to_string(),
        rollout_id,
        seq,
        at: Timestamp::from_millis(1_700_000_000_000 + rollout_id * 1_000 + seq),
        kind: if seq == 0 {
            DecisionKind::Started
        } else {
            DecisionKind::Advanced
        },
        from: Phase::Progressing,
        to: Phase::Progressing,
        weight: Weight::from_basis_points((seq * 100).min(10_000) as u16).unwrap_or(Weight::FULL),
        step_index: seq as usize,
        reason: format!("rollout {rollout_id} step {seq} of {service}"),
        analysis: None,
    }
}

fn weight(percent: f64) -> Weight {
    Weight::from_percent(percent).expect("a valid test weight")
}

fn assert_conflict(err: &StoreError, service: &str, expected: u64, found: u64) {
    match err {
        StoreError::Conflict {
            service: s,
            expected: e,
            found: f,
        } => assert_eq!((s.as_str(), *e, *f), (service, expected, found), "{err}"),
        other => panic!("expected a conflict on {service:?}, got: {other}"),
    }
}
