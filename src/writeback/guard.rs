//! The promise that nothing a person wrote is changed, checked on the texts themselves before any
//! page is written.
//!
//! Placement (`place`) and removal (`remove_blocks`) compute where drafts go and what goes with
//! them; a mistake there (a page shape they do not know) must not reach the disk. So every page
//! change is checked here, from the bytes read and the bytes to be written alone, whatever code
//! produced them:
//!
//! - the lines of a page that are *ours* are the extents of its draft blocks (`draft:: true` with
//!   a `generated-by:: inncopilot ...`, see `Outline::is_our_draft`)
//!   (an item: its block and descendants, cut before a heading or embed line that only continues
//!   it in the file; a venture heading or embed this tool made: up to the next venture), the
//!   same extents `reject` removes;
//! - every other line is a person's. Each of them must still be there after the change, in the
//!   same order, with the same bytes, and still a person's (not swallowed into a draft block,
//!   which a later `reject` would remove). Only the last line of a page may gain or lose its
//!   line ending (drafts added after it, or removed again);
//! - a page this tool made whole (a new venture's page: `draft:: true` and `generated-by::`
//!   among its page properties) is ours until a person accepts it;
//! - a page may be deleted only when it holds nothing but our lines.
//!
//! A change that breaks this is refused with the page and the line; `Workspace::commit` writes
//! nothing then.

use std::ops::Range;

use crate::graph::outline::Outline;
use crate::graph::page::Page;

use super::place::{examples_section, item_extent};

/// A person's line that a change would remove, alter, or turn into part of a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// 1-based line in the page as read.
    pub line: usize,
    pub text: String,
}

/// Check one page change (`None`: the page is absent). `Ok` when every line a person wrote
/// survives unchanged.
pub fn check(path: &str, before: Option<&str>, after: Option<&str>) -> Result<(), Violation> {
    let Some(before) = before else {
        // A new page: nothing of a person's was there.
        return Ok(());
    };
    let before_page = Page::parse(path.to_string(), path.into(), before.to_string());
    let human_before = human_lines(&before_page);
    let Some(after) = after else {
        return match human_before.first() {
            None => Ok(()),
            Some(first) => Err(violation(&before_page, first.index)),
        };
    };
    if before_page.outline.bom && !after.starts_with('\u{feff}') {
        return Err(Violation {
            line: 1,
            text: "the byte order mark at the start of the page".into(),
        });
    }
    let after_page = Page::parse(path.to_string(), path.into(), after.to_string());
    let human_after = human_lines(&after_page);
    let mut candidates = human_after.iter();
    for line in &human_before {
        let found = candidates.any(|candidate| {
            candidate.content == line.content
                && (candidate.ending == line.ending
                    || line.ending.is_empty()
                    || candidate.ending.is_empty())
        });
        if !found {
            return Err(violation(&before_page, line.index));
        }
    }
    Ok(())
}

/// One line of a page: index, content and line ending.
/// The page holds drafts of this tool and nothing else (blank lines aside).
pub fn only_drafts(page: &Page) -> bool {
    !our_ranges(page).is_empty()
        && human_lines(page)
            .iter()
            .all(|line| line.content.trim().is_empty())
}

struct PageLine<'p> {
    index: usize,
    content: &'p str,
    ending: &'p str,
}

fn violation(page: &Page, index: usize) -> Violation {
    Violation {
        line: index + 1,
        text: page.outline.line(&page.text, index).to_string(),
    }
}

/// The lines of `page` that are not ours, in order.
fn human_lines(page: &Page) -> Vec<PageLine<'_>> {
    let ours = our_ranges(page);
    let outline = &page.outline;
    (0..outline.lines.len())
        .filter(|index| !ours.iter().any(|range| range.contains(index)))
        .map(|index| {
            let line = &outline.lines[index];
            PageLine {
                index,
                content: &page.text[line.content.clone()],
                ending: &page.text[line.content.end..line.next],
            }
        })
        .collect()
}

