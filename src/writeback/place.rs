//! Where the drafts of a (venture, block) go, and the page texts that put them there.
//!
//! A block page's Examples section is a run of venture *segments*: an inline `### Venture`
//! heading and its items (seed 000), or an embed of the venture's example page (seed 002,
//! `{{embed [[<block>/examples/<Venture>]]}}`, usually under a heading naming that page). Drafts
//! go after the venture's last item, on the page that holds its items. A venture without a
//! segment gets one shaped like the page's others (an embed and a new example page when the page
//! embeds, else an inline heading), written as a block marked `draft:: true` so that `reject`
//! can take it away again and `accept` keep it. New lines copy the indentation of the items
//! next to them.
//!
//! Everything here is computed on texts in memory; `Workspace` writes them.

use std::ops::Range;

use crate::draft::Item;
use crate::graph::Graph;
use crate::graph::examples::{Example, embed_target, venture_name};
use crate::graph::metamodel::Block;
use crate::graph::name::{file_name_from_page_name, page_key};
use crate::graph::outline::LineKind;
use crate::graph::page::{Page, SectionKind, heading};

use super::Error;
use super::text::{ItemStyle, Marks, inline_text, item_lines, splice, without_trailing_blanks};

/// The new text of one page (`None`: delete the page).
#[derive(Debug, Clone)]
pub struct PageText {
    /// Relative to the graph, `/`-separated.
    pub path: String,
    pub text: Option<String>,
}

/// One venture's part of an Examples section.
#[derive(Debug, Clone)]
pub struct Segment {
    pub venture: String,
    /// Its first line (the heading, or the embed).
    pub start: usize,
    /// One past its last line: the next segment's start, or the section's end.
    pub end: usize,
    pub heading_level: Option<usize>,
    pub embed: Option<String>,
    /// The heading or embed block this tool wrote (`draft:: true`), when it did.
    pub draft_block: Option<usize>,
}

/// The Examples section of a Logseq block page.
#[derive(Debug, Clone)]
pub struct ExamplesSection {
    pub root: usize,
    /// One past the section's last line.
    pub end: usize,
    pub segments: Vec<Segment>,
}

/// The page a path names.
pub fn page_at<'g>(graph: &'g Graph, path: &str) -> Option<&'g Page> {
    graph.pages.iter().find(|page| page.path == path)
}

/// The Examples section of `page` and its venture segments; `None` on an export page or a
/// page without the section.
pub fn examples_section(page: &Page) -> Option<ExamplesSection> {
    let outline = &page.outline;
    let section = page
        .sections()
        .into_iter()
        .find(|section| section.kind == SectionKind::Examples)?;
    let root = section.block?;
    let mut segments: Vec<Segment> = Vec::new();
    let owner = |line: usize| outline.lines.get(line).and_then(|line| line.block);
    for entry in &section.entries {
        if let Some((level, text)) = heading(entry.text) {
            segments.push(Segment {
                venture: venture_name(text),
                start: entry.line,
                end: 0,
                heading_level: Some(level),
                embed: None,
                draft_block: None,
            });
        } else if let Some(target) = embed_target(entry.text) {
            // `- ### <block>/examples/X` with the embed on the next line is one segment.
            if let Some(last) = segments.last_mut()
                && last.embed.is_none()
                && owner(last.start) == owner(entry.line)
            {
                last.embed = Some(target.to_string());
                continue;
            }
            segments.push(Segment {
                venture: venture_name(target),
                start: entry.line,
                end: 0,
                heading_level: None,
                embed: Some(target.to_string()),
                draft_block: None,
            });
        }
    }
    let end = outline.blocks[root].subtree_end;
    for index in 0..segments.len() {
        segments[index].end = segments.get(index + 1).map_or(end, |next| next.start);
        let opener = owner(segments[index].start).filter(|&block| {
            outline.blocks[block].first_line == segments[index].start && outline.is_our_draft(block)
        });
        segments[index].draft_block = opener;
    }
    Some(ExamplesSection {
        root,
        end,
        segments,
    })
}

