//! The web dashboard end to end: the real binary with real upstreams and
//! load, driven in a real headless Chromium through WebDriver (Debian's
//! `chromium` and `chromium-driver`; scripts/test.sh installs them, and
//! these tests fail without them). A screenshot of each test is saved under
//! `target/test-artifacts/ui/`.

mod common;
#[path = "ui/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use webdriver::{Browser, WAIT};

const TOKEN: &str = "s3cret";

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/test-artifacts/ui")
        .join(format!("{name}.png"))
}

fn with_token(config: String) -> String {
    config.replace(
        "admin:\n  address: 127.0.0.1:0",
        &format!("admin:\n  address: 127.0.0.1:0\n  token: {TOKEN}"),
    )
}

/// The action buttons of the page: (action, disabled).
async fn action_buttons(browser: &Browser) -> Vec<(String, bool)> {
    let value = browser
        .eval(
            "return [...document.querySelectorAll('button[data-action]')]
                .map(b => [b.dataset.action, b.disabled]);",
        )
        .await;
    serde_json::from_value(value).unwrap()
}

/// What a keyboard or screen-reader user would miss on the page: controls
/// without a name, fields without a label, charts without a text summary,
/// several main headings.
const ACCESSIBILITY: &str = "const problems = [];
    for (const b of document.querySelectorAll('button, a[href]'))
      if (!(b.getAttribute('aria-label') || b.textContent.trim())) problems.push('unnamed ' + b.outerHTML);
    for (const i of document.querySelectorAll('input'))
      if (!i.labels || !i.labels.length) problems.push('unlabelled ' + i.outerHTML);
    for (const c of document.querySelectorAll('svg[role=img]'))
      if (!c.getAttribute('aria-label')) problems.push('chart without a summary');
    if (document.querySelectorAll('h1').length !== 1) problems.push('not one h1');
    return problems;";

async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    serde_json::from_value(browser.eval(ACCESSIBILITY).await).unwrap()
}

/// The canary weight the services page shows for `web`, in percent.
const SHOWN_WEIGHT: &str = "const bar = document.querySelector('#services [role=progressbar]');
    return bar ? Number(bar.getAttribute('aria-valuenow')) : null;";

