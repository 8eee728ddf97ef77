//! Store records ⇄ admin API messages. Secrets never cross: keys go out without their
//! secret's hash, users without their password hash (only whether one is set).

use crate::domain::PrincipalKind;
use crate::store::{
    ApiKeyRecord, ApprovalRecord, ApprovalStatus, OwnerRef, ServiceAccountRecord, SessionRecord,
    UserRecord,
};

use super::pb;

/// A user as the API shows it.
pub fn user(u: &UserRecord) -> pb::User {
    pb::User {
        username: u.username.clone(),
        email: u.email.clone(),
        role: u.role.clone(),
        attributes: u.attributes.clone().into_iter().collect(),
        disabled: u.disabled,
        has_password: u.password_hash.is_some(),
        created_at: u.created_at,
    }
}

/// A user as the CLI's formatters take it (the password hash is a placeholder when set).
pub fn user_record(u: pb::User) -> UserRecord {
    UserRecord {
        username: u.username,
        email: u.email,
        role: u.role,
        attributes: u.attributes.into_iter().collect(),
        disabled: u.disabled,
        password_hash: u.has_password.then(|| "(set)".to_string()),
        created_at: u.created_at,
    }
}

/// A service account as the API shows it.
pub fn service_account(s: &ServiceAccountRecord) -> pb::ServiceAccount {
    pb::ServiceAccount {
        name: s.name.clone(),
        role: s.role.clone(),
        attributes: s.attributes.clone().into_iter().collect(),
        daily_images: s.daily_images,
        daily_tokens: s.daily_tokens,
        disabled: s.disabled,
        created_at: s.created_at,
    }
}

/// A service account as the CLI's formatters take it.
pub fn service_account_record(s: pb::ServiceAccount) -> ServiceAccountRecord {
    ServiceAccountRecord {
        name: s.name,
        role: s.role,
        attributes: s.attributes.into_iter().collect(),
        daily_images: s.daily_images,
        daily_tokens: s.daily_tokens,
        disabled: s.disabled,
        created_at: s.created_at,
    }
}

fn owner_kind(kind: PrincipalKind) -> pb::OwnerKind {
    match kind {
        PrincipalKind::User => pb::OwnerKind::User,
        PrincipalKind::ServiceAccount => pb::OwnerKind::ServiceAccount,
    }
}

fn principal_kind(kind: i32) -> PrincipalKind {
    match pb::OwnerKind::try_from(kind) {
        Ok(pb::OwnerKind::ServiceAccount) => PrincipalKind::ServiceAccount,
        _ => PrincipalKind::User,
    }
}

/// A key as the API shows it (never the secret's hash), with its status at `now`.
pub fn key(k: &ApiKeyRecord, now: i64) -> pb::Key {
    pb::Key {
        id: k.id.clone(),
        name: k.name.clone(),
        owner_kind: owner_kind(k.owner.kind).into(),
        owner: k.owner.name.clone(),
        scopes: k.scopes.clone().unwrap_or_default(),
        role_scopes: k.scopes.is_none(),
        daily_images: k.daily_images,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        status: crate::commands::keys::key_status(k, now).to_string(),
        allowed_networks: k.allowed_networks.clone().unwrap_or_default(),
        last_used_at: k.last_used_at,
    }
}

/// A key as the CLI's formatters take it (no secret hash: the API never sends one).
pub fn key_record(k: pb::Key) -> ApiKeyRecord {
    ApiKeyRecord {
        id: k.id,
        name: k.name,
        owner: OwnerRef {
            kind: principal_kind(k.owner_kind),
            name: k.owner,
        },
        secret_sha256: String::new(),
        scopes: (!k.role_scopes).then_some(k.scopes),
        daily_images: k.daily_images,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        allowed_networks: (!k.allowed_networks.is_empty()).then_some(k.allowed_networks),
        last_used_at: k.last_used_at,
    }
}

/// A session as the API shows it: named by the start of its id's hash, never by its id or
/// tokens.
pub fn session(s: &SessionRecord) -> pb::Session {
    pb::Session {
        short_id: crate::commands::sessions::short_id(&s.id_sha256).to_string(),
        username: s.username.clone(),
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        idle_expires_at: s.idle_expires_at,
        absolute_expires_at: s.absolute_expires_at,
        email: s.email.clone(),
        groups: s.groups.clone(),
        mfa: s.mfa,
        amr: s.amr.clone(),
        acr: s.acr.clone(),
        claims_refreshed_at: s.claims_refreshed_at,
    }
}