/// The lines an item occupies: its block and the blocks under it, up to `limit`, stopping before
/// a heading or embed line that only continues it in the file (seed 000's `### Venture` lines
/// are, to the outline, text of the item before them), without blank lines at the end.
pub fn item_extent(page: &Page, block: usize, limit: usize) -> Range<usize> {
    let outline = &page.outline;
    let first = outline.blocks[block].first_line;
    let end = outline.blocks[block].subtree_end.min(limit).max(first + 1);
    let cut = (first + 1..end)
        .find(|&line| {
            outline.lines[line].kind == LineKind::Text && {
                let text = outline.line(&page.text, line).trim();
                heading(text).is_some() || embed_target(text).is_some()
            }
        })
        .unwrap_or(end);
    without_trailing_blanks(outline, first..cut)
}

/// The outline block an example was read from.
pub fn example_block(page: &Page, example: &Example) -> Option<usize> {
    page.outline
        .lines
        .get(example.line.checked_sub(1)?)
        .and_then(|line| line.block)
}

/// The outline block of the last of `block`'s examples on `page` that starts within `lines` and
/// is of `venture` (any venture when `None`).
fn last_item(
    page: &Page,
    block: &Block,
    lines: Range<usize>,
    venture: Option<&str>,
) -> Option<usize> {
    let key = venture.map(page_key);
    block
        .examples
        .iter()
        .filter(|example| {
            example.page == page.path
                && lines.contains(&example.line.saturating_sub(1))
                && key
                    .as_ref()
                    .is_none_or(|key| *key == page_key(&example.venture))
        })
        .filter_map(|example| example_block(page, example))
        .next_back()
}

/// The tag draft items of `block` are written with: the way the block's examples are written
/// (the most common tag when most carry one, none when most do not), else the block's own item
/// class. A block whose examples are `[[Name]]` lines gets no tag invented for it.
pub fn item_tag(block: &Block) -> Option<&str> {
    let written: Vec<&Example> = block
        .examples
        .iter()
        .filter(|example| !example.draft)
        .collect();
    let tagged: Vec<&str> = written
        .iter()
        .filter_map(|example| example.class.as_deref())
        .collect();
    if written.is_empty() {
        return block.item_class.as_deref();
    }
    if tagged.len() * 2 < written.len() {
        return None;
    }
    let mut best: Option<(&str, usize)> = None;
    for class in &tagged {
        let count = tagged
            .iter()
            .filter(|other| other.eq_ignore_ascii_case(class))
            .count();
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((class, count));
        }
    }
    best.map(|(class, _)| class)
}

/// The style of the items next to `block`: its indentation, and its first child's (else one
/// indentation unit more).
fn style_of(page: &Page, block: usize) -> ItemStyle {
    let outline = &page.outline;
    let indent = outline.blocks[block].indent.clone();
    let child_indent = outline.blocks[block]
        .children
        .first()
        .map(|&child| outline.blocks[child].indent.clone())
        .unwrap_or_else(|| format!("{indent}{}", outline.indent_unit));
    ItemStyle {
        indent,
        child_indent,
    }
}

/// What `add` writes: the items, how they are marked, and the venture.
pub struct Addition<'a> {
    pub venture: &'a str,
    pub items: &'a [Item],
    pub marks: Marks<'a>,
}

impl Addition<'_> {
    fn lines(&self, style: &ItemStyle) -> Vec<String> {
        self.items
            .iter()
            .flat_map(|item| item_lines(item, style, &self.marks))
            .collect()
    }
}

/// The page of `block`; its absence is an error naming the page.
pub fn block_page<'g>(graph: &'g Graph, block: &Block) -> Result<&'g Page, Error> {
    page_at(graph, &block.page).ok_or_else(|| Error::NoExamplesSection {
        page: block.page.clone(),
    })
}

/// The block page drafts of `block` can be written into, and its Examples section; an export
/// page or a page without the section is an error naming the page.
pub fn writable_page<'g>(
    graph: &'g Graph,
    block: &Block,
) -> Result<(&'g Page, ExamplesSection), Error> {
    let page = block_page(graph, block)?;
    if page.is_export() {
        return Err(Error::ExportPage {
            page: page.path.clone(),
        });
    }
    let section = examples_section(page).ok_or_else(|| Error::NoExamplesSection {
        page: page.path.clone(),
    })?;
    Ok((page, section))
}

