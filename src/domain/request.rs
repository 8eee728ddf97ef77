use std::collections::HashMap;

/// One HTTP request as Envoy described it to inferguard.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The request id (Envoy's `x-request-id`, or one inferguard made up).
    pub id: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string without the leading `?` (empty when absent).
    pub query: String,
    /// Header names lower-cased; a repeated header is joined with `,` as Envoy does.
    pub headers: HashMap<String, String>,
    /// The body bytes Envoy sent (possibly a truncated prefix of the real body).
    pub body: Vec<u8>,
    /// True when Envoy did not send the whole body.
    pub body_truncated: bool,
    /// The downstream peer address, when known.
    pub peer: Option<String>,
}

impl Request {
    /// A header value by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}
