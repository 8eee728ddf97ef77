//! The CLI side of the admin API: `inferguard --server URL …` runs the store commands
//! (users, service accounts, keys, sessions, approvals, reports) through a server's admin
//! listener instead of opening the store, authenticated by the credential in the environment
//! variable `--token-env` names (`INFERGUARD_TOKEN` by default). Output is the same as the
//! local commands'.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::{convert, pb};
use crate::cli::Command;
use crate::commands::approvals::{ApprovalsCommand, format_approvals};
use crate::commands::keys::{
    KeysCommand, describe_new_key, describe_rotation, format_keys, grace_seconds,
};
use crate::commands::report::ReportCommand;
use crate::commands::service_accounts::{ServiceAccountsCommand, format_service_accounts};
use crate::commands::sessions::{SessionsCommand, format_sessions};
use crate::commands::users::{
    self, UsersCommand, format_time, format_users, now, parse_attr, parse_attrs, read_password,
};

/// How long connecting to the admin listener may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one call may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

type Client = pb::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<Channel, Credential>,
>;

/// Adds the caller's credential to every call.
#[derive(Clone)]
pub struct Credential(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Reads the credential from the environment variable `var`: an API key or a bearer token,
/// sent as `authorization: Bearer …`.
pub fn credential_from_env(var: &str) -> anyhow::Result<Credential> {
    let Ok(token) = std::env::var(var) else {
        bail!("--server needs a credential: set {var} to an API key or bearer token");
    };
    let token = token.trim();
    if token.is_empty() {
        bail!("{var} is empty");
    }
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| anyhow::anyhow!("{var} holds characters a credential cannot have"))?;
    let mut value = value;
    value.set_sensitive(true);
    Ok(Credential(value))
}

/// Runs one command against the admin API at `server` (its own runtime).
pub fn run(server: &str, token_env: &str, command: Command) -> anyhow::Result<()> {
    let credential = credential_from_env(token_env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let endpoint = Endpoint::from_shared(server.to_string())
            .with_context(|| format!("--server `{server}` is not a URL"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to the admin API at {server}"))?;
        let mut client = pb::admin_client::AdminClient::with_interceptor(channel, credential);
        dispatch(&mut client, command).await
    })
}

/// A call's failure as the CLI reports it.
fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("admin API: {:?}: {}", status.code(), status.message())
}

async fn dispatch(client: &mut Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Users(cmd) => users_command(client, cmd).await,
        Command::ServiceAccounts(cmd) => service_accounts_command(client, cmd).await,
        Command::Keys(cmd) => keys_command(client, cmd).await,
        Command::Sessions(cmd) => sessions_command(client, cmd).await,
        Command::Approvals(cmd) => approvals_command(client, cmd).await,
        Command::Report(cmd) => report_command(client, cmd).await,
        other => bail!(
            "`{}` is not available with --server; run it where the configuration is",
            command_name(&other)
        ),
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Serve => "serve",
        Command::Templates(_) => "templates",
        Command::Policy(_) => "policy",
        Command::Audit(_) => "audit",
        _ => "this command",
    }
}

async fn users_command(client: &mut Client, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Create {
            username,
            role,
            email,
            attrs,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password(std::io::stdin().lock())?)
            } else {
                None
            };
            let user = client
                .create_user(pb::CreateUserRequest {
                    username,
                    role,
                    email,
                    attributes: parse_attrs(&attrs)?.into_iter().collect(),
                    password,
                })
                .await
                .map_err(failed)?
                .into_inner();
            eprintln!("{}", users::describe_new_user(&convert::user_record(user)));
        }
        UsersCommand::List { format } => {
            let list = client
                .list_users(pb::ListUsersRequest {})
                .await
                .map_err(failed)?
                .into_inner();
            let records: Vec<_> = list.users.into_iter().map(convert::user_record).collect();
            print!("{}", format_users(&records, format));
        }
        UsersCommand::SetRole { username, role } => {
            client
                .set_user_role(pb::SetUserRoleRequest {
                    username: username.clone(),
                    role: role.clone(),
                })
                .await
                .map_err(failed)?;
            eprintln!("user `{username}` now has role `{role}`");
        }
        UsersCommand::SetAttr { username, attr } => {
            let (key, value) = parse_attr(&attr)?;
            client
                .set_user_attribute(pb::SetUserAttributeRequest {
                    username: username.clone(),
                    key: key.clone(),
                    value,
                })
                .await
                .map_err(failed)?;
            eprintln!("set attribute `{key}` of user `{username}`");
        }
        UsersCommand::Disable { username } => {
            client
                .disable_user(pb::DisableUserRequest {
                    username: username.clone(),
                })
                .await
                .map_err(failed)?;
            eprintln!("disabled user `{username}`");
        }
    }
    Ok(())
}

