//! The Logseq outline of one markdown page, read without losing a byte.
//!
//! An [`Outline`] is an index over the page text: every line with its byte range and line ending,
//! every block (a `-` bullet and the lines that follow it) with its nesting and `key:: value`
//! properties, and the page properties of the pre-block. It never copies or normalises the text,
//! so a page read and written back unchanged is byte-identical, and edits splice bytes (see
//! `writeback`). What the blocks *mean* (sections, examples) is `metamodel`'s business.
//!
//! Nesting is relative: a bullet is the child of the nearest earlier bullet indented less, where
//! tabs, two spaces and both mixed all occur (seed 000 nests `\t-` under `  -`). A fenced code
//! block is opaque text of the block it starts in.

use std::ops::Range;

/// One line of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Byte range of the line's content, without its line ending.
    pub content: Range<usize>,
    /// Byte offset just past the line ending (the next line's start).
    pub next: usize,
    pub kind: LineKind,
    /// The block this line belongs to; `None` in the pre-block (before the first bullet).
    pub block: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Starts a block: optional indentation, `-`, then a space or the end of the line.
    Bullet,
    /// Text that continues the current block (or the pre-block).
    Text,
    /// Inside a fenced code block, fences included: never bullets or properties.
    Code,
    /// Empty or whitespace only.
    Blank,
}

/// A `key:: value` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A bullet block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The bullet line.
    pub first_line: usize,
    /// One past the block's last own line (the next bullet, or the end of the page).
    pub end_line: usize,
    /// One past the last line of the block and all its descendants.
    pub subtree_end: usize,
    /// The whitespace before the `-`.
    pub indent: String,
    pub depth: usize,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Properties directly after the bullet line.
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    Lf,
    CrLf,
}

impl LineEnding {
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::CrLf => "\r\n",
        }
    }
}

/// The index of one page's text.
#[derive(Debug, Clone)]
pub struct Outline {
    /// The text starts with a UTF-8 byte order mark (kept in place, skipped when reading).
    pub bom: bool,
    pub lines: Vec<Line>,
    pub blocks: Vec<Block>,
    /// Top-level blocks.
    pub roots: Vec<usize>,
    /// Page properties: `key:: value` lines of the pre-block, or of a first block made only of
    /// properties.
    pub page_properties: Vec<Property>,
    /// The line ending most lines use (new lines follow it).
    pub line_ending: LineEnding,
    /// The indentation a child adds to its parent on this page (new blocks follow it).
    pub indent_unit: String,
    /// The page's last line ends with a line ending.
    pub ends_with_newline: bool,
}

impl Outline {
    /// Index `text`. Never fails: any text is some outline.
    pub fn parse(text: &str) -> Outline {
        let bom = text.starts_with('\u{feff}');
        let mut lines = split_lines(text, if bom { 3 } else { 0 });
        let mut blocks: Vec<Block> = Vec::new();
        let mut roots = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut in_fence = false;
        let mut current: Option<usize> = None;

        for index in 0..lines.len() {
            let raw = &text[lines[index].content.clone()];
            let trimmed = raw.trim_start();
            if in_fence {
                lines[index].kind = LineKind::Code;
                lines[index].block = current;
                if trimmed.starts_with("```") {
                    in_fence = false;
                }
                continue;
            }
            if let Some(after_dash) = bullet_content(raw) {
                let indent = raw[..raw.len() - trimmed.len()].to_string();
                while let Some(&top) = stack.last() {
                    if is_deeper(&indent, &blocks[top].indent) {
                        break;
                    }
                    stack.pop();
                }
                let parent = stack.last().copied();
                let block_index = blocks.len();
                blocks.push(Block {
                    first_line: index,
                    end_line: index + 1,
                    subtree_end: index + 1,
                    indent,
                    depth: stack.len(),
                    parent,
                    children: Vec::new(),
                    properties: Vec::new(),
                });
                match parent {
                    Some(parent) => blocks[parent].children.push(block_index),
                    None => roots.push(block_index),
                }
                stack.push(block_index);
                current = Some(block_index);
                lines[index].kind = LineKind::Bullet;
                lines[index].block = current;
                if after_dash.trim_start().starts_with("```") {
                    in_fence = !is_closed_inline_fence(after_dash.trim_start());
                }
                continue;
            }
            lines[index].block = current;
            if trimmed.is_empty() {
                lines[index].kind = LineKind::Blank;
            } else if trimmed.starts_with("```") {
                lines[index].kind = LineKind::Code;
                in_fence = !is_closed_inline_fence(trimmed);
            } else {
                lines[index].kind = LineKind::Text;
            }
        }

        // Own extent and subtree extent of every block.
        for block_index in 0..blocks.len() {
            let next_first = blocks
                .get(block_index + 1)
                .map_or(lines.len(), |next| next.first_line);
            blocks[block_index].end_line = next_first;
            blocks[block_index].subtree_end = next_first;
        }
        for block_index in (0..blocks.len()).rev() {
            let end = blocks[block_index].subtree_end;
            if let Some(parent) = blocks[block_index].parent
                && blocks[parent].subtree_end < end
            {
                blocks[parent].subtree_end = end;
            }
        }

        // Block properties: `key:: value` lines right after the bullet line.
        for block in &mut blocks {
            for line_index in block.first_line + 1..block.end_line {
                if lines[line_index].kind != LineKind::Text {
                    break;
                }
                match parse_property(text[lines[line_index].content.clone()].trim()) {
                    Some((key, value)) => block.properties.push(Property {
                        key,
                        value,
                        line: line_index,
                    }),
                    None => break,
                }
            }
        }

        let page_properties = page_properties(text, &lines, &blocks);
        let line_ending = dominant_line_ending(text, &lines);
        let indent_unit = dominant_indent_unit(&blocks);
        let ends_with_newline = lines.last().is_none_or(|line| line.next > line.content.end);
        Outline {
            bom,
            lines,
            blocks,
            roots,
            page_properties,
            line_ending,
            indent_unit,
            ends_with_newline,
        }
    }

