//! Webhook calls against real loopback servers: one that redirects to
//! itself for ever, one that accepts and never answers, one that answers
//! with a huge body.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_model::{HookType, WebhookSpec, Weight};
use sluice_rollout::ServiceState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Hooks;

/// The longest a test waits for a call that must end on its own.
const PATIENCE: Duration = Duration::from_secs(30);

fn state() -> ServiceState {
    ServiceState {
        service: "web".into(),
        stable: vec!["127.0.0.1:1".into()],
        canary: None,
        canary_weight: Weight::ZERO,
        rollout: None,
        revision: 0,
        config_stable: Vec::new(),
        revisions: Vec::new(),
        warm: None,
    }
}

fn hook(addr: SocketAddr, timeout: Duration) -> WebhookSpec {
    WebhookSpec {
        name: "gate".into(),
        kind: HookType::ConfirmRollout,
        url: format!("http://{addr}/gate"),
        timeout,
        retries: 1,
        metadata: Default::default(),
    }
}

/// Answers every request on every connection with `answer` (raw HTTP/1.1);
/// None: reads the request and never answers.
async fn server(answer: Option<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    match &answer {
                        Some(answer) => {
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        // Hold the connection open without a word.
                        None => std::future::pending::<()>().await,
                    }
                }
            });
        }
    });
    addr
}

async fn ask(hook: &WebhookSpec) -> Result<(), String> {
    let hooks = Hooks::new();
    tokio::time::timeout(
        PATIENCE,
        hooks.ask(
            std::slice::from_ref(hook),
            HookType::ConfirmRollout,
            &state(),
        ),
    )
    .await
    .expect("the webhook call did not end on its own")
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_says_where_it_pointed() {
    let addr = server(Some(
        "HTTP/1.1 302 Found\r\nLocation: /gate\r\nContent-Length: 0\r\n\r\n".into(),
    ))
    .await;
    let error = ask(&hook(addr, Duration::from_secs(5))).await.unwrap_err();
    assert!(error.contains("302"), "{error}");
    assert!(
        error.contains("redirect to \"/gate\", not followed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_after_the_timeout() {
    let addr = server(None).await;
    let error = ask(&hook(addr, Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(error.contains("no answer within 300ms"), "{error}");
}

#[tokio::test]
async fn a_body_that_never_ends_is_given_up_after_the_timeout() {
    // The head promises more than is ever sent.
    let addr = server(Some(
        "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nstarted".into(),
    ))
    .await;
    let error = ask(&hook(addr, Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(error.contains("no answer within 300ms"), "{error}");
}
