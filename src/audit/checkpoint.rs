//! Signed checkpoints: "record `seq` of trail file `file` has hash `hash`".

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::keys::{CheckpointKey, key_id, verify_signature};

/// The domain separation prefix of the signed message.
const SIGNED_PREFIX: &str = "inferguard-audit-checkpoint-v1";

/// One line of a checkpoint sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The trail file name (no directory) holding the record.
    pub file: String,
    /// The record's `seq`: how many records the trail held up to and including it.
    pub seq: u64,
    /// The record's `hash`.
    pub hash: String,
    /// When the checkpoint was signed (RFC 3339, UTC).
    pub ts: String,
    /// The signing key's id (RFC 7638 thumbprint).
    pub kid: String,
    /// Always `Ed25519`.
    pub alg: String,
    /// The signature, base64url.
    pub sig: String,
}

fn message(file: &str, seq: u64, hash: &str, ts: &str, kid: &str) -> Vec<u8> {
    format!("{SIGNED_PREFIX}\n{file}\n{seq}\n{hash}\n{ts}\n{kid}").into_bytes()
}

impl Checkpoint {
    /// A checkpoint signed with `key`.
    pub fn sign(key: &CheckpointKey, file: &str, seq: u64, hash: &str, ts: &str) -> Checkpoint {
        let sig = key.sign(&message(file, seq, hash, ts, key.kid()));
        Checkpoint {
            file: file.to_string(),
            seq,
            hash: hash.to_string(),
            ts: ts.to_string(),
            kid: key.kid().to_string(),
            alg: "Ed25519".into(),
            sig,
        }
    }

    /// Whether one of `keys` signed this checkpoint (matched by key id).
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), String> {
        if self.alg != "Ed25519" {
            return Err(format!("unsupported algorithm `{}`", self.alg));
        }
        let Some(key) = keys.iter().find(|k| key_id(k) == self.kid) else {
            return Err(format!(
                "signed by key `{}`, which is not among the keys given",
                self.kid
            ));
        };
        let msg = message(&self.file, self.seq, &self.hash, &self.ts, &self.kid);
        if verify_signature(key, &msg, &self.sig) {
            Ok(())
        } else {
            Err("the signature does not verify (the checkpoint was altered or forged)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let key = CheckpointKey::generate();
        let keys = [key.verifying_key()];
        let cp = Checkpoint::sign(&key, "audit-2026-11-22.jsonl", 7, "ab", "t");
        assert_eq!(cp.verify(&keys), Ok(()));
        let json = serde_json::to_string(&cp).expect("json");
        let back: Checkpoint = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, cp);
        for edit in [
            |c: &mut Checkpoint| c.seq = 8,
            |c: &mut Checkpoint| c.file = "audit-2026-11-23.jsonl".into(),
            |c: &mut Checkpoint| c.hash = "cd".into(),
            |c: &mut Checkpoint| c.ts = "u".into(),
        ] {
            let mut c = cp.clone();
            edit(&mut c);
            assert!(c.verify(&keys).is_err());
        }
        let other = CheckpointKey::generate();
        assert!(cp.verify(&[other.verifying_key()]).is_err());
    }
}
