//! `inferguard users …`: local and IdP user records, their role bindings and attributes.
//!
//! This module also holds the argument checks and output helpers the other store-backed
//! commands share (names, `--attr KEY=VALUE`, roles, `--format table|json`, times).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHasher, SaltString};
use rand::Rng;

use super::CliContext;
use crate::store::UserRecord;

/// The shortest password `--password-stdin` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest username, service account or key name.
pub const MAX_NAME_CHARS: usize = 128;

/// `inferguard users …`
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Creates a user bound to a role.
    Create {
        /// The username (the IdP `sub` for IdP users): letters, digits, `.`, `_`, `@`, `-`.
        #[arg(long)]
        username: String,
        /// A role the policy defines.
        #[arg(long)]
        role: String,
        /// The user's e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// An attribute for policy rules, e.g. `department=marketing`; repeatable.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Reads a password for local login (one line, at least 12 characters) from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Binds a user to a role, creating the record for an IdP user seen only by subject.
    SetRole {
        /// The username (or IdP subject).
        #[arg(long)]
        username: String,
        /// A role the policy defines.
        #[arg(long)]
        role: String,
    },
    /// Sets (or replaces) one attribute of a user.
    SetAttr {
        /// The username.
        #[arg(long)]
        username: String,
        /// The attribute, e.g. `department=marketing`.
        #[arg(long, value_name = "KEY=VALUE")]
        attr: String,
    },
    /// Disables a user: every credential of theirs stops working.
    Disable {
        /// The username.
        #[arg(long)]
        username: String,
    },
}

impl UsersCommand {
    /// Runs the command against the configured store.
    pub async fn run(self, ctx: &CliContext) -> anyhow::Result<()> {
        match self {
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
                let request = CreateUser {
                    username,
                    role,
                    email,
                    attributes: parse_attrs(&attrs)?,
                    password,
                };
                let record = create_user(ctx, request).await?;
                eprintln!("{}", describe_new_user(&record));
            }
            UsersCommand::List { format } => {
                let users = ctx.store.list_users().await?;
                print!("{}", format_users(&users, format));
            }
            UsersCommand::SetRole { username, role } => {
                set_user_role(ctx, &username, &role).await?;
                eprintln!("user `{username}` now has role `{role}`");
            }
            UsersCommand::SetAttr { username, attr } => {
                let (key, value) = parse_attr(&attr)?;
                set_user_attr(ctx, &username, &key, &value).await?;
                eprintln!("set attribute `{key}` of user `{username}`");
            }
            UsersCommand::Disable { username } => {
                disable_user(ctx, &username).await?;
                eprintln!("disabled user `{username}`");
            }
        }
        Ok(())
    }
}

/// The arguments of `users create` (the CLI's and the admin API's).
#[derive(Clone)]
pub struct CreateUser {
    /// The username (the IdP `sub` for IdP users).
    pub username: String,
    /// A role the policy defines.
    pub role: String,
    /// The user's e-mail address.
    pub email: Option<String>,
    /// Attributes for policy rules (keys checked here).
    pub attributes: BTreeMap<String, String>,
    /// A local-login password, hashed before it is stored; never logged.
    pub password: Option<String>,
}

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("email", &self.email)
            .field("attributes", &self.attributes)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Checks and stores a new user, then records `user.create` in the audit trail.
pub async fn create_user(ctx: &CliContext, req: CreateUser) -> anyhow::Result<UserRecord> {
    validate_name("username", &req.username)?;
    check_role(ctx, &req.role)?;
    if let Some(email) = &req.email {
        validate_email(email)?;
    }
    for key in req.attributes.keys() {
        validate_attr_key(key)?;
    }
    let password_hash = match &req.password {
        Some(password) => {
            check_password(password)?;
            Some(hash_password(password)?)
        }
        None => None,
    };
    let record = UserRecord {
        username: req.username,
        email: req.email,
        role: Some(req.role),
        attributes: req.attributes,
        disabled: false,
        password_hash,
        created_at: now(),
    };
    ctx.store.create_user(&record).await?;
    super::audit::record_admin(
        ctx,
        "user.create",
        &format!("user:{}", record.username),
        serde_json::json!({
            "role": record.role,
            "email": record.email,
            "attributes": record.attributes,
            "password_set": record.password_hash.is_some(),
        }),
    )
    .await?;
    Ok(record)
}

/// The line `users create` prints on stderr.
pub fn describe_new_user(record: &UserRecord) -> String {
    format!(
        "created user `{}` with role `{}`{}",
        record.username,
        record.role.as_deref().unwrap_or_default(),
        if record.password_hash.is_some() {
            " and a local password"
        } else {
            ""
        }
    )
}

