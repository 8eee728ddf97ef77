//! Approvals for requests a `require_approval` rule holds back.
//!
//! The first such request is refused with 403 `{"status": "pending_approval",
//! "approval_id": …}` and an approval is stored for the request's *fingerprint*: a SHA-256
//! over the principal and the request's authorization-relevant attributes (permissions,
//! method, path, preset, LoRAs, image count, models, size, token budget, a hash of the prompt
//! texts and input URLs — never image data). An identical request while that approval is
//! pending gets the same id. Once an approver has approved it (`inferguard approvals approve
//! ID`), the same principal retries the same request with `x-inferguard-approval: ID`; the
//! approval is spent atomically by that one retry, before it expires (24 h after it was
//! asked for, whether decided or not).
//!
//! Every function takes `now`: nothing here reads the clock.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::domain::{Action, Denial, DenyKind, Permission, Principal};
use crate::policy::Policy;
use crate::store::{
    ApprovalRecord, ApprovalStatus, ApprovalStore, RedeemOutcome, StoreError, StoreResult,
    UserRecord,
};

/// The request header a retry names its approval in.
pub const APPROVAL_HEADER: &str = "x-inferguard-approval";

/// How long an approval lives after it was asked for, pending or approved.
pub const APPROVAL_TTL_SECS: i64 = 24 * 3600;

const ID_PREFIX: &str = "ap_";
const ID_RANDOM_CHARS: usize = 22;

/// A new approval id: `ap_` + 22 random base62 characters (about 131 bits, from the
/// thread-local CSPRNG), so ids cannot be guessed.
pub fn new_approval_id() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(ID_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{ID_PREFIX}{random}")
}

/// True when `text` has the shape of an approval id (so a malformed header value costs no
/// store lookup and is never echoed).
pub fn is_approval_id(text: &str) -> bool {
    text.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        rest.len() == ID_RANDOM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// What identifies a request for approval: the hash compared on redemption, and a summary
/// approvers read (no prompt text, no URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lower-case hex SHA-256.
    pub hash: String,
    /// A JSON object: method, path, action, permissions, preset, LoRAs, image count,
    /// models, size, upscale, max_tokens.
    pub summary: String,
}

/// The attributes an approver judges, stored with the approval.
#[derive(serde::Serialize)]
struct Summary<'a> {
    method: &'a str,
    path: &'a str,
    action: &'a str,
    permissions: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    loras: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_number: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refiner_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    upscale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
}

/// Everything hashed: the principal, the summary, and digests of the texts and URLs.
#[derive(serde::Serialize)]
struct Hashed<'a> {
    version: u32,
    principal_kind: &'static str,
    subject: &'a str,
    request: &'a Summary<'a>,
    texts_sha256: String,
}

/// The fingerprint of `action` (on `method` `path`) asked by `principal`. Lists whose order
/// does not change what is authorized (permissions, LoRAs) are sorted first, so only a change
/// that matters makes a different fingerprint.
pub fn fingerprint(
    principal: &Principal,
    action: &Action,
    method: &str,
    path: &str,
) -> Fingerprint {
    let mut permissions: Vec<Permission> = action.permissions.clone();
    permissions.sort();
    permissions.dedup();
    let mut loras: Vec<&str> = action.loras.iter().map(String::as_str).collect();
    loras.sort_unstable();
    let summary = Summary {
        method,
        path,
        action: &action.name,
        permissions: permissions.iter().map(|p| p.as_str()).collect(),
        preset: action.preset.as_deref(),
        loras,
        image_number: action.image_number,
        model: action.model.as_deref(),
        refiner_model: action.refiner_model.as_deref(),
        width: action.width,
        height: action.height,
        upscale: action.upscale,
        max_tokens: action.max_tokens,
    };
    // The prompt, negative prompt, every other prompt-like text and the URLs the pod would
    // fetch, as one length-delimited JSON list (so no two different lists hash alike).
    let texts = serde_json::json!([
        action.prompt,
        action.negative_prompt,
        action.prompts,
        action.urls,
    ]);
    let hashed = Hashed {
        version: 1,
        principal_kind: principal.kind.as_str(),
        subject: &principal.subject,
        request: &summary,
        texts_sha256: hex::encode(Sha256::digest(texts.to_string().as_bytes())),
    };
    let canonical = serde_json::to_string(&hashed).unwrap_or_default();
    Fingerprint {
        hash: hex::encode(Sha256::digest(canonical.as_bytes())),
        summary: serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into()),
    }
}

