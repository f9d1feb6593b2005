//! One page of the graph: its text, its outline, its name, and the sections a metamodel page is
//! made of.
//!
//! A page is read in one of two formats. A Logseq page is an outline of `- ` bullets, and its
//! sections are top-level blocks whose first line is a heading (`- ## Definition`). A page in the
//! site's *export* format (seed 001) has no bullets at all: its sections are `##` heading lines
//! and the text up to the next heading of the same or a higher level. Both are flattened into the
//! same [`Entry`] list so the readers of sections (`metamodel`, `examples`) see one shape.
//!
//! Headings are matched by their words only: the emoji before them are mojibake in real graphs
//! (UTF-8 read as Mac Roman), so every non-ASCII character is dropped before matching.

use std::path::PathBuf;
use std::sync::Arc;

use super::name::{page_name_from_file_name, strip_page_ref};
use super::outline::{LineKind, Outline, Property};

/// A page read from the graph. Its text and outline are shared by its copies: a run's writer
/// starts from the graph its engine read ([`Graph::clone`](super::Graph)) and holds a page of
/// its own only once it changes one.
#[derive(Debug, Clone)]
pub struct Page {
    /// Path relative to the graph folder, with `/` separators.
    pub path: String,
    /// The absolute (or graph-rooted) path the page was read from.
    pub file: PathBuf,
    /// `title::` when present, else the decoded file name.
    pub name: String,
    pub text: Arc<str>,
    pub outline: Arc<Outline>,
}

/// The kinds of sections a metamodel block page has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Definition,
    ContentType,
    Keys,
    InnCoPilot,
    Description,
    Examples,
    Topics,
    Tools,
}

/// A section of a page: its heading and its content, flattened in document order.
#[derive(Debug, Clone)]
pub struct Section<'p> {
    pub kind: SectionKind,
    /// The heading text after the `#` marks, as written.
    pub heading: &'p str,
    /// The text in parentheses after the heading words: `relationship` in
    /// `Content type (#relationship)`, `SpaceX` in `Example (SpaceX)`.
    pub qualifier: Option<String>,
    /// The heading's line (0-based).
    pub line: usize,
    /// The section's block on a Logseq page; `None` on an export page.
    pub block: Option<usize>,
    pub entries: Vec<Entry<'p>>,
}

/// One line of a section's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'p> {
    /// Line index in the page (0-based).
    pub line: usize,
    /// The line's text, trimmed, without the bullet.
    pub text: &'p str,
    /// Set when this line is the first line of a block (a bullet).
    pub block: Option<usize>,
}

impl Page {
    /// Index a page's text. `path` is relative to the graph folder.
    pub fn parse(path: String, file: PathBuf, text: String) -> Page {
        let outline = Outline::parse(&text);
        let file_name = path.rsplit('/').next().unwrap_or(&path);
        let name = outline
            .page_properties
            .iter()
            .find(|property| property.key.eq_ignore_ascii_case("title"))
            .map(|property| property.value.trim().to_string())
            .filter(|title| !title.is_empty())
            .unwrap_or_else(|| page_name_from_file_name(file_name));
        Page {
            path,
            file,
            name,
            text: Arc::from(text),
            outline: Arc::new(outline),
        }
    }

