//! JSON bodies read as the upstreams read them: duplicate keys keep the last value (Python's
//! `json.loads`, and `serde_json::Value`), unknown keys are ignored, and scalar fields accept
//! pydantic v2's lax coercions (`"12"` → 12, `4.0` → 4, `"true"` → true, `"0.7"` → 0.7).
//!
//! Where the exact lax rule is uncertain, a value is refused rather than guessed: refusing a
//! request the upstream would have taken costs the caller a retry, while reading a different
//! value than the upstream would let the wrong request through.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use super::InferenceError;

/// Parses a body that must be one JSON value. Garbage, nesting deeper than serde_json's
/// recursion limit (128) and empty bodies are `Malformed`; the message never quotes the body.
pub(crate) fn parse_value(body: &[u8]) -> Result<Value, InferenceError> {
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
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, InferenceError> {
    match parse_value(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(InferenceError::Malformed(
            "the JSON body must be an object".into(),
        )),
    }
}

/// pydantic's lax `int`: integers, floats without a fraction, booleans, and strings holding
/// an integer (surrounding whitespace and `.0` decimals allowed).
pub(crate) fn lax_int(v: &Value) -> Option<i64> {
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
pub(crate) fn lax_float(v: &Value) -> Option<f64> {
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
pub(crate) fn lax_bool(v: &Value) -> Option<bool> {
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
    map: &'a Map<String, Value>,
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
    pub(crate) fn root(map: &'a Map<String, Value>) -> Obj<'a> {
        Obj {
            map,
            path: String::new(),
        }
    }

    /// A nested object at `path` (e.g. `loras[1]`).
    pub(crate) fn nested(map: &'a Map<String, Value>, path: impl Into<String>) -> Obj<'a> {
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
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
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
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(self.field(key), "must be a string")),
        }
    }

    /// A `str | None` field: `null` is the same as absent.
    pub(crate) fn nullable_string(&self, key: &str) -> Result<Option<&'a str>, InferenceError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
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
        v: &Value,
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
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(invalid(self.field(key), "must be a list")),
        }
    }

    /// An object field (`null` refused).
    pub(crate) fn object(
        &self,
        key: &str,
    ) -> Result<Option<&'a Map<String, Value>>, InferenceError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(invalid(self.field(key), "must be an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let map = parse_object(
            br#"{"image_number": 1, "image_number": 4, "prompt": "a", "prompt": "b"}"#,
        )
        .unwrap();
        assert_eq!(map["image_number"], json!(4));
        assert_eq!(map["prompt"], json!("b"));
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
            parse_object(b"\xEF\xBB\xBF{\"a\": 1}").unwrap()["a"],
            json!(1)
        );
    }

    #[test]
    fn lax_coercions() {
        assert_eq!(lax_int(&json!(12)), Some(12));
        assert_eq!(lax_int(&json!("12")), Some(12));
        assert_eq!(lax_int(&json!(" 12 ")), Some(12));
        assert_eq!(lax_int(&json!("-3")), Some(-3));
        assert_eq!(lax_int(&json!(4.0)), Some(4));
        assert_eq!(lax_int(&json!("4.00")), Some(4));
        assert_eq!(lax_int(&json!(true)), Some(1));
        assert_eq!(lax_int(&json!(4.5)), None);
        assert_eq!(lax_int(&json!("4.5")), None);
        assert_eq!(lax_int(&json!("4.")), None);
        assert_eq!(lax_int(&json!("twelve")), None);
        assert_eq!(lax_int(&json!("")), None);
        assert_eq!(lax_int(&json!(null)), None);
        assert_eq!(lax_int(&json!([1])), None);
        assert_eq!(lax_int(&json!(1e300)), None);

        assert_eq!(lax_float(&json!("0.7")), Some(0.7));
        assert_eq!(lax_float(&json!(2)), Some(2.0));
        assert_eq!(lax_float(&json!("1_0")), None);
        assert_eq!(lax_float(&json!("x")), None);

        assert_eq!(lax_bool(&json!("true")), Some(true));
        assert_eq!(lax_bool(&json!("FALSE")), Some(false));
        assert_eq!(lax_bool(&json!("yes")), Some(true));
        assert_eq!(lax_bool(&json!("off")), Some(false));
        assert_eq!(lax_bool(&json!(1)), Some(true));
        assert_eq!(lax_bool(&json!(0)), Some(false));
        assert_eq!(lax_bool(&json!(2)), None);
        assert_eq!(lax_bool(&json!("maybe")), None);
        assert_eq!(lax_bool(&json!(null)), None);
    }

    #[test]
    fn field_accessors_name_the_field_and_never_the_value() {
        let map = json!({"n": "40", "s": 5, "c": "quality", "o": {"w": 4.5}})
            .as_object()
            .cloned()
            .unwrap();
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
