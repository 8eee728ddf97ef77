//! `inferguard approvals …`: decide the requests a `require_approval` rule held back.
//!
//! The CLI works as the operator with store access; `--as USERNAME` names the approver
//! recorded with the decision, who must be an enabled user bound to a role granting
//! `approvals:decide`, and may not decide their own request. Without `--as` the decision is
//! recorded as made by the operator (`cli:<login name>`). Every decision is also an admin
//! event in the audit trail (when `audit.file` is configured).

use anyhow::bail;

use super::CliContext;
use super::users::{OutputFormat, format_time, now, render_json, render_table};
use crate::domain::PrincipalKind;
use crate::policy::Policy;
use crate::policy::approvals::{check_approver, is_approval_id};
use crate::store::{ApprovalDecision, ApprovalRecord, ApprovalStatus, DecideOutcome};

/// `inferguard approvals …`
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Lists approvals, newest first.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Only approvals in this state (`expired`: pending or approved past expiry).
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
    },
    /// Approves a pending approval: the requester may then retry once with
    /// `x-inferguard-approval: ID`.
    Approve {
        /// The approval id (`ap_…`).
        id: String,
        /// The approver to record: a user whose role grants approvals:decide.
        #[arg(long = "as", value_name = "USERNAME")]
        approver: Option<String>,
    },
    /// Rejects a pending (or approved, not yet used) approval.
    Reject {
        /// The approval id (`ap_…`).
        id: String,
        /// The approver to record: a user whose role grants approvals:decide.
        #[arg(long = "as", value_name = "USERNAME")]
        approver: Option<String>,
    },
}

/// `approvals list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Pending,
    Approved,
    Rejected,
    Used,
    Expired,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Pending => "pending",
            StatusFilter::Approved => "approved",
            StatusFilter::Rejected => "rejected",
            StatusFilter::Used => "used",
            StatusFilter::Expired => "expired",
        }
    }

    /// The stored status worth querying (expired ones are pending or approved).
    fn stored(self) -> Option<ApprovalStatus> {
        match self {
            StatusFilter::Pending => Some(ApprovalStatus::Pending),
            StatusFilter::Approved => Some(ApprovalStatus::Approved),
            StatusFilter::Rejected => Some(ApprovalStatus::Rejected),
            StatusFilter::Used => Some(ApprovalStatus::Used),
            StatusFilter::Expired => None,
        }
    }
}

impl ApprovalsCommand {
    /// Runs the command against the configured store, checking approvers against `policy`.
    pub async fn run(self, ctx: &CliContext, policy: &Policy) -> anyhow::Result<()> {
        let out = self.run_at(ctx, policy, now()).await?;
        print!("{out}");
        Ok(())
    }

    /// Runs the command as of `now` (unix seconds); returns what goes to stdout (messages
    /// about decisions go to stderr).
    pub async fn run_at(
        self,
        ctx: &CliContext,
        policy: &Policy,
        now: i64,
    ) -> anyhow::Result<String> {
        match self {
            ApprovalsCommand::List { format, status } => {
                let approvals = list_approvals(ctx, status, now).await?;
                Ok(format_approvals(&approvals, format, now))
            }
            ApprovalsCommand::Approve { id, approver } => {
                decide(ctx, policy, &id, approver, ApprovalDecision::Approve, now).await?;
                Ok(String::new())
            }
            ApprovalsCommand::Reject { id, approver } => {
                decide(ctx, policy, &id, approver, ApprovalDecision::Reject, now).await?;
                Ok(String::new())
            }
        }
    }
}

/// Approvals, newest first; with `status`, only those in that state at `now`.
pub async fn list_approvals(
    ctx: &CliContext,
    status: Option<StatusFilter>,
    now: i64,
) -> anyhow::Result<Vec<ApprovalRecord>> {
    let mut approvals = ctx
        .store
        .list_approvals(status.and_then(StatusFilter::stored))
        .await?;
    if let Some(filter) = status {
        approvals.retain(|a| a.effective_status(now) == filter.as_str());
    }
    Ok(approvals)
}

