//! Routing and version choice through a real proxy and real upstreams:
//! host and prefix matching, 404, weighted split, forced header, sticky keys.

mod common;

use std::collections::HashMap;

use common::*;
use http::StatusCode;
use sluice_proxy::Slot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_longest_prefix_and_404s_the_rest() {
    let (shop, api, api_v2) = (
        upstream("shop").await,
        upstream("api").await,
        upstream("api-v2").await,
    );
    let yaml = format!(
        r#"
services:
  - name: shop
    match: {{ hosts: [Shop.Example.com], path_prefix: / }}
    versions: {{ stable: {{ endpoints: ["{shop}"] }} }}
  - name: api
    match: {{ hosts: [api.example.com], path_prefix: /api }}
    versions: {{ stable: {{ endpoints: ["{api}"] }} }}
  - name: api-v2
    match: {{ hosts: [api.example.com], path_prefix: /api/v2 }}
    versions: {{ stable: {{ endpoints: ["{api_v2}"] }} }}
"#
    );
    let proxy = start_proxy(&yaml, HashMap::new()).await;
    let client = client();
    let upstream_of = |host: &'static str, path: &'static str| {
        let (client, url) = (client.clone(), proxy.url(path));
        async move { get(&client, &url, host, &[]).await }
    };
    assert_eq!(upstream_of("shop.example.com", "/cart").await.body, "shop");
    assert_eq!(upstream_of("SHOP.example.com:8080", "/").await.body, "shop");
    assert_eq!(upstream_of("api.example.com", "/api").await.body, "api");
    assert_eq!(
        upstream_of("api.example.com", "/api/users?x=1").await.body,
        "api"
    );
    assert_eq!(
        upstream_of("api.example.com", "/api/v2/users").await.body,
        "api-v2"
    );
    assert_eq!(
        upstream_of("api.example.com:443", "/api/v2").await.body,
        "api-v2"
    );

    for (host, path) in [
        ("other.example.com", "/"),
        ("api.example.com", "/"),
        ("api.example.com", "/apiary"),
    ] {
        let answer = upstream_of(host, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{host}{path}");
        assert_eq!(answer.headers["x-sluice-error"], "no_route");
        assert!(answer.body.starts_with("sluice: "), "{}", answer.body);
    }
    // A 404 is nobody's request.
    for service in ["shop", "api", "api-v2"] {
        assert_eq!(proxy.metrics.snapshot(service, Slot::Stable).requests, 2);
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_near_the_weight() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let proxy = start_proxy(
        &web_config(stable, canary, ""),
        routing("web", stable, Some(canary), 25.0),
    )
    .await;
    let client = client();
    let total = 10_000;
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), proxy.url("/"));
        workers.push(tokio::spawn(async move {
            let mut canary = 0;
            for _ in 0..total / 8 {
                let answer = get(&client, &url, "web.test", &[]).await;
                assert_eq!(answer.status, StatusCode::OK);
                canary += usize::from(answer.upstream() == "canary");
            }
            canary
        }));
    }
    let mut canary_count = 0;
    for w in workers {
        canary_count += w.await.unwrap();
    }
    let share = canary_count as f64 * 100.0 / total as f64;
    assert!((22.5..=27.5).contains(&share), "canary got {share}%");
    assert_eq!(
        proxy.metrics.snapshot("web", Slot::Canary).requests,
        canary_count as u64
    );
    assert_eq!(
        proxy.metrics.snapshot("web", Slot::Stable).requests,
        (total - canary_count) as u64
    );
    assert_eq!(proxy.metrics.snapshot("web", Slot::Canary).errors, 0);
    proxy.stop().await;
}

