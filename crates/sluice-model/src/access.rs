//! Who may use the admin API: named bearer tokens, each with a role
//! (`viewer` < `operator` < `admin`), and the text format of a tokens file
//! (`admin.tokens_file`, `SLUICE_ADMIN_TOKENS`). Parsing and checks only;
//! reading the file or the environment is the binary's.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What a token may do; each role may do everything the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read: rollouts, decisions, flags, breakers, the config.
    Viewer,
    /// Act on traffic: start, promote, pause, resume, abort, undo, approve,
    /// change flags, open/close/reset breakers and switch policies on or off.
    Operator,
    /// Replace configuration: reload the config file, replace breaker policies.
    Admin,
}

// === impl Role ===

impl Role {
    /// The name used in config, API answers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `viewer`, `operator` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named admin token (`admin.tokens[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it: recorded with every change made with it (never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The bearer token: a string, `{env: NAME}` or `{file: /path}`.
    pub token: Secret,
}

/// Parses a tokens file: one `name role token` per line, blank lines and
/// `#` comments ignored. Errors name the line, never the token.
pub fn parse_tokens(text: &str) -> Result<Vec<AdminToken>, String> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, role, token] = fields[..] else {
            return Err(format!(
                "line {}: {} fields; write `name role token` (role: viewer, operator or admin)",
                i + 1,
                fields.len()
            ));
        };
        let role = Role::parse(role).ok_or_else(|| {
            format!(
                "line {}: role {role:?} is not viewer, operator or admin",
                i + 1
            )
        })?;
        tokens.push(AdminToken {
            name: name.to_string(),
            role,
            token: Secret::Value(token.to_string()),
        });
    }
    Ok(tokens)
}

/// The rules of a token list, each broken one as `(field path, message)`:
/// names are short words and unique, tokens are not empty and not shared.
/// `path` is the list's path (`admin.tokens`); the token itself is never in a message.
pub fn token_problems(tokens: &[AdminToken], path: &str) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut values: HashMap<&str, usize> = HashMap::new();
    for (i, token) in tokens.iter().enumerate() {
        let name_ok = !token.name.is_empty()
            && token.name.len() <= 64
            && token
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !name_ok {
            problems.push((
                format!("{path}[{i}].name"),
                format!(
                    "{:?} is not a name of 1 to 64 letters, digits, `-`, `_`, `.` or `@`",
                    token.name
                ),
            ));
        } else if let Some(first) = names.insert(&token.name, i) {
            problems.push((
                format!("{path}[{i}].name"),
                format!(
                    "{:?} is already the name of {path}[{first}]: each token needs its own name",
                    token.name
                ),
            ));
        }
        if let Some(problem) = token.token.problem() {
            problems.push((format!("{path}[{i}].token"), problem));
        } else if let Some(value) = token.token.value() {
            if value.chars().any(char::is_whitespace) {
                problems.push((
                    format!("{path}[{i}].token"),
                    "holds white space, which a bearer token cannot carry".into(),
                ));
            } else if let Some(first) = values.insert(value, i) {
                problems.push((
                    format!("{path}[{i}].token"),
                    format!("the same token as {path}[{first}]: each name needs its own token"),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_from_viewer_to_admin() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_tokens_file_has_one_name_role_token_per_line() {
        let tokens =
            parse_tokens("# who\n\nci operator abc123\n  ops-lead admin  zzz999 \n").unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].name, "ci");
        assert_eq!(tokens[0].role, Role::Operator);
        assert_eq!(tokens[1].token.value(), Some("zzz999"));

        let error = parse_tokens("ci operator\n").unwrap_err();
        assert!(error.starts_with("line 1: 2 fields"), "{error}");
        let error = parse_tokens("\nci root s3cr3t-value\n").unwrap_err();
        assert!(error.contains("line 2: role \"root\""), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn names_and_tokens_are_unique_and_errors_do_not_print_tokens() {
        let token = |name: &str, value: &str| AdminToken {
            name: name.into(),
            role: Role::Viewer,
            token: Secret::Value(value.into()),
        };
        let problems = token_problems(
            &[
                token("ci", "first-secret"),
                token("ci", "second-secret"),
                token("bot", "first-secret"),
                token("has space", "third-secret"),
            ],
            "admin.tokens",
        );
        let text = format!("{problems:?}");
        assert!(text.contains("admin.tokens[1].name"), "{text}");
        assert!(text.contains("admin.tokens[2].token"), "{text}");
        assert!(text.contains("admin.tokens[3].name"), "{text}");
        assert!(!text.contains("secret\""), "{text}");
        assert!(token_problems(&[token("ci", "a")], "admin.tokens").is_empty());
    }
}
