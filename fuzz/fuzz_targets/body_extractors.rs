//! Every body extractor (Fooocus JSON and forms, OpenAI, TGI) on arbitrary bytes: the first
//! byte picks the route and the Content-Type, the rest is the body. Must never panic; a
//! refusal must never quote the body.
#![no_main]

use std::sync::OnceLock;

use inferguard::domain::Request;
use inferguard::inference::{ApiSet, RouteTable, understand};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "multipart/form-data; boundary=XyZ",
    "application/x-www-form-urlencoded",
    "",
];

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE
        .get_or_init(|| RouteTable::new(&[ApiSet::FooocusApi, ApiSet::OpenAi, ApiSet::Tgi], vec![]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let routes: Vec<_> = table()
        .routes()
        .iter()
        .filter(|r| r.body.is_some())
        .collect();
    let route = routes[usize::from(pick) % routes.len()];
    let path = route.path.to_string().replace('*', "x");
    let mut req = Request {
        id: "fuzz".into(),
        method: route.method.as_deref().unwrap_or("POST").to_string(),
        path,
        body: body.to_vec(),
        ..Request::default()
    };
    let ct = CONTENT_TYPES[usize::from(pick >> 6) % CONTENT_TYPES.len()];
    if !ct.is_empty() {
        req.headers.insert("content-type".into(), ct.into());
    }
    if let Err(e) = understand(route, &req) {
        // Messages name fields, never values: a long run of body bytes must not show up.
        let msg = e.to_string();
        if let Ok(text) = std::str::from_utf8(body) {
            for word in text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() >= 24)
            {
                assert!(!msg.contains(word), "error quotes the body: {msg}");
            }
        }
    }
});
