//! Evaluates the two CEL rules of `benches/stages.rs` (`policy/cel_rules_2`) N times on the
//! same ~2 KB Fooocus text-to-image request (its fixtures, `benches/common`), for an instruction count that does not move with
//! the machine's load:
//!
//! ```sh
//! cargo build --release --example cel_rules
//! for n in 0 10000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cel.$n target/release/examples/cel_rules $n
//! done
//! # instructions per evaluation = (Ir of 10000 - Ir of 0) / 10000
//! ```

use std::hint::black_box;
use std::path::Path;

use inferguard::config::compile_policy;
use inferguard::domain::{Action, AuthMethod};
use inferguard::inference::{ApiSet, RouteTable, understand};
use inferguard::policy::{RuleInput, RuleOutcome};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{POLICY, fooocus_body, principal, request};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of evaluations"))
        .unwrap_or(10_000);
    let policy = compile_policy(Path::new("policy.yaml"), POLICY).expect("policy");
    let table = RouteTable::new(&[ApiSet::FooocusApi], vec![]);
    let req = request("/v1/generation/text-to-image", fooocus_body());
    let route = table.find("POST", &req.path).expect("route");
    let action: Action = understand(route, &req).expect("action");
    let who = principal(AuthMethod::ApiKey);
    let now = chrono::Utc::now();
    for _ in 0..n {
        let outcome = policy.rules.evaluate(&RuleInput {
            principal: &who,
            action: black_box(&action),
            method: "POST",
            path: &req.path,
            permission: route.permission,
            pii: &[],
            now,
        });
        assert_eq!(outcome, RuleOutcome::NoMatch);
    }
    println!("{n} evaluations");
}
