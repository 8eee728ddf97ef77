//! JSON bodies read as the upstreams read them: duplicate keys keep the last value (Python's
//! `json.loads`, and `serde_json::Value`), unknown keys are ignored, and scalar fields accept
//! pydantic v2's lax coercions (`"12"` → 12, `4.0` → 4, `"true"` → true, `"0.7"` → 0.7).
//!
//! Where the exact lax rule is uncertain, a value is refused rather than guessed: refusing a
//! request the upstream would have taken costs the caller a retry, while reading a different
//! value than the upstream would let the wrong request through.
//!
//! Bodies are read into [`Value`], a tree that borrows its strings and keys from the body
//! (only strings with escapes are copied) and keeps objects as sorted vectors: on the Check
//! path this costs a fraction of a `serde_json::Value` with its `String`s and `BTreeMap`s
//! (see README "Performance"). Syntax, numbers and nesting limits are serde_json's own.

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::InferenceError;

/// A JSON value whose strings borrow from the body they were parsed from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as serde_json reads it.
    Number(Number),
    /// A string (borrowed unless it held escapes).
    String(Cow<'a, str>),
    /// A list.
    Array(Vec<Value<'a>>),
    /// An object.
    Object(Map<'a>),
}

impl<'a> Value<'a> {
    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value at a JSON pointer (RFC 6901: `/function/arguments`, `/0/name`).
    pub(crate) fn pointer(&self, pointer: &str) -> Option<&Value<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut at = self;
        for token in rest.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            at = match at {
                Value::Object(map) => map.get(&token)?,
                Value::Array(list) => {
                    if (token.len() > 1 && token.starts_with('0')) || token.starts_with('+') {
                        return None;
                    }
                    list.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(at)
    }
}

/// A JSON object in which a repeated key means its last value. Small objects (most bodies)
/// keep every entry in body order, repeats included, and are searched from the end, which
/// costs less than sorting or deduplicating them; objects above [`SMALL_MAP`] entries are
/// sorted, deduplicated and binary-searched, so a hostile body with many keys stays
/// O(n log n).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Map<'a> {
    entries: Vec<(Cow<'a, str>, Value<'a>)>,
    sorted: bool,
}

/// Objects with more entries than this are kept sorted.
const SMALL_MAP: usize = 64;

impl<'a> Map<'a> {
    /// An empty object.
    pub(crate) fn new() -> Map<'a> {
        Map::default()
    }

    /// Builds a map from entries in body order: the last value of a repeated key wins.
    fn from_entries(entries: Vec<(Cow<'a, str>, Value<'a>)>) -> Map<'a> {
        let mut map = Map {
            entries,
            sorted: false,
        };
        if map.entries.len() > SMALL_MAP {
            map.sort();
        }
        map
    }

    /// Sorts by key and keeps the last value of each key.
    fn sort(&mut self) {
        // A stable sort keeps repeated keys in body order, so the last of each run wins.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let entries = std::mem::take(&mut self.entries);
        let mut deduped: Vec<(Cow<'a, str>, Value<'a>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        self.entries = deduped;
        self.sorted = true;
    }

    /// The index of `key`'s value: its last entry.
    fn index(&self, key: &str) -> Option<usize> {
        if self.sorted {
            self.entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok()
        } else {
            self.entries
                .iter()
                .rposition(|(k, _)| k.len() == key.len() && **k == *key)
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.index(key).map(|i| &self.entries[i].1)
    }

    /// True when `key` is present (even as `null`).
    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.index(key).is_some()
    }

    /// The number of distinct keys.
    pub(crate) fn len(&self) -> usize {
        if self.sorted {
            return self.entries.len();
        }
        let e = &self.entries;
        (0..e.len())
            .filter(|&i| !e[i + 1..].iter().any(|(k, _)| *k == e[i].0))
            .count()
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub(crate) fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Value<'a>) {
        let key = key.into();
        if self.sorted {
            match self.entries.binary_search_by(|(k, _)| (**k).cmp(&key)) {
                Ok(i) => self.entries[i].1 = value,
                Err(i) => self.entries.insert(i, (key, value)),
            }
        } else {
            self.entries.push((key, value));
            if self.entries.len() > SMALL_MAP {
                self.sort();
            }
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.index(key)?;
        let value = self.entries.remove(i).1;
        if !self.sorted {
            self.entries.retain(|(k, _)| k != key);
        }
        Some(value)
    }

    /// Keeps the keys whose value `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, &Value<'a>) -> bool) {
        if !self.sorted {
            // Judge each key by its value (the last entry); earlier repeats never count.
            let e = &self.entries;
            let mut flags = vec![false; e.len()];
            for (i, flag) in flags.iter_mut().enumerate() {
                let last = !e[i + 1..].iter().any(|(k, _)| *k == e[i].0);
                *flag = last && keep(&e[i].0, &e[i].1);
            }
            let mut flags = flags.into_iter();
            self.entries.retain(|_| flags.next().unwrap_or(false));
            return;
        }
        self.entries.retain(|(k, v)| keep(k, v));
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        // As serde_json::Value: a non-finite float (not producible by the parser) is null.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(v) = seq.next_element()? {
            list.push(v);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            entries.push((key, map.next_value()?));
        }
        Ok(Value::Object(Map::from_entries(entries)))
    }
}