/// The page texts that add `addition`'s items to `block` for its venture, given the Examples
/// section of `block`'s page as it is (from [`writable_page`]).
pub fn add(
    graph: &Graph,
    block: &Block,
    section: &ExamplesSection,
    addition: &Addition<'_>,
) -> Result<Vec<PageText>, Error> {
    let page = block_page(graph, block)?;
    let key = page_key(addition.venture);

    if let Some(segment) = section
        .segments
        .iter()
        .find(|segment| page_key(&segment.venture) == key)
    {
        if let Some(target) = &segment.embed {
            return Ok(vec![add_to_example_page(
                graph, block, page, target, addition,
            )]);
        }
        let venture_items = segment.start..segment.end;
        let (at, style) = match last_item(page, block, venture_items, Some(addition.venture)) {
            Some(item) => (
                item_extent(page, item, segment.end).end,
                style_of(page, item),
            ),
            None => (
                without_trailing_blanks(&page.outline, segment.start + 1..segment.end)
                    .end
                    .max(segment.start + 1),
                section_style(page, block, section),
            ),
        };
        let text = splice(&page.text, &page.outline, at..at, &addition.lines(&style));
        return Ok(vec![PageText {
            path: page.path.clone(),
            text: Some(text),
        }]);
    }

    // A venture new to this block: a segment shaped like the page's others.
    let embeds: Vec<&Segment> = section
        .segments
        .iter()
        .filter(|segment| segment.embed.is_some())
        .collect();
    let inline = section.segments.len() - embeds.len();
    if let Some(template) = embeds.last().filter(|_| embeds.len() >= inline) {
        let (lines, target) = embed_lines(page, block, template, addition.venture, &addition.marks);
        let at = without_trailing_blanks(&page.outline, template.start..template.end).end;
        let block_page = PageText {
            path: page.path.clone(),
            text: Some(splice(&page.text, &page.outline, at..at, &lines)),
        };
        let example_page = add_to_example_page(graph, block, page, &target, addition);
        return Ok(vec![example_page, block_page]);
    }

    let style = section_style(page, block, section);
    let level = section
        .segments
        .iter()
        .filter_map(|segment| segment.heading_level)
        .next_back()
        .unwrap_or(3);
    let mut lines = vec![format!(
        "{}- {} {}",
        style.indent,
        "#".repeat(level),
        inline_text(addition.venture)
    )];
    lines.extend(
        addition
            .marks
            .scaffold_lines(&format!("{}  ", style.indent)),
    );
    lines.extend(addition.lines(&style));
    let at = without_trailing_blanks(&page.outline, section.root..section.end).end;
    Ok(vec![PageText {
        path: page.path.clone(),
        text: Some(splice(&page.text, &page.outline, at..at, &lines)),
    }])
}

/// The style of the section's last item (any venture), else one level under the section.
fn section_style(page: &Page, block: &Block, section: &ExamplesSection) -> ItemStyle {
    let lines = page.outline.blocks[section.root].first_line..section.end;
    last_item(page, block, lines, None)
        .map(|item| style_of(page, item))
        .unwrap_or_else(|| {
            let unit = &page.outline.indent_unit;
            let indent = format!("{}{unit}", page.outline.blocks[section.root].indent);
            ItemStyle {
                child_indent: format!("{indent}{unit}"),
                indent,
            }
        })
}

