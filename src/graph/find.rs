//! Which block a user means by the name they typed: an id, a title, the words of either, an
//! item class; and, for a name that means nothing, the closest names and a short list of the
//! rest. Messages stay one line in a graph of a hundred blocks.

use super::page::words;
use super::{Block, Error, Graph};

impl Graph {
    /// The block a user means, compared case-insensitively: its id; else its title or the last
    /// segment of its id; else their words, so that hyphens, parentheses and `___` for `/` do
    /// not matter and a parenthesised part may be left out (`profile id relationship`,
    /// `profile-(id)___relationship`, `profile`); else its item class (`relationship`). The
    /// first of these that names any block decides: one block is the answer, several are
    /// ambiguous. A name that matches nothing gets the closest names as suggestions.
    pub fn find_block(&self, query: &str) -> Result<&Block, Error> {
        let wanted = query.trim().to_lowercase();
        if let Some(block) = self
            .blocks
            .iter()
            .find(|block| block.id.to_lowercase() == wanted)
        {
            return Ok(block);
        }
        let wanted_words = words(query);
        let same = |name: &str| name.to_lowercase() == wanted;
        let same_words =
            |name: &str| !wanted_words.is_empty() && name_words(name).contains(&wanted_words);
        // A block's own names come before the class of its items: `segment` is the block
        // `segment-(id)` even when other blocks' items are tagged #segment.
        let stages: [&dyn Fn(&Block) -> bool; 3] = [
            &|block| same(&block.title) || same(last_segment(&block.id)),
            &|block| block_names(block).any(same_words),
            &|block| {
                block
                    .item_class
                    .as_deref()
                    .is_some_and(|class| same(class) || same_words(class))
            },
        ];
        for stage in stages {
            let matches: Vec<&Block> = self.blocks.iter().filter(|block| stage(block)).collect();
            match matches.as_slice() {
                [] => continue,
                [block] => return Ok(block),
                several => {
                    return Err(Error::AmbiguousBlock {
                        query: query.to_string(),
                        matches: several.iter().map(|block| block.id.clone()).collect(),
                    });
                }
            }
        }
        Err(Error::UnknownBlock {
            query: query.to_string(),
            suggestions: self.closest_blocks(&wanted_words),
            known: self.blocks.iter().map(|block| block.id.clone()).collect(),
        })
    }

    /// The ids of the blocks with a name (or item class) within a few typing mistakes of
    /// `wanted_words`, closest first, at most three.
    fn closest_blocks(&self, wanted_words: &str) -> Vec<String> {
        // A third of the name may be wrong: `relationshp` finds `relationship`, while `channels`
        // finds nothing in a graph without channels rather than any eight-letter name.
        let limit = (wanted_words.chars().count() / 3).max(1);
        let mut close: Vec<(usize, &str)> = self
            .blocks
            .iter()
            .filter_map(|block| {
                let distance = block_names(block)
                    .chain(block.item_class.as_deref())
                    .flat_map(name_words)
                    .map(|name| edit_distance(wanted_words, &name))
                    .min()?;
                (distance <= limit).then_some((distance, block.id.as_str()))
            })
            .collect();
        close.sort();
        close
            .into_iter()
            .take(3)
            .map(|(_, id)| id.to_string())
            .collect()
    }
}

/// The part of an id after its last `/` (the whole id when it has none).
fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The names a user may call a block by: id, title, last segment of the id.
fn block_names(block: &Block) -> impl Iterator<Item = &str> {
    [
        block.id.as_str(),
        block.title.as_str(),
        last_segment(&block.id),
    ]
    .into_iter()
}

/// The words of a name, with and without its parenthesised parts: `profile id` and `profile`
/// for `profile-(id)`.
fn name_words(name: &str) -> [String; 2] {
    let mut outside = String::with_capacity(name.len());
    let mut depth = 0usize;
    for character in name.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(character),
            _ => {}
        }
    }
    [words(name), words(&outside)]
}

/// How many characters must be inserted, deleted or replaced to turn one text into the other.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    // One row of the usual table: distances from a prefix of `left` to every prefix of `right`.
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (row, left_character) in left.chars().enumerate() {
        let mut current = Vec::with_capacity(right.len() + 1);
        current.push(row + 1);
        for (column, right_character) in right.iter().enumerate() {
            let replace = previous[column] + usize::from(left_character != *right_character);
            let delete = previous[column + 1] + 1;
            let insert = current[column] + 1;
            current.push(replace.min(delete).min(insert));
        }
        previous = current;
    }
    previous[right.len()]
}

/// How many names an error message shows before it says how many more there are.
const LISTED_NAMES: usize = 5;