    /// The content of a line, without its line ending.
    pub fn line<'t>(&self, text: &'t str, index: usize) -> &'t str {
        &text[self.lines[index].content.clone()]
    }

    /// The text of a block's bullet line after `- `.
    pub fn first_text<'t>(&self, text: &'t str, block: usize) -> &'t str {
        let raw = self.line(text, self.blocks[block].first_line);
        bullet_content(raw).unwrap_or(raw).trim()
    }

    /// The block's own lines after the bullet line and its properties, trimmed, with their line
    /// indices; blank lines included (as empty strings) so callers can see paragraph breaks.
    pub fn body<'t>(&self, text: &'t str, block: usize) -> Vec<(usize, &'t str)> {
        let block_ref = &self.blocks[block];
        let skip = block_ref.properties.len();
        (block_ref.first_line + 1 + skip..block_ref.end_line)
            .map(|index| (index, self.line(text, index).trim()))
            .collect()
    }

    /// The first line of the block and its body, as one list of trimmed lines.
    pub fn own_lines<'t>(&self, text: &'t str, block: usize) -> Vec<(usize, &'t str)> {
        let mut lines = vec![(self.blocks[block].first_line, self.first_text(text, block))];
        lines.extend(self.body(text, block));
        lines
    }

    /// All blocks of a subtree in document order, the root first.
    pub fn subtree(&self, block: usize) -> Vec<usize> {
        let end = self.blocks[block].subtree_end;
        (block..self.blocks.len())
            .take_while(|&index| self.blocks[index].first_line < end)
            .collect()
    }

    /// The value of a block property, by case-insensitive key.
    pub fn block_property<'a>(&'a self, block: usize, key: &str) -> Option<&'a str> {
        self.blocks[block]
            .properties
            .iter()
            .find(|property| property.key.eq_ignore_ascii_case(key))
            .map(|property| property.value.as_str())
    }

    /// Whether a block is a draft this tool wrote and nobody accepted yet: `draft:: true` and a
    /// `generated-by::` naming inncopilot. A person's own `draft:: true` block is not one.
    pub fn is_our_draft(&self, block: usize) -> bool {
        self.block_property(block, "draft")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
            && self
                .block_property(block, "generated-by")
                .is_some_and(|value| value.starts_with("inncopilot"))
    }

    /// Byte offset where line `index` starts (the page length past the last line).
    pub fn line_start(&self, index: usize) -> usize {
        self.lines.get(index).map_or_else(
            || self.lines.last().map_or(0, |line| line.next),
            |line| line.content.start,
        )
    }
}

/// Split into lines, remembering where each ends and where the next begins.
fn split_lines(text: &str, start: usize) -> Vec<Line> {
    let bytes = text.as_bytes();
    // Counted first: a page's lines are kept as long as the page, and a vector grown by
    // doubling holds up to twice the room it needs.
    let newlines = bytes[start.min(bytes.len())..]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count();
    let mut lines = Vec::with_capacity(newlines + 1);
    let mut line_start = start;
    while line_start < bytes.len() {
        let newline = bytes[line_start..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|offset| line_start + offset);
        let (content_end, next) = match newline {
            Some(newline) if newline > line_start && bytes[newline - 1] == b'\r' => {
                (newline - 1, newline + 1)
            }
            Some(newline) => (newline, newline + 1),
            None => (bytes.len(), bytes.len()),
        };
        lines.push(Line {
            content: line_start..content_end,
            next,
            kind: LineKind::Blank,
            block: None,
        });
        line_start = next;
    }
    lines
}