/// Approves or rejects an approval as `approver` (a user the policy lets decide approvals,
/// never the one who asked), or as the CLI's actor when `None`; audited as
/// `approval.approve` / `approval.reject`.
pub async fn decide(
    ctx: &CliContext,
    policy: &Policy,
    id: &str,
    approver: Option<String>,
    decision: ApprovalDecision,
    now: i64,
) -> anyhow::Result<ApprovalRecord> {
    if !is_approval_id(id) {
        bail!(
            "`{}` is not an approval id (ap_ followed by 22 letters and digits)",
            printable(id)
        );
    }
    let Some(record) = ctx.store.get_approval(id).await? else {
        bail!("approval `{id}` not found");
    };
    let approver = match approver {
        None => super::audit::cli_actor(),
        Some(name) => {
            let Some(user) = ctx.store.get_user(&name).await? else {
                bail!("user `{}` not found", printable(&name));
            };
            check_approver(policy, &user)?;
            if record.principal_kind == PrincipalKind::User && record.subject == user.username {
                bail!(
                    "user `{}` asked for approval `{id}` and cannot decide it themselves",
                    user.username
                );
            }
            user.username
        }
    };
    let verb = match decision {
        ApprovalDecision::Approve => "approve",
        ApprovalDecision::Reject => "reject",
    };
    match ctx
        .store
        .decide_approval(id, decision, &approver, now)
        .await?
    {
        DecideOutcome::Decided(record) => {
            super::audit::record_admin(
                ctx,
                &format!("approval.{verb}"),
                &format!("approval:{id}"),
                serde_json::json!({
                    "approver": approver,
                    "principal": {"kind": record.principal_kind, "subject": record.subject},
                    "request": serde_json::from_str::<serde_json::Value>(&record.summary)
                        .unwrap_or(serde_json::Value::Null),
                    "rule": record.rule,
                }),
            )
            .await?;
            eprintln!(
                "{} approval `{id}` for {} `{}` ({}) as `{approver}`",
                match decision {
                    ApprovalDecision::Approve => "approved",
                    ApprovalDecision::Reject => "rejected",
                },
                kind_label(record.principal_kind),
                record.subject,
                describe_request(&record.summary),
            );
            Ok(record)
        }
        DecideOutcome::NotFound => bail!("approval `{id}` not found"),
        DecideOutcome::Refused(record) => {
            let state = record.effective_status(now);
            let allowed = match decision {
                ApprovalDecision::Approve => "only a pending approval can be approved",
                ApprovalDecision::Reject => {
                    "only a pending or approved (unused) approval can be rejected"
                }
            };
            let by = record
                .decided_by
                .as_deref()
                .map(|b| format!(" by `{b}`"))
                .unwrap_or_default();
            bail!("cannot {verb} approval `{id}`: it is {state}{by}; {allowed}")
        }
    }
}

fn kind_label(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service account",
    }
}