/// Stores a pending approval for this request — or, when the principal already has an
/// unexpired pending or approved (unused) one for the same fingerprint, finds that one — and
/// returns its id. `rule` names the rule that asked for approval.
pub async fn request_approval<S: ApprovalStore + ?Sized>(
    store: &S,
    principal: &Principal,
    fingerprint: &Fingerprint,
    rule: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    let now = now.timestamp();
    let new = ApprovalRecord {
        id: new_approval_id(),
        principal_kind: principal.kind,
        subject: principal.subject.clone(),
        fingerprint: fingerprint.hash.clone(),
        summary: fingerprint.summary.clone(),
        rule: rule.map(String::from),
        status: ApprovalStatus::Pending,
        created_at: now,
        expires_at: now.saturating_add(APPROVAL_TTL_SECS),
        decided_at: None,
        decided_by: None,
        used_at: None,
    };
    Ok(store.create_or_reuse_approval(&new, now).await?.id)
}

/// The 403 `pending_approval` refusal for approval `id`, naming `rule` (e.g.
/// `rules.cost_control`) and starting with the rule's `message` when given.
pub fn pending_denial(id: &str, rule: Option<&str>, message: Option<&str>) -> Denial {
    let why = message.unwrap_or("this request needs an approver's decision");
    let denial = Denial::new(
        DenyKind::PendingApproval {
            approval_id: id.to_string(),
        },
        "approval_required",
        format!(
            "{why}: once approval `{id}` is approved, send the same request again with the \
             header `{APPROVAL_HEADER}: {id}`"
        ),
    );
    match rule {
        Some(rule) => denial.with_rule(rule),
        None => denial,
    }
}

/// A successful redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub id: String,
    /// Who approved it (for audit).
    pub approved_by: Option<String>,
}

