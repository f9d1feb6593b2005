//! Page names and the file names that encode them.
//!
//! Logseq stores the page `a/b` as `a___b.md` (`:file/name-format :triple-lowbar`); older graphs
//! wrote `a%2Fb.md`. Other characters a file system refuses are percent-encoded. This module
//! owns that mapping in both directions and nothing else.

use percent_encoding::percent_decode_str;

/// The page name a file name stands for (`profile-(id)___relationship.md` ->
/// `profile-(id)/relationship`).
pub fn page_name_from_file_name(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".md").unwrap_or(file_name);
    let with_slashes = stem.replace("___", "/");
    let decoded = percent_decode_str(&with_slashes).decode_utf8_lossy();
    decoded.into_owned()
}

/// The file name (without folder) Logseq would use for a page name, triple-lowbar format.
pub fn file_name_from_page_name(page_name: &str) -> String {
    let mut out = String::with_capacity(page_name.len() + 3);
    for character in page_name.chars() {
        match character {
            '/' => out.push_str("___"),
            // Characters that Windows, macOS or Linux refuse in a file name, and `%` itself so
            // that decoding is unambiguous.
            '<' | '>' | ':' | '"' | '\\' | '|' | '?' | '*' | '%' | '#' => {
                let mut buffer = [0u8; 4];
                for byte in character.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            control if control.is_control() => {
                let mut buffer = [0u8; 4];
                for byte in control.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            other => out.push(other),
        }
    }
    out.push_str(".md");
    out
}

/// Logseq compares page names case-insensitively.
pub fn page_key(page_name: &str) -> String {
    page_name.trim().to_lowercase()
}

/// The text inside `[[...]]` when a whole value is one page reference, else the value trimmed.
pub fn strip_page_ref(value: &str) -> &str {
    let trimmed = value.trim();
    trimmed
        .strip_prefix("[[")
        .and_then(|inner| inner.strip_suffix("]]"))
        .map(str::trim)
        .unwrap_or(trimmed)
}

/// Every page named in a property value such as `[[a]], [[b]]` or `a, b`; empty refs dropped.
pub fn page_refs(value: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = value;
    let mut found_brackets = false;
    while let Some(start) = rest.find("[[") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("]]") else { break };
        found_brackets = true;
        let name = after[..end].trim();
        if !name.is_empty() {
            refs.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    if !found_brackets {
        refs.extend(
            value
                .split(',')
                .map(|part| part.trim().trim_start_matches('#'))
                .filter(|part| !part.is_empty())
                .map(str::to_string),
        );
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_triple_lowbar_namespaces() {
        assert_eq!(
            page_name_from_file_name("profile-(id)___relationship.md"),
            "profile-(id)/relationship"
        );
        assert_eq!(
            page_name_from_file_name("profile-(id)___examples___Space X.md"),
            "profile-(id)/examples/Space X"
        );
    }

    #[test]
    fn decodes_legacy_percent_2f_and_other_escapes() {
        assert_eq!(page_name_from_file_name("a%2Fb.md"), "a/b");
        assert_eq!(page_name_from_file_name("What%3F.md"), "What?");
        assert_eq!(page_name_from_file_name("caf%C3%A9.md"), "café");
    }

    #[test]
    fn encoding_round_trips() {
        for name in [
            "profile-(id)/examples/Space X",
            "What? *now*",
            "100% a/b:c",
            "café",
        ] {
            let file = file_name_from_page_name(name);
            assert!(!file.contains('/'), "{file}");
            assert_eq!(page_name_from_file_name(&file), name);
        }
    }

    #[test]
    fn reads_page_references() {
        assert_eq!(strip_page_ref("[[profile-(id)]]"), "profile-(id)");
        assert_eq!(page_refs("[[]]"), Vec::<String>::new());
        assert_eq!(page_refs("[[a]], [[b c]]"), vec!["a", "b c"]);
        assert_eq!(page_refs("a, #b"), vec!["a", "b"]);
    }
}