/// Binds a user to a role (creating an IdP user's record when needed); audited as
/// `user.set_role` with the previous role.
pub async fn set_user_role(ctx: &CliContext, username: &str, role: &str) -> anyhow::Result<()> {
    validate_name("username", username)?;
    check_role(ctx, role)?;
    let previous = ctx.store.get_user(username).await?.and_then(|u| u.role);
    ctx.store.set_user_role(username, role).await?;
    super::audit::record_admin(
        ctx,
        "user.set_role",
        &format!("user:{username}"),
        serde_json::json!({"role": role, "previous_role": previous}),
    )
    .await
}

/// Sets one attribute of a user; audited as `user.set_attr`.
pub async fn set_user_attr(
    ctx: &CliContext,
    username: &str,
    key: &str,
    value: &str,
) -> anyhow::Result<()> {
    validate_name("username", username)?;
    validate_attr_key(key)?;
    ctx.store.set_user_attr(username, key, value).await?;
    super::audit::record_admin(
        ctx,
        "user.set_attr",
        &format!("user:{username}"),
        serde_json::json!({"key": key, "value": value}),
    )
    .await
}

/// Disables a user (every credential of theirs stops working); audited as `user.disable`.
pub async fn disable_user(ctx: &CliContext, username: &str) -> anyhow::Result<()> {
    validate_name("username", username)?;
    ctx.store.disable_user(username).await?;
    super::audit::record_admin(
        ctx,
        "user.disable",
        &format!("user:{username}"),
        serde_json::Value::Null,
    )
    .await
}

/// How list commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// A JSON array for scripts.
    Json,
}

/// Checks a username, service account or key name: 1–128 characters, ASCII letters, digits,
/// `.`, `_`, `@`, `-`. `what` names the argument in the error.
pub fn validate_name(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("{what} must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        bail!("{what} is longer than {MAX_NAME_CHARS} characters");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
    {
        bail!("{what} `{name}` contains {bad:?}; use only letters, digits, `.`, `_`, `@` and `-`");
    }
    Ok(())
}

/// Checks that `key` is an identifier policy rules can name (`user.<key>`): a letter or `_`,
/// then letters, digits or `_`.
pub fn validate_attr_key(key: &str) -> anyhow::Result<()> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        bail!(
            "attribute key `{key}` is not an identifier (a letter or `_`, then letters, digits or `_`)"
        );
    }
    Ok(())
}

/// Parses one `--attr KEY=VALUE`. The value is everything after the first `=` and may be empty.
pub fn parse_attr(text: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = text.split_once('=') else {
        bail!("--attr `{text}` is not KEY=VALUE");
    };
    validate_attr_key(key)?;
    Ok((key.to_string(), value.to_string()))
}

/// Parses every `--attr`; a key given twice is an error rather than a silent overwrite.
pub fn parse_attrs(texts: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut attributes = BTreeMap::new();
    for text in texts {
        let (key, value) = parse_attr(text)?;
        if attributes.insert(key.clone(), value).is_some() {
            bail!("--attr `{key}` is given more than once");
        }
    }
    Ok(attributes)
}

/// Checks `role` against the roles the policy defines.
pub fn check_role(ctx: &CliContext, role: &str) -> anyhow::Result<()> {
    check_role_in(&ctx.known_roles, role)
}

/// Checks `role` against `known`; the error names the known roles.
pub fn check_role_in(known: &BTreeSet<String>, role: &str) -> anyhow::Result<()> {
    if known.contains(role) {
        return Ok(());
    }
    if known.is_empty() {
        bail!("unknown role `{role}`: the policy defines no roles");
    }
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    bail!("unknown role `{role}` (known: {})", names.join(", "))
}

/// A light sanity check of an e-mail address (the IdP is the authority on real ones).
pub fn validate_email(email: &str) -> anyhow::Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !ok {
        bail!("--email `{email}` is not an e-mail address");
    }
    Ok(())
}

