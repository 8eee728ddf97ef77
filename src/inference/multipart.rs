//! A strict `multipart/form-data` reader for Fooocus-API's v1 form routes.
//!
//! Strict on purpose: whatever two multipart parsers might read differently (escaped or
//! RFC 2231 parameter names, folded headers, `Content-Transfer-Encoding: base64` parts,
//! which python-multipart decodes, a missing closing boundary, non-UTF-8 text fields) is
//! refused as malformed, so the fields judged here are the fields Starlette hands the upstream.

use memchr::memmem;

use super::InferenceError;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// A text field (no `filename`).
    Text(String),
    /// An uploaded file (`filename` present), with its size in bytes.
    File { len: usize },
}

/// Starlette's default limits on form fields and files (`max_fields`, `max_files`).
const MAX_PARTS: usize = 1000;

/// Parses `body` with `boundary` into `(name, part)` pairs in body order.
pub(crate) fn parse(body: &[u8], boundary: &str) -> Result<Vec<(String, Part)>, InferenceError> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let next_delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let finder = memmem::Finder::new(&next_delimiter);

    // python-multipart skips only line breaks before the first boundary.
    let start = body
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(body.len());
    let mut rest = body[start..]
        .strip_prefix(delimiter.as_slice())
        .ok_or_else(|| malformed("the multipart body does not start with its boundary"))?;

    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("a multipart boundary is not followed by a line break"))?;
        let header_end = memmem::find(rest, b"\r\n\r\n")
            .ok_or_else(|| malformed("a multipart part has no end to its headers"))?;
        let (name, is_file) = part_headers(&rest[..header_end])?;
        let content = &rest[header_end + 4..];
        let data_end = finder
            .find(content)
            .ok_or_else(|| malformed("the multipart body has no closing boundary"))?;
        let data = &content[..data_end];
        let part = if is_file {
            Part::File { len: data.len() }
        } else {
            let text = std::str::from_utf8(data)
                .map_err(|_| malformed("a multipart text field is not valid UTF-8"))?;
            Part::Text(text.to_string())
        };
        parts.push((name, part));
        if parts.len() > MAX_PARTS {
            return Err(malformed("the multipart body has too many parts"));
        }
        rest = &content[data_end + next_delimiter.len()..];
    }
}

/// Reads one part's headers: its field name and whether it is a file.
fn part_headers(block: &[u8]) -> Result<(String, bool), InferenceError> {
    let block = std::str::from_utf8(block)
        .map_err(|_| malformed("a multipart part header is not valid UTF-8"))?;
    let mut disposition = None;
    for line in block.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            return Err(malformed(
                "a multipart part header is folded over two lines",
            ));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a multipart part header has no `:`"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-disposition" if disposition.is_some() => {
                return Err(malformed(
                    "a multipart part has two Content-Disposition headers",
                ));
            }
            "content-disposition" => disposition = Some(value),
            "content-transfer-encoding"
                if !["7bit", "8bit", "binary"]
                    .iter()
                    .any(|e| value.eq_ignore_ascii_case(e)) =>
            {
                return Err(malformed(
                    "a multipart part uses a Content-Transfer-Encoding",
                ));
            }
            _ => {}
        }
    }
    let disposition =
        disposition.ok_or_else(|| malformed("a multipart part has no Content-Disposition"))?;
    content_disposition(disposition)
}

