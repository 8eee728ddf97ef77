//! `inferguard templates …`: prompt templates managed at run time, for roles with
//! `templates_only: true`.
//!
//! Every change names the user making it with `--as USERNAME`: an existing, enabled user bound
//! to a role of the current policy that grants `templates:manage`. A template is proposed with
//! `add` (its text is compiled first, so a broken template is refused there), applies once
//! *another* manager approves it (four eyes: the proposer cannot approve their own template),
//! and stops applying when retired (retired is final; a name is never reused). Running servers
//! pick up every change through the store's change feed within the poll interval. Every change
//! is also an admin event in the audit trail (when `audit.file` is configured).

use anyhow::bail;

use super::CliContext;
use super::users::{OutputFormat, format_time, now, render_json, render_table};
use crate::domain::Permission;
use crate::policy::templates::{DEFAULT_MAX_WORDS, Template};
use crate::policy::{GrantError, Policy, check_user_grants};
use crate::store::{StoreError, TemplateOutcome, TemplateRecord, TemplateStatus, UserRecord};

/// Longest template name.
const MAX_NAME_CHARS: usize = 64;

/// `inferguard templates …`
#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCommand {
    /// Lists the templates managed at run time, by name.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Only templates in this state.
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
    },
    /// Proposes a template; it applies once another manager approves it.
    Add {
        /// A unique name: letters, digits, `-` and `_` (at most 64).
        #[arg(long)]
        name: String,
        /// The text, with `{placeholders}` filled by plain words.
        #[arg(long)]
        text: String,
        /// Most words in one placeholder value (1–50).
        #[arg(long, default_value_t = DEFAULT_MAX_WORDS)]
        max_words: usize,
        /// The proposer: a user whose role grants templates:manage.
        #[arg(long = "as", value_name = "USERNAME")]
        by: String,
    },
    /// Approves a proposed template (not one's own).
    Approve {
        /// The template name.
        name: String,
        /// The approver: a user whose role grants templates:manage.
        #[arg(long = "as", value_name = "USERNAME")]
        by: String,
    },
    /// Retires a proposed or approved template; it stops applying.
    Retire {
        /// The template name.
        name: String,
        /// Who retires it: a user whose role grants templates:manage.
        #[arg(long = "as", value_name = "USERNAME")]
        by: String,
    },
}

/// `templates list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Proposed,
    Approved,
    Retired,
}

impl From<StatusFilter> for TemplateStatus {
    fn from(s: StatusFilter) -> Self {
        match s {
            StatusFilter::Proposed => TemplateStatus::Proposed,
            StatusFilter::Approved => TemplateStatus::Approved,
            StatusFilter::Retired => TemplateStatus::Retired,
        }
    }
}

/// Why a user may not manage templates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    #[error("user `{0}` not found")]
    NotFound(String),
    #[error(transparent)]
    Grant(#[from] GrantError),
}

/// Checks that a stored user may manage templates: enabled, bound to a role of the current
/// policy that grants `templates:manage` (an admin role with `["*"]` does).
pub fn check_manager(policy: &Policy, user: &UserRecord) -> Result<(), ManagerError> {
    Ok(check_user_grants(
        policy,
        user,
        Permission::TemplatesManage,
    )?)
}

impl TemplatesCommand {
    /// Runs the command against the configured store, checking managers against `policy`.
    pub async fn run(self, ctx: &CliContext, policy: &Policy) -> anyhow::Result<()> {
        let out = self.run_at(ctx, policy, now()).await?;
        print!("{out}");
        Ok(())
    }

