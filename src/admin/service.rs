//! `inferguard.admin.v1.Admin`: each method authenticates the caller, checks one permission,
//! then runs the same operation as the CLI command (src/commands), recorded in the audit
//! trail with the caller as actor.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tonic::{Request, Response, Status};

use super::auth::{self, AdminAuth};
use super::convert;
use super::pb;
use crate::audit::AuditTrail;
use crate::authorizer::Authorizer;
use crate::commands::CliContext;
use crate::commands::approvals::StatusFilter;
use crate::commands::report::{ReportCommand, ReportSources};
use crate::commands::users::now;
use crate::commands::{approvals, keys, service_accounts, sessions, users};
use crate::domain::{Permission, Principal, PrincipalKind};
use crate::store::{ApprovalDecision, DynStore, StoreError};

/// The most records one `QueryAudit` returns.
pub const MAX_AUDIT_RECORDS: u32 = 1000;

/// What the admin service works on: the running server's authorizer (credentials, policy),
/// store and audit trail.
pub struct AdminParts {
    pub authorizer: Arc<Authorizer>,
    pub store: DynStore,
    /// The trail admin changes are recorded in (`None`: no `audit.file`).
    pub audit: Option<AuditTrail>,
    /// The resolved `audit.file` base name, for audit queries and reports.
    pub trail_base: Option<PathBuf>,
}

impl AdminParts {
    /// The parts of a running `serve`.
    pub fn new(
        cfg: &crate::config::ServerConfig,
        shared: &crate::app::Shared,
        audit: Option<AuditTrail>,
    ) -> Self {
        AdminParts {
            authorizer: shared.authorizer.clone(),
            store: shared.store.clone(),
            audit,
            trail_base: cfg
                .audit
                .as_ref()
                .and_then(|a| a.file.as_ref())
                .map(|f| cfg.base_dir.join(f)),
        }
    }
}

/// The admin API implementation.
pub struct AdminService {
    auth: AdminAuth,
    parts: AdminParts,
}

impl AdminService {
    /// A service over the server's parts.
    pub fn new(parts: AdminParts) -> Self {
        AdminService {
            auth: AdminAuth::new(parts.authorizer.clone()),
            parts,
        }
    }

    /// The operations' context, with the roles of the policy in force now.
    fn context(&self) -> CliContext {
        let known_roles: BTreeSet<String> = self
            .parts
            .authorizer
            .policy()
            .roles
            .keys()
            .cloned()
            .collect();
        CliContext {
            store: self.parts.store.clone(),
            known_roles,
            audit: self.parts.audit.clone(),
        }
    }

