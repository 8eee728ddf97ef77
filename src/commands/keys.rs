//! `inferguard keys …`: API keys for users and service accounts.
//!
//! `keys create` prints the new key alone on stdout (so scripts can capture it) and its details
//! on stderr; the key is never shown again, and only its secret's hash is stored.

use std::collections::BTreeSet;

use anyhow::bail;

use super::CliContext;
use super::users::{OutputFormat, format_time, now, render_json, render_table, validate_name};
use crate::domain::{Permission, PrincipalKind};
use crate::identity::api_key;
use crate::store::{ApiKeyRecord, OwnerRef};

/// Days a key lives unless `--expires-days` says otherwise.
pub const DEFAULT_EXPIRY_DAYS: i64 = 90;
/// The longest `--expires-days` accepted (100 years).
pub const MAX_EXPIRY_DAYS: i64 = 36_500;
const SECONDS_PER_DAY: i64 = 86_400;

/// `inferguard keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Creates a key; prints it alone on stdout, once.
    #[command(group(
        clap::ArgGroup::new("owner")
            .required(true)
            .args(["user", "service_account"])
    ))]
    Create {
        /// A label for the key: letters, digits, `.`, `_`, `@`, `-`.
        #[arg(long)]
        name: String,
        /// The user who owns the key.
        #[arg(long, value_name = "U")]
        user: Option<String>,
        /// The service account that owns the key.
        #[arg(long, value_name = "S")]
        service_account: Option<String>,
        /// A permission the key is narrowed to (repeatable); none = the owner's role's.
        #[arg(long = "scope", value_name = "P")]
        scopes: Vec<String>,
        /// Days until the key expires.
        #[arg(long, value_name = "D", default_value_t = DEFAULT_EXPIRY_DAYS,
              value_parser = clap::value_parser!(i64).range(1..=MAX_EXPIRY_DAYS))]
        expires_days: i64,
        /// Images per day for this key (within the owner's role's limit).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        daily_images: Option<i64>,
        /// A source network (CIDR, e.g. 10.0.0.0/8, or one address) the key may be used
        /// from (repeatable); none = anywhere. A use from elsewhere is refused (403).
        #[arg(long = "allow-network", value_name = "CIDR")]
        allow_networks: Vec<String>,
    },
    /// Lists keys (never their secrets).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Rotates a key: prints a new key for the same owner, scopes and limits alone on stdout,
    /// once; the old key keeps working for the grace period, then expires.
    Rotate {
        /// The key id (the middle part of `fk_<id>_<secret>`).
        id: String,
        /// Days the old key keeps working (fractions allowed, e.g. 0.5; 0 = it stops now).
        #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_ROTATION_GRACE_DAYS as f64)]
        grace_days: f64,
    },
    /// Revokes a key at once, on every server using this store.
    Revoke {
        /// The key id (the middle part of `fk_<id>_<secret>`).
        id: String,
    },
}

impl KeysCommand {
    /// Runs the command against the configured store.
    pub async fn run(self, ctx: &CliContext) -> anyhow::Result<()> {
        match self {
            KeysCommand::Create {
                name,
                user,
                service_account,
                scopes,
                expires_days,
                daily_images,
                allow_networks,
            } => {
                let request = CreateKey {
                    name,
                    user,
                    service_account,
                    scopes,
                    expires_days,
                    daily_images,
                };
                let created = create_key_limited(ctx, request, &allow_networks, now()).await?;
                println!("{}", created.full_key);
                eprint!("{}", describe_new_key(&created.record));
            }
            KeysCommand::List { format } => {
                let keys = ctx.store.list_keys().await?;
                print!("{}", format_keys(&keys, format, now()));
            }
            KeysCommand::Rotate { id, grace_days } => {
                let rotated = rotate_key(ctx, &id, grace_seconds(grace_days)?, now()).await?;
                println!("{}", rotated.new.full_key);
                eprint!("{}", describe_rotation(&rotated.old, &rotated.new.record));
            }
            KeysCommand::Revoke { id } => {
                let at = now();
                match revoke_key(ctx, &id, at).await? {
                    Some(earlier) => {
                        eprintln!("key `{id}` was already revoked at {}", format_time(earlier))
                    }
                    None => eprintln!("revoked key `{id}`"),
                }
            }
        }
        Ok(())
    }
}