/// Sends one request per `(header, value, expected upstream)` case, `times` over.
async fn expect_upstreams(
    client: &TestClient,
    url: &str,
    cases: &[(&str, &str, &str)],
    times: usize,
) {
    for _ in 0..times {
        for (header, value, expected) in cases {
            let headers: &[(&str, &str)] = if header.is_empty() {
                &[]
            } else {
                &[(header, value)]
            };
            let answer = get(client, url, "h", headers).await;
            assert_eq!(answer.upstream(), *expected, "{header}: {value}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_header_wins_both_ways_even_at_weight_zero() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    // No routing entry: config pools at weight 0.
    let proxy = start_proxy(&web_config(stable, canary, ""), HashMap::new()).await;
    let client = client();
    let url = proxy.url("/");
    let at_zero = [
        ("", "", "stable"),
        ("x-canary", "always", "canary"),
        ("x-canary", "TRUE", "canary"),
        ("x-canary", "maybe", "stable"),
    ];
    expect_upstreams(&client, &url, &at_zero, 20).await;
    proxy.publish(&routing("web", stable, Some(canary), 100.0));
    let at_full = [
        ("", "", "canary"),
        ("x-canary", "never", "stable"),
        ("x-canary", "false", "stable"),
    ];
    expect_upstreams(&client, &url, &at_full, 20).await;
    // Without a canary pool, forcing the canary reaches stable.
    proxy.publish(&routing("web", stable, None, 0.0));
    expect_upstreams(&client, &url, &[("x-canary", "always", "stable")], 1).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_force_header_name() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let extra = "    routing: { force_header: x-version-pin }";
    let proxy = start_proxy(&web_config(stable, canary, extra), HashMap::new()).await;
    let client = client();
    let url = proxy.url("/");
    let cases = [
        ("x-version-pin", "always", "canary"),
        ("x-canary", "always", "stable"),
    ];
    expect_upstreams(&client, &url, &cases, 1).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_header_keeps_users_and_growth_keeps_canary_users() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let extra = "    routing: { sticky: { header: x-user } }";
    let proxy = start_proxy(
        &web_config(stable, canary, extra),
        routing("web", stable, Some(canary), 10.0),
    )
    .await;
    let client = client();
    let url = proxy.url("/");

    // One key: the same version across 1,000 requests.
    let first = get(&client, &url, "h", &[("x-user", "alice")])
        .await
        .upstream()
        .to_string();
    for _ in 0..1_000 {
        assert_eq!(
            get(&client, &url, "h", &[("x-user", "alice")])
                .await
                .upstream(),
            first
        );
    }

    // 400 users at 10%, then 25%: every canary user stays on canary.
    let users: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let mut at_10 = Vec::new();
    for user in &users {
        at_10.push(
            get(&client, &url, "h", &[("x-user", user)])
                .await
                .upstream()
                == "canary",
        );
    }
    proxy.publish(&routing("web", stable, Some(canary), 25.0));
    let mut at_25 = Vec::new();
    for user in &users {
        at_25.push(
            get(&client, &url, "h", &[("x-user", user)])
                .await
                .upstream()
                == "canary",
        );
    }
    for (i, user) in users.iter().enumerate() {
        assert!(
            !at_10[i] || at_25[i],
            "{user} moved from canary back to stable"
        );
    }
    let (n10, n25) = (
        at_10.iter().filter(|c| **c).count(),
        at_25.iter().filter(|c| **c).count(),
    );
    assert!(n10 > 10 && n10 < 80, "{n10} of 400 at 10%");
    assert!(n25 > n10 && n25 < 160, "{n25} of 400 at 25%");
    // Matches the documented bucket function.
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            at_25[i],
            sluice_proxy::sticky_bucket("web", user.as_bytes()) < 2_500
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_the_version() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let extra = "    routing: { sticky: { cookie: uid } }";
    let proxy = start_proxy(
        &web_config(stable, canary, extra),
        routing("web", stable, Some(canary), 50.0),
    )
    .await;
    let client = client();
    let url = proxy.url("/");
    for i in 0..50 {
        let cookie = format!("theme=dark; uid=u{i}");
        let want = if sluice_proxy::sticky_bucket("web", format!("u{i}").as_bytes()) < 5_000 {
            "canary"
        } else {
            "stable"
        };
        for _ in 0..5 {
            assert_eq!(
                get(&client, &url, "h", &[("cookie", &cookie)])
                    .await
                    .upstream(),
                want
            );
        }
    }
    proxy.stop().await;
}
