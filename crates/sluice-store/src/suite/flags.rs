//! The flag part of the suite: the flag document's compare-and-swap and the
//! append-only flag log.
//!
//! There is one flag document per store, so these checks cannot give it names
//! of their own as the service checks do: each one starts from whatever
//! revision it finds and works relative to it. The flag keys a check filters
//! by are its name followed by the log's last seq when it starts, so they
//! are new even in a store where the suite has run before.

use serde_json::json;
use sluice_model::Timestamp;

use crate::{FlagChange, FlagDocument, Store, StoreError};

/// Runs every flag check that needs only one open store.
pub fn run_all(store: &dyn Store) {
    flag_document_round_trip(store);
    flag_compare_and_swap(store);
    concurrent_flag_commits_one_wins(store);
    flag_seq_assigned_in_order(store);
    flag_changes_filter_limit(store);
    flag_commit_is_atomic(store);
}

/// What is committed is loaded back unchanged, with the next revision.
pub fn flag_document_round_trip(store: &dyn Store) {
    let base = flag_revision(store);
    let first = json!({ "flags": { "flag-round-trip": { "on": true } } });
    let change = flag_change(Some("flag-round-trip"), "set", 1);
    store
        .commit_flags(&first, base, &change)
        .expect("first flag commit");
    assert_eq!(
        store.load_flags().expect("load_flags"),
        Some(FlagDocument {
            revision: base + 1,
            document: first,
        })
    );

    // Any JSON survives: nesting, unicode, big and fractional numbers, null.
    let second = json!({
        "flags": {
            "flag-round-trip": {
                "on": false,
                "variants": { "ü-nïcode ✓": [1, 2.5, -3, null, u64::MAX] },
                "rules": [{ "if": [{ "==": [{ "var": "plan" }, "pro"] }, "on", "off"] }],
            },
        },
        "empty": {},
    });
    store
        .commit_flags(
            &second,
            base + 1,
            &flag_change(Some("flag-round-trip"), "set", 2),
        )
        .expect("second flag commit");
    let loaded = store.load_flags().expect("load_flags").expect("a document");
    assert_eq!(loaded.revision, base + 2);
    assert_eq!(loaded.document, second);
}

/// A flag commit against a stale or wrong revision fails and changes nothing.
pub fn flag_compare_and_swap(store: &dyn Store) {
    let key = &fresh_key(store, "flag-cas");
    let before = store.load_flags().expect("load_flags");
    let base = before.as_ref().map_or(0, |d| d.revision);
    // Expecting a revision that is not stored conflicts, with 0 if none is.
    let err = store
        .commit_flags(
            &json!({ "wrong": true }),
            base + 3,
            &flag_change(Some(key), "set", 0),
        )
        .expect_err("revision not stored");
    assert_flag_conflict(&err, base + 3, base);
    assert_eq!(store.load_flags().expect("load_flags"), before);

    // A writer that read revision `base` wins; a second one that read it too loses.
    let winner = json!({ "flags": { key: "winner" } });
    store
        .commit_flags(&winner, base, &flag_change(Some(key), "set", 1))
        .expect("commit at the stored revision");
    let err = store
        .commit_flags(
            &json!({ "loser": true }),
            base,
            &flag_change(Some(key), "set", 2),
        )
        .expect_err("stale revision");
    assert_flag_conflict(&err, base, base + 1);
    assert!(err.is_conflict(), "{err}");
    let stored = store.load_flags().expect("load_flags").expect("a document");
    assert_eq!((stored.revision, stored.document), (base + 1, winner));
    assert_eq!(keys_and_numbers(store, key), [(key.to_string(), 1)]);

    // A revision with no next one is refused before any I/O.
    let err = store
        .commit_flags(&json!({}), u64::MAX, &flag_change(Some(key), "set", 3))
        .expect_err("no next revision");
    assert!(matches!(err, StoreError::FlagBadRevision { .. }), "{err}");
    assert_eq!(flag_revision(store), base + 1);
    assert_eq!(keys_and_numbers(store, key).len(), 1);
}

/// Of several flag writers racing on one revision, exactly one succeeds, and
/// the document and the log hold its change only.
pub fn concurrent_flag_commits_one_wins(store: &dyn Store) {
    let key = &fresh_key(store, "flag-race");
    let base = flag_revision(store);
    let results: Vec<Result<u64, StoreError>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                scope.spawn(move || {
                    let document = json!({ "writer": writer });
                    store.commit_flags(&document, base, &flag_change(Some(key), "set", writer))
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer thread"))
            .collect()
    });
    let wins: Vec<u64> = (0..4u64)
        .filter(|writer| results[*writer as usize].is_ok())
        .collect();
    assert_eq!(
        wins.len(),
        1,
        "exactly one racing flag commit wins: {results:?}"
    );
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_flag_conflict(err, base, base + 1);
    }
    let stored = store.load_flags().expect("load_flags").expect("a document");
    assert_eq!(stored.revision, base + 1);
    assert_eq!(stored.document, json!({ "writer": wins[0] }));
    assert_eq!(keys_and_numbers(store, key), [(key.to_string(), wins[0])]);
}

