//! The hot path allocates nothing: a global allocator that counts this
//! thread's allocations wraps evaluations of a static flag, a percentage
//! flag and flags with typical targeting (`in` a list or segment, `==`,
//! `sem_ver`, `starts_with`, `<`, `if`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::json;
use sluice_flags::{Context, FlagSet, Reason};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; only
// counts, in a const-initialised thread-local that itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn evaluation_allocates_nothing() {
    let set = FlagSet::from_flagd_json(
        &json!({"flags": {
            "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "ramp": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                     "percentage": 30},
            "targeted": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
                     "targeting": {"if": [
                         {"and": [{"in": [{"var": "tenant"}, ["acme", "globex"]]},
                                  {"==": [{"var": "plan"}, "gold"]}]},
                         "b", null]}},
            "five-rules": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "none": "none"},
                     "defaultVariant": "none",
                     "targeting": {"if": [
                         {"in": [{"var": "tenant"}, {"segment": "beta"}]}, "a",
                         {"==": [{"var": "plan"}, "silver"]}, "b",
                         {"sem_ver": [{"var": "version"}, ">=", "3.0.0"]}, "a",
                         {"starts_with": [{"var": "email"}, "admin@"]}, "b",
                         {"<": [{"var": "age"}, 18]}, "a",
                         null]}}
        },
        "segments": {"beta": ["globex", "initech"]}})
        .to_string(),
    )
    .unwrap();
    let counted = allocations_during(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(counted >= 1, "the counting allocator counts");
    let ctx = Context::empty(1_767_225_600)
        .with_targeting_key("user-123")
        .with("tenant", "acme")
        .with("plan", "gold")
        .with("version", "2.9.1")
        .with("email", "pat@example.com")
        .with("age", 42);
    for key in ["static", "ramp", "targeted", "five-rules"] {
        let mut reason = None;
        let count = allocations_during(|| {
            for _ in 0..1_000 {
                let evaluation = set.evaluate(key, &ctx, false);
                reason = Some(evaluation.reason);
                std::hint::black_box(evaluation);
            }
        });
        assert_eq!(
            count, 0,
            "{key} allocated {count} times in 1000 evaluations"
        );
        assert_ne!(reason, Some(Reason::Error), "{key}");
    }
}