/// Parses `form-data; name="…"; filename="…"`, refusing anything ambiguous.
fn content_disposition(value: &str) -> Result<(String, bool), InferenceError> {
    let (kind, mut params) = value.split_once(';').unwrap_or((value, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(malformed("a multipart part is not form-data"));
    }
    let mut name = None;
    let mut filename = false;
    loop {
        params = params.trim_start_matches([' ', '\t', ';']);
        if params.is_empty() {
            break;
        }
        let (key, after) = params
            .split_once('=')
            .ok_or_else(|| malformed("a multipart Content-Disposition parameter has no value"))?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let close = quoted
                    .find('"')
                    .ok_or_else(|| malformed("a multipart parameter has an unclosed quote"))?;
                let value = &quoted[..close];
                if value.contains('\\') {
                    return Err(malformed("a multipart parameter uses backslash escapes"));
                }
                (value, &quoted[close + 1..])
            }
            None => after.split_at(after.find(';').unwrap_or(after.len())),
        };
        let value = value.trim_end_matches([' ', '\t']);
        if !remaining.trim_start().is_empty() && !remaining.trim_start().starts_with(';') {
            return Err(malformed(
                "a multipart parameter has text after its quoted value",
            ));
        }
        params = remaining;
        match key.as_str() {
            "name" if name.is_some() => {
                return Err(malformed("a multipart part names its field twice"));
            }
            "name" => name = Some(value),
            "filename" if filename => {
                return Err(malformed("a multipart part names its file twice"));
            }
            "filename" => filename = true,
            k if k.ends_with('*') => {
                return Err(malformed(
                    "a multipart part uses an encoded (RFC 2231) parameter",
                ));
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| malformed("a multipart part has no field name"))?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.[]".contains(c);
    if name.is_empty() || !name.chars().all(plain) {
        return Err(malformed(
            "a multipart field name has unexpected characters",
        ));
    }
    Ok((name.to_string(), filename))
}

fn malformed(msg: &str) -> InferenceError {
    InferenceError::Malformed(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    #[test]
    fn reads_text_fields_and_files_in_order() {
        let png = [0x89u8, b'P', b'N', b'G', 0, 0xff, b'\r', b'\n', b'-', b'-'];
        let body = form(&[
            ("prompt", None, "a cat,\r\nsecond line".as_bytes()),
            ("input_image", Some("cat.png"), &png),
            ("uov_method", None, b"Upscale (2x)"),
            ("prompt", None, b""),
        ]);
        let parts = parse(&body, "XyZ").unwrap();
        assert_eq!(
            parts,
            vec![
                ("prompt".into(), Part::Text("a cat,\r\nsecond line".into())),
                ("input_image".into(), Part::File { len: png.len() }),
                ("uov_method".into(), Part::Text("Upscale (2x)".into())),
                ("prompt".into(), Part::Text(String::new())),
            ]
        );
    }

    #[test]
    fn accepts_unquoted_names_and_leading_line_breaks() {
        let body =
            b"\r\n--b\r\ncontent-disposition: form-data; name=image_number\r\n\r\n3\r\n--b--";
        assert_eq!(
            parse(body, "b").unwrap(),
            vec![("image_number".into(), Part::Text("3".into()))]
        );
        let empty = b"--b--\r\n";
        assert_eq!(parse(empty, "b").unwrap(), vec![]);
    }

    #[test]
    fn refuses_what_parsers_could_read_differently() {
        let cases: &[&[u8]] = &[
            // preamble
            b"junk\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",
            // no closing boundary
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n",
            // no end of headers
            b"--b\r\nContent-Disposition: form-data; name=\"a\"",
            // base64 transfer encoding
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUXVhbGl0eQ==\r\n--b--",
            // escaped name
            b"--b\r\nContent-Disposition: form-data; name=\"perf\\ormance\"\r\n\r\n1\r\n--b--",
            // RFC 2231 name
            b"--b\r\nContent-Disposition: form-data; name*=utf-8''a\r\n\r\n1\r\n--b--",
            // two names
            b"--b\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\n1\r\n--b--",
            // folded header
            b"--b\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--b--",
            // no name
            b"--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--",
            // not form-data
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--b--",
            // odd characters in a name
            b"--b\r\nContent-Disposition: form-data; name=\"a b\"\r\n\r\n1\r\n--b--",
            // no disposition at all
            b"--b\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--",
            // non-UTF-8 text field
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--",
            // text after a quoted value
            b"--b\r\nContent-Disposition: form-data; name=\"a\"x\r\n\r\n1\r\n--b--",
            // boundary not followed by CRLF
            b"--b  \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",
            // empty body
            b"",
        ];
        for body in cases {
            assert!(
                matches!(parse(body, "b"), Err(InferenceError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn too_many_parts_are_refused() {
        let mut body = Vec::new();
        for _ in 0..=MAX_PARTS {
            body.extend_from_slice(
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n",
            );
        }
        body.extend_from_slice(b"--b--");
        assert!(matches!(
            parse(&body, "b"),
            Err(InferenceError::Malformed(_))
        ));
    }
}
