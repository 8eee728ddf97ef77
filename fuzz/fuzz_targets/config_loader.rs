//! The config loader: inferguard.yaml (server settings) and policy.yaml (roles, routes, rules,
//! content filters, quotas) from arbitrary text. Must refuse with an error, never panic.
#![no_main]

use std::path::Path;

use inferguard::config::{ServerConfig, compile_policy, detect_kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = detect_kind(Path::new("/nonexistent/fuzz.yaml"), text);
    let _ = ServerConfig::parse(Path::new("/nonexistent/inferguard.yaml"), text);
    let _ = compile_policy(Path::new("/nonexistent/policy.yaml"), text);
});