/// The arguments of `keys create`.
#[derive(Debug, Clone)]
pub struct CreateKey {
    /// The key's label.
    pub name: String,
    /// The owning user (exactly one of `user` and `service_account`).
    pub user: Option<String>,
    /// The owning service account.
    pub service_account: Option<String>,
    /// Permission names to narrow the key to; empty = the owner's role's permissions.
    pub scopes: Vec<String>,
    /// Days until expiry.
    pub expires_days: i64,
    /// The key's own daily image limit.
    pub daily_images: Option<i64>,
}

/// A key just stored: the full text (shown once) and what was stored. Its `Debug` output
/// leaves the key out.
pub struct CreatedKey {
    /// `fk_<id>_<secret>`: show once, never log.
    pub full_key: String,
    /// What the store now holds (the secret's hash only).
    pub record: ApiKeyRecord,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("full_key", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// Checks the request, the owner (exists, not disabled) and the scopes, then stores a new key
/// usable from anywhere.
pub async fn create_key(ctx: &CliContext, req: CreateKey, now: i64) -> anyhow::Result<CreatedKey> {
    create_key_limited(ctx, req, &[], now).await
}

/// [`create_key`] for a key usable only from `allowed_networks` (CIDRs or single addresses,
/// validated and stored in canonical form); empty = anywhere.
pub async fn create_key_limited(
    ctx: &CliContext,
    req: CreateKey,
    allowed_networks: &[String],
    now: i64,
) -> anyhow::Result<CreatedKey> {
    validate_name("key name", &req.name)?;
    let allowed_networks = if allowed_networks.is_empty() {
        None
    } else {
        Some(
            crate::identity::networks::normalize(allowed_networks)
                .map_err(|e| anyhow::anyhow!("--allow-network: {e}"))?,
        )
    };
    if !(1..=MAX_EXPIRY_DAYS).contains(&req.expires_days) {
        bail!("--expires-days must be between 1 and {MAX_EXPIRY_DAYS}");
    }
    if req.daily_images.is_some_and(|n| n < 0) {
        bail!("--daily-images must not be negative");
    }
    let scopes = parse_scopes(&req.scopes)?;
    let owner = match (req.user, req.service_account) {
        (Some(user), None) => {
            validate_name("username", &user)?;
            match ctx.store.get_user(&user).await? {
                None => bail!("user `{user}` not found"),
                Some(u) if u.disabled => bail!("user `{user}` is disabled"),
                Some(_) => OwnerRef {
                    kind: PrincipalKind::User,
                    name: user,
                },
            }
        }
        (None, Some(sa)) => {
            validate_name("service account name", &sa)?;
            match ctx.store.get_service_account(&sa).await? {
                None => bail!("service account `{sa}` not found"),
                Some(s) if s.disabled => bail!("service account `{sa}` is disabled"),
                Some(_) => OwnerRef {
                    kind: PrincipalKind::ServiceAccount,
                    name: sa,
                },
            }
        }
        _ => bail!("give exactly one of --user and --service-account"),
    };
    let key = api_key::generate();
    let record = ApiKeyRecord {
        id: key.id,
        name: req.name,
        owner,
        secret_sha256: key.secret_sha256,
        scopes,
        daily_images: req.daily_images,
        created_at: now,
        expires_at: now + req.expires_days * SECONDS_PER_DAY,
        revoked_at: None,
        allowed_networks,
        last_used_at: None,
    };
    ctx.store.create_key(&record).await?;
    super::audit::record_admin(
        ctx,
        "key.create",
        &format!("key:{}", record.id),
        serde_json::json!({
            "name": record.name,
            "owner": owner_label(&record.owner),
            "scopes": record.scopes,
            "expires_at": format_time(record.expires_at),
            "daily_images": record.daily_images,
            "allowed_networks": record.allowed_networks,
        }),
    )
    .await?;
    Ok(CreatedKey {
        full_key: key.full,
        record,
    })
}

/// How long a rotated key keeps working by default (`keys rotate --grace-days`).
pub const DEFAULT_ROTATION_GRACE_DAYS: i64 = 7;

/// A rotation's outcome: the new key (shown once) and the old key with its new expiry.
#[derive(Debug)]
pub struct RotatedKey {
    /// The replacement: same owner, name, scopes and limits, the old key's lifetime from now.
    pub new: CreatedKey,
    /// The old key as stored now (expiring at the end of the grace period).
    pub old: ApiKeyRecord,
}

/// Rotates key `id` at `now`: stores a new key for the same owner with the same name, scopes
/// and limits (and the old key's lifetime, counted from now), then shortens the old key's
/// expiry to `now + grace_secs` (never lengthens it), so both work during the grace period.
/// Refuses revoked and expired keys, and owners that are gone or disabled. Audited as
/// `key.rotate` on the old key.
pub async fn rotate_key(
    ctx: &CliContext,
    id: &str,
    grace_secs: i64,
    now: i64,
) -> anyhow::Result<RotatedKey> {
    if !(0..=MAX_EXPIRY_DAYS * SECONDS_PER_DAY).contains(&grace_secs) {
        bail!("the grace period must be between 0 and {MAX_EXPIRY_DAYS} days");
    }
    let Some(old) = ctx.store.get_key(id).await? else {
        bail!("key `{id}` not found");
    };
    match key_status(&old, now) {
        "revoked" => bail!("cannot rotate key `{id}`: it is revoked"),
        "expired" => bail!("cannot rotate key `{id}`: it has expired"),
        _ => {}
    }
    check_owner_active(ctx, &old.owner).await?;
    let key = api_key::generate();
    let lifetime =
        (old.expires_at - old.created_at).clamp(SECONDS_PER_DAY, MAX_EXPIRY_DAYS * SECONDS_PER_DAY);
    let record = ApiKeyRecord {
        id: key.id,
        secret_sha256: key.secret_sha256,
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        last_used_at: None,
        ..old.clone()
    };
    ctx.store.create_key(&record).await?;
    let grace_until = old.expires_at.min(now + grace_secs);
    ctx.store.set_key_expiry(id, grace_until).await?;
    super::audit::record_admin(
        ctx,
        "key.rotate",
        &format!("key:{id}"),
        serde_json::json!({
            "name": old.name,
            "owner": owner_label(&old.owner),
            "new_key": record.id,
            "old_key_expires_at": format_time(grace_until),
            "new_key_expires_at": format_time(record.expires_at),
        }),
    )
    .await?;
    Ok(RotatedKey {
        new: CreatedKey {
            full_key: key.full,
            record,
        },
        old: ApiKeyRecord {
            expires_at: grace_until,
            ..old
        },
    })
}

/// `--grace-days` in seconds: finite, 0 to 100 years, fractions allowed.
pub fn grace_seconds(days: f64) -> anyhow::Result<i64> {
    if !days.is_finite() || !(0.0..=MAX_EXPIRY_DAYS as f64).contains(&days) {
        bail!("--grace-days must be between 0 and {MAX_EXPIRY_DAYS}");
    }
    Ok((days * SECONDS_PER_DAY as f64).round() as i64)
}

/// The details `keys rotate` prints on stderr (never a secret).
pub fn describe_rotation(old: &ApiKeyRecord, new: &ApiKeyRecord) -> String {
    format!(
        "{}key {} keeps working until {}, then expires\n",
        describe_new_key(new),
        old.id,
        format_time(old.expires_at)
    )
}

/// Checks that a key's owner still exists and is enabled.
async fn check_owner_active(ctx: &CliContext, owner: &OwnerRef) -> anyhow::Result<()> {
    let name = &owner.name;
    let disabled = match owner.kind {
        PrincipalKind::User => ctx.store.get_user(name).await?.map(|u| u.disabled),
        PrincipalKind::ServiceAccount => ctx
            .store
            .get_service_account(name)
            .await?
            .map(|s| s.disabled),
    };
    let what = match owner.kind {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service account",
    };
    match disabled {
        None => bail!("{what} `{name}` not found"),
        Some(true) => bail!("{what} `{name}` is disabled"),
        Some(false) => Ok(()),
    }
}

/// Revokes a key; returns the earlier revocation time when it was already revoked.
pub async fn revoke_key(ctx: &CliContext, id: &str, now: i64) -> anyhow::Result<Option<i64>> {
    let Some(key) = ctx.store.get_key(id).await? else {
        bail!("key `{id}` not found");
    };
    if let Some(earlier) = key.revoked_at.filter(|t| *t <= now) {
        return Ok(Some(earlier));
    }
    ctx.store.revoke_key(id, now).await?;
    super::audit::record_admin(
        ctx,
        "key.revoke",
        &format!("key:{id}"),
        serde_json::json!({"name": key.name, "owner": owner_label(&key.owner)}),
    )
    .await?;
    Ok(None)
}

/// Parses `--scope` values as permission names: `None` when none are given (the owner's role's
/// permissions), else the distinct permissions in their canonical order.
pub fn parse_scopes(texts: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    if texts.is_empty() {
        return Ok(None);
    }
    let mut permissions = BTreeSet::new();
    for text in texts {
        let permission: Permission = text.parse()?;
        permissions.insert(permission);
    }
    Ok(Some(
        permissions
            .into_iter()
            .map(|p| p.as_str().to_string())
            .collect(),
    ))
}

/// `active`, `expired` or `revoked` at `now`.
pub fn key_status(key: &ApiKeyRecord, now: i64) -> &'static str {
    if key.revoked_at.is_some_and(|t| t <= now) {
        "revoked"
    } else if key.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}

/// `user:alice` or `service_account:batch`.
fn owner_label(owner: &OwnerRef) -> String {
    format!("{}:{}", owner.kind.as_str(), owner.name)
}

/// The details `keys create` prints on stderr (never the secret).
pub fn describe_new_key(key: &ApiKeyRecord) -> String {
    let owner = match key.owner.kind {
        PrincipalKind::User => format!("user `{}`", key.owner.name),
        PrincipalKind::ServiceAccount => format!("service account `{}`", key.owner.name),
    };
    let scopes = match &key.scopes {
        Some(scopes) => scopes.join(", "),
        None => "all of the owner's role permissions".into(),
    };
    let days = (key.expires_at - key.created_at) / SECONDS_PER_DAY;
    let mut text = format!(
        "created key {} (`{}`) for {owner}\n  scopes:  {scopes}\n  expires: {} (in {days} days)\n",
        key.id,
        key.name,
        format_time(key.expires_at),
    );
    if let Some(n) = key.daily_images {
        text.push_str(&format!("  daily images: {n}\n"));
    }
    if let Some(nets) = &key.allowed_networks {
        text.push_str(&format!("  usable from: {}\n", nets.join(", ")));
    }
    text.push_str("The key above is shown only once: store it now.\n");
    text
}

/// `keys list` output: never secrets or hashes.
pub fn format_keys(keys: &[ApiKeyRecord], format: OutputFormat, now: i64) -> String {
    match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            keys.iter()
                .map(|k| {
                    serde_json::json!({
                        "id": k.id,
                        "name": k.name,
                        "owner_kind": k.owner.kind.as_str(),
                        "owner": k.owner.name,
                        "scopes": k.scopes,
                        "daily_images": k.daily_images,
                        "created_at": format_time(k.created_at),
                        "expires_at": format_time(k.expires_at),
                        "revoked_at": k.revoked_at.map(format_time),
                        "status": key_status(k, now),
                        "allowed_networks": k.allowed_networks,
                        "last_used_at": k.last_used_at.map(format_time),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => render_table(
            &[
                "ID",
                "NAME",
                "OWNER",
                "SCOPES",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "STATUS",
            ],
            &keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.name.clone(),
                        owner_label(&k.owner),
                        k.scopes
                            .as_ref()
                            .map_or_else(|| "(role)".to_string(), |s| s.join(",")),
                        format_time(k.created_at),
                        format_time(k.expires_at),
                        k.last_used_at
                            .map_or_else(|| "never".to_string(), format_time),
                        key_status(k, now).into(),
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
    use crate::store::{ServiceAccountRecord, SqliteStore, Store, UserRecord};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: KeysCommand,
    }

    #[test]
    fn command_line_forms_parse() {
        let cli = Cli::try_parse_from(["keys", "create", "--name", "ci", "--user", "alice"])
            .expect("parses");
        let KeysCommand::Create {
            expires_days,
            scopes,
            user,
            service_account,
            ..
        } = cli.command
        else {
            panic!("not create");
        };
        assert_eq!(expires_days, 90);
        assert!(scopes.is_empty());
        assert_eq!((user.as_deref(), service_account), (Some("alice"), None));

        let cli = Cli::try_parse_from([
            "keys",
            "create",
            "--name",
            "ci",
            "--service-account",
            "batch",
            "--scope",
            "generation:create",
            "--scope",
            "models:view",
            "--expires-days",
            "7",
            "--daily-images",
            "20",
        ])
        .expect("parses");
        let KeysCommand::Create {
            expires_days,
            scopes,
            daily_images,
            ..
        } = cli.command
        else {
            panic!("not create");
        };
        assert_eq!((expires_days, daily_images), (7, Some(20)));
        assert_eq!(scopes, ["generation:create", "models:view"]);

        // Exactly one owner.
        assert!(Cli::try_parse_from(["keys", "create", "--name", "ci"]).is_err());
        assert!(
            Cli::try_parse_from([
                "keys",
                "create",
                "--name",
                "ci",
                "--user",
                "a",
                "--service-account",
                "b"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "keys",
                "create",
                "--name",
                "c",
                "--user",
                "a",
                "--expires-days",
                "0"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["keys", "revoke", "0123456789abcdef"]).expect("parses");
        assert!(matches!(cli.command, KeysCommand::Revoke { id } if id == "0123456789abcdef"));
        assert!(Cli::try_parse_from(["keys", "list", "--format", "json"]).is_ok());
        assert!(Cli::try_parse_from(["keys", "list", "--format", "yaml"]).is_err());
    }

    #[test]
    fn scopes_are_permission_names() {
        assert_eq!(parse_scopes(&[]).expect("none"), None);
        assert_eq!(
            parse_scopes(&[
                "models:view".into(),
                "generation:create".into(),
                "models:view".into()
            ])
            .expect("ok"),
            Some(vec!["generation:create".into(), "models:view".into()])
        );
        let err = parse_scopes(&["generation:delete".into()]).expect_err("unknown");
        assert!(
            err.to_string()
                .starts_with("unknown permission `generation:delete` (known: generation:create"),
            "{err}"
        );
        assert!(parse_scopes(&["*".into()]).is_err());
    }

    fn sample_key(id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            name: "ci".into(),
            owner: OwnerRef {
                kind: PrincipalKind::ServiceAccount,
                name: "batch".into(),
            },
            secret_sha256: "deadbeef".repeat(8),
            scopes: Some(vec!["generation:create".into(), "models:view".into()]),
            daily_images: None,
            created_at: 1_763_805_600,
            expires_at: 1_763_805_600 + 90 * SECONDS_PER_DAY,
            revoked_at: None,
            allowed_networks: None,
            last_used_at: None,
        }
    }

    #[test]
    fn status_follows_revocation_and_expiry() {
        let mut k = sample_key("a");
        assert_eq!(key_status(&k, k.created_at), "active");
        assert_eq!(key_status(&k, k.expires_at), "expired");
        k.revoked_at = Some(k.created_at + 10);
        assert_eq!(key_status(&k, k.created_at + 10), "revoked");
        assert_eq!(
            key_status(&k, k.created_at + 5),
            "active",
            "revocation ahead"
        );
        assert_eq!(key_status(&k, k.expires_at + 1), "revoked");
    }

    #[test]
    fn keys_format_without_secrets() {
        let mut revoked = sample_key("00000000000000bb");
        revoked.scopes = None;
        revoked.owner = OwnerRef {
            kind: PrincipalKind::User,
            name: "alice".into(),
        };
        revoked.revoked_at = Some(revoked.created_at + 60);
        let mut used = sample_key("00000000000000aa");
        used.last_used_at = Some(used.created_at + 1800);
        used.allowed_networks = Some(vec!["10.0.0.0/8".into()]);
        let keys = vec![used, revoked];
        let now = 1_763_805_600 + 3600;

        let table = format_keys(&keys, OutputFormat::Table, now);
        assert_eq!(
            table,
            "ID                NAME  OWNER                  SCOPES                         CREATED               EXPIRES               LAST USED             STATUS\n\
             00000000000000aa  ci    service_account:batch  generation:create,models:view  2025-11-22T10:00:00Z  2026-02-20T10:00:00Z  2025-11-22T10:30:00Z  active\n\
             00000000000000bb  ci    user:alice             (role)                         2025-11-22T10:00:00Z  2026-02-20T10:00:00Z  never                 revoked\n"
        );
        let json = format_keys(&keys, OutputFormat::Json, now);
        assert!(
            !json.contains("deadbeef") && !json.contains("sha256"),
            "{json}"
        );
        assert!(!table.contains("deadbeef"));
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value[0]["owner_kind"], "service_account");
        assert_eq!(value[0]["scopes"][1], "models:view");
        assert_eq!(value[0]["revoked_at"], serde_json::Value::Null);
        assert_eq!(value[0]["status"], "active");
        assert_eq!(value[1]["scopes"], serde_json::Value::Null);
        assert_eq!(value[1]["revoked_at"], "2025-11-22T10:01:00Z");
        assert_eq!(value[1]["status"], "revoked");
        assert_eq!(value[0]["last_used_at"], "2025-11-22T10:30:00Z");
        assert_eq!(value[1]["last_used_at"], serde_json::Value::Null);
        assert_eq!(value[0]["allowed_networks"][0], "10.0.0.0/8");
        assert_eq!(value[1]["allowed_networks"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn allowed_networks_are_validated_and_stored_canonical() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("nets.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["viewer"].map(String::from).into(),
            audit: None,
        };
        store
            .create_user(&UserRecord {
                username: "alice".into(),
                email: None,
                role: Some("viewer".into()),
                attributes: BTreeMap::new(),
                disabled: false,
                password_hash: None,
                created_at: 1,
            })
            .await
            .expect("user");
        let err = create_key_limited(&ctx, request("bad"), &["10.1.0.0/8".into()], 100)
            .await
            .expect_err("host bits");
        assert!(
            err.to_string().contains("did you mean `10.0.0.0/8`"),
            "{err}"
        );
        assert!(
            store.list_keys().await.expect("list").is_empty(),
            "nothing stored"
        );
        let created = create_key_limited(
            &ctx,
            request("office"),
            &["127.0.0.1".into(), "10.0.0.0/8".into()],
            100,
        )
        .await
        .expect("created");
        let stored = store
            .get_key(&created.record.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            stored.allowed_networks,
            Some(vec!["127.0.0.1/32".to_string(), "10.0.0.0/8".to_string()])
        );
        assert!(describe_new_key(&stored).contains("usable from: 127.0.0.1/32, 10.0.0.0/8"));
        let cli = Cli::try_parse_from([
            "keys",
            "create",
            "--name",
            "n",
            "--user",
            "alice",
            "--allow-network",
            "10.0.0.0/8",
            "--allow-network",
            "::1",
        ])
        .expect("parses");
        let KeysCommand::Create { allow_networks, .. } = cli.command else {
            panic!("not create");
        };
        assert_eq!(allow_networks, vec!["10.0.0.0/8", "::1"]);
    }

    #[test]
    fn new_key_details_name_owner_scopes_and_expiry() {
        let mut k = sample_key("00000000000000aa");
        k.daily_images = Some(5);
        let text = describe_new_key(&k);
        assert_eq!(
            text,
            "created key 00000000000000aa (`ci`) for service account `batch`\n  \
             scopes:  generation:create, models:view\n  \
             expires: 2026-02-20T10:00:00Z (in 90 days)\n  \
             daily images: 5\n\
             The key above is shown only once: store it now.\n"
        );
        assert!(!text.contains("deadbeef"));
    }

    fn request(name: &str) -> CreateKey {
        CreateKey {
            name: name.into(),
            user: Some("alice".into()),
            service_account: None,
            scopes: vec![],
            expires_days: DEFAULT_EXPIRY_DAYS,
            daily_images: None,
        }
    }

    #[tokio::test]
    async fn create_list_and_revoke_against_a_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["viewer"].map(String::from).into(),
            audit: None,
        };
        let user = |name: &str, disabled| UserRecord {
            username: name.into(),
            email: None,
            role: Some("viewer".into()),
            attributes: BTreeMap::new(),
            disabled,
            password_hash: None,
            created_at: 1,
        };
        store
            .create_user(&user("alice", false))
            .await
            .expect("user");
        store
            .create_user(&user("mallory", true))
            .await
            .expect("user");
        store
            .create_service_account(&ServiceAccountRecord {
                name: "batch".into(),
                role: "viewer".into(),
                attributes: BTreeMap::new(),
                daily_images: None,
                daily_tokens: None,
                disabled: false,
                created_at: 1,
            })
            .await
            .expect("sa");

        let now = 1_800_000_000;
        let created = create_key(&ctx, request("laptop"), now)
            .await
            .expect("create");
        let presented = api_key::parse(&created.full_key).expect("well-formed key");
        assert_eq!(presented.id, created.record.id);
        assert!(api_key::secret_matches(
            presented.secret,
            &created.record.secret_sha256
        ));
        assert_eq!(created.record.expires_at, now + 90 * SECONDS_PER_DAY);
        assert_eq!(created.record.scopes, None);
        let stored = store
            .get_key(&created.record.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(stored, created.record);
        assert!(!stored.secret_sha256.contains(presented.secret));
        assert!(
            !format!("{created:?}").contains(presented.secret),
            "Debug redacts"
        );

        let mut scoped = request("batch-key");
        scoped.user = None;
        scoped.service_account = Some("batch".into());
        scoped.scopes = vec!["generation:create".into()];
        scoped.expires_days = 7;
        scoped.daily_images = Some(3);
        let sa_key = create_key(&ctx, scoped, now + 1).await.expect("create");
        assert_eq!(sa_key.record.owner.kind, PrincipalKind::ServiceAccount);
        assert_eq!(
            sa_key.record.scopes,
            Some(vec!["generation:create".to_string()])
        );
        assert_eq!(sa_key.record.expires_at, now + 1 + 7 * SECONDS_PER_DAY);

        let mut ghost = request("x");
        ghost.user = Some("ghost".into());
        assert_eq!(
            create_key(&ctx, ghost, now)
                .await
                .expect_err("absent")
                .to_string(),
            "user `ghost` not found"
        );
        let mut disabled = request("x");
        disabled.user = Some("mallory".into());
        assert_eq!(
            create_key(&ctx, disabled, now)
                .await
                .expect_err("disabled")
                .to_string(),
            "user `mallory` is disabled"
        );
        let mut no_sa = request("x");
        no_sa.user = None;
        no_sa.service_account = Some("nope".into());
        assert_eq!(
            create_key(&ctx, no_sa, now)
                .await
                .expect_err("absent")
                .to_string(),
            "service account `nope` not found"
        );
        let mut bad_scope = request("x");
        bad_scope.scopes = vec!["root".into()];
        assert!(create_key(&ctx, bad_scope, now).await.is_err());
        assert!(create_key(&ctx, request("bad name"), now).await.is_err());

        let listed = store.list_keys().await.expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, sa_key.record.id, "newest first");
        let table = format_keys(&listed, OutputFormat::Table, now + 2);
        assert!(!table.contains(presented.secret));
        assert_eq!(table.matches("active").count(), 2);

        assert_eq!(
            revoke_key(&ctx, &created.record.id, now + 10)
                .await
                .expect("revoke"),
            None
        );
        assert_eq!(
            revoke_key(&ctx, &created.record.id, now + 20)
                .await
                .expect("again"),
            Some(now + 10)
        );
        assert_eq!(
            revoke_key(&ctx, "ffffffffffffffff", now)
                .await
                .expect_err("absent")
                .to_string(),
            "key `ffffffffffffffff` not found"
        );
        let listed = store.list_keys().await.expect("list");
        let statuses: Vec<&str> = listed.iter().map(|k| key_status(k, now + 30)).collect();
        assert_eq!(statuses, ["active", "revoked"]);

        // The clap entry points work end to end too.
        KeysCommand::List {
            format: OutputFormat::Json,
        }
        .run(&ctx)
        .await
        .expect("list");
        KeysCommand::Revoke {
            id: sa_key.record.id.clone(),
        }
        .run(&ctx)
        .await
        .expect("revoke");
        assert!(
            store
                .get_key(&sa_key.record.id)
                .await
                .expect("get")
                .expect("exists")
                .revoked_at
                .is_some()
        );
        let changes = store.changes_since(0, 100).await.expect("feed");
        assert!(changes.iter().filter(|c| c.entity == "key").count() >= 4);
    }
}
