//! HTTP details read the way the upstream servers read them: percent-decoded paths (uvicorn),
//! query strings (Starlette's `parse_qsl`), media types (FastAPI's `email.message` check)
//! and `application/x-www-form-urlencoded` bodies.

use crate::domain::Request;

use super::InferenceError;

/// Percent-decodes `%XX` sequences (invalid sequences stay as they are; invalid UTF-8 becomes
/// U+FFFD), as Python's `urllib.parse.unquote` does. With `plus_is_space`, `+` is a space
/// first (`unquote_plus`).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path as uvicorn hands it to Starlette's router: percent-decoded.
pub(crate) fn decode_path(path: &str) -> String {
    percent_decode(path, false)
}

/// Every `(name, value)` pair of a query string, decoded as Starlette does
/// (`parse_qsl(keep_blank_values=True)`: split on `&`, `+` is a space, `%XX` decoded).
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// The value FastAPI binds to a scalar query parameter: the last occurrence.
pub(crate) fn query_last(req: &Request, name: &str) -> Option<String> {
    query_pairs(&req.query)
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Every value given for a query parameter.
pub(crate) fn query_all(req: &Request, name: &str) -> Vec<String> {
    query_pairs(&req.query)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

/// How a body is encoded, judged from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaType {
    /// No `Content-Type` (or an empty one).
    Missing,
    /// `application/json` or `application/*+json`.
    Json,
    /// `multipart/form-data` with its boundary parameter, when one was given.
    Multipart(Option<String>),
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// Anything else.
    Other,
}

/// Classifies the request's `Content-Type` the way FastAPI decides whether to parse JSON
/// (`email.message.Message().get_content_type()`: the part before `;`, lower-cased, must have
/// exactly one `/`) and Starlette decides how to parse a form.
pub(crate) fn media_type(req: &Request) -> Result<MediaType, InferenceError> {
    let Some(value) = req.header("content-type") else {
        return Ok(MediaType::Missing);
    };
    if value.trim().is_empty() {
        return Ok(MediaType::Missing);
    }
    let (essence, params) = value.split_once(';').unwrap_or((value, ""));
    let essence = essence.trim().to_ascii_lowercase();
    if essence.matches('/').count() != 1 {
        return Ok(MediaType::Other);
    }
    let (main, sub) = essence.split_once('/').unwrap_or(("", ""));
    if main == "application" && (sub == "json" || sub.ends_with("+json")) {
        return Ok(MediaType::Json);
    }
    if essence == "application/x-www-form-urlencoded" {
        return Ok(MediaType::UrlEncoded);
    }
    if essence == "multipart/form-data" {
        return Ok(MediaType::Multipart(boundary(params)?));
    }
    Ok(MediaType::Other)
}

/// The `boundary` parameter; refused when it is given twice, escaped or not a legal boundary
/// (RFC 2046), so that no two parsers can disagree about it.
fn boundary(params: &str) -> Result<Option<String>, InferenceError> {
    let mut found = None;
    for param in params.split(';') {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        if found.is_some() {
            return Err(malformed(
                "the multipart Content-Type names its boundary twice",
            ));
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .ok_or_else(|| malformed("the multipart boundary has an unclosed quote"))?,
            None => value,
        };
        let legal = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
        if value.is_empty() || value.len() > 70 || !value.chars().all(legal) || value.ends_with(' ')
        {
            return Err(malformed("the multipart boundary is not a valid boundary"));
        }
        found = Some(value.to_string());
    }
    Ok(found)
}

/// Parses an `application/x-www-form-urlencoded` body into `(name, value)` pairs. `;` and
/// fields without `=` are refused: parsers disagree about them.
pub(crate) fn urlencoded_pairs(body: &[u8]) -> Result<Vec<(String, String)>, InferenceError> {
    let text =
        std::str::from_utf8(body).map_err(|_| malformed("the form body is not valid UTF-8"))?;
    if text.contains(';') {
        return Err(malformed(
            "the form body contains `;`, which form parsers read differently",
        ));
    }
    let mut pairs = Vec::new();
    for field in text.split('&').filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| malformed("a form field has no `=`"))?;
        let (k, v) = (percent_decode(k, true), percent_decode(v, true));
        if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
            return Err(malformed("a form field is not valid UTF-8 once decoded"));
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn malformed(msg: &str) -> InferenceError {
    InferenceError::Malformed(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, content_type: Option<&str>) -> Request {
        let mut r = Request {
            query: query.into(),
            ..Request::default()
        };
        if let Some(ct) = content_type {
            r.headers.insert("content-type".into(), ct.into());
        }
        r
    }

    #[test]
    fn percent_decoding_matches_unquote() {
        assert_eq!(percent_decode("/a%2Db%2fc", false), "/a-b/c");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("a+b%2B", true), "a b+");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%C3%A9", false), "é");
        assert_eq!(percent_decode("%FF", false), "\u{FFFD}");
    }

    #[test]
    fn query_values_are_decoded_and_the_last_one_wins() {
        let r = req("accept=text%2Fhtml&x&accept=image%2Fpng&delete=", None);
        assert_eq!(query_last(&r, "accept").as_deref(), Some("image/png"));
        assert_eq!(query_all(&r, "accept"), vec!["text/html", "image/png"]);
        assert_eq!(query_last(&r, "x").as_deref(), Some(""));
        assert_eq!(query_last(&r, "delete").as_deref(), Some(""));
        assert_eq!(query_last(&r, "missing"), None);
        let r = req("acc%65pt=image/png", None);
        assert_eq!(query_last(&r, "accept").as_deref(), Some("image/png"));
    }

    #[test]
    fn media_types_follow_fastapi() {
        let mt = |ct: Option<&str>| media_type(&req("", ct)).unwrap();
        assert_eq!(mt(None), MediaType::Missing);
        assert_eq!(mt(Some("")), MediaType::Missing);
        assert_eq!(mt(Some("application/json")), MediaType::Json);
        assert_eq!(mt(Some("Application/JSON; charset=utf-8")), MediaType::Json);
        assert_eq!(mt(Some("application/vnd.api+json")), MediaType::Json);
        assert_eq!(mt(Some("text/plain")), MediaType::Other);
        assert_eq!(mt(Some("application/json/x")), MediaType::Other);
        assert_eq!(mt(Some("json")), MediaType::Other);
        assert_eq!(
            mt(Some("application/x-www-form-urlencoded")),
            MediaType::UrlEncoded
        );
        assert_eq!(
            mt(Some("multipart/form-data; boundary=----abc123")),
            MediaType::Multipart(Some("----abc123".into()))
        );
        assert_eq!(
            mt(Some("multipart/form-data; charset=utf-8; BOUNDARY=\"a b\"")),
            MediaType::Multipart(Some("a b".into()))
        );
        assert_eq!(mt(Some("multipart/form-data")), MediaType::Multipart(None));
        for bad in [
            "multipart/form-data; boundary=a; boundary=b",
            "multipart/form-data; boundary=\"a\\\"b\"",
            "multipart/form-data; boundary=\"abc",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a{b",
        ] {
            assert!(
                matches!(
                    media_type(&req("", Some(bad))),
                    Err(InferenceError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn urlencoded_forms() {
        let pairs = urlencoded_pairs(b"prompt=a+cat%21&image_number=2&&x=").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("prompt".into(), "a cat!".into()),
                ("image_number".into(), "2".into()),
                ("x".into(), String::new())
            ]
        );
        assert!(urlencoded_pairs(b"a=1;b=2").is_err());
        assert!(urlencoded_pairs(b"a").is_err());
        assert!(urlencoded_pairs(b"a=%FF").is_err());
        assert!(urlencoded_pairs(&[0xff, b'=', b'1']).is_err());
    }
}
