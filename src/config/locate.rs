//! Finds the line of a key path in YAML text, for errors found after parsing (cross
//! references), where serde no longer knows positions.

/// The 1-based line of the last key in `path` (e.g. `["roles", "designer", "permissions"]`),
/// following block indentation; falls back to the deepest key found.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for key in path {
        let hit = lines.iter().enumerate().skip(start).find(|(_, l)| {
            let indent = l.len() - l.trim_start().len();
            let body = l.trim_start().trim_start_matches("- ");
            indent >= min_indent && key_matches(body, key)
        });
        match hit {
            Some((i, l)) => {
                found = Some(i + 1);
                start = i + 1;
                min_indent = l.len() - l.trim_start().len() + 1;
            }
            None => break,
        }
    }
    found
}

/// The 1-based line of the first occurrence of `needle` at or after the line of `path`.
pub fn line_of_value(text: &str, path: &[&str], needle: &str) -> Option<usize> {
    let from = line_of(text, path).unwrap_or(1);
    text.lines()
        .enumerate()
        .skip(from - 1)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .or(Some(from))
}

fn key_matches(body: &str, key: &str) -> bool {
    let unquoted = body.trim_start_matches(['"', '\'']);
    unquoted
        .strip_prefix(key)
        .map(|rest| {
            rest.trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':')
        })
        .unwrap_or(false)
        || body.starts_with('{') && body.contains(&format!("{key}:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys() {
        let text = "default_role: viewer\nroles:\n  viewer:\n    permissions: [a]\n  admin:\n    permissions: [b]\n";
        assert_eq!(line_of(text, &["roles", "admin", "permissions"]), Some(6));
        assert_eq!(line_of(text, &["roles", "viewer"]), Some(3));
        assert_eq!(line_of(text, &["default_role"]), Some(1));
        assert_eq!(line_of(text, &["nope"]), None);
        assert_eq!(line_of_value(text, &["roles", "admin"], "[b]"), Some(6));
    }
}