/// Reads the password from the first line of `input` (without its line ending).
pub fn read_password(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("--password-stdin: no password on stdin");
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("--password-stdin: the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(password.to_string())
}

/// Checks a new local-login password's length.
pub fn check_password(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(())
}

/// Hashes a password with Argon2id (default parameters) and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| anyhow::anyhow!("cannot encode the password salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Current time in unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unix seconds as RFC 3339 UTC (`2026-11-22T10:00:00Z`).
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// Attributes as `k=v,k2=v2` for tables (`-` when none).
pub fn format_attrs(attributes: &BTreeMap<String, String>) -> String {
    if attributes.is_empty() {
        return "-".into();
    }
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Renders rows under headers in columns separated by two spaces, each line ending in `\n`.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Pretty JSON followed by a newline.
pub fn render_json(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    text.push('\n');
    text
}

/// `users list` output. Password hashes are never printed, only whether one is set.
pub fn format_users(users: &[UserRecord], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => render_json(&serde_json::Value::Array(
            users
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "username": u.username,
                        "email": u.email,
                        "role": u.role,
                        "attributes": u.attributes,
                        "disabled": u.disabled,
                        "local_password": u.password_hash.is_some(),
                        "created_at": format_time(u.created_at),
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => render_table(
            &[
                "USERNAME",
                "ROLE",
                "EMAIL",
                "STATUS",
                "PASSWORD",
                "CREATED",
                "ATTRIBUTES",
            ],
            &users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        u.role.clone().unwrap_or_else(|| "-".into()),
                        u.email.clone().unwrap_or_else(|| "-".into()),
                        if u.disabled { "disabled" } else { "active" }.into(),
                        if u.password_hash.is_some() {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                        format_time(u.created_at),
                        format_attrs(&u.attributes),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{SqliteStore, Store};

    #[test]
    fn names_are_checked() {
        for ok in [
            "alice",
            "a",
            "alice.smith@example.com",
            "svc_batch-1",
            "00u1AbC",
        ] {
            validate_name("username", ok).expect(ok);
        }
        validate_name("username", &"a".repeat(128)).expect("128 is fine");
        let too_long = validate_name("username", &"a".repeat(129)).expect_err("129");
        assert_eq!(
            too_long.to_string(),
            "username is longer than 128 characters"
        );
        assert_eq!(
            validate_name("username", "")
                .expect_err("empty")
                .to_string(),
            "username must not be empty"
        );
        let err = validate_name("name", "bad name").expect_err("space");
        assert_eq!(
            err.to_string(),
            "name `bad name` contains ' '; use only letters, digits, `.`, `_`, `@` and `-`"
        );
        for bad in ["a/b", "a|b", "é", "a\nb", "a:b"] {
            assert!(validate_name("username", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attrs_are_parsed() {
        assert_eq!(
            parse_attr("department=marketing").expect("ok"),
            ("department".into(), "marketing".into())
        );
        assert_eq!(
            parse_attr("note=a=b").expect("value keeps later ="),
            ("note".into(), "a=b".into())
        );
        assert_eq!(
            parse_attr("_x1=").expect("empty value"),
            ("_x1".into(), String::new())
        );
        assert_eq!(
            parse_attr("department").expect_err("no =").to_string(),
            "--attr `department` is not KEY=VALUE"
        );
        for bad in ["=x", "1abc=x", "a-b=x", "a.b=x", " a=x"] {
            assert!(parse_attr(bad).is_err(), "{bad:?}");
        }
        let attrs = parse_attrs(&["b=2".into(), "a=1".into()]).expect("ok");
        assert_eq!(
            attrs,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        let err = parse_attrs(&["a=1".into(), "a=2".into()]).expect_err("dup");
        assert_eq!(err.to_string(), "--attr `a` is given more than once");
    }

    #[test]
    fn roles_are_checked() {
        let known: BTreeSet<String> = ["viewer", "admin"].map(String::from).into();
        check_role_in(&known, "admin").expect("known");
        assert_eq!(
            check_role_in(&known, "root")
                .expect_err("unknown")
                .to_string(),
            "unknown role `root` (known: admin, viewer)"
        );
        assert_eq!(
            check_role_in(&BTreeSet::new(), "x")
                .expect_err("none")
                .to_string(),
            "unknown role `x`: the policy defines no roles"
        );
    }

    #[test]
    fn emails_are_checked() {
        validate_email("a@example.com").expect("ok");
        for bad in ["", "a", "@x", "a@", "a b@x", "a@x\n"] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_read_and_hashed() {
        let pw = read_password(&b"correct horse battery\r\nrest"[..]).expect("ok");
        assert_eq!(pw, "correct horse battery");
        assert_eq!(
            read_password(&b"short\n"[..])
                .expect_err("short")
                .to_string(),
            "--password-stdin: the password must have at least 12 characters"
        );
        assert!(read_password(&b""[..]).is_err());
        assert!(read_password(&b"\n"[..]).is_err());

        let hash = hash_password(&pw).expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_ne!(hash, hash_password(&pw).expect("hash"), "salted");
        let parsed = argon2::PasswordHash::new(&hash).expect("phc");
        use argon2::PasswordVerifier;
        argon2::Argon2::default()
            .verify_password(pw.as_bytes(), &parsed)
            .expect("verifies");
    }

    #[test]
    fn tables_are_aligned() {
        let table = render_table(
            &["A", "LONGER"],
            &[vec!["xx".into(), "1".into()], vec!["y".into(), "22".into()]],
        );
        assert_eq!(table, "A   LONGER\nxx  1\ny   22\n");
        assert_eq!(render_table(&["ONLY"], &[]), "ONLY\n");
    }

    fn sample_users() -> Vec<UserRecord> {
        vec![
            UserRecord {
                username: "alice".into(),
                email: Some("alice@example.com".into()),
                role: Some("admin".into()),
                attributes: BTreeMap::from([("department".into(), "it".into())]),
                disabled: false,
                password_hash: Some("$argon2id$secret-hash".into()),
                created_at: 1_763_805_600,
            },
            UserRecord {
                username: "idp-sub".into(),
                email: None,
                role: None,
                attributes: BTreeMap::new(),
                disabled: true,
                password_hash: None,
                created_at: 0,
            },
        ]
    }

    #[test]
    fn users_format_as_table_and_json() {
        let users = sample_users();
        let table = format_users(&users, OutputFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("USERNAME  ROLE   EMAIL"), "{table}");
        assert!(lines[1].contains("alice@example.com"), "{table}");
        assert!(lines[1].contains("2025-11-22T10:00:00Z"), "{table}");
        assert!(lines[1].ends_with("department=it"), "{table}");
        assert!(lines[2].contains("disabled"), "{table}");
        assert!(!table.contains("argon2"), "no hashes");

        let json = format_users(&users, OutputFormat::Json);
        assert!(!json.contains("argon2"), "no hashes");
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value[0]["username"], "alice");
        assert_eq!(value[0]["local_password"], true);
        assert_eq!(value[0]["attributes"]["department"], "it");
        assert_eq!(value[0]["created_at"], "2025-11-22T10:00:00Z");
        assert_eq!(value[1]["role"], serde_json::Value::Null);
        assert_eq!(value[1]["disabled"], true);
        assert_eq!(format_users(&[], OutputFormat::Json), "[]\n");
    }

    #[tokio::test]
    async fn user_commands_against_a_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("cli.db").display());
        let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
        let ctx = CliContext {
            store: store.clone(),
            known_roles: ["viewer", "admin"].map(String::from).into(),
            audit: None,
        };

        UsersCommand::Create {
            username: "alice".into(),
            role: "viewer".into(),
            email: Some("alice@example.com".into()),
            attrs: vec!["department=marketing".into()],
            password_stdin: false,
        }
        .run(&ctx)
        .await
        .expect("create");
        let err = UsersCommand::Create {
            username: "alice".into(),
            role: "viewer".into(),
            email: None,
            attrs: vec![],
            password_stdin: false,
        }
        .run(&ctx)
        .await
        .expect_err("dup");
        assert_eq!(err.to_string(), "user `alice` already exists");
        let err = UsersCommand::Create {
            username: "bob".into(),
            role: "root".into(),
            email: None,
            attrs: vec![],
            password_stdin: false,
        }
        .run(&ctx)
        .await
        .expect_err("unknown role");
        assert!(err.to_string().starts_with("unknown role `root`"));

        UsersCommand::SetRole {
            username: "alice".into(),
            role: "admin".into(),
        }
        .run(&ctx)
        .await
        .expect("set-role");
        UsersCommand::SetRole {
            username: "new-idp-user".into(),
            role: "viewer".into(),
        }
        .run(&ctx)
        .await
        .expect("set-role creates");
        UsersCommand::SetAttr {
            username: "alice".into(),
            attr: "clearance_level=3".into(),
        }
        .run(&ctx)
        .await
        .expect("set-attr");
        let err = UsersCommand::SetAttr {
            username: "ghost".into(),
            attr: "a=b".into(),
        }
        .run(&ctx)
        .await
        .expect_err("absent");
        assert_eq!(err.to_string(), "user `ghost` not found");
        UsersCommand::Disable {
            username: "alice".into(),
        }
        .run(&ctx)
        .await
        .expect("disable");
        UsersCommand::List {
            format: OutputFormat::Json,
        }
        .run(&ctx)
        .await
        .expect("list");

        let alice = store.get_user("alice").await.expect("get").expect("exists");
        assert_eq!(alice.role.as_deref(), Some("admin"));
        assert!(alice.disabled);
        assert_eq!(alice.attributes.len(), 2);
        assert!(store.get_user("new-idp-user").await.expect("get").is_some());
    }
}
