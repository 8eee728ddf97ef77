use std::collections::BTreeMap;

use proptest::prelude::*;

use super::pii::{PiiCategory, detect, iban_checksum, luhn};
use super::*;

fn policy(terms: &[&str], pii: &[(PiiCategory, PiiAction)]) -> ContentPolicy {
    ContentPolicy::compile(ContentSpec {
        forbidden_terms: terms.iter().map(|t| t.to_string()).collect(),
        pii: pii.iter().copied().collect::<BTreeMap<_, _>>(),
        dlp: None,
    })
    .unwrap()
}

fn all_deny() -> ContentPolicy {
    policy(&[], &PiiCategory::ALL.map(|c| (c, PiiAction::Deny)))
}

fn prompt(text: &str) -> Action {
    Action {
        prompt: Some(text.into()),
        prompts: vec![text.into()],
        ..Action::default()
    }
}

fn categories(text: &str) -> Vec<&'static str> {
    all_deny().scan(&prompt(text)).pii
}

fn terms(list: &[&str]) -> ForbiddenTerms {
    ForbiddenTerms::new(&list.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap()
}

/// Digits of a number with a valid Luhn check digit appended.
fn with_check_digit(body: &[u8]) -> Vec<u8> {
    (0..10u8)
        .map(|c| {
            let mut d = body.to_vec();
            d.push(c);
            d
        })
        .find(|d| luhn(d))
        .unwrap()
}

#[test]
fn forbidden_terms_survive_evasions() {
    let t = terms(&["bad", "evil corp"]);
    for text in [
        "a BAD dog",
        "a Bad, dog",
        "ｂａｄ dog",      // full-width (NFKC)
        "bàd dog",         // diacritics
        "b\u{0301}ad dog", // combining mark
        "b\u{200B}ad dog", // zero-width space
        "bаd dog",         // Cyrillic а
        "𝐛𝐚𝐝 dog",         // mathematical bold
        "b a d dog",       // spaced out
        "b.a.d dog",
        "b - a - d dog",
        "x b a d",            // inside a spaced run
        "EVIL   Corp's logo", // multi-word, any separators
        "evil-corp logo",
        "e v i l c o r p", // spaced multi-word term
    ] {
        assert!(t.matches(text), "{text:?}");
    }
}

#[test]
fn forbidden_terms_are_whole_words() {
    let t = terms(&["ass", "bad"]);
    for text in [
        "a classic class assignment",
        "badge of badness",
        "a bass guitar",
        "b\na\nd",     // not on one line
        "b    a    d", // too far apart
        "ba d",
    ] {
        assert!(!t.matches(text), "{text:?}");
    }
    assert!(t.matches("what an ass"));
    assert!(!terms(&[]).matches("anything"));
    assert!(
        terms(&["禁止"]).matches("这是禁止的"),
        "no-space scripts match as substrings"
    );
    assert!(ForbiddenTerms::new(&["  ...  ".to_string()]).is_err());
}

#[test]
fn forbidden_terms_skip_the_negative_prompt() {
    let p = policy(&["nudity"], &[]);
    let mut a = prompt("a portrait");
    a.negative_prompt = Some("nudity, blur".into());
    assert_eq!(p.scan(&a).denied, None);
    a.prompts.push("extra: NUDITY".into());
    let d = p.scan(&a).denied.unwrap();
    assert_eq!(d.error, "content_blocked");
    assert_eq!(d.kind, DenyKind::BadRequest);
    assert_eq!(d.reason, "the prompt contains a forbidden term");
    assert!(!d.reason.contains("nudity"));
}

#[test]
fn cards_are_found_with_separators_and_look_alikes() {
    for text in [
        "card 4111111111111111 please",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111.1111.1111.1111",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "４１１１ １１１１ １１１１ １１１１", // full-width digits
        "4111\u{200B}1111\u{200B}1111\u{200B}1111",
        "amex 3782 822463 10005",
        "mc 5555555555554444, cvv 123",
        "4111 1111 1111 1111 123", // card followed by a CVV group
        "41 11 11 11 11 11 11 11", // any grouping of the whole number
    ] {
        assert_eq!(categories(text), ["credit_card"], "{text:?}");
    }
}

#[test]
fn numbers_that_are_not_cards() {
    assert!(luhn(&[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 0]));
    for text in [
        "order 1234567812345670", // Luhn-valid, but no card starts with 1
        "order #9876543210987654",
        "on 2024-01-15 at 10:30",
        "12/25/2024",
        "4111 1111 1111 1112", // Luhn fails
        "resolution 1920x1080, seed 123456789012",
        "version 1.2.3.4.5.6.7.8.9.10.11.12.13",
    ] {
        assert!(
            !categories(text).contains(&"credit_card"),
            "{text:?}: {:?}",
            categories(text)
        );
    }
}

#[test]
fn ssns_phones_emails_and_ibans() {
    assert_eq!(categories("ssn 123-45-6789"), ["us_ssn"]);
    assert_eq!(categories("id 123 45 6789"), ["us_ssn"]);
    assert_eq!(categories("my SSN is 123456789"), ["us_ssn"]);
    assert_eq!(categories("1 2 3 4 5 6 7 8 9"), ["us_ssn"]);
    assert!(
        categories("order 123456789").is_empty(),
        "plain 9 digits need context"
    );
    assert!(categories("000-12-3456 666-12-3456 912-12-3456").is_empty());
    assert_eq!(
        all_deny().redact("ids 123-45-6789 234-56-7890, call 555-234-5678 555-234-5679"),
        "ids [REDACTED:us_ssn] [REDACTED:us_ssn], call [REDACTED:phone] [REDACTED:phone]"
    );

    for phone in [
        "+1 (555) 234-5678",
        "+44 20 7946 0958",
        "(555) 234-5678",
        "555.234.5678",
        "1-555-234-5678",
        "0044 20 7946 0958",
        "+33612345678",
    ] {
        assert_eq!(categories(phone), ["phone"], "{phone:?}");
    }
    assert!(categories("call 555-0123 or 5552345678").is_empty());

    for email in [
        "mail jane.doe+x@example.co.uk now",
        "JANE@EXAMPLE.COM",
        "jane [at] example [dot] com",
        "jane(at)example.com",
        "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    ] {
        assert_eq!(categories(email), ["email"], "{email:?}");
    }
    for not_email in ["@home", "a@b", "user@localhost", "see @ 5.pm", "x@1.2"] {
        assert!(categories(not_email).is_empty(), "{not_email:?}");
    }

    for iban in [
        "DE89370400440532013000",
        "pay to DE89 3704 0044 0532 0130 00 today",
        "GB82-WEST-1234-5698-7654-32",
        "fr1420041010050500013m02606",
        "NO9386011117947",
    ] {
        assert_eq!(categories(iban), ["iban"], "{iban:?}");
    }
    assert!(
        categories("DE89370400440532013001").is_empty(),
        "bad checksum"
    );
    assert!(
        categories("DE8937040044053201300").is_empty(),
        "wrong length for DE"
    );
    assert!(iban_checksum(
        &"GB82WEST12345698765432".chars().collect::<Vec<_>>()
    ));
}

#[test]
fn pii_actions_and_findings() {
    let p = policy(
        &[],
        &[
            (PiiCategory::Email, PiiAction::Redact),
            (PiiCategory::CreditCard, PiiAction::Deny),
        ],
    );
    let f = p.scan(&prompt("mail me at jane@example.com"));
    assert_eq!(f.pii, ["email"]);
    assert_eq!(
        f.denied, None,
        "redact-only categories let the request through"
    );

    let mut a = prompt("jane@example.com");
    a.negative_prompt = Some("4111 1111 1111 1111".into());
    let f = p.scan(&a);
    assert_eq!(f.pii, ["email", "credit_card"]);
    let d = f.denied.unwrap();
    assert_eq!(d.reason, "the prompt contains PII: credit_card");
    assert_eq!(d.rule.as_deref(), Some("content.pii.credit_card"));
    assert!(!d.reason.contains("4111"));

    // Categories that are not enabled are neither found nor redacted.
    let f = p.scan(&prompt("ssn 123-45-6789"));
    assert!(f.pii.is_empty());
    assert_eq!(p.redact("ssn 123-45-6789"), "ssn 123-45-6789");
}

#[test]
fn redaction_keeps_the_rest_of_the_text() {
    let p = all_deny();
    assert_eq!(
        p.redact("mail jane@example.com or call +1 (555) 234-5678, card ４１１１ １１１１ １１１１ １１１１!"),
        "mail [REDACTED:email] or call [REDACTED:phone], card [REDACTED:credit_card]!"
    );
    assert_eq!(
        p.redact("cards 4111 1111 1111 1111 5555 5555 5555 4444"),
        "cards [REDACTED:credit_card] [REDACTED:credit_card]"
    );
    assert_eq!(p.redact("nothing here"), "nothing here");
    assert_eq!(p.redact(""), "");
    assert_eq!(
        ContentPolicy::default().redact("jane@example.com"),
        "jane@example.com"
    );
}

#[test]
fn detectors_report_spans_in_the_view() {
    let view = normalize::View::new("x 4111111111111111 y");
    let hits = detect(&view);
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].start, hits[0].end), (2, 18));
}

