//! The examples of a block, normalised to (venture, item name, item description).
//!
//! The knowledge base writes examples in several shapes, all read here:
//! - `### Venture` heading lines (in a section's body or a block's body), then `#class [[Name]]`
//!   blocks with the description in a child block (seed 000);
//! - untagged item blocks with the description on an unbulleted line below (seed 000, Space X);
//! - several `#class [[Name]]` lines inside one block, each followed by a description line;
//! - `{{embed [[<block>/examples/<Venture>]]}}`, the items living on a page of their own (seed 002);
//! - `## Example (Venture)` with a `<div>` of `emoji#class Name` lines and paragraphs (seed 001).
//!
//! Blocks with a `draft:: true` property are drafts written by this tool; they are examples too,
//! marked as such. This module reads; it never writes.

use std::collections::HashSet;

use serde::Serialize;

use super::name::page_key;
use super::outline::LineKind;
use super::page::{Entry, Page, heading};

/// One example item of one venture for one block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub venture: String,
    pub name: String,
    pub description: String,
    /// The tag the item was written with (`relationship` in `#relationship [[X]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Written by this tool and not accepted yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
    /// The `run::` of a draft: the `generate` run that wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The page holding the item, relative to the graph.
    pub page: String,
    /// 1-based line of the item on that page.
    pub line: usize,
}

/// Problems found while reading examples; they never stop the reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleWarning {
    pub page: String,
    pub line: usize,
    pub message: String,
}

/// Walks the example sections of one block page, following embeds through `find_page`.
pub struct ExampleReader<'g> {
    find_page: &'g dyn Fn(&str) -> Option<&'g Page>,
    examples: Vec<Example>,
    warnings: Vec<ExampleWarning>,
    visiting: HashSet<String>,
}

/// The item being read: its index in `examples` and the block it started in.
#[derive(Clone, Copy)]
struct Current {
    example: usize,
    block: Option<usize>,
}

impl<'g> ExampleReader<'g> {
    pub fn new(find_page: &'g dyn Fn(&str) -> Option<&'g Page>) -> Self {
        ExampleReader {
            find_page,
            examples: Vec::new(),
            warnings: Vec::new(),
            visiting: HashSet::new(),
        }
    }

    pub fn finish(self) -> (Vec<Example>, Vec<ExampleWarning>) {
        (self.examples, self.warnings)
    }