/// `a, b, c, d, e and 97 more`: a list that stays on one line in a graph of a hundred blocks.
pub(super) fn short_list(names: &[String]) -> String {
    let shown = names
        .iter()
        .take(LISTED_NAMES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(LISTED_NAMES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// What to type instead of an unknown block: the closest ids, then the first few of all.
pub(super) fn unknown_block_help(suggestions: &[String], known: &[String]) -> String {
    let mut help = match suggestions {
        [] => "the blocks are: ".to_string(),
        [one] => format!("did you mean {one}? The blocks are: "),
        [first @ .., last] => {
            format!(
                "did you mean {} or {last}? The blocks are: ",
                first.join(", ")
            )
        }
    };
    help.push_str(&short_list(known));
    if known.len() > LISTED_NAMES {
        help.push_str("; `inncopilot blocks` lists them");
    }
    help
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::graph::Page;

    fn page(path: &str, text: &str) -> Page {
        Page::parse(path.to_string(), PathBuf::from(path), text.to_string())
    }

    /// A block page with the fewest sections, its items tagged `class`.
    fn block_page(path: &str, class: Option<&str>) -> Page {
        let content_type = class
            .map(|class| format!("- ## Content type (#{class})\n  - Content is of type text.\n"))
            .unwrap_or_default();
        page(
            path,
            &format!("- ## Definition\n  - A thing.\n{content_type}- ## innCoPilot\n  - Why?\n"),
        )
    }

    fn graph_of_names() -> Graph {
        let pages = vec![
            block_page("pages/profile-(id).md", None),
            block_page("pages/profile-(id)___relationship.md", Some("relationship")),
            block_page("pages/segment-(id)___profiles.md", Some("profile")),
            block_page("pages/value-proposition.md", Some("value")),
            block_page("pages/toolbox.md", Some("gadget")),
            block_page("pages/north___notes.md", None),
            block_page("pages/south___notes.md", None),
        ];
        Graph::from_pages(PathBuf::from("graph"), pages, Vec::new())
    }

    #[test]
    fn blocks_are_found_by_the_names_people_type() {
        let graph = graph_of_names();
        for (query, id) in [
            ("profile-(id)", "profile-(id)"),
            ("PROFILE-(ID)/Relationship", "profile-(id)/relationship"),
            // Title and last segment of the id.
            ("Relationship", "profile-(id)/relationship"),
            ("Value proposition", "value-proposition"),
            ("Profile (id)", "profile-(id)"),
            // Words, whatever separates them, `___` for `/`.
            ("profile id relationship", "profile-(id)/relationship"),
            ("profile-(id)___relationship", "profile-(id)/relationship"),
            ("value_proposition", "value-proposition"),
            // The name without its parenthesised part comes before other blocks' item class.
            ("profile", "profile-(id)"),
            // Item class.
            ("gadget", "toolbox"),
            ("Value", "value-proposition"),
        ] {
            let found = graph.find_block(query).map(|block| block.id.as_str());
            assert_eq!(found.ok(), Some(id), "{query}");
        }
    }

    #[test]
    fn ambiguous_and_unknown_names_say_what_to_type() -> Result<(), String> {
        let graph = graph_of_names();
        let ambiguous = graph
            .find_block("notes")
            .err()
            .ok_or("`notes` found a block")?;
        assert!(
            matches!(&ambiguous, Error::AmbiguousBlock { matches, .. } if matches == &["north/notes", "south/notes"]),
            "{ambiguous:?}"
        );
        assert_eq!(
            ambiguous.to_string(),
            "`notes` matches several blocks (north/notes, south/notes); give the full id"
        );
        let unknown = graph
            .find_block("relationshp")
            .err()
            .ok_or("a typo found a block")?;
        assert!(matches!(unknown, Error::UnknownBlock { .. }), "{unknown:?}");
        assert_eq!(
            unknown.to_string(),
            "no block matches `relationshp`; did you mean profile-(id)/relationship? The blocks \
             are: north/notes, profile-(id), profile-(id)/relationship, segment-(id)/profiles, \
             south/notes and 2 more; `inncopilot blocks` lists them"
        );
        let unrelated = graph.find_block("zzz").err();
        assert!(
            matches!(&unrelated, Some(Error::UnknownBlock { suggestions, .. }) if suggestions.is_empty()),
            "{unrelated:?}"
        );
        Ok(())
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("relationship", "relationship"), 0);
        assert_eq!(edit_distance("relationshp", "relationship"), 1);
        assert_eq!(edit_distance("ménage", "menage"), 1);
    }
}