async fn service_accounts_command(
    client: &mut Client,
    cmd: ServiceAccountsCommand,
) -> anyhow::Result<()> {
    match cmd {
        ServiceAccountsCommand::Create {
            name,
            role,
            attrs,
            daily_images,
            daily_tokens,
        } => {
            let sa = client
                .create_service_account(pb::CreateServiceAccountRequest {
                    name,
                    role,
                    attributes: parse_attrs(&attrs)?.into_iter().collect(),
                    daily_images,
                    daily_tokens,
                })
                .await
                .map_err(failed)?
                .into_inner();
            eprintln!(
                "created service account `{}` with role `{}`",
                sa.name, sa.role
            );
        }
        ServiceAccountsCommand::List { format } => {
            let list = client
                .list_service_accounts(pb::ListServiceAccountsRequest {})
                .await
                .map_err(failed)?
                .into_inner();
            let records: Vec<_> = list
                .service_accounts
                .into_iter()
                .map(convert::service_account_record)
                .collect();
            print!("{}", format_service_accounts(&records, format));
        }
    }
    Ok(())
}

/// Prints a new key alone on stdout; warns when stdout is a terminal that it is shown once.
fn print_new_key(full_key: &str) {
    println!("{full_key}");
    if std::io::stdout().is_terminal() {
        eprintln!("(shown once)");
    }
}

async fn keys_command(client: &mut Client, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            name,
            user,
            service_account,
            scopes,
            expires_days,
            daily_images,
            allow_networks,
        } => {
            let owner = match (user, service_account) {
                (Some(u), None) => pb::create_key_request::Owner::User(u),
                (None, Some(s)) => pb::create_key_request::Owner::ServiceAccount(s),
                _ => bail!("give exactly one of --user and --service-account"),
            };
            let created = client
                .create_key(pb::CreateKeyRequest {
                    name,
                    owner: Some(owner),
                    scopes,
                    expires_days: Some(expires_days),
                    daily_images,
                    allowed_networks: allow_networks,
                })
                .await
                .map_err(failed)?
                .into_inner();
            let record = convert::key_record(created.key.context("the server sent no key")?);
            print_new_key(&created.full_key);
            eprint!("{}", describe_new_key(&record));
        }
        KeysCommand::List { format, .. } => {
            let list = client
                .list_keys(pb::ListKeysRequest {})
                .await
                .map_err(failed)?
                .into_inner();
            let records: Vec<_> = list.keys.into_iter().map(convert::key_record).collect();
            print!("{}", format_keys(&records, format, now()));
        }
        KeysCommand::Rotate { id, grace_days, .. } => {
            let rotated = client
                .rotate_key(pb::RotateKeyRequest {
                    id,
                    grace_seconds: Some(grace_seconds(grace_days)?),
                })
                .await
                .map_err(failed)?
                .into_inner();
            let new = convert::key_record(rotated.new_key.context("the server sent no key")?);
            let old = convert::key_record(rotated.old_key.context("the server sent no key")?);
            print_new_key(&rotated.full_key);
            eprint!("{}", describe_rotation(&old, &new));
        }
        KeysCommand::Revoke { id } => {
            let revoked = client
                .revoke_key(pb::RevokeKeyRequest { id: id.clone() })
                .await
                .map_err(failed)?
                .into_inner();
            match revoked.key.and_then(|k| k.revoked_at) {
                Some(at) if revoked.already_revoked => {
                    eprintln!("key `{id}` was already revoked at {}", format_time(at))
                }
                _ => eprintln!("revoked key `{id}`"),
            }
        }
        #[allow(unreachable_patterns)]
        _ => bail!("this `keys` command is not available with --server"),
    }
    Ok(())
}

async fn sessions_command(client: &mut Client, cmd: SessionsCommand) -> anyhow::Result<()> {
    match cmd {
        SessionsCommand::Revoke { username } => {
            let done = client
                .revoke_sessions(pb::RevokeSessionsRequest {
                    username: username.clone(),
                })
                .await
                .map_err(failed)?
                .into_inner();
            eprintln!(
                "ended {} session(s) and revoked {} refresh token(s) of `{username}`",
                done.sessions_ended, done.refresh_tokens_revoked
            );
        }
        SessionsCommand::List { username, format } => {
            let list = client
                .list_sessions(pb::ListSessionsRequest { username })
                .await
                .map_err(failed)?
                .into_inner();
            let records: Vec<_> = list
                .sessions
                .into_iter()
                .map(convert::session_record)
                .collect();
            print!("{}", format_sessions(&records, format)?);
        }
    }
    Ok(())
}