/// The embed block of a new venture, copied from the section's last embed with its page name
/// swapped, and marked `draft:: true`; and the new example page's name.
fn embed_lines(
    page: &Page,
    block: &Block,
    template: &Segment,
    venture: &str,
    marks: &Marks<'_>,
) -> (Vec<String>, String) {
    let outline = &page.outline;
    let old_target = template.embed.clone().unwrap_or_default();
    let venture = inline_text(venture);
    let suffix_at = old_target
        .len()
        .checked_sub(template.venture.len())
        .filter(|&at| {
            old_target.is_char_boundary(at)
                && old_target[at..].to_lowercase() == template.venture.to_lowercase()
        });
    let target = match suffix_at {
        Some(at) => format!("{}{venture}", &old_target[..at]),
        None => format!("{}/examples/{venture}", block.page_name),
    };
    let lines = without_trailing_blanks(outline, template.start..template.end);
    let opener_is_bullet = outline.lines[template.start].kind == LineKind::Bullet;
    let indent = outline.lines[template.start]
        .block
        .map_or("", |block| outline.blocks[block].indent.as_str());
    if !opener_is_bullet || lines.len() > 2 {
        return (
            [
                vec![format!("{indent}- ### {target}")],
                marks.scaffold_lines(&format!("{indent}  ")).to_vec(),
                vec![format!("{indent}  {{{{embed [[{target}]]}}}}")],
            ]
            .concat(),
            target,
        );
    }
    let bullet = outline.line(&page.text, template.start);
    let mut copied = vec![bullet.replace(&old_target, &target)];
    copied.extend(marks.scaffold_lines(&format!("{indent}  ")));
    copied.extend(
        (lines.start + 1..lines.end)
            .map(|line| outline.line(&page.text, line).replace(&old_target, &target)),
    );
    (copied, target)
}

/// Items added to a venture's example page: after its last item, or as the first items of a
/// page created next to the block page.
fn add_to_example_page(
    graph: &Graph,
    block: &Block,
    block_page: &Page,
    target: &str,
    addition: &Addition<'_>,
) -> PageText {
    match graph.page(target).filter(|page| !page.is_export()) {
        Some(page) => {
            let everything = 0..page.outline.lines.len();
            let (at, style) = match last_item(page, block, everything.clone(), None) {
                Some(item) => (
                    item_extent(page, item, everything.end).end,
                    style_of(page, item),
                ),
                None => (
                    without_trailing_blanks(&page.outline, everything).end,
                    example_page_style(graph, block),
                ),
            };
            PageText {
                path: page.path.clone(),
                text: Some(splice(
                    &page.text,
                    &page.outline,
                    at..at,
                    &addition.lines(&style),
                )),
            }
        }
        None => {
            let ending = block_page.outline.line_ending.as_str();
            let text = addition
                .lines(&example_page_style(graph, block))
                .iter()
                .map(|line| format!("{line}{ending}"))
                .collect();
            PageText {
                path: sibling_path(&block_page.path, target),
                text: Some(text),
            }
        }
    }
}

/// How the block's other example pages write their items; Logseq's own default (a tab per
/// level) when there are none.
fn example_page_style(graph: &Graph, block: &Block) -> ItemStyle {
    block
        .examples
        .iter()
        .filter(|example| example.page != block.page)
        .find_map(|example| {
            let page = page_at(graph, &example.page)?;
            Some(style_of(page, example_block(page, example)?))
        })
        .unwrap_or(ItemStyle {
            indent: String::new(),
            child_indent: "\t".into(),
        })
}

/// The path of a new page named `page_name`, in the folder of the page at `near`.
pub fn sibling_path(near: &str, page_name: &str) -> String {
    let file_name = file_name_from_page_name(page_name);
    match near.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/{file_name}"),
        None => file_name,
    }
}

/// A new venture's page holding its brief (`type:: venture`, the brief as the page's text), when
/// the graph has no page of that name yet. It is a draft like the items (`draft:: true`,
/// `generated-by::`): accepting the venture's drafts makes it the person's, rejecting them all
/// removes it.
pub fn brief_page(
    graph: &Graph,
    near: &Page,
    venture: &str,
    brief: &str,
    generated_by: &str,
) -> Option<PageText> {
    if graph.page(venture).is_some() || brief.trim().is_empty() {
        return None;
    }
    let ending = near.outline.line_ending.as_str();
    let mut text = format!(
        "type:: venture{ending}draft:: true{ending}generated-by:: {generated_by}{ending}{ending}"
    );
    for (index, line) in brief.trim().lines().enumerate() {
        let marker = if index == 0 { "- " } else { "  " };
        text.push_str(marker);
        text.push_str(line.trim_end());
        text.push_str(ending);
    }
    Some(PageText {
        path: sibling_path(&near.path, venture),
        text: Some(text),
    })
}
