//! The API-key parser, credential finding (x-api-key, Authorization, the session cookie) and the
//! cookie filter that strips inferguard's cookies before the upstream, on arbitrary text.
#![no_main]

use inferguard::domain::Request;
use inferguard::identity::{api_key, cookie_header_without_session, find_credential};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = api_key::parse(text) {
        assert!(api_key::looks_like_key(text) || text.trim() != text || !text.is_empty());
        let _ = key;
    }
    let _ = api_key::secret_matches(text, "00");
    if let Some(rest) = cookie_header_without_session(text) {
        // No cookie *named* like one of inferguard's is left (a name that merely contains the
        // prefix after other bytes is another cookie).
        for c in rest.split(';') {
            let name = c.split('=').next().unwrap_or("").trim();
            assert!(
                !name.starts_with("__Host-inferguard-"),
                "an inferguard cookie reaches the upstream: {rest:?}"
            );
        }
    }
    // The same text in every credential-bearing header.
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = text.split_at(mid);
    let mut req = Request::default();
    for (name, value) in [("x-api-key", a), ("authorization", b), ("cookie", text)] {
        req.headers.insert(name.into(), value.into());
    }
    let headers = vec!["x-api-key".to_string()];
    let _ = find_credential(&req, &headers);
});
