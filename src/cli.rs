//! The command line: `inferguard serve|users|service-accounts|keys|policy …`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::approvals::ApprovalsCommand;
use crate::commands::audit::AuditCommand;
use crate::commands::keys::KeysCommand;
use crate::commands::report::ReportCommand;
use crate::commands::service_accounts::ServiceAccountsCommand;
use crate::commands::sessions::SessionsCommand;
use crate::commands::templates::TemplatesCommand;
use crate::commands::users::UsersCommand;

/// inferguard: identity, policy and audit for generative-model inference behind Envoy.
#[derive(Debug, Parser)]
#[command(name = "inferguard", version, about, propagate_version = true)]
pub struct Cli {
    /// The inferguard.yaml to use (every command but `policy check`).
    #[arg(
        long,
        global = true,
        env = "INFERGUARD_CONFIG",
        default_value = "inferguard.yaml"
    )]
    pub config: PathBuf,

    /// Run users, service-accounts, keys, sessions, approvals and report through this
    /// server's admin API (e.g. `http://127.0.0.1:9192`) instead of opening the store.
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,

    /// The environment variable holding the credential for `--server` (an API key or a
    /// bearer token).
    #[arg(
        long,
        global = true,
        value_name = "VAR",
        default_value = "INFERGUARD_TOKEN"
    )]
    pub token_env: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ext_authz gRPC listener and the HTTP listener.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage service accounts.
    #[command(subcommand, name = "service-accounts")]
    ServiceAccounts(ServiceAccountsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage browser (SSO) sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Decide requests held for approval.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Propose, approve and retire prompt templates (`templates_only` roles).
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Validate policy and configuration files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify audit trails (`audit verify` needs no --config).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compliance reports from the store and the audit trail (table, CSV or JSON).
    #[command(subcommand)]
    Report(ReportCommand),
}

/// `inferguard policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate inferguard.yaml and policy.yaml files, each on its own; exits non-zero naming
    /// the file, line and problem.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
