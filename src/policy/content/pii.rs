//! PII detectors over a [`View`] (NFKC-normalised characters mapped back to the original).
//!
//! What each detector matches (digits are ASCII digits after NFKC, so full-width digits count):
//! - `credit_card`: 13–19 digits that pass the Luhn check and start like a real card number
//!   (Visa 4…, Mastercard 51–55 / 2221–2720, Maestro 5…/6…, Amex 34/37, Diners 30/36/38/39,
//!   JCB 35, Discover/UnionPay 6…). Digits may be grouped by up to three separators among space,
//!   tab, `-`, `.`, `_` and Unicode dashes (`4111 1111-1111.1111`, `4 1 1 1 …`); inside a longer
//!   grouped run, any consecutive groups forming a valid number are found.
//! - `us_ssn`: 9 digits written 3-2-4 (`123-45-6789`, `123 45 6789`) or one digit at a time, or
//!   9 plain digits when the same text mentions `ssn` or `social security`; area not 000, 666 or
//!   900–999, group not 00, serial not 0000.
//! - `phone`: `+` and 8–15 digits (E.164, separators and parentheses allowed); `00` and 8–15
//!   more digits in groups; North American numbers written 3-3-4 (`(555) 234-5678`,
//!   `555.234.5678`, optionally after `1`) or one digit at a time. Unformatted digit strings are
//!   not phones (an order number is not a phone), nor are 7-digit local numbers.
//! - `email`: `local@domain.tld` (also `[at]`, `(at)`, `{at}` and `[dot]`/`(dot)` spellings),
//!   with a top-level domain of two letters or more.
//! - `iban`: a country code, two check digits and 11–30 letters or digits, optionally in groups
//!   separated by single spaces or dashes, passing the ISO 13616 mod-97 check (and the country's
//!   length, for European countries).

use super::normalize::View;

/// A PII category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiCategory {
    Email,
    CreditCard,
    UsSsn,
    Phone,
    Iban,
}

impl PiiCategory {
    /// Every category, in reporting order.
    pub const ALL: [PiiCategory; 5] = [
        PiiCategory::Email,
        PiiCategory::CreditCard,
        PiiCategory::UsSsn,
        PiiCategory::Phone,
        PiiCategory::Iban,
    ];

    /// The policy.yaml name.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiCategory::Email => "email",
            PiiCategory::CreditCard => "credit_card",
            PiiCategory::UsSsn => "us_ssn",
            PiiCategory::Phone => "phone",
            PiiCategory::Iban => "iban",
        }
    }

    /// The category named `name` in policy.yaml.
    pub fn parse(name: &str) -> Option<PiiCategory> {
        PiiCategory::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// One detection: `[start, end)` in the view's characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub category: PiiCategory,
    pub start: usize,
    pub end: usize,
}

/// Runs every detector over the view.
pub fn detect(view: &View) -> Vec<Hit> {
    let chars = &view.chars;
    let mut hits = Vec::new();
    let ssn_context = mentions_ssn(chars);
    for run in digit_runs(chars) {
        if whole_card(chars, &run, &mut hits) {
            continue;
        }
        let covered = numbers(chars, &run, ssn_context, &mut hits);
        card_windows(chars, &run, &covered, &mut hits);
    }
    emails(chars, &mut hits);
    ibans(chars, &mut hits);
    hits
}