/// Control characters escaped, so a stored path cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// One line for people: `POST /v1/… preset=Quality images=2 loras=a,b model=m`.
fn describe_request(summary: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(summary)
    else {
        return "-".into();
    };
    let text = |key: &str| map.get(key).and_then(|v| v.as_str()).map(printable);
    let mut parts = Vec::new();
    if let (Some(method), Some(path)) = (text("method"), text("path")) {
        parts.push(format!("{method} {path}"));
    }
    for (key, label) in [
        ("preset", "preset"),
        ("model", "model"),
        ("refiner_model", "refiner"),
    ] {
        if let Some(v) = text(key) {
            parts.push(format!("{label}={v}"));
        }
    }
    if let Some(n) = map.get("image_number").and_then(|v| v.as_u64()) {
        parts.push(format!("images={n}"));
    }
    if let Some(loras) = map.get("loras").and_then(|v| v.as_array()) {
        let names: Vec<String> = loras
            .iter()
            .filter_map(|l| l.as_str())
            .map(printable)
            .collect();
        if !names.is_empty() {
            parts.push(format!("loras={}", names.join(",")));
        }
    }
    if let (Some(w), Some(h)) = (
        map.get("width").and_then(|v| v.as_u64()),
        map.get("height").and_then(|v| v.as_u64()),
    ) {
        parts.push(format!("size={w}x{h}"));
    }
    if map.get("upscale").and_then(|v| v.as_bool()) == Some(true) {
        parts.push("upscale".into());
    }
    if let Some(n) = map.get("max_tokens").and_then(|v| v.as_u64()) {
        parts.push(format!("max_tokens={n}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// `approvals list` output.
pub fn format_approvals(approvals: &[ApprovalRecord], format: OutputFormat, now: i64) -> String {
    let opt_time = |t: Option<i64>| t.map(format_time);
    match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            approvals
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "id": a.id,
                        "status": a.effective_status(now),
                        "principal": {"kind": a.principal_kind, "subject": a.subject},
                        "request": serde_json::from_str::<serde_json::Value>(&a.summary)
                            .unwrap_or(serde_json::Value::Null),
                        "rule": a.rule,
                        "fingerprint": a.fingerprint,
                        "created_at": format_time(a.created_at),
                        "expires_at": format_time(a.expires_at),
                        "decided_at": opt_time(a.decided_at),
                        "decided_by": a.decided_by,
                        "used_at": opt_time(a.used_at),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => render_table(
            &[
                "ID",
                "STATUS",
                "PRINCIPAL",
                "REQUEST",
                "RULE",
                "CREATED",
                "EXPIRES",
                "DECIDED_BY",
            ],
            &approvals
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.effective_status(now).to_string(),
                        format!("{}:{}", a.principal_kind.as_str(), printable(&a.subject)),
                        describe_request(&a.summary),
                        a.rule.as_deref().map_or_else(|| "-".into(), printable),
                        format_time(a.created_at),
                        format_time(a.expires_at),
                        a.decided_by
                            .as_deref()
                            .map_or_else(|| "-".into(), printable),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;
    use clap::Parser;

    use super::*;
    use crate::domain::{Action, ApiKind, AuthMethod, Permission, Principal, RoleSource};
    use crate::policy::approvals::{fingerprint, redeem_approval, request_approval};
    use crate::store::{ApprovalStore, SqliteStore, Store, UserRecord};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ApprovalsCommand,
    }

    const POLICY: &str = "\
apis: [fooocus-api]
roles:
  admin: {permissions: [\"*\"]}
  approver: {permissions: [approvals:decide, generation:create]}
  designer: {permissions: [generation:create]}
";

    fn policy() -> Policy {
        crate::config::compile_policy(std::path::Path::new("policy.yaml"), POLICY).expect("policy")
    }

    fn user(name: &str, role: &str) -> UserRecord {
        UserRecord {
            username: name.into(),
            email: None,
            role: Some(role.into()),
            attributes: Default::default(),
            disabled: false,
            password_hash: None,
            created_at: 0,
        }
    }

    fn principal(subject: &str) -> Principal {
        Principal {
            subject: subject.into(),
            kind: PrincipalKind::User,
            email: None,
            groups: vec![],
            role: "designer".into(),
            role_source: RoleSource::Binding,
            auth: AuthMethod::ApiKey,
            key_id: None,
            scopes: None,
            session_id: None,
            mfa: false,
            attributes: Default::default(),
        }
    }

    fn action() -> Action {
        Action {
            permissions: vec![Permission::GenerationCreate],
            api: Some(ApiKind::Image),
            name: "text-to-image".into(),
            preset: Some("Quality".into()),
            image_number: Some(2),
            prompt: Some("secret prompt".into()),
            ..Action::default()
        }
    }

    async fn setup() -> (tempfile::TempDir, Arc<SqliteStore>, CliContext) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        for (name, role) in [
            ("alice", "designer"),
            ("carol", "approver"),
            ("root", "admin"),
            ("dave", "designer"),
        ] {
            store.create_user(&user(name, role)).await.expect("user");
        }
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["admin", "approver", "designer"].map(String::from).into(),
            audit: None,
        };
        (dir, store, ctx)
    }

    fn t(secs: i64) -> DateTime<chrono::Utc> {
        DateTime::from_timestamp(secs, 0).expect("time")
    }

    #[test]
    fn command_line_forms_parse() {
        let cli = Cli::try_parse_from(["a", "list", "--format", "json", "--status", "expired"])
            .expect("list");
        assert!(matches!(
            cli.command,
            ApprovalsCommand::List {
                format: OutputFormat::Json,
                status: Some(StatusFilter::Expired)
            }
        ));
        let cli = Cli::try_parse_from(["a", "list"]).expect("plain list");
        assert!(matches!(
            cli.command,
            ApprovalsCommand::List {
                format: OutputFormat::Table,
                status: None
            }
        ));
        let cli = Cli::try_parse_from(["a", "approve", "ap_x", "--as", "carol"]).expect("approve");
        assert!(matches!(
            cli.command,
            ApprovalsCommand::Approve { ref id, approver: Some(ref a) } if id == "ap_x" && a == "carol"
        ));
        let cli = Cli::try_parse_from(["a", "reject", "ap_x"]).expect("reject");
        assert!(matches!(
            cli.command,
            ApprovalsCommand::Reject { approver: None, .. }
        ));
        assert!(Cli::try_parse_from(["a", "approve"]).is_err());
        assert!(Cli::try_parse_from(["a", "list", "--status", "done"]).is_err());
    }

    #[tokio::test]
    async fn list_approve_reject_against_a_store() {
        let (_dir, store, ctx) = setup().await;
        let policy = policy();
        let alice = principal("alice");
        let fp = fingerprint(&alice, &action(), "POST", "/v1/generation/text-to-image");
        let t0 = 1_800_000_000;
        let id = request_approval(&*store, &alice, &fp, Some("rules.cost_control"), t(t0))
            .await
            .expect("request");

        let list = |status: Option<StatusFilter>, format: OutputFormat, now: i64| {
            let ctx = &ctx;
            let policy = &policy;
            async move {
                ApprovalsCommand::List { format, status }
                    .run_at(ctx, policy, now)
                    .await
                    .expect("list")
            }
        };
        let table = list(None, OutputFormat::Table, t0 + 1).await;
        assert!(table.starts_with("ID"), "{table}");
        assert!(table.contains(&id));
        assert!(table.contains("pending"));
        assert!(table.contains("user:alice"));
        assert!(table.contains("POST /v1/generation/text-to-image preset=Quality images=2"));
        assert!(table.contains("rules.cost_control"));
        assert!(!table.contains("secret prompt"));
        let json: serde_json::Value =
            serde_json::from_str(&list(None, OutputFormat::Json, t0 + 1).await).expect("json");
        assert_eq!(json[0]["id"], id.as_str());
        assert_eq!(json[0]["status"], "pending");
        assert_eq!(json[0]["principal"]["subject"], "alice");
        assert_eq!(json[0]["request"]["preset"], "Quality");
        assert_eq!(json[0]["decided_by"], serde_json::Value::Null);

        let decide = |id: &str, approver: Option<&str>, approve: bool| {
            let id = id.to_string();
            let approver = approver.map(String::from);
            let cmd = if approve {
                ApprovalsCommand::Approve { id, approver }
            } else {
                ApprovalsCommand::Reject { id, approver }
            };
            let ctx = &ctx;
            let policy = &policy;
            async move { cmd.run_at(ctx, policy, t0 + 10).await }
        };
        // Not approvers: a designer, an unknown user, the requester herself.
        let err = decide(&id, Some("dave"), true).await.expect_err("designer");
        assert!(
            err.to_string().contains("does not grant approvals:decide"),
            "{err}"
        );
        let err = decide(&id, Some("nobody"), true)
            .await
            .expect_err("unknown");
        assert_eq!(err.to_string(), "user `nobody` not found");
        store
            .set_user_role("alice", "approver")
            .await
            .expect("promote alice");
        let err = decide(&id, Some("alice"), true).await.expect_err("self");
        assert!(
            err.to_string().contains("cannot decide it themselves"),
            "{err}"
        );
        let err = decide("ap_unknownunknownunknownx", Some("carol"), true)
            .await
            .expect_err("unknown id");
        assert!(err.to_string().contains("not found"), "{err}");
        let err = decide("nope", None, true).await.expect_err("malformed");
        assert!(err.to_string().contains("is not an approval id"), "{err}");

        decide(&id, Some("carol"), true).await.expect("approve");
        let record = store.get_approval(&id).await.expect("get").expect("exists");
        assert_eq!(record.status, ApprovalStatus::Approved);
        assert_eq!(record.decided_by.as_deref(), Some("carol"));
        let err = decide(&id, Some("root"), true).await.expect_err("twice");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot approve approval `{id}`: it is approved by `carol`; only a pending approval can be approved"
            )
        );
        assert!(
            list(Some(StatusFilter::Approved), OutputFormat::Table, t0 + 20)
                .await
                .contains(&id)
        );
        assert!(
            !list(Some(StatusFilter::Pending), OutputFormat::Table, t0 + 20)
                .await
                .contains(&id)
        );

        // The requester redeems it once; it then lists as used.
        redeem_approval(&*store, &id, &alice, &fp, t(t0 + 30))
            .await
            .expect("redeem");
        assert!(
            list(Some(StatusFilter::Used), OutputFormat::Table, t0 + 40)
                .await
                .contains(&id)
        );

        // A second request, rejected by the operator (no --as).
        let mut bigger = action();
        bigger.image_number = Some(4);
        let fp2 = fingerprint(&alice, &bigger, "POST", "/v1/generation/text-to-image");
        let id2 = request_approval(&*store, &alice, &fp2, None, t(t0 + 50))
            .await
            .expect("second");
        decide(&id2, None, false).await.expect("reject");
        let record = store
            .get_approval(&id2)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(record.status, ApprovalStatus::Rejected);
        assert_eq!(record.decided_by, Some(super::super::audit::cli_actor()));
        let rejected = list(Some(StatusFilter::Rejected), OutputFormat::Json, t0 + 60).await;
        let rejected: serde_json::Value = serde_json::from_str(&rejected).expect("json");
        assert_eq!(rejected.as_array().map(Vec::len), Some(1));
        assert_eq!(rejected[0]["id"], id2.as_str());
    }

    #[tokio::test]
    async fn expired_approvals_list_as_expired_and_cannot_be_decided() {
        let (_dir, store, ctx) = setup().await;
        let policy = policy();
        let alice = principal("alice");
        let fp = fingerprint(&alice, &action(), "POST", "/p");
        let id = request_approval(&*store, &alice, &fp, None, t(1_000))
            .await
            .expect("request");
        let later = 1_000 + crate::policy::approvals::APPROVAL_TTL_SECS;
        let expired = ApprovalsCommand::List {
            format: OutputFormat::Table,
            status: Some(StatusFilter::Expired),
        }
        .run_at(&ctx, &policy, later)
        .await
        .expect("list");
        assert!(
            expired.contains(&id) && expired.contains("expired"),
            "{expired}"
        );
        let pending = ApprovalsCommand::List {
            format: OutputFormat::Table,
            status: Some(StatusFilter::Pending),
        }
        .run_at(&ctx, &policy, later)
        .await
        .expect("list");
        assert!(!pending.contains(&id));
        let err = ApprovalsCommand::Approve {
            id: id.clone(),
            approver: Some("carol".into()),
        }
        .run_at(&ctx, &policy, later)
        .await
        .expect_err("expired");
        assert!(err.to_string().contains("it is expired"), "{err}");
    }

    #[test]
    fn requests_describe_safely() {
        assert_eq!(
            describe_request(
                r#"{"method":"POST","path":"/x\u001b[2J","loras":["a","b"],"width":512,"height":512,"upscale":true,"max_tokens":9}"#
            ),
            "POST /x\\u{1b}[2J loras=a,b size=512x512 upscale max_tokens=9"
        );
        assert_eq!(describe_request("not json"), "-");
    }
}
