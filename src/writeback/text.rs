//! The text this tool puts into an outline: model output made safe for one outline line, draft
//! items rendered as blocks, and line-level splices that can be undone byte for byte.
//!
//! Pure functions over strings; nothing here touches the file system.

use std::ops::Range;

use serde_json::Value;

use crate::draft::Item;
use crate::graph::examples::clean_name;
use crate::graph::outline::{LineKind, Outline};

/// Model output as one line of outline text that cannot change the outline's structure.
///
/// - every run of whitespace (newlines included) becomes one space: a line break would start a
///   new block or a property;
/// - pairs Logseq reads anywhere in a line are broken with a space: `[[`/`]]` (page links),
///   `((`/`))` (block references), `{{`/`}}` (macros such as embeds), `::` (a property), and
///   three backticks (a code fence that would swallow the lines after it);
/// - block markers at the start (`- `, `* `, `+ `, `> `, a `#` heading, an org `#+` directive)
///   are dropped.
pub fn inline_text(text: &str) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (pair, broken) in [
        ("[[", "[ ["),
        ("]]", "] ]"),
        ("((", "( ("),
        ("))", ") )"),
        ("{{", "{ {"),
        ("}}", "} }"),
        ("::", ": :"),
        ("```", "`` `"),
    ] {
        while out.contains(pair) {
            out = out.replace(pair, broken);
        }
    }
    let mut rest = out.as_str();
    loop {
        let trimmed = rest.trim_start();
        let after_marker = ['-', '*', '+', '>']
            .iter()
            .find_map(|marker| {
                let after = trimmed.strip_prefix(*marker)?;
                (after.is_empty() || after.starts_with(' ')).then_some(after)
            })
            .or_else(|| trimmed.strip_prefix("#+"))
            .or_else(|| {
                let hashes = trimmed.bytes().take_while(|&byte| byte == b'#').count();
                (hashes > 0 && trimmed[hashes..].starts_with(' ')).then(|| &trimmed[hashes..])
            });
        match after_marker {
            Some(after) => rest = after,
            None => break trimmed.trim_end().to_string(),
        }
    }
}

/// An item name as it can be written inside `[[...]]` and read back unchanged: `inline_text`,
/// then what the reader would strip anyway (leading emoji, `**`). `None` when nothing is left.
pub fn item_name(name: &str) -> Option<String> {
    let cleaned = clean_name(&inline_text(name));
    let cleaned = inline_text(&cleaned);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// A schema field name as a Logseq property key: lowercase, words joined by `-`
/// (`lifecycle_stage` -> `lifecycle-stage`).
pub fn property_key(field: &str) -> String {
    let mut key = String::with_capacity(field.len());
    for character in field.chars() {
        if character.is_alphanumeric() {
            key.extend(character.to_lowercase());
        } else if !key.is_empty() && !key.ends_with('-') {
            key.push('-');
        }
    }
    key.trim_end_matches('-').to_string()
}

/// A field value as one property value: strings as `inline_text`, lists joined with `, `,
/// objects as their values joined with `: ` (`{criterion: age, value: 30-55}` -> `age: 30-55`).
pub fn property_value(value: &Value) -> String {
    match value {
        Value::String(text) => inline_text(text),
        Value::Array(values) => values
            .iter()
            .map(property_value)
            .filter(|value| !value.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(fields) => fields
            .values()
            .map(property_value)
            .filter(|value| !value.is_empty())
            .collect::<Vec<_>>()
            .join(": "),
        Value::Null => String::new(),
        other => inline_text(&other.to_string()),
    }
}

/// How a draft item is written: the bullet indentation of the item and of its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemStyle {
    pub indent: String,
    pub child_indent: String,
}

/// Where a draft item came from, written as its properties.
#[derive(Debug, Clone)]
pub struct Marks<'a> {
    pub class: Option<&'a str>,
    pub generated_by: &'a str,
    pub run: &'a str,
}

impl Marks<'_> {
    /// The properties that make a block this tool wrote (a venture heading or embed) a draft of
    /// ours: `draft:: true` and `generated-by::`.
    pub fn scaffold_lines(&self, property_indent: &str) -> [String; 2] {
        [
            format!("{property_indent}draft:: true"),
            format!(
                "{property_indent}generated-by:: {}",
                inline_text(self.generated_by)
            ),
        ]
    }
}

/// The lines of one draft item, shaped like the seeds' items:
/// `- #class [[Name]]`, block properties (`draft:: true`, the schema's other fields,
/// `generated-by::`, `run::`), and a child block with the description. Items are expected to be
/// made safe with [`safe_item`] first.
pub fn item_lines(item: &Item, style: &ItemStyle, marks: &Marks<'_>) -> Vec<String> {
    let head = match marks.class {
        Some(class) => format!("{}- #{class} [[{}]]", style.indent, item.name),
        None => format!("{}- [[{}]]", style.indent, item.name),
    };
    let property_indent = format!("{}  ", style.indent);
    let mut lines = vec![head, format!("{property_indent}draft:: true")];
    for (field, value) in &item.fields {
        let value = property_value(value);
        let key = property_key(field);
        if !value.is_empty() && !key.is_empty() && !is_reserved(&key) {
            lines.push(format!("{property_indent}{key}:: {value}"));
        }
    }
    lines.push(format!(
        "{property_indent}generated-by:: {}",
        inline_text(marks.generated_by)
    ));
    lines.push(format!("{property_indent}run:: {}", inline_text(marks.run)));
    if !item.description.is_empty() {
        lines.push(format!("{}- {}", style.child_indent, item.description));
    }
    lines
}