/// Every append, with or without a document, takes the next seq (1 in an
/// empty log); the seq passed in is ignored; a change is stored whole.
pub fn flag_seq_assigned_in_order(store: &dyn Store) {
    let last = last_seq(store);
    let base = flag_revision(store);
    let mut with_stale_seq = flag_change(Some("flag-seq-a"), "kill", 1);
    with_stale_seq.seq = 999;
    let reload = FlagChange {
        before: None,
        after: None,
        ..flag_change(None, "reload", 3)
    };
    let seqs = [
        store.append_flag_change(&with_stale_seq).expect("append"),
        store
            .commit_flags(
                &json!({ "n": 1 }),
                base,
                &flag_change(Some("flag-seq-b"), "set", 2),
            )
            .expect("commit"),
        store.append_flag_change(&reload).expect("append reload"),
        store
            .commit_flags(
                &json!({ "n": 2 }),
                base + 1,
                &flag_change(Some("flag-seq-a"), "revive", 4),
            )
            .expect("commit"),
    ];
    assert_eq!(seqs, [last + 1, last + 2, last + 3, last + 4]);

    let logged = store.flag_changes(None, Some(4)).expect("flag_changes");
    let expected = [
        with_stale_seq,
        flag_change(Some("flag-seq-b"), "set", 2),
        reload,
        flag_change(Some("flag-seq-a"), "revive", 4),
    ]
    .into_iter()
    .zip(seqs)
    .map(|(change, seq)| FlagChange { seq, ..change })
    .collect::<Vec<_>>();
    assert_eq!(logged, expected);
}

/// The flag log is in seq order, filtered by flag key, cut to the newest N.
pub fn flag_changes_filter_limit(store: &dyn Store) {
    let prefix = fresh_key(store, "flag-filter");
    let [a, ab, b, none] = ["a", "ab", "b", "none"].map(|name| format!("{prefix}-{name}"));
    let [a, ab, b, none] = [a.as_str(), ab.as_str(), b.as_str(), none.as_str()];
    // `a` is a prefix of `ab`: a filter must not mix them.
    let appends: [(Option<&str>, u64); 7] = [
        (Some(a), 1),
        (Some(ab), 2),
        (None, 3),
        (Some(a), 4),
        (Some(b), 5),
        (Some(a), 6),
        (Some(ab), 7),
    ];
    for (key, n) in appends {
        store
            .append_flag_change(&flag_change(key, "percentage", n))
            .expect("append");
    }
    let numbers = |key: Option<&str>, limit: Option<usize>| -> Vec<u64> {
        let changes = store.flag_changes(key, limit).expect("flag_changes");
        assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq), "seq order");
        assert!(changes
            .iter()
            .all(|c| key.is_none() || c.key.as_deref() == key));
        changes.iter().map(change_number).collect()
    };
    assert_eq!(numbers(Some(a), None), [1, 4, 6]);
    assert_eq!(numbers(Some(ab), None), [2, 7]);
    assert_eq!(numbers(Some(a), Some(2)), [4, 6]);
    assert_eq!(numbers(Some(a), Some(10)), [1, 4, 6]);
    assert_eq!(numbers(Some(b), Some(1)), [5]);
    assert!(numbers(Some(a), Some(0)).is_empty());
    assert!(numbers(Some(none), None).is_empty());
    // No key: every change, those of the whole set included.
    assert_eq!(numbers(None, Some(5)), [3, 4, 5, 6, 7]);
    assert!(numbers(None, Some(0)).is_empty());
    let all = store.flag_changes(None, None).expect("flag_changes");
    assert!(all.len() >= appends.len());
    assert_eq!(all.last().map(|c| c.seq), Some(last_seq(store)));
}

/// A refused flag commit or append writes neither the document nor the change,
/// and uses up no seq.
pub fn flag_commit_is_atomic(store: &dyn Store) {
    let key = &fresh_key(store, "flag-atomic");
    let document = store.load_flags().expect("load_flags");
    let base = document.as_ref().map_or(0, |d| d.revision);
    let last = last_seq(store);

    let err = store
        .commit_flags(
            &json!({ "stale": true }),
            base + 1,
            &flag_change(Some(key), "set", 1),
        )
        .expect_err("wrong revision");
    assert_flag_conflict(&err, base + 1, base);

    // An audit entry must say who and what, with or without a document.
    let no_actor = FlagChange {
        actor: " ".to_string(),
        ..flag_change(Some(key), "set", 2)
    };
    let err = store
        .commit_flags(&json!({ "no-actor": true }), base, &no_actor)
        .expect_err("no actor");
    assert!(
        matches!(err, StoreError::FlagChangeInvalid { missing, .. } if missing.starts_with("actor")),
        "{err}"
    );
    assert!(err.to_string().contains("flag-atomic"), "{err}");
    let no_action = flag_change(None, "", 3);
    let err = store.append_flag_change(&no_action).expect_err("no action");
    assert!(
        matches!(err, StoreError::FlagChangeInvalid { missing, .. } if missing.starts_with("action")),
        "{err}"
    );

    assert_eq!(store.load_flags().expect("load_flags"), document);
    assert_eq!(last_seq(store), last);
    assert!(keys_and_numbers(store, key).is_empty());

    // The same commit without the fault goes through, with the next seq.
    let seq = store
        .commit_flags(
            &json!({ "atomic": true }),
            base,
            &flag_change(Some(key), "set", 4),
        )
        .expect("commit");
    assert_eq!(seq, last + 1);
    assert_eq!(flag_revision(store), base + 1);
    assert_eq!(keys_and_numbers(store, key), [(key.to_string(), 4)]);
}