/// The text after `- ` when the line is a bullet.
pub fn bullet_content(line: &str) -> Option<&str> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let rest = trimmed.strip_prefix('-')?;
    if rest.is_empty() {
        Some(rest)
    } else if rest.starts_with(' ') || rest.starts_with('\t') {
        Some(&rest[1..])
    } else {
        None
    }
}

/// A fence that opens and closes on one line (```` ```x``` ````) does not start a code block.
fn is_closed_inline_fence(trimmed: &str) -> bool {
    trimmed.len() > 6 && trimmed[3..].contains("```")
}

/// Whether `child` is indented more than `parent`, comparing relatively: a strict extension of
/// the parent's indentation is deeper whatever it adds; otherwise columns are compared with tab
/// stops every four columns.
fn is_deeper(child: &str, parent: &str) -> bool {
    if child.len() > parent.len() && child.starts_with(parent) {
        return true;
    }
    if parent.starts_with(child) {
        return false;
    }
    columns(child) > columns(parent)
}

fn columns(indent: &str) -> usize {
    indent.chars().fold(0, |column, character| {
        if character == '\t' {
            column + 4 - column % 4
        } else {
            column + 1
        }
    })
}

/// `key:: value` (or `key::` alone), with a Logseq property key.
pub fn parse_property(trimmed: &str) -> Option<(String, String)> {
    let separator = trimmed.find("::")?;
    let key = &trimmed[..separator];
    let valid_key = !key.is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|first| first.is_alphanumeric())
        && key
            .chars()
            .all(|character| character.is_alphanumeric() || "-_.?!*/".contains(character));
    let value = &trimmed[separator + 2..];
    if !valid_key || !(value.is_empty() || value.starts_with(' ') || value.starts_with('\t')) {
        return None;
    }
    Some((key.to_string(), value.trim().to_string()))
}

fn page_properties(text: &str, lines: &[Line], blocks: &[Block]) -> Vec<Property> {
    let mut properties = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.block.is_some() || line.kind != LineKind::Text {
            break;
        }
        match parse_property(text[line.content.clone()].trim()) {
            Some((key, value)) => properties.push(Property {
                key,
                value,
                line: index,
            }),
            None => break,
        }
    }
    if !properties.is_empty() {
        return properties;
    }
    // A first block holding only properties (`- title:: x`) is the page's properties too.
    if let Some(first) = blocks.first() {
        let first_text = bullet_content(&text[lines[first.first_line].content.clone()])
            .unwrap_or_default()
            .trim();
        let preceded_by_text = lines[..first.first_line]
            .iter()
            .any(|line| line.kind != LineKind::Blank);
        if !preceded_by_text && let Some((key, value)) = parse_property(first_text) {
            properties.push(Property {
                key,
                value,
                line: first.first_line,
            });
            for line_index in first.first_line + 1..first.end_line {
                match parse_property(text[lines[line_index].content.clone()].trim()) {
                    Some((key, value)) => properties.push(Property {
                        key,
                        value,
                        line: line_index,
                    }),
                    None => break,
                }
            }
        }
    }
    properties
}

fn dominant_line_ending(text: &str, lines: &[Line]) -> LineEnding {
    let (mut crlf, mut lf) = (0usize, 0usize);
    for line in lines {
        match &text[line.content.end..line.next] {
            "\r\n" => crlf += 1,
            "\n" => lf += 1,
            _ => {}
        }
    }
    if crlf > lf {
        LineEnding::CrLf
    } else {
        LineEnding::Lf
    }
}

