//! Where browsers are sent: the public origin of a request, and the `rd` targets that are not
//! open redirects.

use std::collections::HashMap;

use openidconnect::url::Url;

use super::config::origin_of;

/// The public origin (`scheme://host[:port]`) a browser used, from Envoy's
/// `x-forwarded-proto` (first value; `https` when absent) and the `Host` (`:authority`)
/// header. `None` when the host is missing or not a plain host name or address.
pub fn public_origin(headers: &HashMap<String, String>) -> Option<String> {
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "https".into());
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = headers
        .get(":authority")
        .or_else(|| headers.get("host"))?
        .trim();
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return None;
    }
    // Normalise through the URL parser (lower-case host, default port dropped).
    let url = Url::parse(&format!("{scheme}://{host}/")).ok()?;
    url.host_str()?;
    Some(origin_of(&url))
}

/// The target of `rd` when it is safe to send the browser there after login: a path on this
/// site (one leading `/`, not `//` or `/\`), or an absolute http(s) URL whose origin is listed
/// in `allowed_origins`. Empty means `/`. Anything with whitespace, control characters or
/// backslashes is refused (browsers drop or reinterpret them, turning `/\t/evil` into
/// `//evil`).
pub fn safe_return_to(rd: &str, allowed_origins: &[String]) -> Option<String> {
    if rd.is_empty() {
        return Some("/".into());
    }
    if rd.len() > 4096
        || rd
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    if let Some(rest) = rd.strip_prefix('/') {
        return (!rest.starts_with('/')).then(|| rd.to_string());
    }
    let url = Url::parse(rd).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && allowed_origins.iter().any(|o| *o == origin_of(&url));
    ok.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn origin_from_forwarded_proto_and_host() {
        assert_eq!(
            public_origin(&headers(&[
                ("x-forwarded-proto", "http"),
                ("host", "127.0.0.1:10000")
            ]))
            .as_deref(),
            Some("http://127.0.0.1:10000")
        );
        assert_eq!(
            public_origin(&headers(&[("host", "Gen.Example.com:443")])).as_deref(),
            Some("https://gen.example.com")
        );
        assert_eq!(
            public_origin(&headers(&[
                ("x-forwarded-proto", "https, http"),
                ("host", "[::1]:8443")
            ]))
            .as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(
            public_origin(&headers(&[
                ("x-forwarded-proto", "javascript"),
                ("host", "a")
            ])),
            None
        );
        assert_eq!(public_origin(&headers(&[("host", "evil.com/x?")])), None);
        assert_eq!(public_origin(&headers(&[("host", "a@b")])), None);
        assert_eq!(public_origin(&headers(&[])), None);
    }

    #[test]
    fn only_local_paths_and_listed_origins() {
        let allowed = vec!["https://portal.example.com".to_string()];
        for ok in ["/", "/ui/page?x=1&y=%2F", "/a/b#frag"] {
            assert_eq!(safe_return_to(ok, &allowed).as_deref(), Some(ok), "{ok}");
        }
        assert_eq!(safe_return_to("", &allowed).as_deref(), Some("/"));
        assert_eq!(
            safe_return_to("https://portal.example.com/app?x=1", &allowed).as_deref(),
            Some("https://portal.example.com/app?x=1")
        );
        for bad in [
            "//evil.com/x",
            "/\\evil.com",
            "/\t/evil.com",
            "/ /x",
            "https://evil.com/",
            "https://portal.example.com.evil.com/",
            "http://portal.example.com/",
            "https://user@portal.example.com/",
            "javascript:alert(1)",
            "evil.com",
            "\\\\evil.com",
        ] {
            assert_eq!(safe_return_to(bad, &allowed), None, "{bad:?}");
        }
    }
}