    /// A page property by case-insensitive key.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.outline
            .page_properties
            .iter()
            .find(|property| property.key.eq_ignore_ascii_case(key))
            .map(|property| property.value.as_str())
    }

    pub fn properties(&self) -> &[Property] {
        &self.outline.page_properties
    }

    /// A page in the site's export format: markdown headings at the start of a line, and no
    /// bullets. A page of indented text lines without bullets (real example pages are written
    /// so) is a Logseq page whose content is all in its first block.
    pub fn is_export(&self) -> bool {
        self.outline.blocks.is_empty()
            && (0..self.outline.lines.len()).any(|index| {
                let line = self.outline.line(&self.text, index);
                self.outline.lines[index].kind == LineKind::Text
                    && !line.starts_with([' ', '\t'])
                    && heading(line).is_some()
            })
    }

    /// The `# Title` of an export page.
    pub fn export_title(&self) -> Option<&str> {
        if !self.is_export() {
            return None;
        }
        (0..self.outline.lines.len())
            .filter(|&index| self.outline.lines[index].kind == LineKind::Text)
            .find_map(
                |index| match heading(self.outline.line(&self.text, index).trim()) {
                    Some((1, title)) => Some(title),
                    _ => None,
                },
            )
    }

    /// The page text rebuilt from the outline: pre-block lines, then every block's own lines in
    /// tree order. Equal to the text read, byte for byte, when the outline is sound (tested on
    /// every fixture page).
    pub fn render(&self) -> String {
        let outline = &self.outline;
        let mut out = String::with_capacity(self.text.len());
        if outline.bom {
            out.push('\u{feff}');
        }
        let line_bytes = |index: usize| {
            let line = &outline.lines[index];
            &self.text[line.content.start..line.next]
        };
        for index in 0..outline.lines.len() {
            if outline.lines[index].block.is_some() {
                break;
            }
            out.push_str(line_bytes(index));
        }
        let mut stack: Vec<usize> = outline.roots.iter().rev().copied().collect();
        while let Some(block) = stack.pop() {
            let own = &outline.blocks[block];
            for index in own.first_line..own.end_line {
                out.push_str(line_bytes(index));
            }
            stack.extend(own.children.iter().rev().copied());
        }
        out
    }

    /// The metamodel sections of the page, in document order.
    pub fn sections(&self) -> Vec<Section<'_>> {
        if self.is_export() {
            self.export_sections()
        } else {
            self.outline_sections()
        }
    }

    fn outline_sections(&self) -> Vec<Section<'_>> {
        let outline = &self.outline;
        let mut sections = Vec::new();
        for &root in &outline.roots {
            let Some((_, heading_text)) = heading(outline.first_text(&self.text, root)) else {
                continue;
            };
            let Some((kind, qualifier)) = classify_heading(heading_text) else {
                continue;
            };
            // The heading line itself is not content: the section's own body, then its subtree.
            let mut entries: Vec<Entry<'_>> = self.block_entries(root).skip(1).collect();
            for block in outline.subtree(root).into_iter().skip(1) {
                entries.extend(self.block_entries(block));
            }
            sections.push(Section {
                kind,
                heading: heading_text,
                qualifier,
                line: outline.blocks[root].first_line,
                block: Some(root),
                entries,
            });
        }
        sections
    }

    /// A block's first line and its body lines (properties excluded), as entries.
    pub fn block_entries(&self, block: usize) -> impl Iterator<Item = Entry<'_>> {
        let outline = &self.outline;
        let first = Entry {
            line: outline.blocks[block].first_line,
            text: outline.first_text(&self.text, block),
            block: Some(block),
        };
        let body = outline
            .body(&self.text, block)
            .into_iter()
            .map(|(line, text)| Entry {
                line,
                text,
                block: None,
            });
        std::iter::once(first).chain(body)
    }

    fn export_sections(&self) -> Vec<Section<'_>> {
        let outline = &self.outline;
        let mut sections: Vec<Section<'_>> = Vec::new();
        // The level of the heading that opened the current section.
        let mut open_level: Option<usize> = None;
        for index in 0..outline.lines.len() {
            let text = outline.line(&self.text, index).trim();
            let is_text = outline.lines[index].kind == LineKind::Text;
            if is_text && let Some((level, heading_text)) = heading(text) {
                if let Some((kind, qualifier)) = classify_heading(heading_text) {
                    sections.push(Section {
                        kind,
                        heading: heading_text,
                        qualifier,
                        line: index,
                        block: None,
                        entries: Vec::new(),
                    });
                    open_level = Some(level);
                    continue;
                }
                if open_level.is_some_and(|open| level <= open) {
                    open_level = None;
                    continue;
                }
            }
            if open_level.is_some()
                && let Some(section) = sections.last_mut()
            {
                section.entries.push(Entry {
                    line: index,
                    text,
                    block: None,
                });
            }
        }
        sections
    }
}

