//! Forbidden terms: whole-word, case-insensitive matching on folded text.
//!
//! Both the terms and the prompt are folded ([`super::normalize::fold`]) and split into words:
//! a word is a run of letters and digits (Unicode alphanumerics), anything else separates words.
//! A term matches when its words appear in the prompt as consecutive whole words, whatever
//! separates them (`bad word` matches `Bad-Word` and `bad, word`, never `badword` or `badwords`;
//! `ass` never matches `class`). Punctuation inside a term is a separator too.
//!
//! Spaced-out evasions: in the prompt, a run of single letters or digits, each separated from
//! the next by one to three non-word characters on the same line (`b a d`, `b.a.d`, `b - a - d`),
//! is also read joined (`bad`); a term of three or more characters matches when it is a part of
//! such a joined run (`x b a d` contains `bad`). Only single-character words are joined, so
//! ordinary words are never glued together.
//!
//! Terms in scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar)
//! match anywhere in the folded prompt, as substrings.

use std::collections::{HashMap, HashSet};

use super::normalize::fold;

/// Maximum non-word characters between the letters of a spaced-out word.
const MAX_SPACING: usize = 3;
/// Shortest term (in characters, joined) that is also looked for in spaced-out runs.
const MIN_SPACED_LEN: usize = 3;

/// The compiled forbidden terms.
#[derive(Debug, Default, Clone)]
pub struct ForbiddenTerms {
    /// Term words, keyed by their first word.
    by_first: HashMap<String, Vec<Vec<String>>>,
    /// Joined forms for spaced-out runs.
    joined: HashSet<String>,
    joined_max_chars: usize,
    /// Terms in scripts without spaces, matched as substrings.
    substrings: Vec<String>,
}

/// Why a term cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    #[error("forbidden_terms[{0}] has no letters or digits")]
    Empty(usize),
    #[error("forbidden_terms[{0}] is longer than 200 characters")]
    TooLong(usize),
}

impl ForbiddenTerms {
    /// Compiles the terms.
    pub fn new(terms: &[String]) -> Result<ForbiddenTerms, TermError> {
        let mut t = ForbiddenTerms::default();
        for (i, term) in terms.iter().enumerate() {
            if term.chars().count() > 200 {
                return Err(TermError::TooLong(i));
            }
            let folded = fold(term);
            let words = words(&folded);
            if words.is_empty() {
                return Err(TermError::Empty(i));
            }
            if folded.chars().any(no_space_script) {
                t.substrings.push(words.concat());
                continue;
            }
            let joined: String = words.concat();
            let len = joined.chars().count();
            if len >= MIN_SPACED_LEN {
                t.joined_max_chars = t.joined_max_chars.max(len);
                t.joined.insert(joined);
            }
            t.by_first
                .entry(words[0].to_string())
                .or_default()
                .push(words.into_iter().map(str::to_string).collect());
        }
        Ok(t)
    }

    /// True when no term is configured.
    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty() && self.substrings.is_empty()
    }

    /// True when `text` contains one of the terms.
    pub fn matches(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let folded = fold(text);
        if !self.substrings.is_empty() {
            let squeezed: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
            if self
                .substrings
                .iter()
                .any(|s| squeezed.contains(s.as_str()))
            {
                return true;
            }
        }
        let tokens = tokens(&folded);
        for (i, token) in tokens.iter().enumerate() {
            if let Some(candidates) = self.by_first.get(token.word)
                && candidates.iter().any(|term| {
                    term.len() <= tokens.len() - i
                        && term.iter().zip(&tokens[i..]).all(|(w, t)| w == t.word)
                })
            {
                return true;
            }
        }
        !self.joined.is_empty() && self.spaced_runs_match(&tokens)
    }

    /// Looks for terms in runs of spaced-out single characters.
    fn spaced_runs_match(&self, tokens: &[Token<'_>]) -> bool {
        let mut i = 0;
        while i < tokens.len() {
            if !tokens[i].single() {
                i += 1;
                continue;
            }
            let mut run: Vec<char> = Vec::new();
            let mut j = i;
            loop {
                run.extend(tokens[j].word.chars());
                let next_ok = j + 1 < tokens.len()
                    && tokens[j + 1].single()
                    && tokens[j].spacing_after <= MAX_SPACING
                    && !tokens[j].newline_after;
                if !next_ok {
                    break;
                }
                j += 1;
            }
            if run.len() >= MIN_SPACED_LEN && self.any_joined_in(&run) {
                return true;
            }
            i = j + 1;
        }
        false
    }

    fn any_joined_in(&self, run: &[char]) -> bool {
        let mut s = String::with_capacity(self.joined_max_chars * 4);
        for start in 0..run.len() {
            s.clear();
            for (len, c) in run[start..].iter().take(self.joined_max_chars).enumerate() {
                s.push(*c);
                if len + 1 >= MIN_SPACED_LEN && self.joined.contains(&s) {
                    return true;
                }
            }
        }
        false
    }
}

/// A word of the folded prompt and what separates it from the next one.
struct Token<'a> {
    word: &'a str,
    spacing_after: usize,
    newline_after: bool,
}

impl Token<'_> {
    fn single(&self) -> bool {
        self.word.chars().count() == 1
    }
}

fn tokens(folded: &str) -> Vec<Token<'_>> {
    let mut out: Vec<Token<'_>> = Vec::new();
    let mut start = None;
    for (i, c) in folded.char_indices() {
        if c.is_alphanumeric() {
            if start.is_none() {
                start = Some(i);
            }
            continue;
        }
        if let Some(s) = start.take() {
            out.push(Token {
                word: &folded[s..i],
                spacing_after: 0,
                newline_after: false,
            });
        }
        if let Some(last) = out.last_mut() {
            last.spacing_after += 1;
            last.newline_after |= c == '\n' || c == '\r';
        }
    }
    if let Some(s) = start {
        out.push(Token {
            word: &folded[s..],
            spacing_after: 0,
            newline_after: false,
        });
    }
    out
}

fn words(folded: &str) -> Vec<&str> {
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Scripts written without spaces between words.
fn no_space_script(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}' // Han
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}'
        | '\u{0E00}'..='\u{0EFF}' // Thai, Lao
        | '\u{1000}'..='\u{109F}' // Myanmar
        | '\u{1780}'..='\u{17FF}' // Khmer
    )
}
