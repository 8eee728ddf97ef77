//! Multi-factor authentication: whether a login was multi-factor, and the step-up check of
//! `require_mfa` roles and routes.

use crate::domain::{AuthMethod, Denial, DenyKind, Principal, Request};
use crate::identity::LoginRedirect;
use crate::inference::Route;
use crate::policy::Role;

/// `amr` values (RFC 8176) that show a factor beyond a password was used: `mfa` itself, and
/// the possession and inherence methods an IdP reports for a second factor (one-time codes,
/// hardware and software keys, smart cards, SMS or phone confirmation, proof of possession,
/// biometrics).
pub const MFA_AMR_VALUES: &[&str] = &[
    "mfa", "otp", "hwk", "swk", "sc", "sms", "tel", "pop", "fpt", "face", "iris", "retina", "vbm",
];

/// The error code of a refusal for want of MFA (RFC 9470), also rendered in
/// `WWW-Authenticate: Bearer error="insufficient_user_authentication"`.
pub const INSUFFICIENT_USER_AUTHENTICATION: &str = "insufficient_user_authentication";

/// True when an `amr` list shows multi-factor authentication (see [`MFA_AMR_VALUES`]).
pub fn amr_indicates_mfa(amr: &[String]) -> bool {
    amr.iter()
        .any(|v| MFA_AMR_VALUES.contains(&v.to_ascii_lowercase().as_str()))
}

/// True when a login was multi-factor: its `amr` says so, or its `acr` is one of the
/// configured `identity.oidc.mfa_acr_values`.
pub fn login_was_mfa(amr: &[String], acr: Option<&str>, mfa_acr_values: &[String]) -> bool {
    amr_indicates_mfa(amr) || acr.is_some_and(|acr| mfa_acr_values.iter().any(|v| v == acr))
}

/// Refuses a principal without MFA when its role or the route has `require_mfa: true`.
///
/// * A browser with a session (a `GET`/`HEAD` asking for `text/html`, and SSO on) is sent
///   back to the IdP: 302 to `/auth/login?rd=<this page>&step_up=1`, which asks the IdP for
///   a new login (`prompt=login`) with the configured `acr_values`.
/// * Any other session or bearer-token caller gets 401 with `WWW-Authenticate: Bearer
///   error="insufficient_user_authentication"` (RFC 9470).
/// * An API key can never carry MFA: 403 `mfa_required`.
///
/// `role` is the principal's role when the policy defines it (an undefined role is refused
/// elsewhere).
pub fn check_mfa(
    principal: &Principal,
    role: Option<&Role>,
    route: &Route,
    login: Option<&LoginRedirect>,
    req: &Request,
) -> Result<(), Denial> {
    let rule = if route.require_mfa {
        format!("routes.{}.require_mfa", route.path)
    } else if let Some(role) = role.filter(|r| r.require_mfa) {
        format!("roles.{}.require_mfa", role.name)
    } else {
        return Ok(());
    };
    if principal.mfa {
        return Ok(());
    }
    match principal.auth {
        AuthMethod::ApiKey => Err(Denial::new(
            DenyKind::Forbidden,
            "mfa_required",
            "this request needs multi-factor authentication, which an API key cannot provide; \
             sign in through single sign-on",
        )
        .with_rule(rule)),
        AuthMethod::Session => {
            if let Some(redirect) = login.and_then(|l| l.for_request(req))
                && let DenyKind::LoginRedirect { location } = redirect.kind
            {
                return Err(Denial::new(
                    DenyKind::LoginRedirect {
                        location: format!("{location}&step_up=1"),
                    },
                    INSUFFICIENT_USER_AUTHENTICATION,
                    "sign in again with multi-factor authentication to continue",
                )
                .with_rule(rule));
            }
            Err(insufficient(rule))
        }
        AuthMethod::Jwt => Err(insufficient(rule)),
    }
}