/// Property keys this tool writes itself; a schema field of the same name is not written twice.
fn is_reserved(key: &str) -> bool {
    matches!(key, "draft" | "generated-by" | "run" | "id" | "collapsed")
}

/// An item made safe to write: its name through [`item_name`], its description and string
/// fields through [`inline_text`]. `None` when the name is empty once cleaned.
pub fn safe_item(item: &Item) -> Option<Item> {
    Some(Item {
        name: item_name(&item.name)?,
        description: inline_text(&item.description),
        fields: item
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), safe_value(value)))
            .collect(),
    })
}

fn safe_value(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(inline_text(text)),
        Value::Array(values) => Value::Array(values.iter().map(safe_value).collect()),
        other => other.clone(),
    }
}

/// Replace lines `lines` of `text` (indexed by `outline`) with `new_lines`, in the page's line
/// ending. The inverse splice (removing what was inserted) restores the text byte for byte,
/// including a last line without a line ending.
pub fn splice(text: &str, outline: &Outline, lines: Range<usize>, new_lines: &[String]) -> String {
    let ending = outline.line_ending.as_str();
    let count = outline.lines.len();
    let unterminated_end = lines.end == count && count > 0 && !outline.ends_with_newline;
    let (bytes, replacement) = if unterminated_end {
        let joined = new_lines.join(ending);
        if lines.start == 0 {
            let start = if outline.bom { 3 } else { 0 };
            (start..text.len(), joined)
        } else {
            // The page ends without a line ending: the one before the first replaced line goes
            // with the lines, so that what is added can be taken away again exactly.
            let start = outline.lines[lines.start - 1].content.end;
            let replacement = if new_lines.is_empty() {
                String::new()
            } else {
                format!("{ending}{joined}")
            };
            (start..text.len(), replacement)
        }
    } else {
        let replacement: String = new_lines
            .iter()
            .map(|line| format!("{line}{ending}"))
            .collect();
        let start = if count == 0 && outline.bom {
            3
        } else {
            outline.line_start(lines.start)
        };
        (start..outline.line_start(lines.end).max(start), replacement)
    };
    let mut out = String::with_capacity(text.len() + replacement.len());
    out.push_str(&text[..bytes.start]);
    out.push_str(&replacement);
    out.push_str(&text[bytes.end..]);
    out
}

/// Lines `range` without the blank lines at its end.
pub fn without_trailing_blanks(outline: &Outline, range: Range<usize>) -> Range<usize> {
    let mut end = range.end;
    while end > range.start && outline.lines[end - 1].kind == LineKind::Blank {
        end -= 1;
    }
    range.start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_text_cannot_break_the_outline() {
        let cases = [
            ("two\nlines\r\nthree", "two lines three"),
            ("see [[Other Page]]", "see [ [Other Page] ]"),
            ("a [[[b]]] c", "a [ [ [b] ] ] c"),
            ("price:: 10", "price: : 10"),
            ("- starts like a bullet", "starts like a bullet"),
            ("-5% off", "-5% off"),
            ("{{embed [[x]]}}", "{ {embed [ [x] ]} }"),
            ("#+BEGIN_QUOTE", "BEGIN_QUOTE"),
            ("## A heading", "A heading"),
            ("#tag stays a tag", "#tag stays a tag"),
            ("((block-ref))", "( (block-ref) )"),
            ("```rust", "`` `rust"),
            ("  * > - nested markers", "nested markers"),
        ];
        for (input, expected) in cases {
            assert_eq!(inline_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn names_read_back_as_written() {
        assert_eq!(
            item_name("🚀 **Rocket** Club").as_deref(),
            Some("Rocket Club")
        );
        assert_eq!(
            item_name("Loyalty:: Program").as_deref(),
            Some("Loyalty: : Program")
        );
        assert_eq!(item_name(" - \n "), None);
    }

    #[test]
    fn property_keys_are_kebab_case() {
        assert_eq!(property_key("lifecycle_stage"), "lifecycle-stage");
        assert_eq!(property_key("Type"), "type");
        assert_eq!(property_key("a  b__"), "a-b");
    }

    #[test]
    fn splice_inserts_and_removes_byte_for_byte() {
        for text in [
            "A\nB\n",
            "A\nB",
            "A\r\nB\r\n",
            "A\r\nB",
            "",
            "\u{feff}",
            "\u{feff}A",
        ] {
            let outline = Outline::parse(text);
            let lines = outline.lines.len();
            for at in 0..=lines {
                let new = vec!["x".to_string(), "y".to_string()];
                let inserted = splice(text, &outline, at..at, &new);
                let reparsed = Outline::parse(&inserted);
                assert_eq!(reparsed.lines.len(), lines + 2, "{text:?} at {at}");
                let restored = splice(&inserted, &reparsed, at..at + 2, &[]);
                assert_eq!(restored, text, "{text:?} at {at}: {inserted:?}");
            }
        }
    }
}