    /// Read the entries of one examples section; `venture` comes from the section heading
    /// (`Example (SpaceX)`) when it names one.
    pub fn read_entries(&mut self, page: &Page, entries: &[Entry<'_>], venture: Option<String>) {
        self.visiting.insert(page_key(&page.name));
        let mut venture = venture;
        let mut current: Option<Current> = None;
        for entry in entries {
            let text = strip_html_tags(entry.text);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            if let Some((_, heading_text)) = heading(text) {
                venture = Some(venture_name(heading_text));
                current = None;
                continue;
            }
            if let Some(target) = embed_target(text) {
                let embedded_venture = venture.clone().unwrap_or_else(|| venture_name(target));
                self.read_embed(page, entry.line, target, embedded_venture);
                current = None;
                continue;
            }
            let Some(venture_now) = venture.as_deref() else {
                continue;
            };
            let owner = entry.block.or_else(|| {
                page.outline
                    .lines
                    .get(entry.line)
                    .and_then(|line| line.block)
            });
            match (entry.block, tagged_item(text)) {
                (_, Some((class, name))) => {
                    current =
                        Some(self.push(page, entry.line, venture_now, name, Some(class), owner));
                }
                (Some(block), None) => {
                    let inside_item = current
                        .and_then(|item| item.block)
                        .is_some_and(|item_block| is_ancestor(page, item_block, block));
                    if let (true, Some(item)) = (inside_item, current) {
                        self.append_description(item.example, text);
                    } else if has_tagged_children(page, block) {
                        venture = Some(venture_name(text));
                        current = None;
                    } else {
                        let name = clean_name(text);
                        current = Some(self.push(page, entry.line, venture_now, name, None, owner));
                    }
                }
                (None, None) => {
                    if let Some(item) = current {
                        self.append_description(item.example, text);
                    }
                }
            }
        }
    }

    fn read_embed(&mut self, page: &Page, line: usize, target: &str, venture: String) {
        let key = page_key(target);
        if self.visiting.contains(&key) {
            self.warnings.push(ExampleWarning {
                page: page.path.clone(),
                line: line + 1,
                message: format!("embed of [[{target}]] loops back to a page already being read"),
            });
            return;
        }
        let Some(embedded) = (self.find_page)(target) else {
            self.warnings.push(ExampleWarning {
                page: page.path.clone(),
                line: line + 1,
                message: format!("embedded page [[{target}]] is not in the graph"),
            });
            return;
        };
        let entries = page_entries(embedded);
        self.read_entries(embedded, &entries, Some(venture));
        self.visiting.remove(&key);
    }

    fn push(
        &mut self,
        page: &Page,
        line: usize,
        venture: &str,
        name: String,
        class: Option<String>,
        block: Option<usize>,
    ) -> Current {
        let property = |key: &str| block.and_then(|block| page.outline.block_property(block, key));
        let draft = property("draft").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        let run = property("run").map(str::to_string);
        self.examples.push(Example {
            venture: venture.to_string(),
            name,
            description: String::new(),
            class,
            draft,
            run,
            page: page.path.clone(),
            line: line + 1,
        });
        Current {
            example: self.examples.len() - 1,
            block,
        }
    }

    fn append_description(&mut self, example: usize, text: &str) {
        let Some(item) = self.examples.get_mut(example) else {
            return;
        };
        if !item.description.is_empty() {
            item.description.push('\n');
        }
        item.description.push_str(text);
    }
}

/// The whole content of a page as section entries: pre-block text (page properties excluded),
/// then every block with its body lines.
pub fn page_entries(page: &Page) -> Vec<Entry<'_>> {
    let outline = &page.outline;
    let property_lines: HashSet<usize> = outline
        .page_properties
        .iter()
        .map(|property| property.line)
        .collect();
    let mut entries = Vec::new();
    for index in 0..outline.lines.len() {
        if outline.lines[index].block.is_some() {
            break;
        }
        if outline.lines[index].kind == LineKind::Text && !property_lines.contains(&index) {
            entries.push(Entry {
                line: index,
                text: outline.line(&page.text, index).trim(),
                block: None,
            });
        }
    }
    for block in 0..outline.blocks.len() {
        entries.extend(
            page.block_entries(block)
                .filter(|entry| !property_lines.contains(&entry.line)),
        );
    }
    entries
}

fn is_ancestor(page: &Page, ancestor: usize, block: usize) -> bool {
    let mut cursor = page.outline.blocks[block].parent;
    while let Some(parent) = cursor {
        if parent == ancestor {
            return true;
        }
        cursor = page.outline.blocks[parent].parent;
    }
    false
}

fn has_tagged_children(page: &Page, block: usize) -> bool {
    page.outline.blocks[block]
        .children
        .iter()
        .any(|&child| tagged_item(page.outline.first_text(&page.text, child)).is_some())
}

/// `(class, name)` of a line written `#class [[Name]]`, `#class Name` or `emoji#class Name`.
pub fn tagged_item(text: &str) -> Option<(String, String)> {
    let hash = text.find('#')?;
    let prefix = &text[..hash];
    // Only decoration may come before the tag: emoji (or their mojibake), `*`, spaces.
    if !prefix
        .chars()
        .all(|character| !character.is_ascii() || character == '*' || character == ' ')
    {
        return None;
    }
    let (class, rest) = tag_at(&text[hash..])?;
    let name = clean_name(rest);
    (!name.is_empty()).then_some((class, name))
}