async fn rollout_phase_shown(browser: &Browser) -> String {
    browser
        .eval("const b = document.querySelector('#r-head .badge'); return b ? b.textContent : '';")
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_running_rollout_without_reload() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    // A rollout, and (keys of the service after its rollout block) a
    // circuit breaker per version, in shadow mode.
    let plan = "      interval: 1500ms
      step_weights: [10, 20, 30, 40, 50, 60, 70, 80]
      min_requests: 5
      checks:
        - { metric: success_rate, min: 95 }
    breaker:
      policy: watch
breakers:
  policies:
    watch: { mode: shadow, failure_threshold: 50 }
";
    let sluice = Sluice::start(
        dir.path(),
        &service_config(&v1.endpoint(), &v2.endpoint(), plan),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (_counts, _load) = spawn_load(sluice.proxy, 4, Duration::from_millis(10), stop.clone());
    let browser = Browser::start().await;

    // `/` sends the browser to the dashboard.
    browser.goto(&sluice.admin_url()).await;
    browser.wait_for("#services table", WAIT).await;
    let url = browser
        .eval("return location.pathname + location.hash;")
        .await;
    assert_eq!(url, "/ui/#/services");
    // A marker that a reload would erase.
    browser.eval("window.__noReload = true;").await;
    let first = browser
        .until("a weight on the services page", SHOWN_WEIGHT, |v| {
            v.as_f64()
        })
        .await;
    let later = browser
        .until("the shown weight to grow", SHOWN_WEIGHT, |v| {
            v.as_f64().filter(|w| *w > first)
        })
        .await;
    assert!(later > first, "{first} → {later}");
    let kept = browser.eval("return window.__noReload === true;").await;
    assert_eq!(kept, true, "the page reloaded");
    browser.screenshot(&artifact("services")).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());

    // The rollout page: timeline, charts from the sampled series, runs, history.
    let link = browser
        .wait_for("#services a[href='#/rollouts/web']", WAIT)
        .await;
    browser.click(&link).await;
    browser.wait_for("#r-steps li.done", WAIT).await;
    browser
        .until(
            "two samples in the charts",
            "return document.querySelectorAll('#r-charts svg[role=img] path').length;",
            |v| (v.as_u64()? >= 4).then_some(()),
        )
        .await;
    browser
        .until(
            "an analysis run with its checks",
            "return document.querySelectorAll('#r-runs details.run td').length;",
            |v| (v.as_u64()? > 0).then_some(()),
        )
        .await;
    let events = browser
        .eval("return document.querySelectorAll('#r-events tbody tr').length;")
        .await;
    assert!(events.as_u64().unwrap() >= 2, "{events}");
    let label = browser
        .eval(
            "return document.querySelector('#r-charts svg[role=img]').getAttribute('aria-label');",
        )
        .await;
    assert!(label.as_str().unwrap().contains("latest"), "{label}");
    browser.screenshot(&artifact("rollout_progressing")).await;
    browser
        .eval("document.getElementById('r-charts').scrollIntoView();")
        .await;
    browser.screenshot(&artifact("rollout_charts")).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());

    // Breakers: state per version, and a transition made through the API.
    let (status, body) = admin_post(
        &client(),
        sluice.admin,
        "/api/v1/breakers/web:stable/open",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    browser
        .goto(&format!("{}/ui/#/breakers", sluice.admin_url()))
        .await;
    let rows = browser
        .until(
            "both breakers",
            "return [...document.querySelectorAll('#breakers tbody tr')].map(r => r.textContent);",
            |v| {
                let rows: Vec<String> = serde_json::from_value(v.clone()).ok()?;
                (rows.len() == 2).then_some(rows)
            },
        )
        .await;
    assert!(
        rows.iter()
            .any(|r| r.contains("web:stable") && r.contains("forced open")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("web:canary") && r.contains("closed")),
        "{rows:?}"
    );
    browser
        .until(
            "the transition",
            "const r = document.querySelector('#transitions tbody tr'); return r && r.textContent;",
            |v| {
                v.as_str()
                    .filter(|t| t.contains("closed → forced open"))
                    .map(str::to_string)
            },
        )
        .await;
    browser.screenshot(&artifact("breakers")).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());

    // Without a token, a page of another site still cannot act through the
    // operator's browser: its form post is refused.
    let phase_before = phase(&client(), sluice.admin).await;
    let form = format!(
        "data:text/html,<form method=post action='{}/api/v1/rollouts/web/abort'></form>\
         <script>document.forms[0].submit()</script>",
        sluice.admin_url()
    );
    browser.goto(&form).await;
    let answer = browser
        .until(
            "the refusal page",
            "return document.body ? document.body.textContent : '';",
            |v| {
                v.as_str()
                    .filter(|t| t.contains("another site"))
                    .map(str::to_string)
            },
        )
        .await;
    assert!(answer.contains("403"), "{answer}");
    let phase_after = phase(&client(), sluice.admin).await;
    assert!(
        phase_after != "RolledBack",
        "{phase_before} → {phase_after}"
    );

    stop.store(true, Ordering::Relaxed);
    browser.quit().await;
    drop((v1, v2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_token_a_promote_click_takes_effect_and_abort_and_undo_ask_first() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let plan = "      interval: 500ms
      min_requests: 0
      steps:
        - weight: 20
        - approve: {}
        - weight: 50
      checks:
        - { metric: success_rate, min: 95 }
";
    let sluice = Sluice::start(
        dir.path(),
        &(with_token(service_config(&v1.endpoint(), &v2.endpoint(), plan)) + FLAGS),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (_counts, _load) = spawn_load(sluice.proxy, 2, Duration::from_millis(10), stop.clone());
    let client = client();
    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui/", sluice.admin_url())).await;

    // Sign in: the token is checked and the actions become enabled.
    let field = browser.wait_for("#token", WAIT).await;
    browser.type_text(&field, TOKEN).await;
    let sign_in = browser.wait_for("#signin button[type=submit]", WAIT).await;
    browser.click(&sign_in).await;
    browser
        .until(
            "the signed-in banner",
            "return document.body.dataset.mode;",
            |v| (v == "actions").then_some(()),
        )
        .await;

    browser
        .goto(&format!("{}/ui/#/rollouts/web", sluice.admin_url()))
        .await;
    eventually(WAIT, "the approval step", || async {
        (phase(&client, sluice.admin).await == "Paused").then_some(())
    })
    .await;
    browser.until("promote enabled",
        "const b = document.querySelector('button[data-action=promote]'); return b && !b.disabled;",
        |v| (v == true).then_some(()),
    )
    .await;

    // Abort asks first; cancelling changes nothing.
    let abort = browser.wait_for("button[data-action=abort]", WAIT).await;
    browser.click(&abort).await;
    browser
        .until(
            "the confirmation dialog",
            "return document.getElementById('confirm').open;",
            |v| (v == true).then_some(()),
        )
        .await;
    let text = browser
        .eval("return document.getElementById('confirm-title').textContent;")
        .await;
    assert!(text.as_str().unwrap().contains("Abort"), "{text}");
    // The dialog takes the keyboard focus, on the harmless choice.
    let focused = browser.eval("return document.activeElement.id;").await;
    assert_eq!(focused, "confirm-cancel");
    let cancel = browser.wait_for("#confirm-cancel", WAIT).await;
    browser.click(&cancel).await;
    let open = browser
        .eval("return document.getElementById('confirm').open;")
        .await;
    assert_eq!(open, false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        phase(&client, sluice.admin).await,
        "Paused",
        "a cancelled abort acted"
    );

    // Promote takes effect: the API and the page say Succeeded.
    let promote = browser.wait_for("button[data-action=promote]", WAIT).await;
    browser.click(&promote).await;
    eventually(WAIT, "the promotion", || async {
        (phase(&client, sluice.admin).await == "Succeeded").then_some(())
    })
    .await;
    eventually(WAIT, "the page to show Succeeded", || async {
        (rollout_phase_shown(&browser).await == "Succeeded").then_some(())
    })
    .await;
    let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
    assert_eq!(status["stable"], json!([v2.endpoint()]), "{status}");
    browser.screenshot(&artifact("promoted")).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());

    // Undo asks first too; cancelling keeps v2 serving.
    browser.until("undo enabled",
        "const b = document.querySelector('button[data-action=undo]'); return b && !b.disabled;",
        |v| (v == true).then_some(()),
    )
    .await;
    let undo = browser.wait_for("button[data-action=undo]", WAIT).await;
    browser.click(&undo).await;
    browser.until("the undo confirmation", "const d = document.getElementById('confirm'); return d.open && document.getElementById('confirm-title').textContent;", |v| {
        v.as_str().filter(|t| t.contains("Undo")).map(str::to_string)
    })
    .await;
    browser.screenshot(&artifact("undo_confirmation")).await;
    // From the keyboard: Escape dismisses it.
    let cancel = browser.wait_for("#confirm-cancel", WAIT).await;
    browser.type_text(&cancel, "\u{E00C}").await;
    browser
        .until(
            "the dialog closed by Escape",
            "return document.getElementById('confirm').open;",
            |v| (v == false).then_some(()),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = admin_json(&client, sluice.admin, "/api/v1/rollouts/web").await;
    assert_eq!(
        status["stable"],
        json!([v2.endpoint()]),
        "a cancelled undo acted"
    );

    // Flags: kill one, then move its percentage.
    let flags_link = browser.wait_for("nav a[href='#/flags']", WAIT).await;
    browser.click(&flags_link).await;
    let kill = browser
        .wait_for("#flags button[data-action=kill]", WAIT)
        .await;
    browser.click(&kill).await;
    browser
        .wait_for("#flags button[data-action=revive]", WAIT)
        .await;
    let flag = admin_json(&client, sluice.admin, "/api/v1/flags/new-checkout").await;
    assert_eq!(flag["flag"]["killed"], true, "{flag}");
    let field = browser.wait_for("#flags input[type=number]", WAIT).await;
    browser.clear(&field).await;
    browser.type_text(&field, "40").await;
    let set = browser
        .wait_for("#flags button[data-action=percentage]", WAIT)
        .await;
    browser.click(&set).await;
    eventually(WAIT, "the new percentage", || async {
        let flag = admin_json(&client, sluice.admin, "/api/v1/flags/new-checkout").await;
        (flag["flag"]["percentage"] == 40.0).then_some(())
    })
    .await;
    browser.screenshot(&artifact("flags_signed_in")).await;
    assert_eq!(accessibility_problems(&browser).await, Vec::<String>::new());

    stop.store(true, Ordering::Relaxed);
    browser.quit().await;
    drop((v1, v2));
}

/// A boolean flag ramped by percentage (appended to the service config).
const FLAGS: &str = "flags:
  definitions:
    flags:
      new-checkout:
        state: ENABLED
        variants: { on: true, off: false }
        defaultVariant: off
        percentage: 25
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_session_shows_no_enabled_action_and_cannot_act() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let dir = tempfile::tempdir().unwrap();
    let config = with_token(service_config(
        &v1.endpoint(),
        &v2.endpoint(),
        "      interval: 1h\n      step_weights: [10, 50]\n",
    )) + FLAGS;
    let sluice = Sluice::start(dir.path(), &config);
    let client = client();
    let browser = Browser::start().await;

    browser
        .goto(&format!("{}/ui/#/rollouts/web", sluice.admin_url()))
        .await;
    browser
        .wait_for("#r-actions button[data-action=promote]", WAIT)
        .await;
    let mode = browser
        .eval("return document.getElementById('mode').textContent;")
        .await;
    assert!(mode.as_str().unwrap().contains("Read-only"), "{mode}");
    let buttons = action_buttons(&browser).await;
    assert!(buttons.len() >= 5, "{buttons:?}");
    assert!(buttons.iter().all(|(_, disabled)| *disabled), "{buttons:?}");

    // A wrong token is refused at sign-in, and the view stays read-only.
    let field = browser.wait_for("#token", WAIT).await;
    browser.type_text(&field, "not-the-token").await;
    let sign_in = browser.wait_for("#signin button[type=submit]", WAIT).await;
    browser.click(&sign_in).await;
    browser
        .until(
            "the refusal",
            "const e = document.getElementById('error'); return !e.hidden && e.textContent;",
            |v| {
                v.as_str()
                    .filter(|t| t.contains("refused"))
                    .map(str::to_string)
            },
        )
        .await;
    assert_eq!(
        browser.eval("return document.body.dataset.mode;").await,
        "read-only"
    );

    // A direct attempt from the page is refused by the server and shown.
    let status = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/rollouts/web/pause', {method: 'POST'}).then(r => done(r.status));",
            json!([]),
        )
        .await;
    assert_eq!(status, 401);
    browser
        .eval("window.Sluice.act('Pause web', 'POST', '/api/v1/rollouts/web/pause');")
        .await;
    browser
        .until(
            "the error shown",
            "const e = document.getElementById('error'); return !e.hidden && e.textContent;",
            |v| {
                v.as_str()
                    .filter(|t| t.contains("needs the admin token"))
                    .map(str::to_string)
            },
        )
        .await;
    assert_eq!(phase(&client, sluice.admin).await, "Progressing");

    // The flags page: state, percentage and variants, and no enabled action.
    let flags_link = browser.wait_for("nav a[href='#/flags']", WAIT).await;
    browser.click(&flags_link).await;
    let row = browser
        .until(
            "the flag row",
            "const r = document.querySelector('#flags tbody tr'); return r && r.textContent;",
            |v| v.as_str().map(str::to_string),
        )
        .await;
    assert!(
        row.contains("new-checkout") && row.contains("enabled"),
        "{row}"
    );
    let percentage = browser
        .eval("return document.querySelector('#flags input[type=number]').value;")
        .await;
    assert_eq!(percentage, "25");
    let buttons = action_buttons(&browser).await;
    assert!(
        !buttons.is_empty() && buttons.iter().all(|(_, d)| *d),
        "{buttons:?}"
    );
    browser.screenshot(&artifact("read_only")).await;
    let (status, _) = admin_post(
        &client,
        sluice.admin,
        "/api/v1/flags/new-checkout/kill",
        None,
    )
    .await;
    assert_eq!(status, 401);

    browser.quit().await;
    drop((v1, v2));
}
