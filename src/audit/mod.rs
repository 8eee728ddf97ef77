//! The audit stage: every decision and every admin change becomes one structured event in a
//! tamper-evident local trail.
//!
//! * [`AuditEvent`] — one event: who (user, auth method, key id, hashed session id, role and
//!   its source), what (action, path, preset, LoRAs, image count, model, the prompt or its
//!   SHA-256), from where (client address, user agent), the result, reason, rule, policy
//!   version and duration. Secrets (keys, tokens, cookies, passwords, hashes of secrets) are
//!   never part of an event.
//! * [`AuditTrail`] — the writer: JSON lines in daily files (`audit.jsonl` →
//!   `audit-2026-11-22.jsonl` beside it), each record carrying the previous record's SHA-256
//!   (a hash chain that continues across files), periodic checkpoints signed with an Ed25519
//!   key in a sidecar file (`audit-2026-11-22.checkpoints.jsonl`), one writer at a time
//!   across processes (`flock` on `audit.jsonl.lock`), and a background `fsync`.
//! * [`security`] — a `severity` and `security_event` on every record ([`security::classify`]),
//!   and the in-memory detectors of failed-authentication bursts and keys used from new
//!   address ranges ([`SecurityMonitor`]), whose findings are records of their own.
//! * [`verify_files`] — what `inferguard audit verify FILE... [--key K]` runs: the first line
//!   where an edit, insertion, deletion, reordering or truncation breaks the chain, and the
//!   checkpoint signatures when given the public key.
//!
//! # Record format
//!
//! One JSON object per line:
//!
//! ```text
//! {"seq":7,"prev":"<64 hex>","ts":"2026-11-22T10:00:00.123456Z","event_type":"decision",…,"hash":"<64 hex>"}
//! ```
//!
//! `hash` is the SHA-256 of the line's exact bytes without its `,"hash":"…"` member (that is,
//! the line with `,"hash":"<64 hex>"}` replaced by `}`), and `prev` is the `hash` of the
//! record before it (64 zeros for the first record of a trail). `seq` counts records from 1
//! across all daily files. Because the hash covers bytes, not a re-serialisation, any JSON
//! tool can read the records and verification needs no canonical form.
//!
//! # Checkpoints
//!
//! A checkpoint line `{"file","seq","hash","ts","kid","alg":"Ed25519","sig"}` states, signed,
//! that the record with that `seq` in that file has that `hash` — and so, through the chain,
//! every record before it. Checkpoints are written after the records they cover have been
//! `fsync`ed, at least every `audit.checkpoint_every` while records arrive, after
//! `audit.checkpoint_records` records, and when a trail is closed.

mod checkpoint;
mod event;
mod files;
mod keys;
mod record;
pub mod security;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use checkpoint::Checkpoint;
pub use event::{AuditEvent, EventType, MAX_PROMPT_BYTES, Outcome};
pub use keys::{AUDIT_KEY_PURPOSE, CheckpointKey, key_id, parse_public_keys};
pub use record::GENESIS_HASH;
pub use security::{SecurityEvent, SecurityMonitor, Severity};
pub use verify::{Location, Problem, ProblemKind, TrailFileSummary, VerifyReport, verify_files};
pub use writer::AuditTrail;

use crate::store::StoreError;

/// Receives every event an [`AuditTrail`] records, once written (the OTLP exporter).
///
/// `emit` runs on the thread that made the decision: it must return at once (queue, never
/// wait on the network) and must not fail the decision.
pub trait EventSink: Send + Sync {
    /// Takes one recorded event.
    fn emit(&self, event: &AuditEvent);
}

/// What a decision does when its audit record cannot be written (`audit.on_write_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnWriteFailure {
    /// [`AuditTrail::record`] returns the error: the caller refuses the request (503), so
    /// nothing is decided unrecorded.
    #[default]
    Deny,
    /// [`AuditTrail::record`] logs an error, counts the failure and returns `Ok`.
    AllowAndAlarm,
}

/// Why the trail could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `audit.*` in inferguard.yaml holds a value that cannot work.
    #[error("{0}")]
    Config(String),
    /// A file of the trail could not be created, read, locked or written.
    #[error("audit trail {}: {source}", path.display())]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file of the trail does not end in a valid record, so the chain cannot continue.
    #[error("audit trail {}: {reason}", path.display())]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint key is missing or unusable (never shows the key).
    #[error("audit checkpoint key: {0}")]
    Key(String),
    /// The store holding the checkpoint key failed.
    #[error("audit checkpoint key: {0}")]
    Store(#[from] StoreError),
    /// An event could not be serialised.
    #[error("cannot serialise an audit event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error for another caller: every record of a batch that could not be written
    /// gets one (`io::Error` cannot be cloned; its kind and message are kept).
    pub(crate) fn duplicate(&self) -> AuditError {
        let copy = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            AuditError::Config(m) => AuditError::Config(m.clone()),
            AuditError::Io { path, source } => AuditError::io(path.clone(), copy(source)),
            AuditError::Corrupt { path, reason } => AuditError::Corrupt {
                path: path.clone(),
                reason: reason.clone(),
            },
            AuditError::Key(m) => AuditError::Key(m.clone()),
            // Neither comes out of an append; kept as text should that change.
            AuditError::Store(_) | AuditError::Encode(_) => {
                AuditError::io(PathBuf::new(), std::io::Error::other(self.to_string()))
            }
        }
    }
}