/// The most common indentation a child adds to its parent; a tab when the page has no nesting
/// (Logseq's own default).
fn dominant_indent_unit(blocks: &[Block]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for block in blocks {
        let Some(parent) = block.parent else { continue };
        let Some(added) = block.indent.strip_prefix(blocks[parent].indent.as_str()) else {
            continue;
        };
        if added.is_empty() {
            continue;
        }
        match counts.iter_mut().find(|(unit, _)| unit == added) {
            Some((_, count)) => *count += 1,
            None => counts.push((added.to_string(), 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map_or_else(|| "\t".to_string(), |(unit, _)| unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(outline: &Outline, text: &str) -> Vec<(usize, String)> {
        (0..outline.blocks.len())
            .map(|index| {
                (
                    outline.blocks[index].depth,
                    outline.first_text(text, index).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn nests_with_tabs() {
        let text = "- a\n\t- b\n\t\t- c\n\t- d\n- e\n";
        let outline = Outline::parse(text);
        assert_eq!(
            texts(&outline, text),
            vec![
                (0, "a".into()),
                (1, "b".into()),
                (2, "c".into()),
                (1, "d".into()),
                (0, "e".into())
            ]
        );
        assert_eq!(outline.blocks[0].children, vec![1, 3]);
        assert_eq!(outline.indent_unit, "\t");
    }

    #[test]
    fn nests_with_two_spaces() {
        let text = "- a\n  - b\n    - c\n  - d\n";
        let outline = Outline::parse(text);
        let depths: Vec<usize> = outline.blocks.iter().map(|block| block.depth).collect();
        assert_eq!(depths, vec![0, 1, 2, 1]);
        assert_eq!(outline.indent_unit, "  ");
    }

    #[test]
    fn nests_with_spaces_and_tabs_mixed() {
        // Seed 000: a two-space bullet whose child adds a tab.
        let text = "- ## Examples\n  - #relationship [[A]]\n  \t- about A\n  - #relationship [[B]]\n  \t- about B\n";
        let outline = Outline::parse(text);
        let depths: Vec<usize> = outline.blocks.iter().map(|block| block.depth).collect();
        assert_eq!(depths, vec![0, 1, 2, 1, 2]);
        assert_eq!(outline.blocks[1].children, vec![2]);
        assert_eq!(outline.blocks[0].subtree_end, 5);
    }

    #[test]
    fn reads_page_and_block_properties() {
        let text = "icon:: x\nweight:: 70\n\n- block\n  key-weight:: 75\n  value:: 50\n  body\n";
        let outline = Outline::parse(text);
        assert_eq!(outline.page_properties.len(), 2);
        assert_eq!(outline.page_properties[1].value, "70");
        assert_eq!(outline.block_property(0, "KEY-WEIGHT"), Some("75"));
        assert_eq!(outline.body(text, 0), vec![(6, "body")]);
    }

    #[test]
    fn properties_of_a_first_property_block_are_page_properties() {
        let text = "- title:: My page\n  weight:: 3\n- content\n";
        let outline = Outline::parse(text);
        let keys: Vec<&str> = outline
            .page_properties
            .iter()
            .map(|property| property.key.as_str())
            .collect();
        assert_eq!(keys, vec!["title", "weight"]);
    }

    #[test]
    fn code_fences_are_opaque() {
        let text = "- code\n  ```\n  - not a block\n  key:: not a property\n  ```\n- after\n";
        let outline = Outline::parse(text);
        assert_eq!(outline.blocks.len(), 2);
        assert_eq!(outline.lines[2].kind, LineKind::Code);
        assert_eq!(outline.lines[2].block, Some(0));
        assert!(outline.blocks[0].properties.is_empty());
        let bullet_fence = "- ```\n- inside\n```\n- out\n";
        assert_eq!(Outline::parse(bullet_fence).blocks.len(), 2);
    }

    #[test]
    fn handles_crlf_and_bom() {
        let text = "\u{feff}title:: T\r\n\r\n- a\r\n\t- b\r\n";
        let outline = Outline::parse(text);
        assert!(outline.bom);
        assert_eq!(outline.line_ending, LineEnding::CrLf);
        assert_eq!(outline.page_properties[0].key, "title");
        assert_eq!(outline.first_text(text, 1), "b");
        assert_eq!(outline.line(text, 3), "\t- b");
    }

    #[test]
    fn a_last_line_without_ending_is_kept() {
        let text = "- a\n- b";
        let outline = Outline::parse(text);
        assert!(!outline.ends_with_newline);
        assert_eq!(outline.first_text(text, 1), "b");
        assert_eq!(outline.line_start(2), text.len());
    }

    #[test]
    fn a_dash_without_space_is_not_a_bullet() {
        assert_eq!(bullet_content("---"), None);
        assert_eq!(bullet_content("  -x"), None);
        assert_eq!(bullet_content("-"), Some(""));
        assert_eq!(bullet_content("\t- x"), Some("x"));
    }

    #[test]
    fn property_syntax() {
        assert_eq!(
            parse_property("key-weight:: 75"),
            Some(("key-weight".into(), "75".into()))
        );
        assert_eq!(parse_property("a:: "), Some(("a".into(), "".into())));
        assert_eq!(parse_property("see https://x::y"), None);
        assert_eq!(parse_property(":: x"), None);
    }
}
