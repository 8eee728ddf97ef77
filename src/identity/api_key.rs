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
    decode_sha256(stored_sha256_hex).is_some_and(|stored| secret_matches_digest(secret, &stored))
}

/// The 32 bytes of a stored hex SHA-256, or `None` when the text is not one (such a hash
/// matches no secret).
pub fn decode_sha256(stored_sha256_hex: &str) -> Option<[u8; 32]> {
    hex::decode(stored_sha256_hex).ok()?.try_into().ok()
}

/// Compares a presented secret with a stored (decoded) hash in constant time.
pub fn secret_matches_digest(secret: &str, stored: &[u8; 32]) -> bool {
    let presented = Sha256::digest(secret.as_bytes());
    presented[..].ct_eq(&stored[..]).into()
}

/// The 64 bits a key id's 16 lower-case hex characters spell (a compact cache key), or
/// `None` for anything that is not a well-formed id.
pub fn id_bits(id: &str) -> Option<u64> {
    let well_formed =
        id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
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
    fn decoded_hashes_match_like_hex_ones() {
        let k = generate();
        let p = parse(&k.full).expect("parses");
        let digest = decode_sha256(&k.secret_sha256).expect("64 hex characters");
        assert!(secret_matches_digest(p.secret, &digest));
        assert!(!secret_matches_digest("x", &digest));
        let mut flipped = digest;
        flipped[31] ^= 1;
        assert!(!secret_matches_digest(p.secret, &flipped));
        // Anything but 32 bytes of hex matches nothing, as before.
        assert_eq!(decode_sha256(&k.secret_sha256[..62]), None);
        assert_eq!(decode_sha256(&format!("{}00", k.secret_sha256)), None);
        assert_eq!(decode_sha256(&"z".repeat(64)), None);
        assert!(!secret_matches(p.secret, &k.secret_sha256[..62]));
        assert_eq!(
            decode_sha256(&k.secret_sha256.to_uppercase()),
            Some(digest),
            "hex::decode accepts upper case"
        );
    }

    #[test]
    fn ids_map_one_to_one_onto_64_bits() {
        assert_eq!(id_bits("0000000000000000"), Some(0));
        assert_eq!(id_bits("00000000000000ff"), Some(255));
        assert_eq!(id_bits("ffffffffffffffff"), Some(u64::MAX));
        let k = generate();
        assert_eq!(
            id_bits(&k.id).map(|b| format!("{b:016x}")),
            Some(k.id.clone())
        );
        for bad in [
            "",
            "00000000000000F0",
            "+000000000000000",
            "0000000000000000a",
            "000000000000000",
        ] {
            assert_eq!(id_bits(bad), None, "{bad:?}");
        }
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