/// Reads an object key, borrowing it from the body when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Parses a body that must be one JSON value. Garbage, nesting deeper than serde_json's
/// recursion limit (128) and empty bodies are `Malformed`; the message never quotes the body.
pub(crate) fn parse_value(body: &[u8]) -> Result<Value<'_>, InferenceError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InferenceError::Malformed(
            "the body is empty; a JSON object is required".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "ends early",
            serde_json::error::Category::Syntax if e.to_string().contains("recursion") => {
                "is nested too deeply"
            }
            _ => "is not valid",
        };
        InferenceError::Malformed(format!(
            "the JSON body {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Parses a body that must be a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<'_>, InferenceError> {
    match parse_value(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(InferenceError::Malformed(
            "the JSON body must be an object".into(),
        )),
    }
}

/// pydantic's lax `int`: integers, floats without a fraction, booleans, and strings holding
/// an integer (surrounding whitespace and `.0` decimals allowed).
pub(crate) fn lax_int(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
        }),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => int_from_str(s),
        _ => None,
    }
}

fn int_from_str(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => s,
    };
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// pydantic's lax `float`: numbers, booleans and numeric strings.
pub(crate) fn lax_float(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => {
            let s = s.trim();
            if s.contains('_') {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

/// pydantic's lax `bool`: booleans, 0/1, and the strings `true/false`, `1/0`, `yes/no`,
/// `on/off`, `t/f`, `y/n` in any case.
pub(crate) fn lax_bool(v: &Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => str_bool(s),
        _ => None,
    }
}

/// The string forms pydantic accepts for a boolean.
pub(crate) fn str_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// A JSON object with the field path it sits at, for error messages (`loras[1].enabled`).
#[derive(Clone)]
pub(crate) struct Obj<'a> {
    map: &'a Map<'a>,
    path: String,
}

/// A field whose value the upstream would refuse.
pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InferenceError {
    InferenceError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl<'a> Obj<'a> {
    /// The top-level object of a body.
    pub(crate) fn root(map: &'a Map<'a>) -> Obj<'a> {
        Obj {
            map,
            path: String::new(),
        }
    }

    /// A nested object at `path` (e.g. `loras[1]`).
    pub(crate) fn nested(map: &'a Map<'a>, path: impl Into<String>) -> Obj<'a> {
        Obj {
            map,
            path: path.into(),
        }
    }

    /// The full name of a field of this object.
    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value, absent or not.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        self.map.get(key)
    }

    /// True when the key is present (even as `null`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// A `str` field: absent is `None`; anything but a string (even `null`) is refused, as
    /// pydantic does not turn numbers into strings.
    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_ref())),
            Some(_) => Err(invalid(self.field(key), "must be a string")),
        }
    }

    /// A `str | None` field: `null` is the same as absent.
    pub(crate) fn nullable_string(&self, key: &str) -> Result<Option<&'a str>, InferenceError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_ref())),
            Some(_) => Err(invalid(self.field(key), "must be a string or null")),
        }
    }

    /// A string field restricted to `allowed` (compared exactly, case-sensitive).
    pub(crate) fn choice(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, InferenceError> {
        let Some(value) = self.string(key)? else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|a| **a == value)
            .map(|a| Some(*a))
            .ok_or_else(|| {
                invalid(
                    self.field(key),
                    format!("must be one of: {}", allowed.join(", ")),
                )
            })
    }

    /// An `int` field within `range`.
    pub(crate) fn int(
        &self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => self.int_value(key, v, &range).map(Some),
        }
    }

    /// An `int | None` field within `range`.
    pub(crate) fn nullable_int(
        &self,
        key: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, InferenceError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.int_value(key, v, &range).map(Some),
        }
    }

    fn int_value(
        &self,
        key: &str,
        v: &Value<'_>,
        range: &RangeInclusive<i64>,
    ) -> Result<i64, InferenceError> {
        let reason = || {
            if *range.end() == i64::MAX {
                format!("must be an integer of at least {}", range.start())
            } else {
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                )
            }
        };
        match lax_int(v) {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(invalid(self.field(key), reason())),
        }
    }

    /// A `float` field within `range` (`null` allowed when `nullable`).
    pub(crate) fn float(
        &self,
        key: &str,
        range: RangeInclusive<f64>,
        nullable: bool,
    ) -> Result<Option<f64>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Null) if nullable => Ok(None),
            Some(v) => match lax_float(v) {
                Some(f) if range.contains(&f) => Ok(Some(f)),
                _ => Err(invalid(
                    self.field(key),
                    format!("must be a number from {} to {}", range.start(), range.end()),
                )),
            },
        }
    }

    /// A `bool` field.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => lax_bool(v)
                .map(Some)
                .ok_or_else(|| invalid(self.field(key), "must be true or false")),
        }
    }

    /// A list field (`null` refused).
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a [Value<'a>]>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.as_slice())),
            Some(_) => Err(invalid(self.field(key), "must be a list")),
        }
    }

    /// An object field (`null` refused).
    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Map<'a>>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(invalid(self.field(key), "must be an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON text `text` as a value (the tests' `json!`).
    fn v(text: &str) -> Value<'_> {
        parse_value(text.as_bytes()).unwrap()
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let map = parse_object(
            br#"{"image_number": 1, "image_number": 4, "prompt": "a", "prompt": "b"}"#,
        )
        .unwrap();
        assert_eq!(map.get("image_number"), Some(&v("4")));
        assert_eq!(map.get("prompt").and_then(Value::as_str), Some("b"));
        assert_eq!(map.len(), 2);
        let mut m = parse_object(br#"{"a": "", "b": 1, "a": "x", "b": ""}"#).unwrap();
        m.retain(|_, v| v.as_str() != Some(""));
        assert_eq!(
            (m.len(), m.get("a").and_then(Value::as_str), m.get("b")),
            (1, Some("x"), None)
        );
        assert_eq!(
            m.remove("a")
                .and_then(|v| v.as_str().map(str::to_string))
                .as_deref(),
            Some("x")
        );
        assert!(
            m.get("a").is_none(),
            "a removed key has no earlier value left"
        );
        // Nested objects too, and with many keys (sorted lookup) as with few.
        let many: String = (0..200).map(|i| format!("\"k{i}\": {i}, ")).collect();
        let body = format!(r#"{{{many}"o": {{"a": 1, "a": {{"b": "x"}}}}, "k7": "last"}}"#);
        let map = parse_object(body.as_bytes()).unwrap();
        assert_eq!(map.len(), 201);
        assert_eq!(map.get("k7").and_then(Value::as_str), Some("last"));
        assert_eq!(map.get("k199"), Some(&v("199")));
        assert!(map.get("k200").is_none());
        let inner = Value::Object(map.get("o").cloned().map_or_else(Map::new, |o| match o {
            Value::Object(m) => m,
            _ => Map::new(),
        }));
        assert_eq!(inner.pointer("/a/b").and_then(Value::as_str), Some("x"));
    }

    #[test]
    fn strings_borrow_unless_escaped_and_pointers_follow_rfc6901() {
        let body =
            br#"{"plain": "abc", "esc": "a\nb\u00e9", "k\u0065y": 1, "l": [{"a/b": 2, "m~n": 3}]}"#;
        let map = parse_object(body).unwrap();
        assert!(matches!(
            map.get("plain"),
            Some(Value::String(Cow::Borrowed("abc")))
        ));
        assert_eq!(map.get("esc").and_then(Value::as_str), Some("a\nb\u{e9}"));
        assert!(map.contains_key("key"));
        let root = Value::Object(map);
        assert_eq!(root.pointer("/l/0/a~1b"), Some(&v("2")));
        assert_eq!(root.pointer("/l/0/m~0n"), Some(&v("3")));
        assert_eq!(root.pointer("/l/00/m~0n"), None);
        assert_eq!(root.pointer("/l/1"), None);
        assert_eq!(root.pointer("l"), None);
        assert_eq!(root.pointer(""), Some(&root));
        let mut m = Map::new();
        m.insert("b", v("1"));
        m.insert("a".to_string(), v("2"));
        m.insert("b", v("3"));
        assert_eq!((m.len(), m.get("b")), (2, Some(&v("3"))));
        assert_eq!(m.remove("a"), Some(v("2")));
        m.retain(|k, _| k != "b");
        assert_eq!(m.len(), 0);
        // Growing past SMALL_MAP by inserts (form fields) keeps every key findable.
        for i in (0..200).rev() {
            m.insert(format!("f{i}"), v("1"));
            m.insert(format!("f{i}"), Value::String(format!("{i}").into()));
        }
        assert_eq!(m.len(), 200);
        assert!(
            (0..200)
                .all(|i| m.get(&format!("f{i}")).and_then(Value::as_str) == Some(&*format!("{i}")))
        );
        assert_eq!(
            m.remove("f7")
                .and_then(|v| v.as_str().map(str::to_string))
                .as_deref(),
            Some("7")
        );
        assert!(!m.contains_key("f7") && m.contains_key("f8"));
    }

    #[test]
    fn garbage_and_deep_nesting_are_malformed_without_quoting_the_body() {
        for body in [
            &b"{\"prompt\": \"secret words\""[..],
            b"not json at all: secret words",
            b"",
            b"   \n",
            b"\xff\xfe{}",
            b"{\"a\": NaN}",
        ] {
            match parse_object(body) {
                Err(InferenceError::Malformed(msg)) => assert!(!msg.contains("secret"), "{msg}"),
                other => panic!("{other:?}"),
            }
        }
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(
            matches!(parse_value(deep.as_bytes()), Err(InferenceError::Malformed(m)) if m.contains("nested"))
        );
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(matches!(
            parse_object(deep_obj.as_bytes()),
            Err(InferenceError::Malformed(_))
        ));
        assert!(
            matches!(parse_object(b"[1, 2]"), Err(InferenceError::Malformed(m)) if m.contains("object"))
        );
        // A UTF-8 byte order mark is skipped, as Python's json.loads does.
        assert_eq!(
            parse_object(b"\xEF\xBB\xBF{\"a\": 1}").unwrap().get("a"),
            Some(&v("1"))
        );
    }

    #[test]
    fn lax_coercions() {
        assert_eq!(lax_int(&v("12")), Some(12));
        assert_eq!(lax_int(&v(r#""12""#)), Some(12));
        assert_eq!(lax_int(&v(r#"" 12 ""#)), Some(12));
        assert_eq!(lax_int(&v(r#""-3""#)), Some(-3));
        assert_eq!(lax_int(&v("4.0")), Some(4));
        assert_eq!(lax_int(&v(r#""4.00""#)), Some(4));
        assert_eq!(lax_int(&v("true")), Some(1));
        assert_eq!(lax_int(&v("4.5")), None);
        assert_eq!(lax_int(&v(r#""4.5""#)), None);
        assert_eq!(lax_int(&v(r#""4.""#)), None);
        assert_eq!(lax_int(&v(r#""twelve""#)), None);
        assert_eq!(lax_int(&v(r#""""#)), None);
        assert_eq!(lax_int(&v("null")), None);
        assert_eq!(lax_int(&v("[1]")), None);
        assert_eq!(lax_int(&v("1e300")), None);

        assert_eq!(lax_float(&v(r#""0.7""#)), Some(0.7));
        assert_eq!(lax_float(&v("2")), Some(2.0));
        assert_eq!(lax_float(&v(r#""1_0""#)), None);
        assert_eq!(lax_float(&v(r#""x""#)), None);

        assert_eq!(lax_bool(&v(r#""true""#)), Some(true));
        assert_eq!(lax_bool(&v(r#""FALSE""#)), Some(false));
        assert_eq!(lax_bool(&v(r#""yes""#)), Some(true));
        assert_eq!(lax_bool(&v(r#""off""#)), Some(false));
        assert_eq!(lax_bool(&v("1")), Some(true));
        assert_eq!(lax_bool(&v("0")), Some(false));
        assert_eq!(lax_bool(&v("2")), None);
        assert_eq!(lax_bool(&v(r#""maybe""#)), None);
        assert_eq!(lax_bool(&v("null")), None);
    }

    #[test]
    fn field_accessors_name_the_field_and_never_the_value() {
        let map = parse_object(br#"{"n": "40", "s": 5, "c": "quality", "o": {"w": 4.5}}"#).unwrap();
        let root = Obj::root(&map);
        let err = root.int("n", 1..=32).unwrap_err();
        assert!(
            matches!(&err, InferenceError::Invalid { field, reason } if field == "n" && reason.contains("1 to 32"))
        );
        assert!(matches!(
            root.string("s"),
            Err(InferenceError::Invalid { .. })
        ));
        let err = root.choice("c", &["Speed", "Quality"]).unwrap_err();
        assert!(!err.to_string().contains("quality"));
        let inner = root.object("o").unwrap().unwrap();
        let o = Obj::nested(inner, "advanced_params");
        assert!(
            matches!(o.int("w", -1..=2048), Err(InferenceError::Invalid { field, .. }) if field == "advanced_params.w")
        );
        assert_eq!(root.int("missing", 1..=2).unwrap(), None);
        assert_eq!(root.nullable_string("missing").unwrap(), None);
    }
}