/// SSNs and phone numbers: the whole run, else 3-2-4 / 3-3-4 / 1-3-3-4 groups inside it.
/// Returns which groups they cover.
fn numbers(chars: &[char], run: &Run, ssn_context: bool, hits: &mut Vec<Hit>) -> Vec<bool> {
    let g = &run.groups;
    let digits_of = |a: usize, b: usize| group_digits(chars, &g[a..b]);
    let sizes: Vec<usize> = g.iter().map(|(s, e)| e - s).collect();
    let whole = digits_of(0, g.len());
    let (start, end) = (g[0].0, g[g.len() - 1].1);
    let mut covered = vec![false; g.len()];
    if is_ssn(&whole, &sizes, ssn_context) {
        hits.push(Hit {
            category: PiiCategory::UsSsn,
            start,
            end,
        });
        covered.fill(true);
        return covered;
    }
    if is_phone(&whole, &sizes, run.plus) {
        let start = if run.plus { start - 1 } else { start };
        hits.push(Hit {
            category: PiiCategory::Phone,
            start,
            end,
        });
        covered.fill(true);
        return covered;
    }
    let shapes: [(&[usize], PiiCategory); 3] = [
        (&[3, 2, 4], PiiCategory::UsSsn),
        (&[3, 3, 4], PiiCategory::Phone),
        (&[1, 3, 3, 4], PiiCategory::Phone),
    ];
    let mut a = 0;
    'groups: while a < g.len() {
        for (shape, category) in shapes {
            let b = a + shape.len();
            if b > g.len() || sizes[a..b] != *shape {
                continue;
            }
            let d = digits_of(a, b);
            let ok = match category {
                PiiCategory::UsSsn => is_ssn(&d, shape, false),
                _ => is_phone(&d, shape, false),
            };
            if ok {
                hits.push(Hit {
                    category,
                    start: g[a].0,
                    end: g[b - 1].1,
                });
                covered[a..b].fill(true);
                a = b;
                continue 'groups;
            }
        }
        a += 1;
    }
    covered
}

/// Digits separated by short runs of separators.
struct Run {
    /// `[start, end)` of each group of consecutive digits.
    groups: Vec<(usize, usize)>,
    /// The first digit follows a `+`.
    plus: bool,
}

const MAX_SEPARATORS: usize = 3;

fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '-' | '.' | '_' | '(' | ')' | '\u{2010}'..='\u{2015}' | '\u{2212}'
    )
}

fn digit_runs(chars: &[char]) -> Vec<Run> {
    let n = chars.len();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < n {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let plus = i > 0 && chars[i - 1] == '+';
        let mut groups = Vec::new();
        loop {
            let s = i;
            while i < n && chars[i].is_ascii_digit() {
                i += 1;
            }
            groups.push((s, i));
            let mut j = i;
            while j < n && j - i <= MAX_SEPARATORS && is_separator(chars[j]) {
                j += 1;
            }
            let seps = j - i;
            if (1..=MAX_SEPARATORS).contains(&seps) && j < n && chars[j].is_ascii_digit() {
                i = j;
                continue;
            }
            break;
        }
        runs.push(Run { groups, plus });
    }
    runs
}

fn group_digits(chars: &[char], groups: &[(usize, usize)]) -> Vec<u8> {
    groups
        .iter()
        .flat_map(|&(s, e)| chars[s..e].iter().map(|c| *c as u8 - b'0'))
        .collect()
}

/// The whole run is a card number, whatever its grouping.
fn whole_card(chars: &[char], run: &Run, hits: &mut Vec<Hit>) -> bool {
    let g = &run.groups;
    let found = is_card(&group_digits(chars, g));
    if found {
        hits.push(Hit {
            category: PiiCategory::CreditCard,
            start: g[0].0,
            end: g[g.len() - 1].1,
        });
    }
    found
}

/// Card numbers inside a longer run: windows of consecutive groups, not covered by an SSN or
/// phone number, written like a card (one digit per group, or groups of 3–7 digits:
/// `4111 1111 1111 1111 123`), so that a version string `1.2.3.10.11` is not read as one.
fn card_windows(chars: &[char], run: &Run, covered: &[bool], hits: &mut Vec<Hit>) {
    let g = &run.groups;
    let size = |i: usize| g[i].1 - g[i].0;
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    for a in 0..g.len() {
        let singles = size(a) == 1;
        digits.clear();
        for b in a..g.len() {
            let fits = if singles {
                size(b) == 1
            } else {
                (3..=7).contains(&size(b))
            };
            if !fits || covered[b] || digits.len() + size(b) > 19 {
                break;
            }
            digits.extend(chars[g[b].0..g[b].1].iter().map(|c| *c as u8 - b'0'));
            if digits.len() >= 13 && is_card(&digits) {
                hits.push(Hit {
                    category: PiiCategory::CreditCard,
                    start: g[a].0,
                    end: g[b].1,
                });
            }
        }
    }
}

