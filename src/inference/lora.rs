//! LoRAs named in a Fooocus prompt: `<lora:NAME:WEIGHT>` tags in the first non-empty line.
//!
//! Fooocus (`modules/async_worker.py process_prompt`) splits the prompt with Python's
//! `str.splitlines`, cleans each line with `safe_str`, drops empty ones and parses only the
//! first remaining line with `parse_lora_references_from_prompt`: the line is split on `,` and
//! each piece searched with `<lora:([^:]+):([+-]?(?:\d+(?:\.\d*)?|\.\d+))>`. The tag loads any
//! LoRA file whose stem is NAME, so the name is reported as written.

use super::InferenceError;
use super::json::invalid;

/// The LoRA names tagged in the line of `prompt` that Fooocus parses.
pub(crate) fn prompt_tags(prompt: &str) -> Vec<String> {
    // Collapsing spaces and trimming cannot create a tag: without `<lora:` there is none.
    if !prompt.contains("<lora:") {
        return Vec::new();
    }
    match first_line(prompt) {
        Some(line) => line.split(',').flat_map(tags_in).collect(),
        None => Vec::new(),
    }
}

/// The first line that is not empty after `safe_str`, cleaned as Fooocus cleans it.
fn first_line(prompt: &str) -> Option<String> {
    split_lines(prompt)
        .into_iter()
        .map(safe_str)
        .find(|l| !l.is_empty())
}

/// Python's `str.splitlines()` (without keeping the line ends).
fn split_lines(s: &str) -> Vec<&str> {
    let is_break = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0B}'
                | '\u{0C}'
                | '\u{1C}'
                | '\u{1D}'
                | '\u{1E}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_break(c) {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().map(|(_, n)| *n) == Some('\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Fooocus' `safe_str`: collapse double spaces (16 passes), strip `,. \r\n` from both ends.
fn safe_str(line: &str) -> String {
    let mut s = line.to_string();
    for _ in 0..16 {
        if !s.contains("  ") {
            break;
        }
        s = s.replace("  ", " ");
    }
    s.trim_matches([',', '.', ' ', '\r', '\n']).to_string()
}

/// Every non-overlapping tag match in one comma-separated piece, leftmost first.
fn tags_in(piece: &str) -> Vec<String> {
    const OPEN: &str = "<lora:";
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = piece[from..].find(OPEN) {
        let start = from + pos;
        let name_start = start + OPEN.len();
        let matched = piece[name_start..].find(':').and_then(|colon| {
            let name = &piece[name_start..name_start + colon];
            let weight_start = name_start + colon + 1;
            let gt = piece[weight_start..].find('>')?;
            let weight = &piece[weight_start..weight_start + gt];
            (!name.is_empty() && is_weight(weight)).then(|| (name, weight_start + gt + 1))
        });
        match matched {
            Some((name, end)) => {
                found.push(name.to_string());
                from = end;
            }
            None => from = start + 1,
        }
    }
    found
}

/// `[+-]?(?:\d+(?:\.\d*)?|\.\d+)` in full. Python's `\d` matches any Unicode decimal digit;
/// `char::is_numeric` is a superset, so a tag may be counted that Python would not parse,
/// never the other way round.
fn is_weight(w: &str) -> bool {
    let w = w.strip_prefix(['+', '-']).unwrap_or(w);
    let digit = |c: char| c.is_numeric();
    match w.split_once('.') {
        None => !w.is_empty() && w.chars().all(digit),
        Some((int, frac)) => {
            int.chars().all(digit)
                && frac.chars().all(digit)
                && !(int.is_empty() && frac.is_empty())
        }
    }
}

/// Refuses a LoRA name that could reach outside the LoRA folder: Fooocus loads any path
/// that exists (`modules/core.py refresh_loras`).
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), InferenceError> {
    if name.contains('/') || name.contains('\\') || name.contains("..") {
        return Err(invalid(
            field,
            "a LoRA name may not contain `/`, `\\` or `..`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_in_the_first_non_empty_line_only() {
        assert_eq!(
            prompt_tags("a cat <lora:anime_style:0.8>, <lora:detail:1>"),
            ["anime_style", "detail"]
        );
        assert_eq!(
            prompt_tags("\n  \n., \n<lora:first:1>\n<lora:second:1>"),
            ["first"]
        );
        assert!(prompt_tags("a cat\n<lora:second:1>").is_empty());
        assert!(prompt_tags("").is_empty());
        // Python's splitlines also breaks on U+2028 and vertical tab.
        assert!(prompt_tags("cat\u{2028}<lora:x:1>").is_empty());
        assert_eq!(prompt_tags("\u{2028}<lora:x:1>"), ["x"]);
        assert_eq!(prompt_tags("\u{0B}<lora:y:.5>"), ["y"]);
        // A tab line is not empty for safe_str.
        assert!(prompt_tags("\t\n<lora:z:1>").is_empty());
    }

    #[test]
    fn weights_follow_the_pattern() {
        for ok in ["1", "0.5", "+1.", "-.25", "10.0", "١"] {
            assert_eq!(prompt_tags(&format!("<lora:n:{ok}>")), ["n"], "{ok}");
        }
        for bad in ["", ".", "+", "1.2.3", "a", "1e3", " 1"] {
            assert!(prompt_tags(&format!("<lora:n:{bad}>")).is_empty(), "{bad}");
        }
        // No weight, no match: Fooocus ignores `<lora:name>`.
        assert!(prompt_tags("<lora:name>").is_empty());
    }

    #[test]
    fn tags_split_on_commas_and_match_leftmost() {
        // A comma inside a tag breaks it.
        assert!(prompt_tags("<lora:a,b:1>").is_empty());
        // A failed start is retried at the next `<lora:`.
        assert_eq!(prompt_tags("<lora:<lora:x:1>"), ["x"]);
        assert_eq!(prompt_tags("<lora:x:1><lora:y:2>"), ["x", "y"]);
        assert_eq!(prompt_tags("<lora:my  name:1>"), ["my name"]);
        assert_eq!(prompt_tags("<lora:a>b:1>"), ["a>b"]);
        assert!(prompt_tags("<lora::1>").is_empty());
    }

    #[test]
    fn names_with_paths_are_refused() {
        assert!(check_name("loras[0].model_name", "style.safetensors").is_ok());
        for bad in ["../x", "/etc/x", "a\\b", "sub/dir.safetensors", ".."] {
            assert!(
                matches!(check_name("f", bad), Err(InferenceError::Invalid { .. })),
                "{bad}"
            );
        }
    }
}
