//! Text folding shared by the forbidden-term matcher and the PII detectors.
//!
//! Folding a text for term matching: Unicode NFKD (compatibility decomposition: full-width
//! `ｂａｄ`, ligatures and styled letters such as `𝐛𝐚𝐝` become plain letters), combining marks
//! removed (`bàd` → `bad`), invisible format characters removed (zero-width spaces and joiners,
//! soft hyphens, bidi controls), lower-cased, and Cyrillic or Greek letters that look like Latin
//! ones read as those Latin letters (`раураl` written with Cyrillic `р`, `а`, `у` → `paypal`).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// True for characters that render as nothing and only serve to split look-alike text:
/// zero-width spaces and joiners, soft hyphen, bidi controls, variation selectors, tags.
pub fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The Latin letter a lower-case Cyrillic or Greek letter is commonly passed off as.
fn confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ӏ' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'с' => 'c',
        'ѕ' => 's',
        'т' => 't',
        'у' => 'y',
        'ԝ' => 'w',
        'х' => 'x',
        'ԁ' => 'd',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'h',
        'ι' => 'i',
        'κ' => 'k',
        'μ' => 'm',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ζ' => 'z',
        // Latin look-alikes outside ASCII
        'ı' => 'i',
        'ȷ' => 'j',
        'ɑ' => 'a',
        'ɡ' => 'g',
        _ => c,
    }
}

/// Folds `text` for forbidden-term matching (see the module documentation).
pub fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|&c| !is_combining_mark(c) && !is_ignorable(c))
        .flat_map(char::to_lowercase)
        .map(confusable)
        .collect()
}

/// A text as the PII detectors read it: every character NFKC-normalised on its own (full-width
/// digits and `＠` become ASCII), invisible characters dropped, and for each resulting
/// character the byte range of the original character it came from, so that a detection can
/// be redacted in the original text.
pub struct View {
    pub chars: Vec<char>,
    /// Byte range in the original text, per character of `chars`.
    pub origin: Vec<(usize, usize)>,
}

impl View {
    /// Builds the view of `text`.
    pub fn new(text: &str) -> View {
        let mut chars = Vec::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            if is_ignorable(c) {
                continue;
            }
            let end = start + c.len_utf8();
            if c.is_ascii() {
                chars.push(c);
                origin.push((start, end));
                continue;
            }
            for n in std::iter::once(c).nfkc() {
                if !is_ignorable(n) {
                    chars.push(n);
                    origin.push((start, end));
                }
            }
        }
        View { chars, origin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_undoes_look_alikes() {
        assert_eq!(fold("ＢＡＤ"), "bad");
        assert_eq!(fold("bÀd"), "bad");
        assert_eq!(fold("b\u{200B}a\u{00AD}d"), "bad");
        assert_eq!(fold("𝐛𝐚𝐝"), "bad");
        assert_eq!(fold("Ьad"), "ьad", "only look-alikes are mapped");
        assert_eq!(fold("РАУРАL"), "paypal");
    }

    #[test]
    fn the_view_maps_back_to_original_bytes() {
        let v = View::new("a１\u{200B}b");
        assert_eq!(v.chars, ['a', '1', 'b']);
        assert_eq!(v.origin, [(0, 1), (1, 4), (7, 8)]);
    }
}