/// Luhn check over decimal digits.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

fn is_card(d: &[u8]) -> bool {
    let len = d.len();
    if !(13..=19).contains(&len) || !luhn(d) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51–55 has 16 digits; Maestro (50, 56–59) 12–19.
        5 => !(51..=55).contains(&prefix(2)) || len == 16,
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        3 => match prefix(2) {
            34 | 37 => len == 15,
            35 => (3528..=3589).contains(&prefix(4)) && len >= 16,
            30 | 36 | 38 | 39 => len >= 14,
            _ => false,
        },
        6 => len >= 16,
        _ => false,
    }
}

fn is_ssn(d: &[u8], sizes: &[usize], context: bool) -> bool {
    if d.len() != 9 {
        return false;
    }
    let shaped = sizes == [3, 2, 4] || sizes.iter().all(|&s| s == 1) || sizes == [9] && context;
    let num = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    shaped && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn mentions_ssn(chars: &[char]) -> bool {
    let lower: String = chars.iter().flat_map(|c| c.to_lowercase()).collect();
    let has_word = |w: &str| {
        lower.match_indices(w).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + w.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    };
    has_word("ssn") || has_word("social security")
}

fn is_phone(d: &[u8], sizes: &[usize], plus: bool) -> bool {
    let n = d.len();
    if plus {
        return (8..=15).contains(&n) && d[0] != 0;
    }
    if n >= 10 && d[0] == 0 && d[1] == 0 {
        return (10..=17).contains(&n) && d[2] != 0 && sizes.len() >= 2;
    }
    let nanp = |d: &[u8]| d.len() == 10 && d[0] >= 2 && d[3] >= 2;
    let singles = sizes.len() > 1 && sizes.iter().all(|&s| s == 1);
    if sizes == [3, 3, 4] || singles && n == 10 {
        return nanp(d);
    }
    if sizes == [1, 3, 3, 4] || singles && n == 11 {
        return d[0] == 1 && nanp(&d[1..]);
    }
    false
}

fn local_char(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+/=?^_`|~.-".contains(c)
}

fn label_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-'
}

/// The length of an `@` (or `[at]`-style spelling) at `i`, surrounding spaces included.
fn at_sign(chars: &[char], i: usize) -> Option<usize> {
    spelled(chars, i, '@', "at")
}

fn dot(chars: &[char], i: usize) -> Option<usize> {
    spelled(chars, i, '.', "dot")
}

/// `symbol` at `i`, or a bracketed `word` (`[at]`, `(dot)`, `{at}`) with at most one space on
/// each side.
fn spelled(chars: &[char], i: usize, symbol: char, word: &str) -> Option<usize> {
    if chars.get(i) == Some(&symbol) {
        return Some(1);
    }
    let mut j = i;
    if chars.get(j) == Some(&' ') {
        j += 1;
    }
    let close = match chars.get(j)? {
        '[' => ']',
        '(' => ')',
        '{' => '}',
        _ => return None,
    };
    let w: Vec<char> = word.chars().collect();
    let body = chars.get(j + 1..j + 1 + w.len())?;
    if !body
        .iter()
        .zip(&w)
        .all(|(a, b)| a.to_ascii_lowercase() == *b)
        || chars.get(j + 1 + w.len()) != Some(&close)
    {
        return None;
    }
    j += w.len() + 2;
    if chars.get(j) == Some(&' ') {
        j += 1;
    }
    Some(j - i)
}

fn emails(chars: &[char], hits: &mut Vec<Hit>) {
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let Some(at_len) = at_sign(chars, i) else {
            i += 1;
            continue;
        };
        // The local part ends right before `i`.
        let mut s = i;
        while s > 0 && i - s < 64 && local_char(chars[s - 1]) {
            s -= 1;
        }
        while s < i && chars[s] == '.' {
            s += 1;
        }
        let local_ok =
            s < i && chars[s..i].iter().any(|c| c.is_alphanumeric()) && chars[i - 1] != '.';
        let domain_start = i + at_len;
        if local_ok && let Some(end) = domain(chars, domain_start) {
            hits.push(Hit {
                category: PiiCategory::Email,
                start: s,
                end,
            });
            i = end;
            continue;
        }
        i += 1;
    }
}

/// The end of a domain of two or more labels starting at `i`, the last one alphabetic.
fn domain(chars: &[char], i: usize) -> Option<usize> {
    let n = chars.len();
    let mut labels: Vec<(usize, usize)> = Vec::new();
    let mut j = i;
    loop {
        let s = j;
        while j < n && j - s < 63 && label_char(chars[j]) {
            j += 1;
        }
        if j == s || chars[s] == '-' || chars[j - 1] == '-' {
            break;
        }
        labels.push((s, j));
        if labels.len() >= 127 {
            break;
        }
        match dot(chars, j) {
            Some(len) if chars.get(j + len).is_some_and(|c| label_char(*c)) => j += len,
            _ => break,
        }
    }
    while labels.len() >= 2 {
        let (s, e) = labels[labels.len() - 1];
        if e - s >= 2 && chars[s..e].iter().all(|c| c.is_alphabetic()) {
            return Some(e);
        }
        labels.pop();
    }
    None
}

/// IBAN lengths of European countries (ISO 13616 registry).
const IBAN_LENGTHS: [(&str, usize); 33] = [
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
];

fn ibans(chars: &[char], hits: &mut Vec<Hit>) {
    let n = chars.len();
    let mut i = 0;
    while i + 4 <= n {
        let starts = chars[i].is_ascii_alphabetic()
            && chars[i + 1].is_ascii_alphabetic()
            && chars[i + 2].is_ascii_digit()
            && chars[i + 3].is_ascii_digit()
            && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        // Collect up to 34 letters/digits, allowing single separators between them; remember
        // where a candidate may end (before a separator or a non-alphanumeric).
        let mut code: Vec<char> = Vec::with_capacity(34);
        let mut ends: Vec<(usize, usize)> = Vec::new(); // (code length, char end)
        let mut j = i;
        while j < n && code.len() < 34 {
            let c = chars[j];
            if c.is_ascii_alphanumeric() {
                code.push(c.to_ascii_uppercase());
                j += 1;
                if j == n || !chars[j].is_alphanumeric() {
                    ends.push((code.len(), j));
                }
            } else if (c == ' ' || c == '-')
                && chars.get(j + 1).is_some_and(|c| c.is_ascii_alphanumeric())
            {
                j += 1;
            } else {
                break;
            }
        }
        let country: String = code[..2].iter().collect();
        let expected = IBAN_LENGTHS
            .iter()
            .find(|(c, _)| *c == country)
            .map(|(_, l)| *l);
        let found = ends.iter().rev().find(|(len, _)| {
            (15..=34).contains(len)
                && expected.is_none_or(|e| e == *len)
                && iban_checksum(&code[..*len])
        });
        if let Some(&(_, end)) = found {
            hits.push(Hit {
                category: PiiCategory::Iban,
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
}

/// ISO 13616 mod-97 check of an upper-case IBAN without separators.
pub fn iban_checksum(code: &[char]) -> bool {
    if code.len() < 5 || !code[2].is_ascii_digit() || !code[3].is_ascii_digit() {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in code[4..].iter().chain(&code[..4]) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}