async fn approvals_command(client: &mut Client, cmd: ApprovalsCommand) -> anyhow::Result<()> {
    let (id, approver, approve) = match cmd {
        ApprovalsCommand::List { format, status } => {
            let status = status.as_ref().and_then(value_name);
            let list = client
                .list_approvals(pb::ListApprovalsRequest { status })
                .await
                .map_err(failed)?
                .into_inner();
            let records: Vec<_> = list
                .approvals
                .into_iter()
                .map(convert::approval_record)
                .collect();
            print!("{}", format_approvals(&records, format, now()));
            return Ok(());
        }
        ApprovalsCommand::Approve { id, approver } => (id, approver, true),
        ApprovalsCommand::Reject { id, approver } => (id, approver, false),
    };
    if approver.is_some() {
        bail!("--as is not used with --server: the decision is made as the caller");
    }
    let decided = client
        .decide_approval(pb::DecideApprovalRequest {
            id: id.clone(),
            approve,
        })
        .await
        .map_err(failed)?
        .into_inner();
    eprintln!(
        "{} approval `{id}` for {} `{}` as `{}`",
        if approve { "approved" } else { "rejected" },
        if decided.principal_kind == pb::OwnerKind::ServiceAccount as i32 {
            "service account"
        } else {
            "user"
        },
        decided.subject,
        decided.decided_by.as_deref().unwrap_or("-"),
    );
    Ok(())
}

/// A command-line value's name (`json`, `pending`, …).
fn value_name<T: clap::ValueEnum>(value: &T) -> Option<String> {
    value.to_possible_value().map(|v| v.get_name().to_string())
}

/// The report request a `report …` command line describes.
fn report_request(cmd: &ReportCommand) -> pb::ReportRequest {
    match cmd {
        ReportCommand::AccessReview { format, .. } => pb::ReportRequest {
            kind: "access-review".into(),
            format: value_name(format),
            since: None,
            sample: None,
        },
        ReportCommand::Keys { format, .. } => pb::ReportRequest {
            kind: "keys".into(),
            format: value_name(format),
            since: None,
            sample: None,
        },
        ReportCommand::PermissionChanges { since, format, .. } => pb::ReportRequest {
            kind: "permission-changes".into(),
            format: value_name(format),
            since: since.clone(),
            sample: None,
        },
        ReportCommand::Generations {
            since,
            sample,
            format,
            ..
        } => pb::ReportRequest {
            kind: "generations".into(),
            format: value_name(format),
            since: since.clone(),
            sample: *sample,
        },
    }
}

async fn report_command(client: &mut Client, cmd: ReportCommand) -> anyhow::Result<()> {
    let report = client
        .report(report_request(&cmd))
        .await
        .map_err(failed)?
        .into_inner();
    print!("{}", report.text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::report::ReportFormat;

    #[test]
    fn report_commands_become_requests_the_server_parses_back() {
        let cmd = ReportCommand::Generations {
            since: Some("7d".into()),
            sample: Some(5),
            format: ReportFormat::Csv,
        };
        let request = report_request(&cmd);
        assert_eq!(
            (request.kind.as_str(), request.format.as_deref()),
            ("generations", Some("csv"))
        );
        let back = super::super::service::report_command(&request).expect("parses");
        assert!(matches!(
            back,
            ReportCommand::Generations { since: Some(s), sample: Some(5), format: ReportFormat::Csv } if s == "7d"
        ));
    }

    #[test]
    fn server_and_rotation_grace_parse() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "inferguard",
            "keys",
            "rotate",
            "0123456789abcdef",
            "--grace-days",
            "0.5",
            "--server",
            "http://127.0.0.1:9192",
        ])
        .expect("parses");
        assert_eq!(cli.server.as_deref(), Some("http://127.0.0.1:9192"));
        assert_eq!(cli.token_env, "INFERGUARD_TOKEN");
        let Command::Keys(KeysCommand::Rotate { grace_days, .. }) = cli.command else {
            panic!("not keys rotate");
        };
        assert_eq!(grace_seconds(grace_days).expect("valid"), 43_200);
        assert_eq!(grace_seconds(7.0).expect("valid"), 7 * 86_400);
        assert_eq!(grace_seconds(0.0).expect("valid"), 0);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 40_000.0] {
            assert!(grace_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_credential_comes_from_the_named_variable() {
        // A variable name no other test sets.
        let var = "INFERGUARD_TEST_ADMIN_TOKEN_UNSET";
        let err = credential_from_env(var).err().expect("unset");
        assert!(err.to_string().contains(var), "{err}");
    }
}
