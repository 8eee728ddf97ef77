//! `inferguard audit …`: verifying trails, printing the checkpoint key; and the helper every
//! store-backed command uses to record its admin changes in the trail.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::CliContext;
use crate::audit::{AuditEvent, AuditTrail, CheckpointKey, parse_public_keys, verify_files};
use crate::config::{AuditConfig, ServerConfig};
use crate::store::DynStore;

/// `inferguard audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Checks audit trail files: the hash chain across the daily files given (in date
    /// order), and the signed checkpoints beside them (their signatures with --key). Reports
    /// the first line where the chain breaks and exits non-zero. Needs no --config.
    Verify {
        /// Trail files (audit-YYYY-MM-DD.jsonl); checkpoint files
        /// (audit-YYYY-MM-DD.checkpoints.jsonl) beside them are read too.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The checkpoint key's public half: a PEM public key, a JWK or a JWK Set (as
        /// printed by `inferguard audit public-key`).
        #[arg(long, value_name = "PUBKEY_FILE_OR_JWKS")]
        key: Option<PathBuf>,
    },
    /// Prints the public half of the audit checkpoint key (from audit.signing_key_env,
    /// audit.signing_key_file or the store), for `audit verify --key`.
    PublicKey {
        /// Output format.
        #[arg(long, value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
    },
}

/// How `audit public-key` prints the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormat {
    /// `-----BEGIN PUBLIC KEY-----` (SPKI).
    Pem,
    /// A JWK Set.
    Jwks,
}

impl AuditCommand {
    /// Runs a command that needs the configuration (`public-key`); `verify` is run by
    /// [`verify`] before any configuration is read.
    pub async fn run(self, cfg: &ServerConfig, store: DynStore) -> anyhow::Result<()> {
        match self {
            AuditCommand::Verify { files, key } => verify(&files, key.as_deref()),
            AuditCommand::PublicKey { format } => {
                let audit = cfg.audit.clone().unwrap_or_default();
                let key = CheckpointKey::load(&audit, &cfg.base_dir, &store).await?;
                match format {
                    KeyFormat::Pem => print!("{}", key.public_pem()),
                    KeyFormat::Jwks => println!("{}", key.public_jwks()),
                }
                Ok(())
            }
        }
    }
}