/// The line ranges this tool wrote: the extents of its draft blocks.
pub fn our_ranges(page: &Page) -> Vec<Range<usize>> {
    let outline: &Outline = &page.outline;
    if super::is_draft_page(page) {
        // A page this tool made whole (a new venture's brief), not yet accepted.
        return std::iter::once(0..outline.lines.len()).collect();
    }
    let drafts: Vec<usize> = (0..outline.blocks.len())
        .filter(|&block| outline.is_our_draft(block))
        .collect();
    if drafts.is_empty() {
        return Vec::new();
    }
    let segments = examples_section(page)
        .map(|section| section.segments)
        .unwrap_or_default();
    drafts
        .into_iter()
        .map(|block| {
            match segments
                .iter()
                .find(|segment| segment.draft_block == Some(block))
            {
                // A venture heading or embed this tool made: its block up to the next venture.
                Some(segment) => super::text::without_trailing_blanks(
                    outline,
                    outline.blocks[block].first_line
                        ..outline.blocks[block].subtree_end.min(segment.end),
                ),
                None => item_extent(page, block, outline.lines.len()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "- ## Examples\n  - ### A\n  - #x [[One]]\n    - about one\n";

    #[test]
    fn adding_a_draft_block_is_allowed_and_removing_it_too() {
        let with_draft = "- ## Examples\n  - ### A\n  - #x [[One]]\n    - about one\n  - #x [[Two]]\n    draft:: true\n    generated-by:: inncopilot\n    - about two\n";
        assert_eq!(check("p.md", Some(PAGE), Some(with_draft)), Ok(()));
        assert_eq!(check("p.md", Some(with_draft), Some(PAGE)), Ok(()));
    }

    #[test]
    fn a_human_line_removed_or_changed_is_refused() {
        let removed = "- ## Examples\n  - ### A\n  - #x [[One]]\n";
        assert_eq!(
            check("p.md", Some(PAGE), Some(removed)),
            Err(Violation {
                line: 4,
                text: "    - about one".into()
            })
        );
        let changed = PAGE.replace("about one", "about 1");
        assert!(check("p.md", Some(PAGE), Some(&changed)).is_err());
        let crlf = PAGE.replace('\n', "\r\n");
        assert!(check("p.md", Some(PAGE), Some(&crlf)).is_err());
    }

    #[test]
    fn a_human_line_swallowed_by_a_draft_block_is_refused() {
        // Text lines without a bullet before the first block: a bullet put before them makes
        // them the body of the draft, which reject would then remove.
        let before = "  #goal [[A]]\n  about A\n";
        let after = "- #goal [[B]]\n  draft:: true\n  generated-by:: inncopilot\n  #goal [[A]]\n  about A\n";
        assert_eq!(
            check("p.md", Some(before), Some(after)),
            Err(Violation {
                line: 1,
                text: "  #goal [[A]]".into()
            })
        );
        let appended = "  #goal [[A]]\n  about A\n- #goal [[B]]\n  draft:: true\n  generated-by:: inncopilot\n";
        assert_eq!(check("p.md", Some(before), Some(appended)), Ok(()));
    }

    #[test]
    fn deleting_a_page_needs_it_to_hold_only_drafts() {
        let ours = "- [[B]]\n  draft:: true\n  generated-by:: inncopilot\n  - about B\n";
        // A person's own `draft:: true` is theirs.
        assert!(check("p.md", Some("- [[B]]\n  draft:: true\n"), None).is_err());
        assert_eq!(check("p.md", Some(ours), None), Ok(()));
        // A page a person made, even an empty-looking one, stays.
        assert!(check("p.md", Some("    \n\n"), None).is_err());
        assert!(check("p.md", Some(&format!("{ours}\n")), None).is_err());
    }

    #[test]
    fn a_page_this_tool_made_is_ours_until_accepted() {
        let ours = "type:: venture\ndraft:: true\ngenerated-by:: inncopilot 0.1.0\n\n- A brief.\n";
        assert_eq!(check("v.md", Some(ours), None), Ok(()));
        let accepted = ours.replace("draft:: true\n", "");
        assert_eq!(check("v.md", Some(ours), Some(&accepted)), Ok(()));
        assert!(check("v.md", Some(&accepted), None).is_err());
        // A person's page with a `draft:: true` of their own is theirs.
        let theirs = "type:: venture\ndraft:: true\n\n- A brief.\n";
        assert!(check("v.md", Some(theirs), None).is_err());
    }

    #[test]
    fn a_last_line_may_gain_its_line_ending_and_lose_it_again() {
        let before = "- #x [[One]]";
        let after = "- #x [[One]]\n- #x [[Two]]\n  draft:: true\n  generated-by:: inncopilot";
        assert_eq!(check("p.md", Some(before), Some(after)), Ok(()));
        assert_eq!(check("p.md", Some(after), Some(before)), Ok(()));
    }
}