    /// Runs the command as of `now` (unix seconds); returns what goes to stdout (messages
    /// about changes go to stderr).
    pub async fn run_at(
        self,
        ctx: &CliContext,
        policy: &Policy,
        now: i64,
    ) -> anyhow::Result<String> {
        match self {
            TemplatesCommand::List { format, status } => {
                let templates = ctx.store.list_templates(status.map(Into::into)).await?;
                Ok(format_templates(&templates, format))
            }
            TemplatesCommand::Add {
                name,
                text,
                max_words,
                by,
            } => {
                let by = manager(ctx, policy, &by).await?;
                check_name(&name)?;
                if policy.templates.iter().any(|t| t.name == name) {
                    bail!("template `{name}` is defined in policy.yaml; pick another name");
                }
                let compiled = Template::new(name.clone(), text.clone())
                    .and_then(|t| t.with_max_words(max_words))
                    .map_err(|e| anyhow::anyhow!("template `{name}` is refused: {e}"))?;
                let max_words = u32::try_from(compiled.max_words)?;
                let record = match ctx
                    .store
                    .add_template(&name, &text, max_words, &by, now)
                    .await
                {
                    Ok(record) => record,
                    Err(StoreError::Conflict(_)) => {
                        bail!("template `{name}` already exists (names are never reused)")
                    }
                    Err(e) => return Err(e.into()),
                };
                super::audit::record_admin(
                    ctx,
                    "template.add",
                    &format!("template:{name}"),
                    serde_json::json!({
                        "by": by,
                        "text": record.text,
                        "max_words": record.max_words,
                    }),
                )
                .await?;
                eprintln!("proposed template `{name}` as `{by}`; another manager must approve it");
                Ok(String::new())
            }
            TemplatesCommand::Approve { name, by } => {
                let by = manager(ctx, policy, &by).await?;
                let Some(record) = ctx.store.get_template(&name).await? else {
                    bail!("template `{}` not found", printable(&name));
                };
                if record.proposed_by == by {
                    bail!(
                        "user `{by}` proposed template `{name}` and cannot approve it themselves"
                    );
                }
                let outcome = ctx.store.approve_template(&name, &by, now).await?;
                let record = changed(outcome, &name, "approve", "only a proposed template")?;
                super::audit::record_admin(
                    ctx,
                    "template.approve",
                    &format!("template:{name}"),
                    serde_json::json!({
                        "by": by,
                        "proposed_by": record.proposed_by,
                        "text": record.text,
                        "max_words": record.max_words,
                    }),
                )
                .await?;
                eprintln!("approved template `{name}` as `{by}`");
                Ok(String::new())
            }
            TemplatesCommand::Retire { name, by } => {
                let by = manager(ctx, policy, &by).await?;
                let outcome = ctx.store.retire_template(&name, &by, now).await?;
                let record = changed(
                    outcome,
                    &name,
                    "retire",
                    "only a proposed or approved template",
                )?;
                super::audit::record_admin(
                    ctx,
                    "template.retire",
                    &format!("template:{name}"),
                    serde_json::json!({
                        "by": by,
                        "proposed_by": record.proposed_by,
                        "approved_by": record.approved_by,
                    }),
                )
                .await?;
                eprintln!("retired template `{name}` as `{by}`");
                Ok(String::new())
            }
        }
    }
}

/// The `--as` user, checked: returns their username.
async fn manager(ctx: &CliContext, policy: &Policy, name: &str) -> anyhow::Result<String> {
    let Some(user) = ctx.store.get_user(name).await? else {
        return Err(ManagerError::NotFound(printable(name)).into());
    };
    check_manager(policy, &user)?;
    Ok(user.username)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "`{}` is not a template name (1–{MAX_NAME_CHARS} letters, digits, `-` or `_`)",
            printable(name)
        );
    }
    Ok(())
}

fn changed(
    outcome: TemplateOutcome,
    name: &str,
    verb: &str,
    allowed: &str,
) -> anyhow::Result<TemplateRecord> {
    match outcome {
        TemplateOutcome::Changed(record) => Ok(record),
        TemplateOutcome::NotFound => bail!("template `{}` not found", printable(name)),
        TemplateOutcome::Refused(record) => bail!(
            "cannot {verb} template `{name}`: it is {}; {allowed} can be {verb}d",
            record.status
        ),
    }
}

/// Control characters escaped, so stored text cannot drive the terminal.
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

