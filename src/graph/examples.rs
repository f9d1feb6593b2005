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

use super::WarningKind;
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
    pub kind: WarningKind,
    pub page: String,
    pub line: usize,
    pub message: String,
}

/// The examples one embed on the block page itself (not inside an embedded page) gave: a
/// range of the block's examples. When only the embedded page changes, this range is all that
/// changes (see `Graph::update_pages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSpan {
    /// The key of the embedded page, found or not.
    pub key: String,
    pub venture: String,
    /// The range in the block's examples.
    pub start: usize,
    pub len: usize,
    /// The embedded page embeds other pages: its examples are not its own alone.
    pub nested: bool,
}

/// Walks the example sections of one block page, following embeds through `find_page`.
pub struct ExampleReader<'g> {
    find_page: &'g dyn Fn(&str) -> Option<&'g Page>,
    examples: Vec<Example>,
    /// The block page's own embeds, in page order, when asked for ([`keeping_spans`]).
    ///
    /// [`keeping_spans`]: Self::keeping_spans
    spans: Option<Vec<EmbedSpan>>,
    /// Embeds followed so far, at any depth.
    embeds_read: usize,
    /// The ventures with a place for examples (a heading or an embed), items or not.
    canvases: Vec<String>,
    /// The keys of `canvases`: a block page with a canvas per venture has hundreds.
    canvas_keys: HashSet<String>,
    warnings: Vec<ExampleWarning>,
    visiting: HashSet<String>,
}

/// The item being read: its index in `examples` and the block it started in.
#[derive(Clone, Copy)]
struct Current {
    example: usize,
    block: Option<usize>,
}

/// The lines of one block (or of the text before the first block) not read yet.
#[derive(Default)]
struct Group {
    /// The block the lines belong to; `None` before the first block.
    owner: Option<usize>,
    /// The group starts with the block's bullet line.
    bullet: bool,
    /// Line index and text (trimmed, HTML tags removed), blank lines left out.
    lines: Vec<(usize, String)>,
}

impl<'g> ExampleReader<'g> {
    pub fn new(find_page: &'g dyn Fn(&str) -> Option<&'g Page>) -> Self {
        ExampleReader {
            find_page,
            examples: Vec::new(),
            spans: None,
            embeds_read: 0,
            canvases: Vec::new(),
            canvas_keys: HashSet::new(),
            warnings: Vec::new(),
            visiting: HashSet::new(),
        }
    }

    /// The examples, the ventures with a canvas (in page order, each once), and the warnings.
    pub fn finish(self) -> (Vec<Example>, Vec<String>, Vec<ExampleWarning>) {
        (self.examples, self.canvases, self.warnings)
    }

    /// Also note where each of the block page's own embeds puts its examples (see
    /// [`take_spans`](Self::take_spans)); only a graph that is updated needs them.
    pub fn keeping_spans(mut self) -> Self {
        self.spans = Some(Vec::new());
        self
    }

    /// The block page's own embeds and the examples each gave, in page order, if kept (taken:
    /// call before [`finish`](Self::finish)).
    pub fn take_spans(&mut self) -> Option<Vec<EmbedSpan>> {
        self.spans.take()
    }

    /// The examples `page` gives as the embed of `venture` on the block page `block_key`, read
    /// as [`read_entries`](Self::read_entries) reads it there; `None` when `page` embeds other
    /// pages (its examples are then not its own alone).
    pub fn read_embedded_alone(
        find_page: &'g dyn Fn(&str) -> Option<&'g Page>,
        block_key: &str,
        page: &Page,
        venture: &str,
    ) -> Option<Vec<Example>> {
        let mut reader = ExampleReader::new(find_page);
        reader.visiting.insert(block_key.to_string());
        let entries = page_entries(page);
        reader.read_entries_of(page, &entries, Some(venture.to_string()), true);
        (reader.embeds_read == 0).then_some(reader.examples)
    }

    fn add_canvas(&mut self, venture: &str) {
        if !venture.is_empty() && self.canvas_keys.insert(page_key(venture)) {
            self.canvases.push(venture.to_string());
        }
    }

