//! Bearer-token parsing before any signature check (segments, base64url, the header's JSON,
//! `alg`/`kid`/`iss`, sizes) through the real verifier with a static issuer.
#![no_main]

use std::sync::OnceLock;

use inferguard::identity::jwt::{JwtIssuerConfig, JwtVerifier};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: JwtVerifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let jwks = serde_json::from_str(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig",
                "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .expect("jwks");
        let mut verifier = JwtVerifier::new(vec![]).expect("verifier");
        verifier
            .add_static_issuer(
                JwtIssuerConfig::new("https://idp.example", vec!["inferguard".into()]),
                jwks,
            )
            .expect("issuer");
        Fixture { rt, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    // No key in the fixture signs anything the fuzzer can make: every token must be refused.
    let verdict = f.rt.block_on(f.verifier.verify(token, 1_900_000_000));
    assert!(verdict.is_err(), "a forged token was accepted");
});
