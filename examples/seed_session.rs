//! Puts one signed-in browser session straight into a store and prints its cookie value, so a
//! load benchmark can measure the session path of the Check without driving a browser through
//! an IdP. The record is what `/auth/callback` stores after a login (hashed id, the user, the
//! IdP's issuer, claims read just now); only how it got there differs.
//!
//! ```sh
//! cargo run --release --example seed_session -- --store 'sqlite:///tmp/b/inferguard.db' \
//!     --issuer http://127.0.0.1:1/idp --username bench [--group designers] [--hours 8]
//! ```
//!
//! Prints the session id (the value of the `__Host-inferguard-session` cookie) on stdout.

use clap::Parser;
use inferguard::identity::oidc::{new_session_id, secret_hash};
use inferguard::store::{self, SessionRecord};

/// Command line.
#[derive(Parser)]
struct Args {
    /// Store url, as in the server's `store.url` (an absolute SQLite path, or postgres://…).
    #[arg(long)]
    store: String,
    /// The IdP issuer the session claims to come from (the server's `identity.oidc.issuer`).
    #[arg(long)]
    issuer: String,
    /// The user (IdP `sub`).
    #[arg(long)]
    username: String,
    /// IdP groups of the user (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Idle and absolute lifetime of the session, in hours.
    #[arg(long, default_value_t = 8)]
    hours: i64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = store::open(&args.store).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let id = new_session_id();
    let until = now + args.hours * 3600;
    store
        .create_session(&SessionRecord {
            id_sha256: secret_hash(&id),
            username: args.username,
            issuer: args.issuer,
            idp_sid: None,
            email: None,
            groups: args.groups,
            attributes: Default::default(),
            amr: vec!["pwd".into()],
            acr: None,
            mfa: false,
            id_token: None,
            refresh_token: None,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: until,
            absolute_expires_at: until,
            claims_refreshed_at: now,
            ended_at: None,
            end_reason: None,
        })
        .await?;
    println!("{id}");
    Ok(())
}