    /// Read the entries of one examples section; `venture` comes from the section heading
    /// (`Example (SpaceX)`) when it names one.
    ///
    /// Entries are taken a text group at a time: the lines of one block (or of the text before
    /// the first block), cut at venture headings and embeds. A group under the current item's
    /// block is its description; any other group is split into items by [`split_packed`].
    pub fn read_entries(&mut self, page: &Page, entries: &[Entry<'_>], venture: Option<String>) {
        self.read_entries_of(page, entries, venture, false);
    }

    /// `read_entries`; with `embedded`, the venture is the embed's and a heading on the page is
    /// an item's name (`### [Launches](https://...)`), not another venture.
    fn read_entries_of(
        &mut self,
        page: &Page,
        entries: &[Entry<'_>],
        venture: Option<String>,
        embedded: bool,
    ) {
        self.visiting.insert(page_key(&page.name));
        let mut venture = venture;
        let mut current: Option<Current> = None;
        let mut group = Group::default();
        let line_of = |index: usize| page.outline.lines.get(index);
        for entry in entries {
            let text = strip_html_tags(entry.text);
            let text = text.trim();
            if entry.block.is_some() {
                self.read_group(page, &mut group, &mut venture, &mut current);
                group.owner = entry.block;
                group.bullet = true;
            }
            // Code is opaque: never a heading, an embed or an item.
            let is_code = line_of(entry.line).is_some_and(|line| line.kind == LineKind::Code);
            if text.is_empty() || is_code {
                continue;
            }
            if let Some((_, heading_text)) = heading(text) {
                self.read_group(page, &mut group, &mut venture, &mut current);
                if embedded {
                    group.owner = line_of(entry.line).and_then(|line| line.block);
                    group
                        .lines
                        .push((entry.line, link_label(heading_text).to_string()));
                    continue;
                }
                let name = venture_name(heading_text);
                self.add_canvas(&name);
                venture = Some(name);
                current = None;
                continue;
            }
            if let Some(target) = embed_target(text) {
                self.read_group(page, &mut group, &mut venture, &mut current);
                let embedded_venture = venture.clone().unwrap_or_else(|| venture_name(target));
                self.add_canvas(&embedded_venture);
                self.read_embed(page, entry.line, target, embedded_venture);
                current = None;
                continue;
            }
            if group.lines.is_empty() && entry.block.is_none() {
                group.owner = line_of(entry.line).and_then(|line| line.block);
            }
            group.lines.push((entry.line, text.to_string()));
        }
        self.read_group(page, &mut group, &mut venture, &mut current);
    }

    /// Take one text group: a description of the current item, a venture label, or items.
    fn read_group(
        &mut self,
        page: &Page,
        group: &mut Group,
        venture: &mut Option<String>,
        current: &mut Option<Current>,
    ) {
        let Group {
            owner,
            bullet,
            lines,
        } = std::mem::take(group);
        let Some((_, first_text)) = lines.first() else {
            return;
        };
        let Some(venture_now) = venture.clone() else {
            return;
        };
        let tagged_first = is_tagged(first_text);
        let inside_item = current
            .and_then(|item| item.block)
            .zip(owner)
            .is_some_and(|(item_block, block)| is_ancestor(page, item_block, block));
        if let (false, true, Some(item)) = (tagged_first, inside_item, *current) {
            for (_, text) in &lines {
                self.append_description(item.example, text);
            }
            return;
        }
        if !tagged_first
            && bullet
            && let Some(block) = owner
            && has_tagged_children(page, block)
        {
            *venture = Some(venture_name(first_text));
            *current = None;
            return;
        }
        for packed in split_packed(&lines) {
            let item = self.push(
                page,
                packed.line,
                &venture_now,
                packed.name,
                packed.class,
                owner,
            );
            if let Some(example) = self.examples.get_mut(item.example) {
                example.description = packed.description;
            }
            *current = Some(item);
        }
    }

    fn read_embed(&mut self, page: &Page, line: usize, target: &str, venture: String) {
        let key = page_key(target);
        // Only the block page is being read: this embed is one of its own.
        let own = self.spans.is_some() && self.visiting.len() == 1;
        let (start, embeds_before) = (self.examples.len(), self.embeds_read);
        self.embeds_read += 1;
        let span = own.then(|| EmbedSpan {
            key: key.clone(),
            venture: venture.clone(),
            start,
            len: 0,
            nested: false,
        });
        if self.visiting.contains(&key) {
            self.warnings.push(ExampleWarning {
                kind: WarningKind::EmbedLoop,
                page: page.path.clone(),
                line: line + 1,
                message: format!("embed of [[{target}]] loops back to a page already being read"),
            });
            return;
        }
        let Some(embedded) = (self.find_page)(target) else {
            // An example page not written yet is an empty canvas of its venture, which is how
            // real graphs prepare them; an embed of anything else is worth a warning.
            if !target.to_lowercase().contains("/examples/") {
                self.warnings.push(ExampleWarning {
                    kind: WarningKind::MissingEmbed,
                    page: page.path.clone(),
                    line: line + 1,
                    message: format!("embedded page [[{target}]] is not in the graph"),
                });
            }
            if let (Some(spans), Some(span)) = (&mut self.spans, span) {
                spans.push(span);
            }
            return;
        };
        let entries = page_entries(embedded);
        self.read_entries_of(embedded, &entries, Some(venture), true);
        self.visiting.remove(&key);
        if let (Some(spans), Some(span)) = (&mut self.spans, span) {
            spans.push(EmbedSpan {
                len: self.examples.len() - start,
                nested: self.embeds_read > embeds_before + 1,
                ..span
            });
        }
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
        let draft = block.is_some_and(|block| page.outline.is_our_draft(block));
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

/// One item found in a text group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedItem {
    /// The line the item starts on (0-based).
    pub line: usize,
    pub name: String,
    pub description: String,
    pub class: Option<String>,
}

/// How one line of a text group reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LineShape {
    /// `#class [[Name]]`, `#class Name`, `emoji#class Name`.
    Tagged { class: String, name: String },
    /// `[[Name]]` alone, or followed by `: description`.
    Reference { name: String, rest: String },
    /// `Name: description` with a short name (optionally numbered: `1. Name:`).
    Labelled { name: String, rest: String },
    /// A few words without a full stop or colon: a name on a line of its own.
    Short,
    /// Anything else: a sentence, a statement.
    Statement,
}

/// The items of one text group (the lines of one block, or of the text before the first block).
///
/// Real pages pack several items into one block in a few shapes; the strongest shape present
/// decides where items start, and the other lines are descriptions:
/// 1. `#class [[Name]]` lines (each followed by its description lines);
/// 2. `[[Name]]` lines (the description after a colon or on the next lines);
/// 3. `Name: description` lines (an unnumbered or numbered short label before a colon);
/// 4. a short name on a line of its own followed by its description (seed 000's untagged items);
/// 5. otherwise every line is a statement and an item of its own, named by its head.
///
/// Lines before the first item start (an introduction) belong to no item. No line is ever split
/// into several items.
pub fn split_packed(lines: &[(usize, String)]) -> Vec<PackedItem> {
    // Most groups are one line (an item per block): no need to weigh shapes.
    if let [(line, text)] = lines {
        let item = item_from(*line, text, line_shape(text));
        return (!item.name.is_empty())
            .then_some(item)
            .into_iter()
            .collect();
    }
    let shapes: Vec<LineShape> = lines.iter().map(|(_, text)| line_shape(text)).collect();
    let rank = |shape: &LineShape| match shape {
        LineShape::Tagged { .. } => 1,
        LineShape::Reference { .. } => 2,
        LineShape::Labelled { .. } => 3,
        LineShape::Short | LineShape::Statement => 9,
    };
    let strongest = shapes.iter().map(rank).min().unwrap_or(9);
    let starts: Vec<bool> = if strongest < 9 {
        shapes
            .iter()
            .map(|shape| rank(shape) == strongest)
            .collect()
    } else if matches!(shapes.first(), Some(LineShape::Short)) {
        // A name line starts an item when a description line follows it.
        (0..shapes.len())
            .map(|index| {
                shapes[index] == LineShape::Short
                    && (index == 0
                        || shapes
                            .get(index + 1)
                            .is_some_and(|next| *next == LineShape::Statement))
            })
            .collect()
    } else {
        return lines
            .iter()
            .map(|(line, text)| statement_item(*line, text))
            .collect();
    };
    let mut items: Vec<PackedItem> = Vec::new();
    for (((line, text), shape), starts) in lines.iter().zip(shapes).zip(starts) {
        if starts {
            items.push(item_from(*line, text, shape));
        } else if let Some(item) = items.last_mut() {
            if !item.description.is_empty() {
                item.description.push('\n');
            }
            item.description.push_str(text);
        }
    }
    items.retain(|item| !item.name.is_empty());
    items
}

/// The item a line starts, from its shape: the name (and the description after a colon) as the
/// shape found them; a statement named by its head.
fn item_from(line: usize, text: &str, shape: LineShape) -> PackedItem {
    let (name, description, class) = match shape {
        LineShape::Tagged { class, name } => (name, String::new(), Some(class)),
        LineShape::Reference { name, rest } | LineShape::Labelled { name, rest } => {
            (name, rest, None)
        }
        LineShape::Short => (clean_name(text), String::new(), None),
        LineShape::Statement => return statement_item(line, text),
    };
    PackedItem {
        line,
        name,
        description,
        class,
    }
}

fn line_shape(text: &str) -> LineShape {
    if let Some((class, name)) = tagged_item(text) {
        return LineShape::Tagged { class, name };
    }
    let unnumbered = without_numbering(text);
    if let Some(inner) = unnumbered.strip_prefix("[[")
        && let Some(close) = inner.find("]]")
    {
        let rest = inner[close + 2..].trim();
        let rest = rest
            .strip_prefix(':')
            .or_else(|| rest.strip_prefix(" -"))
            .or_else(|| rest.strip_prefix('-'))
            .or_else(|| rest.is_empty().then_some(""));
        if let Some(rest) = rest {
            return LineShape::Reference {
                name: clean_name(&inner[..close]),
                rest: rest.trim().to_string(),
            };
        }
    }
    if let Some(colon) = unnumbered.find(':') {
        let label = unnumbered[..colon].trim();
        let rest = &unnumbered[colon + 1..];
        let separated = rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t');
        if separated && is_short_name(label, 8, 70) {
            return LineShape::Labelled {
                name: clean_name(label),
                rest: rest.trim().to_string(),
            };
        }
    }
    let trimmed = text.trim();
    if is_short_name(trimmed, 6, 50) && !trimmed.contains(':') {
        LineShape::Short
    } else {
        LineShape::Statement
    }
}

/// A name-like text: a few words, no sentence end, no link.
fn is_short_name(text: &str, max_words: usize, max_length: usize) -> bool {
    let words = text.split_whitespace().count();
    (1..=max_words).contains(&words)
        && text.len() <= max_length
        && !text.trim_end().ends_with('.')
        && !text.contains(". ")
        && !text.contains("://")
        && text.chars().any(char::is_alphabetic)
}

/// A line without a list number in front (`1. `, `2) `).
fn without_numbering(text: &str) -> &str {
    let trimmed = text.trim_start();
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return trimmed;
    }
    match trimmed[digits..].strip_prefix(['.', ')']) {
        Some(rest) if rest.starts_with(' ') => rest.trim_start(),
        _ => trimmed,
    }
}

/// A statement as an item: named by the statement itself when short (80 characters), else by its
/// head (the words before the first clause break, at most a dozen), described by the whole
/// statement.
fn statement_item(line: usize, text: &str) -> PackedItem {
    let statement = clean_name(without_numbering(text));
    let bare = statement.trim_end_matches(['.', ';', ':']).trim();
    let name = if bare.len() <= 80 {
        bare.to_string()
    } else {
        statement_head(bare)
    };
    let description = if name == bare {
        String::new()
    } else {
        statement.clone()
    };
    PackedItem {
        line,
        name,
        description,
        class: None,
    }
}

/// The words of a long statement before its first clause break (`, `, `; `, ` - `, ` (`, `: `)
/// when that leaves 3 to 12 words, else its first 10 words, without small words at the end.
fn statement_head(statement: &str) -> String {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let mut taken: Vec<&str> = Vec::new();
    for word in &words {
        let opens_clause = word.starts_with('(') || *word == "-" || *word == "–";
        if opens_clause && taken.len() >= 3 {
            break;
        }
        let ends_clause = word.ends_with(',') || word.ends_with(';') || word.ends_with(':');
        taken.push(word.trim_end_matches([',', ';', ':']));
        if ends_clause && taken.len() >= 3 {
            break;
        }
        if taken.len() == 12 {
            break;
        }
    }
    if taken.len() == 12 && words.len() > 12 {
        taken.truncate(10);
    }
    crate::text::drop_dangling_end(&mut taken, 3);
    taken.join(" ")
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
        .any(|&child| is_tagged(page.outline.first_text(&page.text, child)))
}

/// `(class, name)` of a line written `#class [[Name]]`, `#class Name` or `emoji#class Name`.
pub fn tagged_item(text: &str) -> Option<(String, String)> {
    let (class, rest) = tag_parts(text)?;
    let name = clean_name(rest);
    (!name.is_empty()).then(|| (class.to_string(), name))
}

/// Whether a line is a tagged item, without building its name.
fn is_tagged(text: &str) -> bool {
    tag_parts(text).is_some_and(|(_, rest)| rest.chars().any(char::is_alphanumeric))
}

/// The tag and the text after it, when only decoration (emoji or their mojibake, `*`, spaces)
/// comes before the tag.
fn tag_parts(text: &str) -> Option<(&str, &str)> {
    let hash = text.find('#')?;
    let prefix = &text[..hash];
    if !prefix
        .chars()
        .all(|character| !character.is_ascii() || character == '*' || character == ' ')
    {
        return None;
    }
    tag_at(&text[hash..])
}

/// The tag at the start of `text` (which starts with `#`) and the text after it.
fn tag_at(text: &str) -> Option<(&str, &str)> {
    let after_hash = text.strip_prefix('#')?;
    if let Some(bracketed) = after_hash.strip_prefix("[[") {
        let end = bracketed.find("]]")?;
        return Some((bracketed[..end].trim(), &bracketed[end + 2..]));
    }
    let end = after_hash
        .find(|character: char| character.is_whitespace() || character == '[')
        .unwrap_or(after_hash.len());
    let tag = &after_hash[..end];
    if tag.is_empty() || tag.starts_with('#') {
        return None;
    }
    Some((tag, &after_hash[end..]))
}

/// An item name as written, without page-reference brackets, bold marks, or leading emoji.
pub fn clean_name(text: &str) -> String {
    // Emoji and other symbols before a name are decoration; ASCII punctuation is the name's.
    let undecorated = |text: &str| -> String {
        text.trim()
            .trim_start_matches(|character: char| {
                (!character.is_ascii() && !character.is_alphanumeric()) || character == '*'
            })
            .trim()
            .to_string()
    };
    // Most lines have no marks: no copy of the text to remove them (reading 1,500 pages spends
    // much of its time here).
    if text.contains("[[") || text.contains("]]") || text.contains("**") {
        undecorated(&text.replace("[[", "").replace("]]", "").replace("**", ""))
    } else {
        undecorated(text)
    }
}

/// The label of a markdown link (`[Launches](https://...)` -> `Launches`), else the text.
fn link_label(text: &str) -> &str {
    let trimmed = text.trim();
    match (
        trimmed.strip_prefix('['),
        trimmed.find("]("),
        trimmed.ends_with(')'),
    ) {
        (Some(_), Some(close), true) => trimmed[1..close].trim(),
        _ => trimmed,
    }
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
    fn a_long_statement_is_named_by_its_head_without_a_dangling_word() {
        assert_eq!(
            statement_head("Grow revenue, keep costs flat and hire two engineers"),
            "Grow revenue keep costs flat and hire two engineers"
        );
        assert_eq!(
            statement_head(
                "Successfully clone and reproduce extinct animals using reconstructed DNA and assisted reproduction techniques"
            ),
            "Successfully clone and reproduce extinct animals using reconstructed DNA"
        );
        assert_eq!(
            statement_head(
                "Our mission is to revive extinct species through biotechnology and genetic engineering today"
            ),
            "Our mission is to revive extinct species through biotechnology"
        );
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