/// `(level, text)` of a markdown heading line (`## Text`).
pub fn heading(trimmed: &str) -> Option<(usize, &str)> {
    let level = trimmed.bytes().take_while(|&byte| byte == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !rest.starts_with(' ') && !rest.starts_with('\t') {
        return None;
    }
    Some((level, rest.trim()))
}

/// The lowercase ASCII words of a text: everything else (emoji, mojibake, punctuation) is a
/// separator.
pub fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|character: char| !character.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

/// Which section a heading opens, matched by its words, and the text in its parentheses.
pub fn classify_heading(heading_text: &str) -> Option<(SectionKind, Option<String>)> {
    let (before, qualifier) = match (heading_text.find('('), heading_text.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            let inner = heading_text[open + 1..close].trim();
            let inner = strip_page_ref(inner.trim_start_matches('#')).trim();
            (
                &heading_text[..open],
                (!inner.is_empty()).then(|| inner.to_string()),
            )
        }
        _ => (heading_text, None),
    };
    let words = words(before);
    let mut parts = words.split(' ');
    let kind = match parts.next()? {
        "definition" | "definitions" => SectionKind::Definition,
        "content" if parts.next() == Some("type") => SectionKind::ContentType,
        "keys" | "key" => SectionKind::Keys,
        "inncopilot" => SectionKind::InnCoPilot,
        "description" => SectionKind::Description,
        "examples" | "example" => SectionKind::Examples,
        "topics" => SectionKind::Topics,
        "tools" => SectionKind::Tools,
        _ => return None,
    };
    Some((kind, qualifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_match_by_words_despite_mojibake() {
        let mojibake_definition = "\u{f8ff}\u{fc}\u{ee}\u{e7} Definition";
        assert_eq!(
            classify_heading(mojibake_definition),
            Some((SectionKind::Definition, None))
        );
        assert_eq!(
            classify_heading("üì∞ Content type (#relationship)"),
            Some((SectionKind::ContentType, Some("relationship".into())))
        );
        assert_eq!(
            classify_heading("üëâ Example (SpaceX)"),
            Some((SectionKind::Examples, Some("SpaceX".into())))
        );
        assert_eq!(
            classify_heading("ï£¿Ã¼Ã§Ã±Ã´â\u{88}\u{8f}Ã¨ Topics"),
            Some((SectionKind::Topics, None))
        );
        assert_eq!(classify_heading("üìπ Internet info and videos"), None);
        assert_eq!(classify_heading("Content"), None);
    }

    #[test]
    fn heading_levels() {
        assert_eq!(heading("## Keys"), Some((2, "Keys")));
        assert_eq!(heading("#relationship"), None);
        assert_eq!(heading("####### x"), None);
    }

    #[test]
    fn export_sections_end_at_the_next_heading_of_their_level() {
        let text = "# Title\n\n## Definition\nA thing.\n\n## Other\nnot mine\n## Example (V)\n### sub\nline\n";
        let page = Page::parse("t.md".into(), "t.md".into(), text.into());
        assert!(page.is_export());
        assert_eq!(page.export_title(), Some("Title"));
        let sections = page.sections();
        assert_eq!(sections.len(), 2);
        let definition: Vec<&str> = sections[0].entries.iter().map(|entry| entry.text).collect();
        assert_eq!(definition, vec!["A thing.", ""]);
        let example: Vec<&str> = sections[1].entries.iter().map(|entry| entry.text).collect();
        assert_eq!(example, vec!["### sub", "line"]);
    }

    #[test]
    fn page_name_comes_from_title_or_file_name() {
        let titled = Page::parse(
            "pages/x.md".into(),
            "x".into(),
            "title:: My Page\n- a\n".into(),
        );
        assert_eq!(titled.name, "My Page");
        let untitled = Page::parse("pages/a___b.md".into(), "x".into(), "- a\n".into());
        assert_eq!(untitled.name, "a/b");
    }
}