/// `templates list` output.
pub fn format_templates(templates: &[TemplateRecord], format: OutputFormat) -> String {
    let opt_time = |t: Option<i64>| t.map(format_time);
    match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            templates
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "status": t.status,
                        "text": t.text,
                        "max_words": t.max_words,
                        "proposed_by": t.proposed_by,
                        "proposed_at": format_time(t.proposed_at),
                        "approved_by": t.approved_by,
                        "approved_at": opt_time(t.approved_at),
                        "retired_by": t.retired_by,
                        "retired_at": opt_time(t.retired_at),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => {
            let dash = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), printable);
            render_table(
                &[
                    "NAME",
                    "STATUS",
                    "MAX_WORDS",
                    "TEXT",
                    "PROPOSED_BY",
                    "APPROVED_BY",
                    "RETIRED_BY",
                ],
                &templates
                    .iter()
                    .map(|t| {
                        vec![
                            printable(&t.name),
                            t.status.to_string(),
                            t.max_words.to_string(),
                            printable(&t.text),
                            printable(&t.proposed_by),
                            dash(&t.approved_by),
                            dash(&t.retired_by),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser;

    use super::*;
    use crate::store::{SqliteStore, Store, TemplateStore};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TemplatesCommand,
    }

    const POLICY: &str = "\
apis: [fooocus-api]
templates:
  - {name: static-shot, text: \"a photo of {subject}\"}
roles:
  admin: {permissions: [\"*\"]}
  art_director: {permissions: [templates:manage, generation:create]}
  intern: {permissions: [generation:create], templates_only: true}
";

    fn policy() -> Policy {
        crate::config::compile_policy(std::path::Path::new("policy.yaml"), POLICY).expect("policy")
    }

    fn user(name: &str, role: Option<&str>, disabled: bool) -> UserRecord {
        UserRecord {
            username: name.into(),
            email: None,
            role: role.map(String::from),
            attributes: Default::default(),
            disabled,
            password_hash: None,
            created_at: 0,
        }
    }

    async fn setup() -> (tempfile::TempDir, Arc<SqliteStore>, CliContext) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        for u in [
            user("ann", Some("art_director"), false),
            user("bob", Some("art_director"), false),
            user("root", Some("admin"), false),
            user("ivy", Some("intern"), false),
            user("old", Some("art_director"), true),
            user("ghost", Some("gone"), false),
            user("free", None, false),
        ] {
            store.create_user(&u).await.expect("user");
        }
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["admin", "art_director", "intern"].map(String::from).into(),
            audit: None,
        };
        (dir, store, ctx)
    }

    fn add(name: &str, text: &str, by: &str) -> TemplatesCommand {
        TemplatesCommand::Add {
            name: name.into(),
            text: text.into(),
            max_words: DEFAULT_MAX_WORDS,
            by: by.into(),
        }
    }

    #[test]
    fn command_line_forms_parse() {
        let cli = Cli::try_parse_from(["t", "list", "--format", "json", "--status", "approved"])
            .expect("list");
        assert!(matches!(
            cli.command,
            TemplatesCommand::List {
                format: OutputFormat::Json,
                status: Some(StatusFilter::Approved)
            }
        ));
        let cli = Cli::try_parse_from([
            "t",
            "add",
            "--name",
            "n",
            "--text",
            "a {b}",
            "--as",
            "ann",
            "--max-words",
            "3",
        ])
        .expect("add");
        assert!(matches!(
            cli.command,
            TemplatesCommand::Add { max_words: 3, ref by, .. } if by == "ann"
        ));
        let cli = Cli::try_parse_from(["t", "approve", "n", "--as", "bob"]).expect("approve");
        assert!(matches!(cli.command, TemplatesCommand::Approve { .. }));
        let cli = Cli::try_parse_from(["t", "retire", "n", "--as", "bob"]).expect("retire");
        assert!(matches!(cli.command, TemplatesCommand::Retire { .. }));
        // `--as` is required for every change.
        assert!(Cli::try_parse_from(["t", "approve", "n"]).is_err());
        assert!(Cli::try_parse_from(["t", "add", "--name", "n", "--text", "x"]).is_err());
        assert!(Cli::try_parse_from(["t", "list", "--status", "pending"]).is_err());
    }

    #[tokio::test]
    async fn only_enabled_managers_may_change_templates() {
        let (_dir, store, ctx) = setup().await;
        let policy = policy();
        for (who, expected) in [
            (
                "ivy",
                "role `intern` of user `ivy` does not grant templates:manage",
            ),
            ("old", "user `old` is disabled"),
            ("nobody", "user `nobody` not found"),
            (
                "ghost",
                "user `ghost` has role `gone`, which the current policy does not define",
            ),
            ("free", "user `free` has no role binding"),
        ] {
            let err = add("t1", "a {b}", who)
                .run_at(&ctx, &policy, 1)
                .await
                .expect_err(who);
            assert!(err.to_string().contains(expected), "{who}: {err}");
        }
        assert!(store.list_templates(None).await.expect("list").is_empty());

        add("t1", "a {b}", "ann")
            .run_at(&ctx, &policy, 1)
            .await
            .expect("add");
        for (cmd, who) in [
            (
                TemplatesCommand::Approve {
                    name: "t1".into(),
                    by: "ivy".into(),
                },
                "ivy",
            ),
            (
                TemplatesCommand::Retire {
                    name: "t1".into(),
                    by: "old".into(),
                },
                "old",
            ),
        ] {
            cmd.run_at(&ctx, &policy, 2).await.expect_err(who);
        }
        let t = store.get_template("t1").await.expect("get").expect("t1");
        assert_eq!(t.status, TemplateStatus::Proposed);
    }

    #[tokio::test]
    async fn broken_or_clashing_templates_are_refused_at_add_time() {
        let (_dir, store, ctx) = setup().await;
        let policy = policy();
        for (name, text, expected) in [
            ("bad", "a {b", "without a closing"),
            ("bad", "{a}{b}", "two placeholders follow each other"),
            ("bad", "  ", "empty"),
            ("bad name", "a {b}", "is not a template name"),
            ("static-shot", "a {b}", "defined in policy.yaml"),
        ] {
            let err = add(name, text, "ann")
                .run_at(&ctx, &policy, 1)
                .await
                .expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let err = TemplatesCommand::Add {
            name: "wide".into(),
            text: "a {b}".into(),
            max_words: 0,
            by: "ann".into(),
        }
        .run_at(&ctx, &policy, 1)
        .await
        .expect_err("max_words 0");
        assert!(err.to_string().contains("max_words"), "{err}");
        assert!(store.list_templates(None).await.expect("list").is_empty());

        add("dup", "a {b}", "ann")
            .run_at(&ctx, &policy, 1)
            .await
            .expect("add");
        let err = add("dup", "c {d}", "bob")
            .run_at(&ctx, &policy, 2)
            .await
            .expect_err("dup");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[tokio::test]
    async fn lifecycle_with_four_eyes() {
        let (_dir, store, ctx) = setup().await;
        let policy = policy();
        TemplatesCommand::Add {
            name: "product-shot".into(),
            text: "a photo of {subject} on white".into(),
            max_words: 3,
            by: "ann".into(),
        }
        .run_at(&ctx, &policy, 10)
        .await
        .expect("add");
        let approve = |by: &str| TemplatesCommand::Approve {
            name: "product-shot".into(),
            by: by.into(),
        };
        let err = approve("ann")
            .run_at(&ctx, &policy, 11)
            .await
            .expect_err("self");
        assert!(
            err.to_string().contains("cannot approve it themselves"),
            "{err}"
        );
        let err = TemplatesCommand::Approve {
            name: "missing".into(),
            by: "bob".into(),
        }
        .run_at(&ctx, &policy, 11)
        .await
        .expect_err("missing");
        assert_eq!(err.to_string(), "template `missing` not found");

        approve("bob")
            .run_at(&ctx, &policy, 12)
            .await
            .expect("approve");
        let err = approve("root")
            .run_at(&ctx, &policy, 13)
            .await
            .expect_err("twice");
        assert!(err.to_string().contains("it is approved"), "{err}");

        let list = |status: Option<StatusFilter>, format: OutputFormat| {
            let ctx = &ctx;
            let policy = &policy;
            async move {
                TemplatesCommand::List { format, status }
                    .run_at(ctx, policy, 14)
                    .await
                    .expect("list")
            }
        };
        let table = list(None, OutputFormat::Table).await;
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table.contains("product-shot") && table.contains("approved"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&list(Some(StatusFilter::Approved), OutputFormat::Json).await)
                .expect("json");
        assert_eq!(json[0]["name"], "product-shot");
        assert_eq!(json[0]["status"], "approved");
        assert_eq!(json[0]["max_words"], 3);
        assert_eq!(json[0]["proposed_by"], "ann");
        assert_eq!(json[0]["approved_by"], "bob");
        assert_eq!(
            list(Some(StatusFilter::Proposed), OutputFormat::Json).await,
            "[]\n"
        );

        // The proposer may retire it (no four eyes needed to stop a template applying).
        TemplatesCommand::Retire {
            name: "product-shot".into(),
            by: "ann".into(),
        }
        .run_at(&ctx, &policy, 15)
        .await
        .expect("retire");
        let t = store
            .get_template("product-shot")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(t.status, TemplateStatus::Retired);
        assert_eq!(t.retired_by.as_deref(), Some("ann"));
        assert!(
            store
                .approved_templates()
                .await
                .expect("approved")
                .is_empty()
        );
        let err = TemplatesCommand::Retire {
            name: "product-shot".into(),
            by: "bob".into(),
        }
        .run_at(&ctx, &policy, 16)
        .await
        .expect_err("twice");
        assert!(err.to_string().contains("it is retired"), "{err}");
        let feed = store.changes_since(0, 100).await.expect("feed");
        assert_eq!(feed.iter().filter(|c| c.entity == "template").count(), 3);
    }
}
