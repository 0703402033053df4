//! Secrets at config load: reads every secret field written as
//! `{env: NAME}` or `{file: /path}` (so the file itself can be committed):
//! `admin.token`, `admin.tokens[].token`, `providers.prometheus.bearer_token`;
//! and gathers the admin tokens from their sources: `admin.token`,
//! `admin.tokens`, `admin.tokens_file`, `SLUICE_ADMIN_TOKENS` and
//! `SLUICE_ADMIN_TOKEN`. Every error names the field and the variable or
//! file, never a secret.

use std::collections::HashMap;
use std::path::Path;

use sluice_model::{
    parse_tokens, token_problems, AdminToken, Config, FieldError, Secret, SecretSource,
};

/// `admin.token` from the environment (kept for compatibility: one token, role admin).
pub const ADMIN_TOKEN_VAR: &str = "SLUICE_ADMIN_TOKEN";
/// More named tokens from the environment, in the tokens file's format
/// (`name role token`), entries separated by new lines or `;`.
pub const ADMIN_TOKENS_VAR: &str = "SLUICE_ADMIN_TOKENS";

/// Resolves the secrets of a validated config in place and appends the
/// tokens of `admin.tokens_file` and `SLUICE_ADMIN_TOKENS` to
/// `admin.tokens`. Reports every problem at once.
pub fn prepare(config: &mut Config) -> Result<(), Vec<FieldError>> {
    prepare_with(config, |name| std::env::var(name).ok())
}

