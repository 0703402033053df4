//! Notification targets (`notifications:`): where rollout and breaker events
//! are posted (Slack incoming webhooks or a generic JSON webhook), for which
//! services and events. Not for: sending — the binary's `notify` module does that.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// One notification target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    /// Unique name, shown in logs and in the `target` label of metrics.
    pub name: String,
    /// The payload format: `slack` (incoming webhook) or `webhook` (generic JSON).
    pub kind: NotificationKind,
    /// The URL posted to (http or https). Exactly one of `url` and `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// An environment variable holding the URL (keeps secrets out of the file).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Services whose events are sent (a release plan is `flag:KEY`); empty means all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Events sent; empty means all.
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
    /// Longest wait for one attempt (above 0).
    #[serde(default = "default_timeout", with = "crate::duration")]
    pub timeout: Duration,
    /// Attempts after the first (at most 10), with exponential backoff from 200ms.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// The payload format of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Slack-compatible incoming webhook: `{"text", "blocks"}`.
    Slack,
    /// Generic JSON: `{"event", "service", …, "checks"}`.
    Webhook,
}

/// The events a target can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    Started,
    Advanced,
    /// Waiting for an operator: a manual pause step, or waiting for promotion.
    Waiting,
    Promoted,
    RolledBack,
    BreakerOpened,
    BreakerClosed,
}

/// Retries above this are refused: with backoff they would outlast any rollout step.
pub const MAX_RETRIES: u32 = 10;

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_retries() -> u32 {
    3
}

// === impl NotifyEvent ===

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 7] = [
        NotifyEvent::Started,
        NotifyEvent::Advanced,
        NotifyEvent::Waiting,
        NotifyEvent::Promoted,
        NotifyEvent::RolledBack,
        NotifyEvent::BreakerOpened,
        NotifyEvent::BreakerClosed,
    ];

    /// The name as written in the config and sent in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Started => "started",
            NotifyEvent::Advanced => "advanced",
            NotifyEvent::Waiting => "waiting",
            NotifyEvent::Promoted => "promoted",
            NotifyEvent::RolledBack => "rolled_back",
            NotifyEvent::BreakerOpened => "breaker_opened",
            NotifyEvent::BreakerClosed => "breaker_closed",
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl NotificationConfig ===

impl NotificationConfig {
    /// Whether this target wants `event` for `service`.
    pub fn wants(&self, service: &str, event: NotifyEvent) -> bool {
        (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && (self.events.is_empty() || self.events.contains(&event))
    }
}

/// Every broken rule of the `notifications` list, with field paths.
/// (Unknown events and kinds are refused by serde before this runs.)
pub(crate) fn validate(targets: &[NotificationConfig], errors: &mut Vec<FieldError>) {
    let mut push = |path: String, message: String| errors.push(FieldError { path, message });
    let mut names = HashSet::new();
    for (i, target) in targets.iter().enumerate() {
        let path = format!("notifications[{i}]");
        if target.name.trim().is_empty() {
            push(format!("{path}.name"), "must not be empty".into());
        } else if !names.insert(target.name.as_str()) {
            push(
                format!("{path}.name"),
                format!("notification target {:?} is defined twice", target.name),
            );
        }
        match (&target.url, &target.url_env) {
            (Some(url), None) => {
                if let Err(why) = check_url(url) {
                    push(format!("{path}.url"), why);
                }
            }
            (None, Some(var)) if var.trim().is_empty() => push(
                format!("{path}.url_env"),
                "must name an environment variable".into(),
            ),
            (None, Some(_)) => {}
            _ => push(path.clone(), "set exactly one of `url` or `url_env`".into()),
        }
        for (j, service) in target.services.iter().enumerate() {
            if service.trim().is_empty() {
                push(
                    format!("{path}.services[{j}]"),
                    "must name a service".into(),
                );
            }
        }
        if target.timeout.is_zero() {
            push(format!("{path}.timeout"), "must be above 0".into());
        }
        if target.retries > MAX_RETRIES {
            push(
                format!("{path}.retries"),
                format!("{} is above the maximum of {MAX_RETRIES}", target.retries),
            );
        }
    }
}

/// An `http://` or `https://` URL with a host. The error names the value.
pub fn check_url(url: &str) -> Result<(), String> {
    let bad = || format!("{url:?} is not an http:// or https:// URL");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Config, NotificationKind, NotifyEvent};

    const GOOD: &str = r#"
notifications:
  - name: team-slack
    kind: slack
    url: https://hooks.slack.com/services/T0/B0/X
    services: [checkout, "flag:main-builder"]
    events: [started, rolled_back, breaker_opened]
    timeout: 2s
    retries: 2
  - name: audit
    kind: webhook
    url_env: AUDIT_WEBHOOK_URL
"#;

    #[test]
    fn targets_parse_with_defaults() {
        let config = Config::from_yaml(GOOD).unwrap();
        let [slack, audit] = &config.notifications[..] else {
            panic!("two targets expected");
        };
        assert_eq!(slack.kind, NotificationKind::Slack);
        assert_eq!(slack.timeout, Duration::from_secs(2));
        assert!(slack.wants("flag:main-builder", NotifyEvent::RolledBack));
        assert!(!slack.wants("checkout", NotifyEvent::Advanced));
        assert!(!slack.wants("search", NotifyEvent::Started));
        assert_eq!(audit.url_env.as_deref(), Some("AUDIT_WEBHOOK_URL"));
        assert_eq!((audit.timeout, audit.retries), (Duration::from_secs(5), 3));
        assert!(NotifyEvent::ALL.iter().all(|e| audit.wants("any", *e)));
        assert!(Config::from_yaml("{}").unwrap().notifications.is_empty());
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        let bad = GOOD
            .replace(
                "https://hooks.slack.com/services/T0/B0/X",
                "ftp://example.com",
            )
            .replace("retries: 2", "retries: 11")
            .replace("timeout: 2s", "timeout: 0s")
            .replace("name: audit", "name: team-slack")
            .replace(
                "url_env: AUDIT_WEBHOOK_URL",
                "url: http://a\n    url_env: B",
            );
        let errors = Config::from_yaml(&bad).unwrap_err().errors();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "notifications[0].url: \"ftp://example.com\" is not an http:// or https:// URL",
                "notifications[0].timeout: must be above 0",
                "notifications[0].retries: 11 is above the maximum of 10",
                "notifications[1].name: notification target \"team-slack\" is defined twice",
                "notifications[1]: set exactly one of `url` or `url_env`",
            ]
        );
    }

    #[test]
    fn unknown_events_and_fields_are_refused_with_their_path() {
        let bad = GOOD.replace("breaker_opened]", "exploded]");
        let error = Config::from_yaml(&bad).unwrap_err().errors().remove(0);
        assert!(error.path.starts_with("notifications[0].events"), "{error}");
        assert!(error.message.contains("exploded"), "{error}");
        let bad = GOOD.replace("retries: 2", "retry: 2");
        let error = Config::from_yaml(&bad).unwrap_err().errors().remove(0);
        assert!(error.path.starts_with("notifications[0]"), "{error}");
        assert!(error.message.contains("retry"), "{error}");
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert!(super::check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(super::check_url("https://hooks.slack.com/x").is_ok());
        assert!(super::check_url("https:///path").is_err());
        assert!(super::check_url("hooks.slack.com").is_err());
    }
}