    /// Authenticates the caller, checks `permission`, then runs `op` with changes recorded as
    /// made by the caller.
    async fn call<T, R, F, Fut>(
        &self,
        request: Request<T>,
        method: &'static str,
        permission: Permission,
        op: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(CliContext, Principal, T) -> Fut,
        Fut: Future<Output = anyhow::Result<R>>,
    {
        let principal = self.auth.require(&request, permission).await?;
        let actor = auth::actor(&principal);
        tracing::info!(%actor, method, "admin API call");
        let result = crate::commands::audit::as_actor(
            actor.clone(),
            op(self.context(), principal, request.into_inner()),
        )
        .await;
        result.map(Response::new).map_err(|e| {
            let status = status_of(&e);
            tracing::info!(%actor, method, code = ?status.code(), "admin API call failed");
            status
        })
    }
}

/// An operation's error as a gRPC status. The message is the CLI's one-line reason, except
/// for store failures, which are logged and not echoed.
pub fn status_of(e: &anyhow::Error) -> Status {
    let message = format!("{e:#}");
    if let Some(store) = e.chain().find_map(|c| c.downcast_ref::<StoreError>()) {
        return match store {
            StoreError::NotFound(_) => Status::not_found(message),
            StoreError::Conflict(_) => Status::already_exists(message),
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %message, "admin API: store failure");
                Status::unavailable("the store is unavailable; try again")
            }
        };
    }
    if message.contains("audit record could not be written") {
        tracing::error!(error = %message, "admin API: audit failure");
        return Status::internal(message);
    }
    if message.ends_with("not found") {
        return Status::not_found(message);
    }
    if message.starts_with("cannot ") || message.contains("is disabled") {
        return Status::failed_precondition(message);
    }
    Status::invalid_argument(message)
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.call(
            request,
            "CreateUser",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                let record = users::create_user(
                    &ctx,
                    users::CreateUser {
                        username: r.username,
                        role: r.role,
                        email: r.email,
                        attributes: r.attributes.into_iter().collect(),
                        password: r.password,
                    },
                )
                .await?;
                Ok(convert::user(&record))
            },
        )
        .await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        self.call(
            request,
            "ListUsers",
            Permission::AdminManageUsers,
            |ctx, _, _| async move {
                let users = ctx.store.list_users().await?;
                Ok(pb::ListUsersResponse {
                    users: users.iter().map(convert::user).collect(),
                })
            },
        )
        .await
    }

    async fn set_user_role(
        &self,
        request: Request<pb::SetUserRoleRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.call(
            request,
            "SetUserRole",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                users::set_user_role(&ctx, &r.username, &r.role).await?;
                stored_user(&ctx, &r.username).await
            },
        )
        .await
    }

    async fn set_user_attribute(
        &self,
        request: Request<pb::SetUserAttributeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.call(
            request,
            "SetUserAttribute",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                users::set_user_attr(&ctx, &r.username, &r.key, &r.value).await?;
                stored_user(&ctx, &r.username).await
            },
        )
        .await
    }

    async fn disable_user(
        &self,
        request: Request<pb::DisableUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.call(
            request,
            "DisableUser",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                users::disable_user(&ctx, &r.username).await?;
                stored_user(&ctx, &r.username).await
            },
        )
        .await
    }

    async fn create_service_account(
        &self,
        request: Request<pb::CreateServiceAccountRequest>,
    ) -> Result<Response<pb::ServiceAccount>, Status> {
        self.call(
            request,
            "CreateServiceAccount",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                let record = service_accounts::create_service_account(
                    &ctx,
                    service_accounts::CreateServiceAccount {
                        name: r.name,
                        role: r.role,
                        attributes: r.attributes.into_iter().collect(),
                        daily_images: r.daily_images,
                        daily_tokens: r.daily_tokens,
                    },
                )
                .await?;
                Ok(convert::service_account(&record))
            },
        )
        .await
    }

    async fn list_service_accounts(
        &self,
        request: Request<pb::ListServiceAccountsRequest>,
    ) -> Result<Response<pb::ListServiceAccountsResponse>, Status> {
        self.call(
            request,
            "ListServiceAccounts",
            Permission::AdminManageUsers,
            |ctx, _, _| async move {
                let accounts = ctx.store.list_service_accounts().await?;
                Ok(pb::ListServiceAccountsResponse {
                    service_accounts: accounts.iter().map(convert::service_account).collect(),
                })
            },
        )
        .await
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        self.call(
            request,
            "CreateKey",
            Permission::AdminManageKeys,
            |ctx, _, r| async move {
                let (user, service_account) = match r.owner {
                    Some(pb::create_key_request::Owner::User(u)) => (Some(u), None),
                    Some(pb::create_key_request::Owner::ServiceAccount(s)) => (None, Some(s)),
                    None => anyhow::bail!("give the key's owner: user or service_account"),
                };
                let at = now();
                let created = keys::create_key_limited(
                    &ctx,
                    keys::CreateKey {
                        name: r.name,
                        user,
                        service_account,
                        scopes: r.scopes,
                        expires_days: r.expires_days.unwrap_or(keys::DEFAULT_EXPIRY_DAYS),
                        daily_images: r.daily_images,
                    },
                    &r.allowed_networks,
                    at,
                )
                .await?;
                Ok(pb::CreateKeyResponse {
                    key: Some(convert::key(&created.record, at)),
                    full_key: created.full_key,
                })
            },
        )
        .await
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.call(
            request,
            "ListKeys",
            Permission::AdminManageKeys,
            |ctx, _, _| async move {
                let at = now();
                let keys = ctx.store.list_keys().await?;
                Ok(pb::ListKeysResponse {
                    keys: keys.iter().map(|k| convert::key(k, at)).collect(),
                })
            },
        )
        .await
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        self.call(
            request,
            "RotateKey",
            Permission::AdminManageKeys,
            |ctx, _, r| async move {
                let at = now();
                let grace = r
                    .grace_seconds
                    .unwrap_or(keys::DEFAULT_ROTATION_GRACE_DAYS * 86_400);
                let rotated = keys::rotate_key(&ctx, &r.id, grace, at).await?;
                Ok(pb::RotateKeyResponse {
                    new_key: Some(convert::key(&rotated.new.record, at)),
                    old_key: Some(convert::key(&rotated.old, at)),
                    full_key: rotated.new.full_key,
                })
            },
        )
        .await
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        self.call(
            request,
            "RevokeKey",
            Permission::AdminManageKeys,
            |ctx, _, r| async move {
                let at = now();
                let earlier = keys::revoke_key(&ctx, &r.id, at).await?;
                let Some(record) = ctx.store.get_key(&r.id).await? else {
                    anyhow::bail!("key `{}` not found", r.id);
                };
                Ok(pb::RevokeKeyResponse {
                    key: Some(convert::key(&record, at)),
                    already_revoked: earlier.is_some(),
                })
            },
        )
        .await
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        self.call(
            request,
            "ListSessions",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                if let Some(u) = &r.username {
                    users::validate_name("username", u)?;
                }
                let list = ctx
                    .store
                    .list_sessions(r.username.as_deref(), now())
                    .await?;
                Ok(pb::ListSessionsResponse {
                    sessions: list.iter().map(convert::session).collect(),
                })
            },
        )
        .await
    }

    async fn revoke_sessions(
        &self,
        request: Request<pb::RevokeSessionsRequest>,
    ) -> Result<Response<pb::RevokeSessionsResponse>, Status> {
        self.call(
            request,
            "RevokeSessions",
            Permission::AdminManageUsers,
            |ctx, _, r| async move {
                let (ended, refresh) = sessions::revoke_sessions(&ctx, &r.username, now()).await?;
                Ok(pb::RevokeSessionsResponse {
                    sessions_ended: ended as u64,
                    refresh_tokens_revoked: refresh,
                })
            },
        )
        .await
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        self.call(
            request,
            "ListApprovals",
            Permission::ApprovalsDecide,
            |ctx, _, r| async move {
                let status = r
                    .status
                    .as_deref()
                    .map(|s| {
                        <StatusFilter as clap::ValueEnum>::from_str(s, false).map_err(|_| {
                            anyhow::anyhow!(
                                "unknown approval status `{s}` (pending, approved, rejected, used, expired)"
                            )
                        })
                    })
                    .transpose()?;
                let at = now();
                let list = approvals::list_approvals(&ctx, status, at).await?;
                Ok(pb::ListApprovalsResponse {
                    approvals: list.iter().map(|a| convert::approval(a, at)).collect(),
                })
            },
        )
        .await
    }

    async fn decide_approval(
        &self,
        request: Request<pb::DecideApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let policy = self.parts.authorizer.policy();
        self.call(
            request,
            "DecideApproval",
            Permission::ApprovalsDecide,
            |ctx, principal, r| async move {
                // A user decides as themselves (the approver checks and the no-self-approval
                // rule apply); a service account is recorded as the API actor.
                let approver = (principal.kind == PrincipalKind::User).then_some(principal.subject);
                let decision = if r.approve {
                    ApprovalDecision::Approve
                } else {
                    ApprovalDecision::Reject
                };
                let at = now();
                let record =
                    approvals::decide(&ctx, &policy, &r.id, approver, decision, at).await?;
                Ok(convert::approval(&record, at))
            },
        )
        .await
    }

    async fn query_audit(
        &self,
        request: Request<pb::QueryAuditRequest>,
    ) -> Result<Response<pb::QueryAuditResponse>, Status> {
        let base = self.parts.trail_base.clone();
        self.call(
            request,
            "QueryAudit",
            Permission::AdminViewLogs,
            |_, _, r| async move {
                let Some(base) = base else {
                    anyhow::bail!("no local audit trail is configured (audit.file)");
                };
                let since = r
                    .since
                    .as_deref()
                    .map(|s| crate::commands::report::parse_since(s, chrono::Utc::now()))
                    .transpose()?;
                let limit = match r.limit {
                    None | Some(0) => MAX_AUDIT_RECORDS,
                    Some(n) => n.min(MAX_AUDIT_RECORDS),
                } as usize;
                let trail = tokio::task::spawn_blocking(move || {
                    crate::commands::report::read_trail(&base, since)
                })
                .await??;
                let text = |record: &serde_json::Map<String, serde_json::Value>, key: &str| {
                    record.get(key).and_then(|v| v.as_str()).map(str::to_owned)
                };
                let matching: Vec<String> = trail
                    .records
                    .iter()
                    .filter(|rec| {
                        r.event_type
                            .as_ref()
                            .is_none_or(|e| text(rec, "event_type").as_ref() == Some(e))
                            && r.actor
                                .as_ref()
                                .is_none_or(|a| text(rec, "actor").as_ref() == Some(a))
                            && r.action_prefix.as_ref().is_none_or(|p| {
                                text(rec, "action").is_some_and(|a| a.starts_with(p.as_str()))
                            })
                    })
                    .map(|rec| serde_json::Value::Object(rec.clone()).to_string())
                    .collect();
                let left_out = matching.len().saturating_sub(limit);
                Ok(pb::QueryAuditResponse {
                    records_json: matching.into_iter().skip(left_out).collect(),
                    left_out: left_out as u64,
                })
            },
        )
        .await
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let sources = ReportSources {
            store: self.parts.store.clone(),
            trail_base: self.parts.trail_base.clone(),
            default_role: self.parts.authorizer.policy().default_role.clone(),
        };
        self.call(
            request,
            "Report",
            Permission::AdminViewLogs,
            |_, _, r| async move {
                let command = report_command(&r)?;
                let text = command.render(&sources, chrono::Utc::now()).await?;
                Ok(pb::ReportResponse { text })
            },
        )
        .await
    }
}