fn separator() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![" ", "-", ".", "_", "\t", "\u{2013}"]),
        0..=3,
    )
    .prop_map(|v| v.concat())
}

fn card_number() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            (vec![4u8], 16usize),
            (vec![4], 13),
            (vec![5, 1], 16),
            (vec![3, 7], 15),
            (vec![6, 0, 1, 1], 16),
            (vec![3, 5, 3, 0], 18),
        ]),
        prop::collection::vec(0u8..10, 19),
    )
        .prop_map(|((prefix, len), fill)| {
            let mut body = prefix.clone();
            body.extend_from_slice(&fill[..len - 1 - prefix.len()]);
            with_check_digit(&body)
        })
}

/// Digits of the card with a separator (possibly none) after each digit.
fn spaced(card: &[u8], seps: &[String]) -> String {
    card.iter()
        .enumerate()
        .map(|(i, d)| {
            let sep = if i + 1 < card.len() {
                seps[i % seps.len()].as_str()
            } else {
                ""
            };
            format!("{d}{sep}")
        })
        .collect()
}

/// True for a character that would join a digit run: a digit or a separator (after NFKC).
fn glued(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        let v = normalize::View::new(&c.to_string());
        v.chars.iter().any(|c| {
            c.is_ascii_digit()
                || " \t-._()\u{2010}\u{2011}\u{2012}\u{2013}\u{2014}\u{2015}\u{2212}".contains(*c)
        }) || v.chars.is_empty()
    })
}

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn detectors_never_panic(text in "\\PC{0,200}") {
        let p = all_deny();
        let _ = p.scan(&prompt(&text));
        let _ = p.redact(&text);
        let _ = terms(&["bad", "evil corp", "禁止"]).matches(&text);
        let _ = crate::policy::templates::is_plain_words(&text, 6);
    }

    #[test]
    fn detectors_never_panic_on_digit_soup(text in "[0-9 .\\-+()@a-zA-Z\\[\\]]{0,120}") {
        let p = all_deny();
        let _ = p.scan(&prompt(&text));
        let _ = p.redact(&text);
    }

    /// Anywhere in any text, with any separators between any digits — unless glued to other
    /// digits (then it is a different number).
    #[test]
    fn an_embedded_card_is_always_found_and_redacted(
        before in "\\PC{0,40}",
        after in "\\PC{0,40}",
        card in card_number(),
        seps in prop::collection::vec(separator(), 1..4),
    ) {
        // Keep the number apart from other digits: otherwise it is another number.
        let before = if glued(before.chars().next_back()) { format!("{before}x") } else { before };
        let after = if glued(after.chars().next()) { format!("x{after}") } else { after };
        let number = spaced(&card, &seps);
        let text = format!("{before}{number}{after}");
        let p = all_deny();
        let findings = p.scan(&prompt(&text));
        prop_assert!(findings.pii.contains(&"credit_card"), "{text:?} {findings:?}");
        let redacted = p.redact(&text);
        let card_digits: String = card.iter().map(|d| char::from(b'0' + d)).collect();
        prop_assert!(!digits_of(&redacted).contains(&card_digits), "{redacted:?}");
        prop_assert!(redacted.contains("[REDACTED:"));
    }

    #[test]
    fn redaction_removes_every_detected_ssn(
        before in "[a-z ]{0,20}",
        area in 1u32..900,
        group in 1u32..100,
        serial in 1u32..10000,
        sep in prop::sample::select(vec!["-", " ", "."]),
    ) {
        prop_assume!(area != 666);
        let ssn = format!("{area:03}{sep}{group:02}{sep}{serial:04}");
        let text = format!("{before} {ssn} end");
        let p = all_deny();
        prop_assert!(p.scan(&prompt(&text)).pii.contains(&"us_ssn"));
        let redacted = p.redact(&text);
        prop_assert!(!redacted.contains(&ssn));
        prop_assert_eq!(digits_of(&redacted), "");
    }
}

