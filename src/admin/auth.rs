//! Who is calling the admin API and whether they may: the caller's credential goes through the
//! authorizer's own credential step (API key, JWT bearer, session cookie), and the permission
//! through the policy's own permission check (the role's permissions, narrowed by the key's
//! scopes). Everything fails closed.

use std::sync::Arc;

use tonic::Status;
use tonic::metadata::KeyAndValueRef;

use crate::authorizer::Authorizer;
use crate::domain::{Action, Denial, DenyKind, Permission, Principal, Request};

/// The most metadata bytes an admin call may carry (the Check path's header limit).
const MAX_METADATA_BYTES: usize = crate::authorizer::MAX_HEADER_BYTES;

/// Authenticates admin API callers and checks their permissions.
#[derive(Clone)]
pub struct AdminAuth {
    authorizer: Arc<Authorizer>,
}

impl AdminAuth {
    /// Checks callers against `authorizer`'s credentials and policy (hot-reloaded with it).
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        AdminAuth { authorizer }
    }

    /// Authenticates the caller of `request` and checks they hold `permission`.
    ///
    /// `UNAUTHENTICATED`: no or a bad credential; `PERMISSION_DENIED`: the role (or the key's
    /// scopes) does not grant `permission`; `UNAVAILABLE`: the store cannot say.
    pub async fn require<T>(
        &self,
        request: &tonic::Request<T>,
        permission: Permission,
    ) -> Result<Principal, Status> {
        let req = as_request(request)?;
        let (principal, _) = self
            .authorizer
            .authenticate(&req)
            .await
            .map_err(status_for)?;
        let action = Action {
            permissions: vec![permission],
            name: "admin".into(),
            ..Action::default()
        };
        let policy = self.authorizer.policy();
        // A role that requires multi-factor authentication on the Check path requires it here
        // too (an API key can never provide it).
        if let Some(role) = policy.roles.get(&principal.role)
            && role.require_mfa
            && !principal.mfa
        {
            return Err(Status::permission_denied(format!(
                "mfa_required: role `{}` needs multi-factor authentication; use a credential from a multi-factor sign-in",
                role.name
            )));
        }
        crate::policy::decide(&policy, &principal, &action).map_err(|d| {
            tracing::info!(
                subject = %principal.subject,
                kind = principal.kind.as_str(),
                %permission,
                reason = %d.reason,
                "admin API call refused"
            );
            status_for(d)
        })?;
        Ok(principal)
    }
}

/// The audit actor for an admin API caller: `admin_api:<user|service_account>:<subject>`.
pub fn actor(principal: &Principal) -> String {
    format!(
        "admin_api:{}:{}",
        principal.kind.as_str(),
        principal.subject
    )
}

/// The call's metadata as a Check request: lower-cased ASCII headers (binary ones are
/// ignored), the gRPC path, the peer address.
fn as_request<T>(request: &tonic::Request<T>) -> Result<Request, Status> {
    let mut req = Request {
        id: String::new(),
        method: "POST".into(),
        path: "/inferguard.admin.v1.Admin".into(),
        peer: request.remote_addr().map(|a| a.ip().to_string()),
        ..Request::default()
    };
    let mut bytes = 0usize;
    for entry in request.metadata().iter() {
        if let KeyAndValueRef::Ascii(key, value) = entry {
            let Ok(value) = value.to_str() else { continue };
            bytes += key.as_str().len() + value.len();
            if bytes > MAX_METADATA_BYTES {
                return Err(Status::invalid_argument("the call's metadata is too large"));
            }
            // Keys arrive lower-cased; a repeated key is joined as Envoy joins headers.
            req.headers
                .entry(key.as_str().to_string())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_string());
        }
    }
    Ok(req)
}

/// A refusal as a gRPC status (the reason names no secret).
fn status_for(d: Denial) -> Status {
    let message = format!("{}: {}", d.error, d.reason);
    match d.kind {
        DenyKind::Unauthenticated | DenyKind::LoginRedirect { .. } => {
            Status::unauthenticated(message)
        }
        DenyKind::Unavailable => Status::unavailable(message),
        DenyKind::BadRequest | DenyKind::PayloadTooLarge => Status::invalid_argument(message),
        DenyKind::RateLimited { .. } => Status::resource_exhausted(message),
        _ => Status::permission_denied(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_grpc_codes() {
        let code = |kind| status_for(Denial::new(kind, "e", "r")).code();
        assert_eq!(
            code(DenyKind::Unauthenticated),
            tonic::Code::Unauthenticated
        );
        assert_eq!(code(DenyKind::Forbidden), tonic::Code::PermissionDenied);
        assert_eq!(code(DenyKind::Unavailable), tonic::Code::Unavailable);
        assert_eq!(
            code(DenyKind::LoginRedirect {
                location: "/auth/login".into()
            }),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn metadata_becomes_headers() {
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("x-api-key", "fk_a_b".parse().expect("ascii"));
        request
            .metadata_mut()
            .append("x-multi", "1".parse().expect("ascii"));
        request
            .metadata_mut()
            .append("x-multi", "2".parse().expect("ascii"));
        let req = as_request(&request).expect("fits");
        assert_eq!(req.header("x-api-key"), Some("fk_a_b"));
        assert_eq!(req.header("x-multi"), Some("1,2"));

        let mut huge = tonic::Request::new(());
        huge.metadata_mut().insert(
            "x-big",
            "a".repeat(MAX_METADATA_BYTES + 1).parse().expect("ascii"),
        );
        assert_eq!(
            as_request(&huge).expect_err("too large").code(),
            tonic::Code::InvalidArgument
        );
    }
}