/// A session as the CLI's formatters take it: `id_sha256` is only the short id, and no
/// token is ever present.
pub fn session_record(s: pb::Session) -> SessionRecord {
    SessionRecord {
        id_sha256: s.short_id,
        username: s.username,
        issuer: String::new(),
        idp_sid: None,
        email: s.email,
        groups: s.groups,
        attributes: Default::default(),
        amr: s.amr,
        acr: s.acr,
        mfa: s.mfa,
        id_token: None,
        refresh_token: None,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        idle_expires_at: s.idle_expires_at,
        absolute_expires_at: s.absolute_expires_at,
        claims_refreshed_at: s.claims_refreshed_at,
        ended_at: None,
        end_reason: None,
    }
}

/// An approval as the API shows it, with its status at `now`.
pub fn approval(a: &ApprovalRecord, now: i64) -> pb::Approval {
    pb::Approval {
        id: a.id.clone(),
        status: a.effective_status(now).to_string(),
        principal_kind: owner_kind(a.principal_kind).into(),
        subject: a.subject.clone(),
        rule: a.rule.clone(),
        summary_json: a.summary.clone(),
        created_at: a.created_at,
        expires_at: a.expires_at,
        decided_by: a.decided_by.clone(),
        decided_at: a.decided_at,
        fingerprint: a.fingerprint.clone(),
        used_at: a.used_at,
    }
}

/// An approval as the CLI's formatters take it (the stored status recovered from the status
/// shown: an expired one was pending, or approved when someone decided it).
pub fn approval_record(a: pb::Approval) -> ApprovalRecord {
    let status = match a.status.as_str() {
        "approved" => ApprovalStatus::Approved,
        "rejected" => ApprovalStatus::Rejected,
        "used" => ApprovalStatus::Used,
        "expired" if a.decided_by.is_some() => ApprovalStatus::Approved,
        _ => ApprovalStatus::Pending,
    };
    ApprovalRecord {
        id: a.id,
        principal_kind: principal_kind(a.principal_kind),
        subject: a.subject,
        fingerprint: a.fingerprint,
        summary: a.summary_json,
        rule: a.rule,
        status,
        created_at: a.created_at,
        expires_at: a.expires_at,
        decided_at: a.decided_at,
        decided_by: a.decided_by,
        used_at: a.used_at,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn users_round_trip_without_the_password_hash() {
        let record = UserRecord {
            username: "alice".into(),
            email: Some("a@example.com".into()),
            role: Some("admin".into()),
            attributes: BTreeMap::from([("department".into(), "it".into())]),
            disabled: false,
            password_hash: Some("$argon2id$v=19$secret".into()),
            created_at: 42,
        };
        let shown = user(&record);
        assert!(shown.has_password);
        assert!(!format!("{shown:?}").contains("argon2"));
        let back = user_record(shown);
        assert_eq!(back.password_hash.as_deref(), Some("(set)"));
        assert_eq!(
            UserRecord {
                password_hash: record.password_hash.clone(),
                ..back
            },
            record
        );
    }

    #[test]
    fn keys_round_trip_without_the_secret_hash() {
        let record = ApiKeyRecord {
            id: "00000000000000aa".into(),
            name: "ci".into(),
            owner: OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                name: "batch".into(),
            },
            secret_sha256: "deadbeef".repeat(8),
            scopes: None,
            daily_images: Some(3),
            created_at: 10,
            expires_at: 100,
            revoked_at: None,
            allowed_networks: Some(vec!["10.0.0.0/8".into()]),
            last_used_at: Some(50),
        };
        let shown = key(&record, 20);
        assert_eq!(shown.status, "active");
        assert!(shown.role_scopes);
        assert!(!format!("{shown:?}").contains("deadbeef"));
        assert_eq!(key(&record, 100).status, "expired");
        let back = key_record(shown);
        assert_eq!(
            ApiKeyRecord {
                secret_sha256: record.secret_sha256.clone(),
                ..back
            },
            record
        );
        let scoped = ApiKeyRecord {
            scopes: Some(vec![]),
            allowed_networks: None,
            ..record.clone()
        };
        assert_eq!(
            key_record(key(&scoped, 20)).scopes,
            Some(vec![]),
            "an empty scope list stays distinct from the role's permissions"
        );
    }
}