mod dlp_service {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};

    use super::*;

    /// A tiny DLP service: refuses prompts containing "secret", answers slowly for "slow",
    /// with 500 for "crash", with junk for "junk".
    async fn serve(seen: Arc<AtomicUsize>) -> SocketAddr {
        let app = Router::new().route(
            "/scan",
            post(move |Json(body): Json<Value>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let text = body["prompts"].to_string();
                    if text.contains("slow") {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    }
                    if text.contains("crash") {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_string());
                    }
                    if text.contains("junk") {
                        return (StatusCode::OK, "not json".to_string());
                    }
                    let allow = !text.contains("secret");
                    let categories = if allow {
                        vec![]
                    } else {
                        vec!["secrets", "<script>"]
                    };
                    let answer = json!({"allow": allow, "categories": categories});
                    (StatusCode::OK, answer.to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn with_dlp(url: String) -> ContentPolicy {
        ContentPolicy::compile(ContentSpec {
            dlp: Some(DlpSpec {
                url,
                timeout_ms: 500,
                token_env: None,
            }),
            ..ContentSpec::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_dlp_service_decides_and_failures_close() {
        let seen = Arc::new(AtomicUsize::new(0));
        let addr = serve(Arc::clone(&seen)).await;
        let p = with_dlp(format!("http://{addr}/scan"));

        p.check_dlp(&prompt("a red bicycle")).await.unwrap();

        let mut a = prompt("a red bicycle");
        a.negative_prompt = Some("the secret plan".into());
        let d = p.check_dlp(&a).await.unwrap_err();
        assert_eq!(d.error, "content_blocked");
        assert_eq!(d.kind, DenyKind::BadRequest);
        assert_eq!(
            d.reason,
            "the content inspection service refused the prompt: secrets"
        );

        for text in ["slow", "crash", "junk"] {
            let d = p.check_dlp(&prompt(text)).await.unwrap_err();
            assert_eq!(d.error, "dlp_unavailable", "{text}");
            assert_eq!(d.kind, DenyKind::Unavailable);
        }

        // Nothing to inspect: no call.
        let before = seen.load(Ordering::SeqCst);
        p.check_dlp(&Action::default()).await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), before);

        // Nobody listening: fail closed.
        let closed = with_dlp("http://127.0.0.1:9/scan".into());
        assert_eq!(
            closed.check_dlp(&prompt("x")).await.unwrap_err().error,
            "dlp_unavailable"
        );

        // No DLP configured: nothing to ask.
        ContentPolicy::default()
            .check_dlp(&prompt("secret"))
            .await
            .unwrap();
    }

    #[test]
    fn dlp_settings_are_validated() {
        let bad = |url: &str, timeout_ms| {
            ContentPolicy::compile(ContentSpec {
                dlp: Some(DlpSpec {
                    url: url.into(),
                    timeout_ms,
                    token_env: None,
                }),
                ..ContentSpec::default()
            })
            .unwrap_err()
        };
        assert!(matches!(
            bad("ftp://x/", 100),
            ContentError::Dlp(DlpError::BadUrl(_))
        ));
        assert!(matches!(
            bad("not a url", 100),
            ContentError::Dlp(DlpError::BadUrl(_))
        ));
        assert!(matches!(
            bad("http://127.0.0.1/", 0),
            ContentError::Dlp(DlpError::BadTimeout)
        ));
    }
}