/// Why an approval could not be redeemed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no such approval")]
    NotFound,
    #[error("approval `{0}` was asked for by another principal")]
    OtherPrincipal(String),
    #[error("approval `{0}` was asked for a different request")]
    FingerprintMismatch(String),
    #[error("approval `{0}` is still pending")]
    Pending(String),
    #[error("approval `{id}` was rejected")]
    Rejected { id: String, by: Option<String> },
    #[error("approval `{0}` has already been used")]
    Used(String),
    #[error("approval `{0}` has expired")]
    Expired(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApprovalError {
    /// The refusal the caller sees: 403 with a code per reason (a still-pending approval
    /// answers `pending_approval` with its id again), 503 when the store is unreachable.
    pub fn to_denial(&self) -> Denial {
        let forbidden = |error, reason: String| {
            Denial::new(DenyKind::Forbidden, error, reason).with_rule(APPROVAL_HEADER)
        };
        match self {
            ApprovalError::NotFound => forbidden(
                "approval_not_found",
                format!("the `{APPROVAL_HEADER}` header names no known approval"),
            ),
            ApprovalError::OtherPrincipal(id) => forbidden(
                "approval_not_yours",
                format!("approval `{id}` was asked for by someone else"),
            ),
            ApprovalError::FingerprintMismatch(id) => forbidden(
                "approval_mismatch",
                format!(
                    "approval `{id}` covers a different request; send the approved request \
                     unchanged, or this one without `{APPROVAL_HEADER}` to ask for a new approval"
                ),
            ),
            ApprovalError::Pending(id) => Denial::new(
                DenyKind::PendingApproval {
                    approval_id: id.clone(),
                },
                "approval_pending",
                format!("approval `{id}` has not been decided yet; retry once it is approved"),
            )
            .with_rule(APPROVAL_HEADER),
            ApprovalError::Rejected { id, .. } => {
                forbidden("approval_rejected", format!("approval `{id}` was rejected"))
            }
            ApprovalError::Used(id) => forbidden(
                "approval_used",
                format!("approval `{id}` has already been used; an approval allows one request"),
            ),
            ApprovalError::Expired(id) => forbidden(
                "approval_expired",
                format!(
                    "approval `{id}` has expired; send the request without `{APPROVAL_HEADER}` \
                     to ask for a new one"
                ),
            ),
            ApprovalError::Store(e) => {
                tracing::error!(error = %e, "approval lookup failed");
                Denial::new(
                    DenyKind::Unavailable,
                    "store_unavailable",
                    "the approval store is unreachable; try again",
                )
            }
        }
    }
}

/// Spends approval `id` (the `x-inferguard-approval` header value, trimmed) for this
/// principal's request: it must be approved, unexpired, asked for by the same principal with
/// the same fingerprint, and unused. Exactly one of several racing retries succeeds.
pub async fn redeem_approval<S: ApprovalStore + ?Sized>(
    store: &S,
    id: &str,
    principal: &Principal,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Result<Redeemed, ApprovalError> {
    let id = id.trim();
    if !is_approval_id(id) {
        return Err(ApprovalError::NotFound);
    }
    let now = now.timestamp();
    let outcome = store
        .redeem_approval(
            id,
            principal.kind,
            &principal.subject,
            &fingerprint.hash,
            now,
        )
        .await?;
    let record = match outcome {
        RedeemOutcome::Redeemed(r) => {
            return Ok(Redeemed {
                id: r.id,
                approved_by: r.decided_by,
            });
        }
        RedeemOutcome::NotFound => return Err(ApprovalError::NotFound),
        RedeemOutcome::Refused(r) => r,
    };
    let id = record.id.clone();
    if record.principal_kind != principal.kind || record.subject != principal.subject {
        return Err(ApprovalError::OtherPrincipal(id));
    }
    Err(match record.status {
        ApprovalStatus::Rejected => ApprovalError::Rejected {
            id,
            by: record.decided_by,
        },
        ApprovalStatus::Used => ApprovalError::Used(id),
        _ if record.is_expired(now) => ApprovalError::Expired(id),
        _ if record.fingerprint != fingerprint.hash => ApprovalError::FingerprintMismatch(id),
        ApprovalStatus::Pending => ApprovalError::Pending(id),
        // Approved and matching, yet not redeemed: it changed in between (spent by a racing
        // retry, then released); report it as spent.
        ApprovalStatus::Approved => ApprovalError::Used(id),
    })
}

/// Gives a redeemed approval back when a later stage (the quota) refused its request, so
/// the caller may retry it before it expires.
pub async fn release_approval<S: ApprovalStore + ?Sized>(store: &S, id: &str) -> StoreResult<()> {
    store.release_approval(id).await.map(|_| ())
}

/// Why a user may not decide approvals.
pub type ApproverError = super::GrantError;

/// Checks that a stored user may approve or reject: enabled, bound to a role of the current
/// policy that grants `approvals:decide` (an admin role with `["*"]` does).
pub fn check_approver(policy: &Policy, user: &UserRecord) -> Result<(), ApproverError> {
    super::check_user_grants(policy, user, Permission::ApprovalsDecide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuthMethod, PrincipalKind, RoleSource};
    use crate::store::{ApprovalDecision, SqliteStore};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("time")
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
            key_id: Some("k1".into()),
            scopes: None,
            session_id: None,
            mfa: false,
            attributes: Default::default(),
        }
    }

    fn action() -> Action {
        Action {
            permissions: vec![Permission::GenerationCreate],
            api: Some(crate::domain::ApiKind::Image),
            name: "text-to-image".into(),
            preset: Some("Quality".into()),
            loras: vec!["b.safetensors".into(), "a.safetensors".into()],
            image_number: Some(2),
            model: Some("juggernautXL_v8Rundiffusion.safetensors".into()),
            prompt: Some("a lighthouse".into()),
            negative_prompt: Some("blurry".into()),
            prompts: vec!["a lighthouse".into()],
            ..Action::default()
        }
    }

    const PATH: &str = "/v1/generation/text-to-image";

    async fn open_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ap.db").display());
        let store = SqliteStore::connect(&url).await.expect("store");
        (dir, store)
    }

    #[test]
    fn ids_are_random_and_well_formed() {
        let a = new_approval_id();
        let b = new_approval_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
        assert!(is_approval_id(&a));
        for bad in [
            "",
            "ap_",
            "ap_short",
            "xx_aaaaaaaaaaaaaaaaaaaaaa",
            "ap_aaaaaaaaaaaaaaaaaaaa-a",
        ] {
            assert!(!is_approval_id(bad), "{bad}");
        }
    }

    #[test]
    fn fingerprints_follow_what_matters() {
        let p = principal("alice");
        let base = fingerprint(&p, &action(), "POST", PATH);
        assert_eq!(base, fingerprint(&p, &action(), "POST", PATH));
        assert_eq!(base.hash.len(), 64);
        // Order of LoRAs does not matter; every authorization-relevant attribute does.
        let mut reordered = action();
        reordered.loras.reverse();
        assert_eq!(base, fingerprint(&p, &reordered, "POST", PATH));
        type Change = Box<dyn Fn(&mut Action)>;
        let changes: Vec<Change> = vec![
            Box::new(|a| a.preset = Some("Speed".into())),
            Box::new(|a| a.loras.push("c.safetensors".into())),
            Box::new(|a| a.image_number = Some(3)),
            Box::new(|a| a.model = None),
            Box::new(|a| a.max_tokens = Some(5)),
            Box::new(|a| a.prompt = Some("a lighthouse at night".into())),
            Box::new(|a| a.negative_prompt = None),
            Box::new(|a| a.prompts.push("more".into())),
            Box::new(|a| a.urls.push("http://img".into())),
            Box::new(|a| a.permissions.push(Permission::GenerationUpscale)),
            Box::new(|a| a.width = Some(1024)),
        ];
        for change in changes {
            let mut a = action();
            change(&mut a);
            assert_ne!(base.hash, fingerprint(&p, &a, "POST", PATH).hash);
        }
        assert_ne!(base.hash, fingerprint(&p, &action(), "PUT", PATH).hash);
        assert_ne!(base.hash, fingerprint(&p, &action(), "POST", "/v2").hash);
        assert_ne!(
            base.hash,
            fingerprint(&principal("bob"), &action(), "POST", PATH).hash
        );
        let sa = Principal {
            kind: PrincipalKind::ServiceAccount,
            ..principal("alice")
        };
        assert_ne!(base.hash, fingerprint(&sa, &action(), "POST", PATH).hash);
        // The summary names what approvers judge, never the prompt.
        let summary: serde_json::Value = serde_json::from_str(&base.summary).expect("json");
        assert_eq!(summary["preset"], "Quality");
        assert_eq!(summary["image_number"], 2);
        assert_eq!(summary["loras"][0], "a.safetensors");
        assert_eq!(summary["permissions"][0], "generation:create");
        assert!(!base.summary.contains("lighthouse"));
    }

    #[tokio::test]
    async fn the_whole_lifecycle() {
        let (_dir, store) = open_store().await;
        let alice = principal("alice");
        let fp = fingerprint(&alice, &action(), "POST", PATH);
        let t0 = 1_800_000_000;
        let id = request_approval(&store, &alice, &fp, Some("rules.cost_control"), at(t0))
            .await
            .expect("request");
        assert!(is_approval_id(&id));
        // The identical request while pending: the same id, no pile-up.
        let again = request_approval(&store, &alice, &fp, Some("rules.cost_control"), at(t0 + 60))
            .await
            .expect("again");
        assert_eq!(again, id);
        assert_eq!(store.list_approvals(None).await.expect("list").len(), 1);
        let record = store.get_approval(&id).await.expect("get").expect("exists");
        assert_eq!(record.expires_at, t0 + APPROVAL_TTL_SECS);
        assert_eq!(record.rule.as_deref(), Some("rules.cost_control"));

        // Pending: the retry is told so, with the same id.
        let err = redeem_approval(&store, &id, &alice, &fp, at(t0 + 100))
            .await
            .expect_err("pending");
        assert!(matches!(err, ApprovalError::Pending(_)));
        let denial = err.to_denial();
        assert_eq!(
            denial.kind,
            DenyKind::PendingApproval {
                approval_id: id.clone()
            }
        );

        store
            .decide_approval(&id, ApprovalDecision::Approve, "carol", t0 + 200)
            .await
            .expect("approve");
        // Another principal, or a changed request: refused, and the approval is not spent.
        let bob = principal("bob");
        let err = redeem_approval(&store, &id, &bob, &fp, at(t0 + 300))
            .await
            .expect_err("bob");
        assert!(matches!(err, ApprovalError::OtherPrincipal(_)));
        assert_eq!(err.to_denial().error, "approval_not_yours");
        let mut changed = action();
        changed.image_number = Some(4);
        let other_fp = fingerprint(&alice, &changed, "POST", PATH);
        let err = redeem_approval(&store, &id, &alice, &other_fp, at(t0 + 300))
            .await
            .expect_err("changed");
        assert!(matches!(err, ApprovalError::FingerprintMismatch(_)));
        assert_eq!(err.to_denial().kind, DenyKind::Forbidden);

        let redeemed = redeem_approval(&store, &format!(" {id} "), &alice, &fp, at(t0 + 400))
            .await
            .expect("redeem");
        assert_eq!(redeemed.approved_by.as_deref(), Some("carol"));
        // Replay: refused.
        let err = redeem_approval(&store, &id, &alice, &fp, at(t0 + 500))
            .await
            .expect_err("replay");
        assert!(matches!(err, ApprovalError::Used(_)));
        assert_eq!(err.to_denial().error, "approval_used");

        // Released after a later refusal: usable once more.
        release_approval(&store, &id).await.expect("release");
        redeem_approval(&store, &id, &alice, &fp, at(t0 + 600))
            .await
            .expect("again after release");

        // After use, the same request asks for (and gets) a new approval.
        let next = request_approval(&store, &alice, &fp, None, at(t0 + 700))
            .await
            .expect("next");
        assert_ne!(next, id);
    }

    #[tokio::test]
    async fn rejected_unknown_and_malformed_ids() {
        let (_dir, store) = open_store().await;
        let alice = principal("alice");
        let fp = fingerprint(&alice, &action(), "POST", PATH);
        let id = request_approval(&store, &alice, &fp, None, at(1_000))
            .await
            .expect("request");
        store
            .decide_approval(&id, ApprovalDecision::Reject, "carol", 1_100)
            .await
            .expect("reject");
        let err = redeem_approval(&store, &id, &alice, &fp, at(1_200))
            .await
            .expect_err("rejected");
        assert!(matches!(&err, ApprovalError::Rejected { by: Some(b), .. } if b == "carol"));
        assert_eq!(err.to_denial().error, "approval_rejected");
        for bad in [new_approval_id(), "not an id\n".into(), String::new()] {
            let err = redeem_approval(&store, &bad, &alice, &fp, at(1_200))
                .await
                .expect_err("unknown");
            assert!(matches!(err, ApprovalError::NotFound));
            let denial = err.to_denial();
            assert_eq!(denial.error, "approval_not_found");
            assert!(!denial.reason.contains("not an id"));
        }
        // A rejected approval does not block asking again.
        let again = request_approval(&store, &alice, &fp, None, at(1_300))
            .await
            .expect("again");
        assert_ne!(again, id);
    }

    #[tokio::test]
    async fn approvals_expire_pending_or_approved() {
        let (_dir, store) = open_store().await;
        let alice = principal("alice");
        let fp = fingerprint(&alice, &action(), "POST", PATH);
        let t0 = 1_000;
        let id = request_approval(&store, &alice, &fp, None, at(t0))
            .await
            .expect("request");
        let expiry = t0 + APPROVAL_TTL_SECS;
        // Pending past expiry: expired, and a new request gets a new id.
        let err = redeem_approval(&store, &id, &alice, &fp, at(expiry))
            .await
            .expect_err("expired");
        assert!(matches!(err, ApprovalError::Expired(_)));
        assert_eq!(err.to_denial().error, "approval_expired");
        let fresh = request_approval(&store, &alice, &fp, None, at(expiry))
            .await
            .expect("fresh");
        assert_ne!(fresh, id);
        // Approved and redeemed a second before expiry: fine; redeemed at expiry: too late.
        store
            .decide_approval(&fresh, ApprovalDecision::Approve, "carol", expiry + 10)
            .await
            .expect("approve");
        let fresh_expiry = expiry + APPROVAL_TTL_SECS;
        redeem_approval(&store, &fresh, &alice, &fp, at(fresh_expiry - 1))
            .await
            .expect("just in time");
        let late = request_approval(&store, &alice, &fp, None, at(fresh_expiry))
            .await
            .expect("late");
        store
            .decide_approval(&late, ApprovalDecision::Approve, "carol", fresh_expiry + 1)
            .await
            .expect("approve");
        let err = redeem_approval(
            &store,
            &late,
            &alice,
            &fp,
            at(fresh_expiry + APPROVAL_TTL_SECS),
        )
        .await
        .expect_err("too late");
        assert!(matches!(err, ApprovalError::Expired(_)));
    }

    #[test]
    fn pending_denial_names_id_and_rule() {
        let d = pending_denial(
            "ap_x",
            Some("rules.cost_control"),
            Some("Quality needs a manager's approval"),
        );
        assert_eq!(
            d.kind,
            DenyKind::PendingApproval {
                approval_id: "ap_x".into()
            }
        );
        assert_eq!(d.error, "approval_required");
        assert_eq!(d.rule.as_deref(), Some("rules.cost_control"));
        assert!(d.reason.starts_with("Quality needs a manager's approval: "));
        assert!(d.reason.contains("x-inferguard-approval: ap_x"));
        let d = pending_denial("ap_x", None, None);
        assert_eq!(d.rule, None);
        assert!(
            d.reason
                .starts_with("this request needs an approver's decision")
        );
    }

    #[test]
    fn approvers_need_approvals_decide() {
        let policy = crate::config::compile_policy(
            std::path::Path::new("policy.yaml"),
            "apis: [fooocus-api]\nroles:\n  admin: {permissions: [\"*\"]}\n  approver: {permissions: [approvals:decide]}\n  designer: {permissions: [generation:create]}\n",
        )
        .expect("policy");
        let user = |role: Option<&str>, disabled: bool| UserRecord {
            username: "carol".into(),
            email: None,
            role: role.map(String::from),
            attributes: Default::default(),
            disabled,
            password_hash: None,
            created_at: 0,
        };
        assert_eq!(check_approver(&policy, &user(Some("admin"), false)), Ok(()));
        assert_eq!(
            check_approver(&policy, &user(Some("approver"), false)),
            Ok(())
        );
        assert!(matches!(
            check_approver(&policy, &user(Some("designer"), false)),
            Err(ApproverError::NotAllowed { .. })
        ));
        assert!(matches!(
            check_approver(&policy, &user(Some("gone"), false)),
            Err(ApproverError::UnknownRole { .. })
        ));
        assert!(matches!(
            check_approver(&policy, &user(None, false)),
            Err(ApproverError::NoRole { .. })
        ));
        assert!(matches!(
            check_approver(&policy, &user(Some("admin"), true)),
            Err(ApproverError::Disabled(_))
        ));
    }
}