/// `inferguard audit verify FILE... [--key K]`: prints the report on stdout; fails (one line)
/// when anything is broken.
pub fn verify(files: &[PathBuf], key: Option<&Path>) -> anyhow::Result<()> {
    let keys = match key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key {}", path.display()))?;
            parse_public_keys(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let report = verify_files(files, &keys);
    print!("{report}");
    if report.files.is_empty() {
        bail!("no trail files given (only checkpoint files)");
    }
    match report.problems.first() {
        None => Ok(()),
        Some(first) => bail!(
            "audit trail broken ({} problem{}): {first}",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Opens the trail `audit.file` configures, or `None` when there is no local trail.
pub async fn open_trail(
    cfg: &ServerConfig,
    store: &DynStore,
) -> anyhow::Result<Option<AuditTrail>> {
    let Some(audit) = cfg.audit.as_ref().filter(|a| a.file.is_some()) else {
        return Ok(None);
    };
    open_configured(audit, &cfg.base_dir, store).await.map(Some)
}

async fn open_configured(
    audit: &AuditConfig,
    base_dir: &Path,
    store: &DynStore,
) -> anyhow::Result<AuditTrail> {
    AuditTrail::open(audit, base_dir, store.clone())
        .await
        .context("opening the audit trail (audit.file)")
}

tokio::task_local! {
    /// Who admin changes are recorded as while an admin API call runs (see [`as_actor`]).
    static ACTOR: String;
}

/// Runs `f` with admin changes recorded as made by `actor` (the admin API's authenticated
/// caller) instead of the command line's login name.
pub async fn as_actor<F: std::future::Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// Who is making a change: the admin API caller inside [`as_actor`], else, from the command
/// line, `cli:<login name>` (or `cli:uid:<n>`).
pub fn cli_actor() -> String {
    if let Ok(actor) = ACTOR.try_with(String::clone) {
        return actor;
    }
    use std::os::unix::fs::MetadataExt;
    let name = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
    match name {
        Some(name) => format!("cli:{name}"),
        None => match std::fs::metadata("/proc/self") {
            Ok(md) => format!("cli:uid:{}", md.uid()),
            Err(_) => "cli".into(),
        },
    }
}

/// Records an admin change made through the CLI, `fsync`ed and checkpointed before the
/// command ends. Does nothing when no trail is configured. Call it after the change was
/// made; `details` must hold no secret.
pub async fn record_admin(
    ctx: &CliContext,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> anyhow::Result<()> {
    let Some(trail) = &ctx.audit else {
        return Ok(());
    };
    trail
        .record_durable(AuditEvent::admin(&cli_actor(), action, target, details))
        .await
        .with_context(|| {
            format!("`{action}` on `{target}` was made, but its audit record could not be written")
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use clap::Parser;

    use super::*;
    use crate::commands::keys::{CreateKey, create_key, revoke_key};
    use crate::store::{SqliteStore, UserRecord};

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AuditCommand,
    }

    #[test]
    fn command_line_forms_parse() {
        let cli = Cli::try_parse_from(["audit", "verify", "a.jsonl", "b.jsonl", "--key", "k.pem"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            AuditCommand::Verify { files, key: Some(_) } if files.len() == 2
        ));
        assert!(
            Cli::try_parse_from(["audit", "verify"]).is_err(),
            "a file is required"
        );
        let cli = Cli::try_parse_from(["audit", "public-key", "--format", "jwks"]).expect("parses");
        assert!(matches!(
            cli.command,
            AuditCommand::PublicKey {
                format: KeyFormat::Jwks
            }
        ));
    }

    #[tokio::test]
    async fn cli_changes_are_recorded_and_verify() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
        let store: DynStore = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let mut cfg = ServerConfig::parse(
            &dir.path().join("inferguard.yaml"),
            "policy: {file: policy.yaml}\naudit: {file: logs/audit.jsonl}\n",
        )
        .expect("config");
        cfg.base_dir = dir.path().to_path_buf();
        let trail = open_trail(&cfg, &store).await.expect("open");
        assert!(trail.is_some());
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["viewer"].map(String::from).into(),
            audit: trail,
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
        let created = create_key(
            &ctx,
            CreateKey {
                name: "laptop".into(),
                user: Some("alice".into()),
                service_account: None,
                scopes: vec!["generation:create".into()],
                expires_days: 7,
                daily_images: None,
            },
            1_800_000_000,
        )
        .await
        .expect("create");
        revoke_key(&ctx, &created.record.id, 1_800_000_100)
            .await
            .expect("revoke");
        crate::commands::users::UsersCommand::SetRole {
            username: "alice".into(),
            role: "viewer".into(),
        }
        .run(&ctx)
        .await
        .expect("set-role");

        let logs = dir.path().join("logs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
            .expect("logs")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let trail_file = files
            .iter()
            .find(|f| {
                !f.to_string_lossy().contains("checkpoints")
                    && f.extension().is_some_and(|e| e == "jsonl")
            })
            .expect("trail file")
            .clone();
        let text = std::fs::read_to_string(&trail_file).expect("read");
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e["action"].as_str().expect("action"))
            .collect();
        assert_eq!(actions, ["key.create", "key.revoke", "user.set_role"]);
        assert_eq!(events[0]["target"], format!("key:{}", created.record.id));
        assert_eq!(events[0]["details"]["owner"], "user:alice");
        assert_eq!(events[0]["details"]["scopes"][0], "generation:create");
        assert_eq!(events[2]["details"]["previous_role"], "viewer");
        assert!(
            events[0]["actor"]
                .as_str()
                .expect("actor")
                .starts_with("cli")
        );
        // The secret never reaches the trail, nor does its hash.
        let secret = created.full_key.rsplit('_').next().expect("secret");
        assert!(!text.contains(secret));
        assert!(!text.contains(&created.record.secret_sha256));

        // Every CLI change is fsynced and checkpointed: nothing is left unverified.
        verify(std::slice::from_ref(&trail_file), None).expect("intact");
        let key = CheckpointKey::load(cfg.audit.as_ref().expect("audit"), dir.path(), &store)
            .await
            .expect("key");
        for (name, text) in [
            ("k.pem", key.public_pem()),
            ("k.json", key.public_jwks().to_string()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            verify(std::slice::from_ref(&trail_file), Some(&path)).expect("signed");
        }
        let report = verify_files(std::slice::from_ref(&trail_file), &[key.verifying_key()]);
        assert_eq!(report.unverified_tail, None, "{report}");
        assert_eq!(report.checkpoints_matched, 3);

        // A broken trail fails with one line naming the place.
        let edited = text.replacen("key.revoke", "key.rotate", 1);
        std::fs::write(&trail_file, edited).expect("write");
        let err = verify(std::slice::from_ref(&trail_file), None).expect_err("broken");
        assert!(
            err.to_string()
                .contains(":2: the record does not match its own hash"),
            "{err}"
        );
    }
}