/// The flag document, its revision and the flag log are found after the store
/// is dropped and opened again; called by [`super::survives_reopen`].
pub fn flags_survive_reopen(open: &dyn Fn() -> Box<dyn Store>) {
    let key = &{
        let store = open();
        fresh_key(&*store, "flag-reopen")
    };
    let document = json!({ "flags": { key: { "on": true } } });
    let (base, committed, reload) = {
        let store = open();
        let base = flag_revision(&*store);
        let change = flag_change(Some(key), "set", 1);
        let seq = store
            .commit_flags(&document, base, &change)
            .expect("commit flags");
        let reload = FlagChange {
            actor: "flag-reopen file flags.json".to_string(),
            ..flag_change(None, "reload", 2)
        };
        let reload_seq = store.append_flag_change(&reload).expect("append");
        let committed = FlagChange { seq, ..change };
        (
            base,
            committed,
            FlagChange {
                seq: reload_seq,
                ..reload
            },
        )
    };
    {
        let store = open();
        let loaded = store.load_flags().expect("load_flags");
        assert_eq!(
            loaded,
            Some(FlagDocument {
                revision: base + 1,
                document,
            })
        );
        assert_eq!(
            store.flag_changes(Some(key), None).expect("flag_changes"),
            std::slice::from_ref(&committed)
        );
        assert_eq!(
            store.flag_changes(None, Some(2)).expect("flag_changes"),
            [committed, reload.clone()]
        );
        // The revision survived: the next commit must expect it.
        let err = store
            .commit_flags(&json!({}), base, &flag_change(Some(key), "set", 3))
            .expect_err("stale after reopen");
        assert_flag_conflict(&err, base, base + 1);
        // So did the seq: appends go on after the last one.
        let seq = store
            .commit_flags(
                &json!({ "after": "reopen" }),
                base + 1,
                &flag_change(Some(key), "set", 4),
            )
            .expect("commit after reopen");
        assert_eq!(seq, reload.seq + 1);
    }
    let store = open();
    assert_eq!(flag_revision(&*store), base + 2);
    assert_eq!(
        keys_and_numbers(&*store, key),
        [(key.to_string(), 1), (key.to_string(), 4)]
    );
}

// === fixtures ===

/// Change number `n` of flag `key` (None = the whole set) by the suite: its
/// time and values depend on `n`, so a stored change shows which one it was.
pub fn flag_change(key: Option<&str>, action: &str, n: u64) -> FlagChange {
    FlagChange {
        seq: 0,
        at: Timestamp::from_millis(1_700_000_000_000 + n),
        actor: format!("api (token suite-{n})"),
        action: action.to_string(),
        key: key.map(str::to_string),
        before: (n % 2 == 0).then(|| json!({ "on": false, "n": n })),
        after: Some(json!({ "on": true, "n": n })),
    }
}

/// The `n` a change of [`flag_change`] was made with.
fn change_number(change: &FlagChange) -> u64 {
    change.at.millis() - 1_700_000_000_000
}

/// Key and number of every logged change of `key`, in seq order.
fn keys_and_numbers(store: &dyn Store, key: &str) -> Vec<(String, u64)> {
    store
        .flag_changes(Some(key), None)
        .expect("flag_changes")
        .iter()
        .map(|c| (c.key.clone().unwrap_or_default(), change_number(c)))
        .collect()
}

/// A flag key no change in the log has yet: `check` and the last seq.
fn fresh_key(store: &dyn Store, check: &str) -> String {
    format!("{check}-after-{}", last_seq(store))
}

fn flag_revision(store: &dyn Store) -> u64 {
    store
        .load_flags()
        .expect("load_flags")
        .map_or(0, |d| d.revision)
}

/// The newest seq in the flag log, 0 when it is empty.
fn last_seq(store: &dyn Store) -> u64 {
    let newest = store.flag_changes(None, Some(1)).expect("flag_changes");
    newest.first().map_or(0, |c| c.seq)
}

fn assert_flag_conflict(err: &StoreError, expected: u64, found: u64) {
    match err {
        StoreError::FlagConflict {
            expected: e,
            found: f,
        } => assert_eq!((*e, *f), (expected, found), "{err}"),
        other => panic!("expected a flag conflict, got: {other}"),
    }
}
