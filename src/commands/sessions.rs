//! `inferguard sessions …`: browser (SSO) sessions in the store.
//!
//! `sessions revoke --username U` ends every session of U at once and revokes U's local
//! refresh tokens; running servers drop the sessions through the change feed within the poll
//! interval. Session ids and tokens are never printed: a session is shown by the first
//! characters of its id's hash.

use anyhow::bail;

use super::CliContext;
use super::users::{OutputFormat, format_time, now, render_json, render_table, validate_name};
use crate::store::SessionRecord;

/// How many hex characters of a session's hash name it in listings.
const SHORT_ID_CHARS: usize = 12;

/// `inferguard sessions …`
#[derive(Debug, clap::Subcommand)]
pub enum SessionsCommand {
    /// Ends every session of a user now (and revokes the user's refresh tokens).
    Revoke {
        /// The username (the IdP subject).
        #[arg(long)]
        username: String,
    },
    /// Lists active sessions.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        username: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

impl SessionsCommand {
    /// Runs the command against the configured store.
    pub async fn run(self, ctx: &CliContext) -> anyhow::Result<()> {
        match self {
            SessionsCommand::Revoke { username } => {
                let (ended, refresh) = revoke_sessions(ctx, &username, now()).await?;
                eprintln!(
                    "ended {ended} session(s) and revoked {refresh} refresh token(s) of `{username}`"
                );
            }
            SessionsCommand::List { username, format } => {
                if let Some(u) = &username {
                    validate_name("username", u)?;
                }
                let sessions = ctx.store.list_sessions(username.as_deref(), now()).await?;
                print!("{}", format_sessions(&sessions, format)?);
            }
        }
        Ok(())
    }
}

/// Ends every session of `username` and revokes their refresh tokens at `at`; audited as
/// `session.revoke`. Returns (sessions ended, refresh tokens revoked).
pub async fn revoke_sessions(
    ctx: &CliContext,
    username: &str,
    at: i64,
) -> anyhow::Result<(usize, u64)> {
    validate_name("username", username)?;
    let ended = ctx
        .store
        .end_sessions_for_user(username, at, "revoked")
        .await?;
    let refresh = ctx
        .store
        .revoke_refresh_tokens_for_user(username, at)
        .await?;
    super::audit::record_admin(
        ctx,
        "session.revoke",
        &format!("user:{username}"),
        serde_json::json!({
            "sessions_ended": ended.len(),
            "refresh_tokens_revoked": refresh,
        }),
    )
    .await?;
    Ok((ended.len(), refresh))
}

/// The first characters of a session id's hash, which name it in listings.
pub fn short_id(hash: &str) -> &str {
    hash.get(..SHORT_ID_CHARS).unwrap_or(hash)
}

/// `sessions list` output (never tokens).
pub fn format_sessions(sessions: &[SessionRecord], format: OutputFormat) -> anyhow::Result<String> {
    if sessions.iter().any(|s| s.id_sha256.len() < SHORT_ID_CHARS) {
        bail!("the store holds a malformed session id hash");
    }
    Ok(match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            sessions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "session": short_id(&s.id_sha256),
                        "username": s.username,
                        "email": s.email,
                        "groups": s.groups,
                        "mfa": s.mfa,
                        "amr": s.amr,
                        "acr": s.acr,
                        "created_at": format_time(s.created_at),
                        "last_seen_at": format_time(s.last_seen_at),
                        "expires_at": format_time(s.expires_at()),
                        "claims_refreshed_at": format_time(s.claims_refreshed_at),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => render_table(
            &[
                "SESSION",
                "USERNAME",
                "EMAIL",
                "MFA",
                "CREATED",
                "LAST SEEN",
                "EXPIRES",
                "GROUPS",
            ],
            &sessions
                .iter()
                .map(|s| {
                    vec![
                        short_id(&s.id_sha256).to_string(),
                        s.username.clone(),
                        s.email.clone().unwrap_or_else(|| "-".into()),
                        if s.mfa { "yes" } else { "no" }.into(),
                        format_time(s.created_at),
                        format_time(s.last_seen_at),
                        format_time(s.expires_at()),
                        if s.groups.is_empty() {
                            "-".into()
                        } else {
                            s.groups.join(",")
                        },
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::store::{self, RefreshTokenRecord};

    fn session(id: &str, user: &str, now: i64) -> SessionRecord {
        SessionRecord {
            id_sha256: id.repeat(64 / id.len()),
            username: user.into(),
            issuer: "https://idp".into(),
            idp_sid: None,
            email: Some(format!("{user}@example.com")),
            groups: vec!["g1".into(), "g2".into()],
            attributes: BTreeMap::new(),
            amr: vec!["pwd".into()],
            acr: None,
            mfa: false,
            id_token: Some("secret-id-token".into()),
            refresh_token: Some("secret-refresh-token".into()),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + 3600,
            absolute_expires_at: now + 36000,
            claims_refreshed_at: now,
            ended_at: None,
            end_reason: None,
        }
    }

    #[tokio::test]
    async fn revoke_ends_sessions_and_refresh_tokens() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = store::open(&url).await.expect("store");
        let t = now();
        store
            .create_session(&session("a", "alice", t))
            .await
            .expect("s");
        store
            .create_session(&session("b", "alice", t))
            .await
            .expect("s");
        store
            .create_session(&session("c", "bob", t))
            .await
            .expect("s");
        store
            .create_refresh_token(&RefreshTokenRecord {
                token_sha256: "f".repeat(64),
                family_id: "fam".into(),
                username: "alice".into(),
                created_at: t,
                expires_at: t + 100,
                used_at: None,
                revoked_at: None,
            })
            .await
            .expect("rt");
        let ctx = CliContext {
            store: store.clone(),
            known_roles: BTreeSet::new(),
            audit: None,
        };
        SessionsCommand::Revoke {
            username: "alice".into(),
        }
        .run(&ctx)
        .await
        .expect("revoke");
        let left = store.list_sessions(None, t).await.expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].username, "bob");
        let rt = store
            .use_refresh_token(&"f".repeat(64), t)
            .await
            .expect("rt");
        assert!(rt.expect("row").revoked_at.is_some());
        assert!(
            SessionsCommand::Revoke {
                username: "bad name".into()
            }
            .run(&ctx)
            .await
            .is_err()
        );
    }

    #[test]
    fn listings_never_show_tokens() {
        let s = vec![session("a", "alice", 1_700_000_000)];
        for format in [OutputFormat::Table, OutputFormat::Json] {
            let out = format_sessions(&s, format).expect("format");
            assert!(out.contains("alice") && out.contains("aaaaaaaaaaaa"));
            assert!(!out.contains("secret"), "{out}");
            assert!(!out.contains(&"a".repeat(13)), "only a short hash prefix");
        }
        let json: serde_json::Value =
            serde_json::from_str(&format_sessions(&s, OutputFormat::Json).expect("json"))
                .expect("valid json");
        assert_eq!(json[0]["groups"][1], "g2");
        assert_eq!(json[0]["mfa"], false);
    }
}
