//! The API key format `fk_<id>_<secret>`: generation, strict parsing and hashing.
//!
//! The id is 16 lower-case hex characters (public, used for lookup and audit); the secret is
//! 43 base62 characters (about 256 bits). Only the secret's SHA-256 is stored: the secret is
//! random and long, so a slow password hash would only cost hot-path time without adding
//! strength.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "fk_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;

/// A freshly generated key: the full text to show once, its id and the hash to store.
#[derive(Debug)]
pub struct NewApiKey {
    pub id: String,
    pub full: String,
    pub secret_sha256: String,
}

/// A syntactically valid key presented by a caller.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Generates a new random key.
pub fn generate() -> NewApiKey {
    let mut rng = rand::rng();
    let id: String = (0..ID_LEN)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect();
    let secret: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    NewApiKey {
        full: format!("{PREFIX}{id}_{secret}"),
        secret_sha256: hash_secret(&secret),
        id,
    }
}

/// Parses `fk_<id>_<secret>`; anything else is `None`, so a malformed key never costs a store
/// lookup.
pub fn parse(text: &str) -> Option<PresentedKey<'_>> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let secret_ok = secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    (id_ok && secret_ok).then_some(PresentedKey { id, secret })
}

/// True when `text` looks like an inferguard key at all (prefix), used to tell keys from JWTs
/// in `Authorization: Bearer`.
pub fn looks_like_key(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// Lower-case hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored hash in constant time.
pub fn secret_matches(secret: &str, stored_sha256_hex: &str) -> bool {
    let Ok(stored) = hex::decode(stored_sha256_hex) else {
        return false;
    };
    let presented = Sha256::digest(secret.as_bytes());
    presented[..].ct_eq(&stored[..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match() {
        let k = generate();
        let p = parse(&k.full).expect("generated key parses");
        assert_eq!(p.id, k.id);
        assert!(secret_matches(p.secret, &k.secret_sha256));
        assert!(!secret_matches("x", &k.secret_sha256));
        assert_ne!(generate().full, k.full);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = generate();
        let bad = [
            String::new(),
            "fk_".into(),
            k.full.replace("fk_", "FK_"),
            k.full[..k.full.len() - 1].to_string(),
            format!("{}a", k.full),
            format!("fk_{}_{}", "G".repeat(16), "a".repeat(43)),
            format!("fk_{}_{}", "a".repeat(16), "-".repeat(43)),
            format!("fk_{}_{}_x", "a".repeat(16), "a".repeat(41)),
        ];
        for b in bad {
            assert!(parse(&b).is_none(), "{b:?} should not parse");
        }
    }
}