fn prepare_with(
    config: &mut Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let admin = &mut config.admin;
    if let Some(token) = env(ADMIN_TOKEN_VAR).filter(|t| !t.is_empty()) {
        admin.token = Some(Secret::Value(token));
    }
    if let Some(secret) = &mut admin.token {
        resolve(secret, "admin.token", &env, &mut errors);
    }
    for (i, token) in admin.tokens.iter_mut().enumerate() {
        resolve(
            &mut token.token,
            &format!("admin.tokens[{i}].token"),
            &env,
            &mut errors,
        );
    }
    if let Some(token) = config
        .providers
        .prometheus
        .as_mut()
        .and_then(|p| p.bearer_token.as_mut())
    {
        resolve(
            token,
            "providers.prometheus.bearer_token",
            &env,
            &mut errors,
        );
    }
    let admin = &mut config.admin;
    let mut more = Vec::new();
    if let Some(path) = &admin.tokens_file {
        match std::fs::read_to_string(path) {
            Ok(text) => more.extend(gathered(&text, "admin.tokens_file", path, &mut errors)),
            Err(e) => errors.push(field(
                "admin.tokens_file",
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }
    if let Some(text) = env(ADMIN_TOKENS_VAR).filter(|t| !t.trim().is_empty()) {
        let text = text.replace(';', "\n");
        more.extend(gathered(
            &text,
            ADMIN_TOKENS_VAR,
            Path::new(ADMIN_TOKENS_VAR),
            &mut errors,
        ));
    }
    admin.tokens.extend(more);
    if errors.is_empty() {
        errors.extend(clashes(config));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Reads one secret from where it names; an error names the field and the source.
fn resolve(
    secret: &mut Secret,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<FieldError>,
) {
    let Secret::From(SecretSource {
        env: variable,
        file,
    }) = secret
    else {
        return;
    };
    let value = match (variable, file) {
        (Some(name), None) => match env(name) {
            Some(value) if !value.is_empty() => value,
            _ => {
                return errors.push(field(
                    path,
                    format!("the environment variable {name} is not set or empty"),
                ))
            }
        },
        (None, Some(file)) => match std::fs::read_to_string(&*file) {
            Ok(text) if !text.trim().is_empty() => text.trim_end_matches(['\n', '\r']).to_string(),
            Ok(_) => {
                return errors.push(field(path, format!("the file {} is empty", file.display())))
            }
            Err(e) => {
                return errors.push(field(path, format!("cannot read {}: {e}", file.display())))
            }
        },
        // Validation has already reported it.
        _ => return,
    };
    *secret = Secret::Value(value);
}

/// The tokens of a file or variable, checked on their own.
fn gathered(
    text: &str,
    source: &str,
    path: &Path,
    errors: &mut Vec<FieldError>,
) -> Vec<AdminToken> {
    match parse_tokens(text) {
        Ok(tokens) => {
            let problems = token_problems(&tokens, source);
            if problems.is_empty() {
                return tokens;
            }
            errors.extend(
                problems
                    .into_iter()
                    .map(|(path, message)| field(&path, message)),
            );
        }
        Err(why) => errors.push(field(source, format!("{}: {why}", path.display()))),
    }
    Vec::new()
}

/// A name or a token given twice across the sources (the legacy token is named `admin`).
fn clashes(config: &Config) -> Vec<FieldError> {
    let admin = &config.admin;
    let legacy = admin.token.as_ref().map(|token| ("admin", token));
    let all = legacy
        .into_iter()
        .chain(admin.tokens.iter().map(|t| (t.name.as_str(), &t.token)));
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut errors = Vec::new();
    for (name, token) in all {
        if names.insert(name, ()).is_some() {
            errors.push(field(
                "admin.tokens",
                format!("the name {name:?} is given twice (admin.token is named \"admin\"; admin.tokens, admin.tokens_file and {ADMIN_TOKENS_VAR} add up)"),
            ));
        }
        if let Some(value) = token.value() {
            if let Some(first) = values.insert(value, name) {
                errors.push(field(
                    "admin.tokens",
                    format!(
                        "{name:?} has the same token as {first:?}: each name needs its own token"
                    ),
                ));
            }
        }
    }
    errors
}

fn field(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::Role;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml).unwrap()
    }

    #[test]
    fn secrets_come_from_the_environment_and_files() {
        let dir = std::env::temp_dir().join(format!("sluice-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("token");
        std::fs::write(&secret_file, "from-a-file\n").unwrap();
        let tokens_file = dir.join("tokens");
        std::fs::write(&tokens_file, "# team\nwatcher viewer watch-token\n").unwrap();
        let mut config = config(&format!(
            "admin:\n  token: {{env: LEGACY}}\n  tokens_file: {}\n  tokens:\n    - {{name: ci, role: operator, token: {{file: {}}}}}\nproviders:\n  prometheus:\n    address: http://127.0.0.1:9090\n    bearer_token: {{file: {}}}\n",
            tokens_file.display(),
            secret_file.display(),
            secret_file.display()
        ));
        let env = |name: &str| match name {
            "LEGACY" => Some("from-env".to_string()),
            ADMIN_TOKENS_VAR => Some("bot admin bot-token; lead admin lead-token".to_string()),
            _ => None,
        };
        prepare_with(&mut config, env).unwrap();
        let admin = &config.admin;
        let bearer = config
            .providers
            .prometheus
            .as_ref()
            .unwrap()
            .bearer_token
            .as_ref();
        assert_eq!(bearer.unwrap().value(), Some("from-a-file"));
        assert_eq!(admin.token.as_ref().unwrap().value(), Some("from-env"));
        let tokens: Vec<_> = admin
            .tokens
            .iter()
            .map(|t| (t.name.as_str(), t.role, t.token.value().unwrap()))
            .collect();
        assert_eq!(
            tokens,
            [
                ("ci", Role::Operator, "from-a-file"),
                ("watcher", Role::Viewer, "watch-token"),
                ("bot", Role::Admin, "bot-token"),
                ("lead", Role::Admin, "lead-token"),
            ]
        );
        let printed = serde_json::to_string(&config).unwrap();
        for secret in ["from-env", "from-a-file", "watch-token", "bot-token"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_source_is_named_with_its_field() {
        let mut config = config(
            "admin:\n  token: {env: SLUICE_TEST_UNSET}\n  tokens_file: /nonexistent/sluice-tokens\n  tokens:\n    - {name: ci, role: operator, token: {file: /nonexistent/ci-token}}\n",
        );
        let errors = prepare_with(&mut config, |_| None).unwrap_err();
        let text: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert!(
            text[0]
                .starts_with("admin.token: the environment variable SLUICE_TEST_UNSET is not set"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("admin.tokens[0].token: cannot read /nonexistent/ci-token"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("admin.tokens_file: cannot read /nonexistent/sluice-tokens"),
            "{text:?}"
        );
    }

    #[test]
    fn a_name_or_token_given_twice_across_sources_is_refused() {
        let mut config = config("admin:\n  token: shared-token\n  tokens:\n    - {name: ci, role: viewer, token: ci-token}\n");
        let env = |name: &str| {
            (name == ADMIN_TOKENS_VAR)
                .then(|| "ci operator other; bot viewer shared-token".to_string())
        };
        let errors = prepare_with(&mut config, env).unwrap_err();
        let text = format!("{errors:?}");
        assert!(
            text.contains("the name \\\"ci\\\" is given twice"),
            "{text}"
        );
        assert!(
            text.contains("\\\"bot\\\" has the same token as \\\"admin\\\""),
            "{text}"
        );
        assert!(!text.contains("shared-token"), "{text}");
    }
}
