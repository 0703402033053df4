//! Who is calling the admin API and what they may do: named bearer tokens
//! with roles (`viewer` < `operator` < `admin`), compared in constant time;
//! a layer per route group that answers 401 without a known token and 403
//! (naming the role needed) with a token whose role is too low; and the
//! audit log of every change, which names the token's holder, never the token.
//!
//! Not for the OFREP read tokens (see `flags::ofrep`), nor for where the
//! tokens come from (`crate::secrets`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sluice_model::{AdminConfig, Role};

use super::{AdminState, Problem};

/// The tokens this sluice knows, and whether reads need one.
pub struct Access {
    holders: Vec<Holder>,
    reads_need_token: bool,
}

struct Holder {
    name: Arc<str>,
    role: Role,
    token: Box<[u8]>,
}

/// Who a request comes from, as the handlers see it (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No token is configured: everyone may do everything (loopback only).
    Open,
    /// The holder of a known token.
    Token {
        /// The token's name (what the audit log records).
        name: Arc<str>,
        /// What it may do.
        role: Role,
    },
    /// Tokens are configured and the request carries none.
    Missing,
    /// The request carries a token this sluice does not know.
    Unknown,
}

// === impl Access ===

impl Access {
    /// The legacy `admin.token` (named `admin`, role admin) and `admin.tokens`,
    /// whose secrets `crate::secrets` has already read (one still naming its
    /// source is left out: it cannot be matched).
    pub fn new(admin: &AdminConfig) -> Access {
        let legacy = admin
            .token
            .as_ref()
            .and_then(|t| t.value())
            .map(|token| Holder {
                name: Arc::from("admin"),
                role: Role::Admin,
                token: token.as_bytes().into(),
            });
        let named = admin.tokens.iter().filter_map(|t| {
            t.token.value().map(|token| Holder {
                name: Arc::from(t.name.as_str()),
                role: t.role,
                token: token.as_bytes().into(),
            })
        });
        Access {
            holders: legacy.into_iter().chain(named).collect(),
            reads_need_token: admin.require_token_for_reads,
        }
    }

    /// Whether any token is configured (without one, everything is open).
    pub fn protected(&self) -> bool {
        !self.holders.is_empty()
    }

    /// Whether a token matches one of ours (any role): for OFREP evaluation.
    pub fn knows(&self, given: &str) -> bool {
        matches!(self.identify_token(Some(given)), Caller::Token { .. })
    }

    /// Who sent these headers (`Authorization: Bearer …`).
    pub fn identify(&self, headers: &HeaderMap) -> Caller {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        self.identify_token(given)
    }

    fn identify_token(&self, given: Option<&str>) -> Caller {
        if self.holders.is_empty() {
            return Caller::Open;
        }
        let Some(given) = given else {
            return Caller::Missing;
        };
        // Every token is compared, so the time taken does not tell which one
        // (or how much of one) matched.
        let mut found = None;
        for holder in &self.holders {
            if constant_time_eq(given.as_bytes(), &holder.token) && found.is_none() {
                found = Some(holder);
            }
        }
        match found {
            Some(holder) => Caller::Token {
                name: holder.name.clone(),
                role: holder.role,
            },
            None => Caller::Unknown,
        }
    }
}

/// Compares two byte strings in time that depends on their length only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// === impl Caller ===

impl Caller {
    /// The role the caller acts with (`Open` acts as admin); None without a known token.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Open => Some(Role::Admin),
            Caller::Token { role, .. } => Some(*role),
            Caller::Missing | Caller::Unknown => None,
        }
    }

    /// The token's name, as recorded with a change.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Token { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The layer in front of a route group that needs `needed`: identifies the
/// caller, refuses with 401/403, hands the `Caller` to the handler, and
/// writes a change (anything above `viewer`) to the audit log.
pub async fn require(
    State((state, needed)): State<(AdminState, Role)>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = state.access.identify(request.headers());
    let open_read = needed == Role::Viewer && !state.access.reads_need_token;
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if !open_read {
        if let Some(refusal) = refusal(&caller, needed) {
            tracing::warn!(
                target: "sluice::audit",
                %method,
                %path,
                needed = %needed,
                caller = %caller.name().unwrap_or("-"),
                status = refusal.status(),
                "admin call refused"
            );
            return refusal.into_response();
        }
    }
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if needed > Role::Viewer {
        tracing::info!(
            target: "sluice::audit",
            %method,
            %path,
            actor = %caller.name().unwrap_or("(no token configured)"),
            role = %caller.role().map_or("-", Role::as_str),
            status = response.status().as_u16(),
            "admin change"
        );
    }
    response
}

/// Why `caller` may not make a call that needs `needed`, if it may not.
fn refusal(caller: &Caller, needed: Role) -> Option<Problem> {
    let ask = format!(
        "`Authorization: Bearer <token>` with a token of role {needed} or above (admin.tokens, admin.tokens_file, SLUICE_ADMIN_TOKENS or SLUICE_ADMIN_TOKEN)"
    );
    match caller {
        Caller::Open => None,
        Caller::Token { role, .. } if *role >= needed => None,
        Caller::Token { name, role } => Some(Problem::new(
            StatusCode::FORBIDDEN,
            format!("the token {name:?} has the role {role}; this call needs the role {needed} or above"),
        )),
        Caller::Missing => Some(Problem::new(
            StatusCode::UNAUTHORIZED,
            format!("this call needs {ask}"),
        )),
        Caller::Unknown => Some(Problem::new(
            StatusCode::UNAUTHORIZED,
            format!("the token given is not one this sluice knows; this call needs {ask}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{AdminToken, Secret};

    fn access(reads: bool) -> Access {
        Access::new(&AdminConfig {
            token: Some(Secret::Value("legacy-token".into())),
            require_token_for_reads: reads,
            tokens: vec![AdminToken {
                name: "ci".into(),
                role: Role::Operator,
                token: Secret::Value("ci-token".into()),
            }],
            ..AdminConfig::default()
        })
    }

    #[test]
    fn a_token_is_known_by_its_name_and_role() {
        let access = access(false);
        assert!(access.protected());
        assert_eq!(access.identify_token(None), Caller::Missing);
        assert_eq!(access.identify_token(Some("ci-tokeX")), Caller::Unknown);
        assert_eq!(
            access.identify_token(Some("ci-token")),
            Caller::Token {
                name: "ci".into(),
                role: Role::Operator
            }
        );
        assert_eq!(
            access.identify_token(Some("legacy-token")).role(),
            Some(Role::Admin)
        );
        assert_eq!(
            Access::new(&AdminConfig::default()).identify_token(None),
            Caller::Open
        );
    }

    #[test]
    fn a_refusal_names_the_role_needed_and_never_the_token() {
        let caller = access(true).identify_token(Some("ci-token"));
        assert!(refusal(&caller, Role::Operator).is_none());
        let forbidden = refusal(&caller, Role::Admin).unwrap();
        assert_eq!(forbidden.status(), 403);
        let detail = serde_json::to_value(&forbidden).unwrap()["detail"].to_string();
        assert!(detail.contains("needs the role admin"), "{detail}");
        assert!(!detail.contains("ci-token"), "{detail}");
        let missing = refusal(&Caller::Missing, Role::Viewer).unwrap();
        assert_eq!(missing.status(), 401);
    }
}