fn insufficient(rule: String) -> Denial {
    Denial::new(
        DenyKind::Unauthenticated,
        INSUFFICIENT_USER_AUTHENTICATION,
        "this request needs multi-factor authentication; sign in again with a second factor",
    )
    .with_rule(rule)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{Permission, PrincipalKind, RoleSource};
    use crate::inference::PathPattern;

    fn principal(auth: AuthMethod, mfa: bool) -> Principal {
        Principal {
            subject: "alice".into(),
            kind: PrincipalKind::User,
            email: None,
            groups: vec![],
            role: "r".into(),
            role_source: RoleSource::Default,
            auth,
            key_id: None,
            scopes: None,
            session_id: None,
            mfa,
            attributes: BTreeMap::new(),
        }
    }

    fn route(require_mfa: bool) -> Route {
        let mut r = Route::new(
            Some("GET"),
            "/ui/*".parse::<PathPattern>().expect("pattern"),
            Permission::GenerationView,
            None,
        );
        r.require_mfa = require_mfa;
        r
    }

    fn request(accept: &str) -> Request {
        let mut r = Request {
            method: "GET".into(),
            path: "/ui/page".into(),
            ..Request::default()
        };
        r.headers.insert("accept".into(), accept.into());
        r
    }

    #[test]
    fn amr_and_acr() {
        assert!(amr_indicates_mfa(&["pwd".into(), "otp".into()]));
        assert!(amr_indicates_mfa(&["MFA".into()]));
        assert!(!amr_indicates_mfa(&["pwd".into()]));
        assert!(!amr_indicates_mfa(&[]));
        let acrs = vec!["urn:mfa".to_string()];
        assert!(login_was_mfa(&[], Some("urn:mfa"), &acrs));
        assert!(!login_was_mfa(&["pwd".into()], Some("urn:pwd"), &acrs));
    }

    #[test]
    fn step_up_by_caller_kind() {
        let login = LoginRedirect {
            login_path: "/auth/login".into(),
        };
        let html = request("text/html");
        let json = request("application/json");
        let mut role = Role::new("r", []);
        // Nothing required: everyone passes.
        for auth in [AuthMethod::ApiKey, AuthMethod::Jwt, AuthMethod::Session] {
            assert!(
                check_mfa(
                    &principal(auth, false),
                    Some(&role),
                    &route(false),
                    Some(&login),
                    &html
                )
                .is_ok()
            );
        }
        // Done MFA: passes.
        assert!(
            check_mfa(
                &principal(AuthMethod::Session, true),
                None,
                &route(true),
                Some(&login),
                &html
            )
            .is_ok()
        );

        let d = check_mfa(
            &principal(AuthMethod::Session, false),
            None,
            &route(true),
            Some(&login),
            &html,
        )
        .expect_err("browser step-up");
        assert_eq!(
            d.kind,
            DenyKind::LoginRedirect {
                location: "/auth/login?rd=%2Fui%2Fpage&step_up=1".into()
            }
        );
        assert_eq!(d.rule.as_deref(), Some("routes./ui/*.require_mfa"));

        let d = check_mfa(
            &principal(AuthMethod::Session, false),
            None,
            &route(true),
            Some(&login),
            &json,
        )
        .expect_err("api step-up");
        assert_eq!(d.kind, DenyKind::Unauthenticated);
        assert_eq!(d.error, INSUFFICIENT_USER_AUTHENTICATION);

        role.require_mfa = true;
        let d = check_mfa(
            &principal(AuthMethod::Jwt, false),
            Some(&role),
            &route(false),
            None,
            &html,
        )
        .expect_err("token");
        assert_eq!(d.error, INSUFFICIENT_USER_AUTHENTICATION);
        assert_eq!(d.rule.as_deref(), Some("roles.r.require_mfa"));

        let d = check_mfa(
            &principal(AuthMethod::ApiKey, false),
            Some(&role),
            &route(false),
            Some(&login),
            &html,
        )
        .expect_err("key");
        assert_eq!(d.kind, DenyKind::Forbidden);
        assert_eq!(d.error, "mfa_required");
    }
}