/// The user as stored after a change.
async fn stored_user(ctx: &CliContext, username: &str) -> anyhow::Result<pb::User> {
    match ctx.store.get_user(username).await? {
        Some(u) => Ok(convert::user(&u)),
        None => anyhow::bail!("user `{username}` not found"),
    }
}

/// `inferguard report …` parsed from a report request, so the API takes exactly what the
/// command line takes.
#[derive(Parser)]
#[command(name = "report", no_binary_name = true)]
struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

/// The report command a request names (its arguments checked as on the command line).
pub fn report_command(r: &pb::ReportRequest) -> anyhow::Result<ReportCommand> {
    let mut args = vec![r.kind.clone()];
    if let Some(f) = &r.format {
        args.extend(["--format".to_string(), f.clone()]);
    }
    if let Some(s) = &r.since {
        args.extend(["--since".to_string(), s.clone()]);
    }
    if let Some(n) = r.sample {
        args.extend(["--sample".to_string(), n.to_string()]);
    }
    let parsed = ReportArgs::try_parse_from(&args).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid report request");
        anyhow::anyhow!("{}", first.trim_start_matches("error: "))
    })?;
    Ok(parsed.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_requests_parse_like_the_command_line() {
        let request = |kind: &str, format: Option<&str>, since: Option<&str>| pb::ReportRequest {
            kind: kind.into(),
            format: format.map(String::from),
            since: since.map(String::from),
            sample: None,
        };
        assert!(matches!(
            report_command(&request("keys", Some("json"), None)).expect("keys"),
            ReportCommand::Keys { .. }
        ));
        assert!(matches!(
            report_command(&request("permission-changes", None, Some("7d"))).expect("changes"),
            ReportCommand::PermissionChanges { since: Some(s), .. } if s == "7d"
        ));
        assert!(report_command(&request("everything", None, None)).is_err());
        assert!(report_command(&request("keys", Some("yaml"), None)).is_err());
        assert!(
            report_command(&request("access-review", None, Some("1d"))).is_err(),
            "access-review takes no --since"
        );
        assert!(report_command(&request("--help", None, None)).is_err());
    }

    #[test]
    fn errors_map_to_codes() {
        let code = |e: anyhow::Error| status_of(&e).code();
        assert_eq!(
            code(anyhow::Error::new(StoreError::Conflict("user `a`".into()))),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            code(anyhow::anyhow!("user `ghost` not found")),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(anyhow::anyhow!("unknown role `x` (known: a)")),
            tonic::Code::InvalidArgument
        );
        let hidden = status_of(&anyhow::Error::new(StoreError::Unavailable(
            "postgres://secret@db".into(),
        )));
        assert_eq!(hidden.code(), tonic::Code::Unavailable);
        assert!(!hidden.message().contains("secret"));
    }
}