/// The tag at the start of `text` (which starts with `#`) and the text after it.
fn tag_at(text: &str) -> Option<(String, &str)> {
    let after_hash = text.strip_prefix('#')?;
    if let Some(bracketed) = after_hash.strip_prefix("[[") {
        let end = bracketed.find("]]")?;
        return Some((bracketed[..end].trim().to_string(), &bracketed[end + 2..]));
    }
    let end = after_hash
        .find(|character: char| character.is_whitespace() || character == '[')
        .unwrap_or(after_hash.len());
    let tag = &after_hash[..end];
    if tag.is_empty() || tag.starts_with('#') {
        return None;
    }
    Some((tag.to_string(), &after_hash[end..]))
}

/// An item name as written, without page-reference brackets, bold marks, or leading emoji.
pub fn clean_name(text: &str) -> String {
    let without_marks = text.replace("[[", "").replace("]]", "").replace("**", "");
    without_marks
        .trim()
        // Emoji and other symbols before a name are decoration; ASCII punctuation is the name's.
        .trim_start_matches(|character: char| {
            (!character.is_ascii() && !character.is_alphanumeric()) || character == '*'
        })
        .trim()
        .to_string()
}

/// The venture a heading names: `profile-(id)/examples/Space X` -> `Space X`.
pub fn venture_name(heading_text: &str) -> String {
    let name = clean_name(heading_text);
    match name.rfind("/examples/") {
        Some(position) => name[position + "/examples/".len()..].trim().to_string(),
        None => name,
    }
}

/// The page named in `{{embed [[Page]]}}`.
pub fn embed_target(text: &str) -> Option<&str> {
    let start = text.find("{{embed")?;
    let rest = &text[start + "{{embed".len()..];
    let open = rest.find("[[")?;
    let close = rest[open..].find("]]")? + open;
    let target = rest[open + 2..close].trim();
    (!target.is_empty()).then_some(target)
}

/// The text of a line with HTML tags removed (`<div style=...>` around exported examples).
fn strip_html_tags(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('<') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let looks_like_tag = after
            .chars()
            .next()
            .is_some_and(|character| character.is_ascii_alphabetic() || character == '/');
        match (looks_like_tag, after.find('>')) {
            (true, Some(close)) => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tagged_items() {
        assert_eq!(
            tagged_item("#relationship [[VIP Dining Club]]"),
            Some(("relationship".into(), "VIP Dining Club".into()))
        );
        assert_eq!(
            tagged_item("🤝#relationship Long-term Partnerships"),
            Some(("relationship".into(), "Long-term Partnerships".into()))
        );
        assert_eq!(
            tagged_item("ü§ù#relationship Collaborative Development"),
            Some(("relationship".into(), "Collaborative Development".into()))
        );
        assert_eq!(
            tagged_item("#[[key partner]] [[ACME]]"),
            Some(("key partner".into(), "ACME".into()))
        );
        assert_eq!(tagged_item("Long-term Partnerships"), None);
        assert_eq!(tagged_item("see issue #4"), None);
        assert_eq!(tagged_item("#relationship"), None);
    }

    #[test]
    fn venture_names_drop_the_examples_namespace() {
        assert_eq!(venture_name("profile-(id)/examples/Space X"), "Space X");
        assert_eq!(venture_name("[[vein visualizer]]"), "vein visualizer");
        assert_eq!(venture_name("Space X"), "Space X");
    }

    #[test]
    fn finds_embed_targets() {
        assert_eq!(
            embed_target("{{embed [[profile-(id)/examples/Space X]]}}"),
            Some("profile-(id)/examples/Space X")
        );
        assert_eq!(embed_target("{{embed ((6500-uuid))}}"), None);
    }

    #[test]
    fn strips_html_but_not_comparisons() {
        assert_eq!(
            strip_html_tags("<div style=\"x\">🤝#relationship A"),
            "🤝#relationship A"
        );
        assert_eq!(strip_html_tags("a < b and c > d"), "a < b and c > d");
        assert_eq!(strip_html_tags("</div>"), "");
    }
}
