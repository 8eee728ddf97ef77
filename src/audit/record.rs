//! The line format of one chained record: encoding (on the hot path) and checking.

use std::io::Write;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The `prev` of the first record of a trail.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_MEMBER_LEN: usize = 9 + 64 + 2;

/// Appends one record line (with its newline) to the end of `buf` (which may already hold
/// earlier lines of the same write) and returns its hash (lower-case hex). `event` is a
/// serialised JSON object with at least one member; its members follow the chain members
/// `seq`, `prev` and `ts`.
pub(crate) fn encode(buf: &mut Vec<u8>, seq: u64, prev: &str, ts: &str, event: &[u8]) -> String {
    debug_assert!(event.len() > 2 && event[0] == b'{' && event[event.len() - 1] == b'}');
    let start = buf.len();
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "{{\"seq\":{seq},\"prev\":\"{prev}\",\"ts\":\"{ts}\",");
    buf.extend_from_slice(&event[1..]);
    let hash = hex::encode(Sha256::digest(&buf[start..]));
    buf.pop();
    buf.extend_from_slice(b",\"hash\":\"");
    buf.extend_from_slice(hash.as_bytes());
    buf.extend_from_slice(b"\"}\n");
    hash
}

/// The chain members of a record whose own hash has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainRecord {
    /// Position in the whole trail, from 1.
    pub seq: u64,
    /// The previous record's hash.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// The line does not end in a `"hash"` member, or is not a JSON record.
    Malformed(String),
    /// The stored hash is not the hash of the line's content: the line was edited.
    HashMismatch,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    prev: String,
}

fn is_hex64(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks one line (without its newline): its hash member, that the hash matches the
/// content, and the chain members.
pub(crate) fn parse_line(line: &[u8]) -> Result<ChainRecord, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < HASH_MEMBER_LEN + 2 || !line.starts_with(b"{") {
        return Err(LineError::Malformed("not an audit record".into()));
    }
    let split = line.len() - HASH_MEMBER_LEN;
    let (content, member) = line.split_at(split);
    let Some(hash) = member
        .strip_prefix(b",\"hash\":\"")
        .and_then(|m| m.strip_suffix(b"\"}"))
        .filter(|h| is_hex64(h))
    else {
        return Err(LineError::Malformed(
            "the record does not end in its \"hash\" member".into(),
        ));
    };
    let mut hasher = Sha256::new();
    hasher.update(content);
    hasher.update(b"}");
    let computed = hasher.finalize();
    let hash = std::str::from_utf8(hash).expect("checked hex");
    if hex::encode(computed) != hash {
        return Err(LineError::HashMismatch);
    }
    let mut body = Vec::with_capacity(content.len() + 1);
    body.extend_from_slice(content);
    body.push(b'}');
    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|e| LineError::Malformed(format!("not a JSON record: {e}")))?;
    if !is_hex64(envelope.prev.as_bytes()) {
        return Err(LineError::Malformed(
            "\"prev\" is not a SHA-256 in hex".into(),
        ));
    }
    if envelope.seq == 0 {
        return Err(LineError::Malformed("\"seq\" must start at 1".into()));
    }
    Ok(ChainRecord {
        seq: envelope.seq,
        prev: envelope.prev,
        hash: hash.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lines_parse_back_and_are_json() {
        let mut buf = Vec::new();
        let hash = encode(
            &mut buf,
            1,
            GENESIS_HASH,
            "2026-11-22T10:00:00.000000Z",
            br#"{"event_type":"admin","action":"x"}"#,
        );
        assert!(buf.ends_with(b"\"}\n"));
        let value: serde_json::Value = serde_json::from_slice(&buf[..buf.len() - 1]).expect("json");
        assert_eq!(value["seq"], 1);
        assert_eq!(value["hash"], hash.as_str());
        assert_eq!(value["event_type"], "admin");
        let rec = parse_line(&buf[..buf.len() - 1]).expect("valid");
        assert_eq!(
            rec,
            ChainRecord {
                seq: 1,
                prev: GENESIS_HASH.into(),
                hash
            }
        );
    }

    #[test]
    fn lines_encoded_into_one_buffer_each_hash_only_themselves() {
        let mut buf = Vec::new();
        let first = encode(&mut buf, 1, GENESIS_HASH, "t", br#"{"event_type":"admin"}"#);
        let second = encode(&mut buf, 2, &first, "t", br#"{"event_type":"decision"}"#);
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(parse_line(lines[0].as_bytes()).expect("first").hash, first);
        let rec = parse_line(lines[1].as_bytes()).expect("second");
        assert_eq!((rec.seq, rec.prev, rec.hash), (2, first, second));
    }

    #[test]
    fn edits_and_garbage_are_refused() {
        let mut buf = Vec::new();
        encode(&mut buf, 3, GENESIS_HASH, "t", br#"{"event_type":"admin"}"#);
        let line = String::from_utf8(buf[..buf.len() - 1].to_vec()).expect("utf8");
        let edited = line.replace("admin", "admix");
        assert_eq!(parse_line(edited.as_bytes()), Err(LineError::HashMismatch));
        assert!(matches!(parse_line(b"{}"), Err(LineError::Malformed(_))));
        assert!(matches!(
            parse_line(&line.as_bytes()[..line.len() - 3]),
            Err(LineError::Malformed(_))
        ));
        assert!(matches!(parse_line(b""), Err(LineError::Malformed(_))));
    }
}
