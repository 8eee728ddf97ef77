//! `inferguard service-accounts …`: machine identities that own API keys.

use std::collections::BTreeMap;

use super::CliContext;
use super::users::{
    OutputFormat, check_role, format_attrs, format_time, now, parse_attrs, render_json,
    render_table, validate_attr_key, validate_name,
};
use crate::store::ServiceAccountRecord;

/// `inferguard service-accounts …`
#[derive(Debug, clap::Subcommand)]
pub enum ServiceAccountsCommand {
    /// Creates a service account bound to a role.
    Create {
        /// The account name: letters, digits, `.`, `_`, `@`, `-`.
        #[arg(long)]
        name: String,
        /// A role the policy defines.
        #[arg(long)]
        role: String,
        /// An attribute for policy rules, e.g. `team=batch`; repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Images per day across the account's keys (default: the role's limit).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        daily_images: Option<i64>,
        /// LLM tokens per day across the account's keys (default: the role's limit).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        daily_tokens: Option<i64>,
    },
    /// Lists service accounts.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

impl ServiceAccountsCommand {
    /// Runs the command against the configured store.
    pub async fn run(self, ctx: &CliContext) -> anyhow::Result<()> {
        match self {
            ServiceAccountsCommand::Create {
                name,
                role,
                attrs,
                daily_images,
                daily_tokens,
            } => {
                let record = create_service_account(
                    ctx,
                    CreateServiceAccount {
                        name,
                        role,
                        attributes: parse_attrs(&attrs)?,
                        daily_images,
                        daily_tokens,
                    },
                )
                .await?;
                eprintln!(
                    "created service account `{}` with role `{}`",
                    record.name, record.role
                );
            }
            ServiceAccountsCommand::List { format } => {
                let accounts = ctx.store.list_service_accounts().await?;
                print!("{}", format_service_accounts(&accounts, format));
            }
        }
        Ok(())
    }
}

/// The arguments of `service-accounts create` (the CLI's and the admin API's).
#[derive(Debug, Clone)]
pub struct CreateServiceAccount {
    /// The account name.
    pub name: String,
    /// A role the policy defines.
    pub role: String,
    /// Attributes for policy rules (keys checked here).
    pub attributes: BTreeMap<String, String>,
    /// Images per day across the account's keys.
    pub daily_images: Option<i64>,
    /// LLM tokens per day across the account's keys.
    pub daily_tokens: Option<i64>,
}

/// Checks and stores a new service account; audited as `service_account.create`.
pub async fn create_service_account(
    ctx: &CliContext,
    req: CreateServiceAccount,
) -> anyhow::Result<ServiceAccountRecord> {
    validate_name("service account name", &req.name)?;
    check_role(ctx, &req.role)?;
    for key in req.attributes.keys() {
        validate_attr_key(key)?;
    }
    if req.daily_images.is_some_and(|n| n < 0) || req.daily_tokens.is_some_and(|n| n < 0) {
        anyhow::bail!("daily limits must not be negative");
    }
    let record = ServiceAccountRecord {
        name: req.name,
        role: req.role,
        attributes: req.attributes,
        daily_images: req.daily_images,
        daily_tokens: req.daily_tokens,
        disabled: false,
        created_at: now(),
    };
    ctx.store.create_service_account(&record).await?;
    super::audit::record_admin(
        ctx,
        "service_account.create",
        &format!("service_account:{}", record.name),
        serde_json::json!({
            "role": record.role,
            "attributes": record.attributes,
            "daily_images": record.daily_images,
            "daily_tokens": record.daily_tokens,
        }),
    )
    .await?;
    Ok(record)
}

/// `service-accounts list` output.
pub fn format_service_accounts(accounts: &[ServiceAccountRecord], format: OutputFormat) -> String {
    let limit = |n: Option<i64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            accounts
                .iter()
                .map(|sa| {
                    serde_json::json!({
                        "name": sa.name,
                        "role": sa.role,
                        "attributes": sa.attributes,
                        "daily_images": sa.daily_images,
                        "daily_tokens": sa.daily_tokens,
                        "disabled": sa.disabled,
                        "created_at": format_time(sa.created_at),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => render_table(
            &[
                "NAME",
                "ROLE",
                "DAILY_IMAGES",
                "DAILY_TOKENS",
                "STATUS",
                "CREATED",
                "ATTRIBUTES",
            ],
            &accounts
                .iter()
                .map(|sa| {
                    vec![
                        sa.name.clone(),
                        sa.role.clone(),
                        limit(sa.daily_images),
                        limit(sa.daily_tokens),
                        if sa.disabled { "disabled" } else { "active" }.into(),
                        format_time(sa.created_at),
                        format_attrs(&sa.attributes),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use clap::Parser;

    use super::*;
    use crate::store::{SqliteStore, Store};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ServiceAccountsCommand,
    }

    #[test]
    fn command_line_forms_parse() {
        let cli = Cli::try_parse_from([
            "sa",
            "create",
            "--name",
            "batch",
            "--role",
            "viewer",
            "--attr",
            "team=render",
            "--attr",
            "cost_center=42",
            "--daily-images",
            "100",
            "--daily-tokens",
            "5000",
        ])
        .expect("parses");
        let ServiceAccountsCommand::Create {
            attrs,
            daily_images,
            daily_tokens,
            ..
        } = cli.command
        else {
            panic!("not create");
        };
        assert_eq!(attrs, ["team=render", "cost_center=42"]);
        assert_eq!((daily_images, daily_tokens), (Some(100), Some(5000)));
        assert!(
            Cli::try_parse_from([
                "sa",
                "create",
                "--name",
                "b",
                "--role",
                "r",
                "--daily-images",
                "-1"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["sa", "list", "--format", "json"]).expect("parses");
        assert!(matches!(
            cli.command,
            ServiceAccountsCommand::List {
                format: OutputFormat::Json
            }
        ));
    }

    #[test]
    fn accounts_format_as_table_and_json() {
        let accounts = vec![ServiceAccountRecord {
            name: "batch".into(),
            role: "designer_basic".into(),
            attributes: BTreeMap::from([("team".into(), "render".into())]),
            daily_images: Some(100),
            daily_tokens: None,
            disabled: false,
            created_at: 1_763_805_600,
        }];
        let table = format_service_accounts(&accounts, OutputFormat::Table);
        assert_eq!(
            table,
            "NAME   ROLE            DAILY_IMAGES  DAILY_TOKENS  STATUS  CREATED               ATTRIBUTES\n\
             batch  designer_basic  100           -             active  2025-11-22T10:00:00Z  team=render\n"
        );
        let value: serde_json::Value =
            serde_json::from_str(&format_service_accounts(&accounts, OutputFormat::Json))
                .expect("json");
        assert_eq!(value[0]["name"], "batch");
        assert_eq!(value[0]["daily_images"], 100);
        assert_eq!(value[0]["daily_tokens"], serde_json::Value::Null);
        assert_eq!(value[0]["attributes"]["team"], "render");
    }

    #[tokio::test]
    async fn create_and_list_against_a_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["viewer"].map(String::from).into(),
            audit: None,
        };
        let create = |name: &str, role: &str| ServiceAccountsCommand::Create {
            name: name.into(),
            role: role.into(),
            attrs: vec!["team=render".into()],
            daily_images: Some(10),
            daily_tokens: None,
        };
        create("batch", "viewer").run(&ctx).await.expect("create");
        assert_eq!(
            create("batch", "viewer")
                .run(&ctx)
                .await
                .expect_err("dup")
                .to_string(),
            "service account `batch` already exists"
        );
        assert!(create("other", "admin").run(&ctx).await.is_err());
        assert!(create("bad name", "viewer").run(&ctx).await.is_err());
        ServiceAccountsCommand::List {
            format: OutputFormat::Table,
        }
        .run(&ctx)
        .await
        .expect("list");
        let sa = store
            .get_service_account("batch")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(sa.daily_images, Some(10));
        assert_eq!(
            sa.attributes.get("team").map(String::as_str),
            Some("render")
        );
        assert_eq!(store.list_service_accounts().await.expect("list").len(), 1);
    }
}
