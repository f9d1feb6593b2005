//! Metamodel blocks: what a block page says about itself.
//!
//! A block page is a page with an innCoPilot section, or with a Definition and Examples. From it
//! we read the id, title, properties, definition, item class, keys, the innCoPilot preamble and
//! questions, description, topics, tools, relations and weight. The block set is data: nothing
//! here names a particular block. Examples are read by `examples`.

use serde::Serialize;

use super::examples::{Example, tagged_item};
use super::name::{page_refs, strip_page_ref};
use super::page::{Entry, Page, Section, SectionKind};

/// A metamodel block read from its page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Block {
    pub id: String,
    pub title: String,
    /// The page, relative to the graph folder.
    pub page: String,
    /// The page's name in the graph.
    pub page_name: String,
    /// The tag items of this block carry (`relationship`).
    pub item_class: Option<String>,
    pub definition: String,
    /// The innCoPilot preamble as written in the page ("If ... What could it be?").
    pub preamble: Option<String>,
    pub questions: Vec<String>,
    pub keys: Vec<Key>,
    pub description: String,
    pub topics: Vec<String>,
    pub tools: Vec<Tool>,
    /// Ids of the blocks this block builds on (`relations::`), resolved after the whole graph is
    /// read.
    pub relations: Vec<String>,
    pub weight: Option<f64>,
    /// Page properties, in page order.
    pub properties: Vec<(String, String)>,
    #[serde(skip)]
    pub examples: Vec<Example>,
    /// The ventures with a place for examples on the page (a heading or an embed), with items
    /// or not: the (venture, block) canvases.
    #[serde(skip)]
    pub canvases: Vec<String>,
    /// `relations::` as written (page names), before resolution.
    #[serde(skip)]
    pub relation_pages: Vec<String>,
}

/// A `#key` of a block with its weight and value (`key-weight::`, `value::`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    pub name: String,
    pub weight: Option<f64>,
    pub value: Option<f64>,
}

/// A tool named in the Tools section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
}

/// Whether a page is a metamodel block page, judged from its sections.
pub fn is_block_page(sections: &[Section<'_>]) -> bool {
    let has = |kind| sections.iter().any(|section| section.kind == kind);
    has(SectionKind::InnCoPilot) || (has(SectionKind::Definition) && has(SectionKind::Examples))
}

/// Read a block page (its examples are filled in by the graph reader).
pub fn read_block(page: &Page, sections: &[Section<'_>]) -> Block {
    let id = page
        .property("metamodel-id")
        .map(strip_page_ref)
        .filter(|id| !id.is_empty())
        .unwrap_or(&page.name)
        .to_string();
    let title = page
        .property("title")
        .map(str::to_string)
        .or_else(|| page.export_title().map(str::to_string))
        .unwrap_or_else(|| humanise(id.rsplit('/').next().unwrap_or(&id)));
    let section = |kind| sections.iter().find(|section| section.kind == kind);

    let definition = section(SectionKind::Definition)
        .map(|section| section_text(page, &section.entries))
        .unwrap_or_default();
    let description = section(SectionKind::Description)
        .map(|section| section_text(page, &section.entries))
        .unwrap_or_default();
    let (preamble, questions) = section(SectionKind::InnCoPilot)
        .map(|section| read_questions(&section.entries))
        .unwrap_or_default();
    let item_class = section(SectionKind::ContentType)
        .and_then(|section| read_item_class(section))
        .or_else(|| {
            page.property("item-classes")
                .and_then(|value| page_refs(value).into_iter().next())
        });
    let keys = section(SectionKind::Keys)
        .map(|section| read_keys(page, section))
        .unwrap_or_default();
    let tools = section(SectionKind::Tools)
        .map(|section| read_tools(page, &section.entries))
        .unwrap_or_default();
    let topics = section(SectionKind::Topics)
        .map(|section| {
            section
                .entries
                .iter()
                .map(|entry| strip_page_ref(entry.text).to_string())
                .filter(|topic| !topic.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let relation_pages = page
        .property("relations")
        .map(page_refs)
        .unwrap_or_default();
    let weight = page.property("weight").and_then(parse_number);
    let properties = page
        .properties()
        .iter()
        .map(|property| (property.key.clone(), property.value.clone()))
        .collect();

    Block {
        id,
        title,
        page: page.path.clone(),
        page_name: page.name.clone(),
        item_class,
        definition,
        preamble,
        questions,
        keys,
        description,
        topics,
        tools,
        relations: Vec::new(),
        weight,
        properties,
        examples: Vec::new(),
        canvases: Vec::new(),
        relation_pages,
    }
}

/// `profile-(id)` -> `Profile (id)`, `customer-relationship` -> `Customer relationship`.
pub fn humanise(segment: &str) -> String {
    let spaced = segment.replace(['-', '_'], " ").replace('(', " (");
    let collapsed = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut characters = collapsed.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// A section's text: its lines in order, child blocks as `- ` items, blank runs collapsed to one
/// paragraph break.
fn section_text(page: &Page, entries: &[Entry<'_>]) -> String {
    let mut out = String::new();
    let mut pending_break = false;
    for entry in entries {
        if entry.text.is_empty() {
            pending_break = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if pending_break { "\n\n" } else { "\n" });
        }
        pending_break = false;
        // A block directly under the section is one paragraph of it; deeper blocks are list
        // items (seed 002's Description).
        let nested = entry
            .block
            .is_some_and(|block| page.outline.blocks[block].depth > 1);
        if nested {
            out.push_str("- ");
        }
        out.push_str(entry.text);
    }
    out
}

/// The innCoPilot preamble and its questions.
///
/// The pages glue the preamble and the first question on one line ("...What could it be?What
/// is..."); the split is after the last "what could it be?". Other questions are one per line or
/// one per child block. An empty section gives no preamble and no questions.
fn read_questions(entries: &[Entry<'_>]) -> (Option<String>, Vec<String>) {
    let mut preamble = None;
    let mut questions = Vec::new();
    let push = |questions: &mut Vec<String>, question: &str| {
        let question = strip_bullet(question);
        if !question.is_empty() {
            questions.push(question.to_string());
        }
    };
    for entry in entries {
        let text = entry.text.trim();
        if text.is_empty() {
            continue;
        }
        if preamble.is_none() && questions.is_empty() {
            const MARKER: &str = "what could it be?";
            let lower = text.to_lowercase();
            // Lowercasing can change byte lengths outside ASCII; only split when it did not.
            if lower.len() == text.len()
                && let Some(position) = lower.rfind(MARKER)
            {
                let split = position + MARKER.len();
                preamble = Some(text[..split].trim().to_string());
                push(&mut questions, &text[split..]);
                continue;
            }
            if lower.starts_with("if ") && lower.contains("defined as") {
                preamble = Some(text.to_string());
                continue;
            }
        }
        push(&mut questions, text);
    }
    (preamble, questions)
}

/// A question without the list marker it was written with. On the real graph the first
/// question follows the preamble on its line as `What could it be?- How will you ...`: the
/// bullet of a list the page's author pasted in, not part of the question.
fn strip_bullet(question: &str) -> &str {
    let question = question.trim();
    match question.strip_prefix(['-', '*']) {
        // `-5 degrees` and `**bold**` keep their first character: a marker stands alone.
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest.trim(),
        _ => question,
    }
}

/// The item class from a Content type section: `(relationship)` in the heading, a `#tag` in its
/// text, or the children of "uses the following classes".
fn read_item_class(section: &Section<'_>) -> Option<String> {
    if let Some(qualifier) = &section.qualifier {
        return Some(qualifier.clone());
    }
    for entry in &section.entries {
        if let Some(position) = entry.text.find('#')
            && let Some((class, _)) = tagged_item(&format!("{} x", &entry.text[position..]))
        {
            return Some(class);
        }
    }
    let listed = section
        .entries
        .iter()
        .position(|entry| entry.text.to_lowercase().contains("following classes"))?;
    section.entries[listed + 1..]
        .iter()
        .map(|entry| strip_page_ref(entry.text))
        .find(|class| !class.is_empty())
        .map(str::to_string)
}

/// Keys: blocks tagged `#key` or carrying `key-weight::`.
fn read_keys(page: &Page, section: &Section<'_>) -> Vec<Key> {
    let mut keys = Vec::new();
    for entry in &section.entries {
        let Some(block) = entry.block else { continue };
        let weight = page.outline.block_property(block, "key-weight");
        let is_key = weight.is_some() || entry.text.contains("#key");
        if !is_key {
            continue;
        }
        let Some(name) = key_name(entry.text) else {
            continue;
        };
        keys.push(Key {
            name,
            weight: weight.and_then(parse_number),
            value: page
                .outline
                .block_property(block, "value")
                .and_then(parse_number),
        });
    }
    keys
}

/// The key's name: the text of its markdown link, else of its last page reference, else the
/// words after `#key`.
fn key_name(text: &str) -> Option<String> {
    let after_key = text
        .find("#key")
        .map_or(text, |position| &text[position + 4..]);
    if let Some(open) = after_key.find('[')
        && !after_key[open..].starts_with("[[")
        && let Some(close) = after_key[open..].find("](")
    {
        let name = after_key[open + 1..open + close].trim();
        if !name.is_empty() {
            return Some(name.to_string());
        }
    }
    // The last reference that names something: real keys read `#key [[block/Key name]] [[**]]
    // [[-+]]`, a namespaced page followed by rating marks.
    if after_key.contains("[[")
        && let Some(reference) = page_refs(after_key)
            .into_iter()
            .rfind(|reference| reference.chars().any(char::is_alphanumeric))
    {
        let name = reference.rsplit('/').next().unwrap_or(&reference).trim();
        return Some(name.to_string());
    }
    let without_macros = match after_key.find("{{") {
        Some(position) => &after_key[..position],
        None => after_key,
    };
    let name = without_macros
        .trim()
        .trim_start_matches(|character: char| !character.is_ascii_alphabetic())
        .trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Tools: each tool is a block (or a `**bold**` line on an export page) naming it, followed by
/// its description.
fn read_tools(page: &Page, entries: &[Entry<'_>]) -> Vec<Tool> {
    let top_depth = entries
        .iter()
        .filter_map(|entry| entry.block)
        .map(|block| page.outline.blocks[block].depth)
        .min();
    let mut tools: Vec<Tool> = Vec::new();
    for entry in entries {
        let text = entry.text.trim();
        if text.is_empty() {
            continue;
        }
        let starts_tool = match entry.block {
            Some(block) => Some(page.outline.blocks[block].depth) == top_depth,
            None => top_depth.is_none() && text.starts_with("**") && text.ends_with("**"),
        };
        if starts_tool {
            let name = text.trim_matches('*');
            tools.push(Tool {
                name: strip_page_ref(name).to_string(),
                description: String::new(),
            });
        } else if let Some(tool) = tools.last_mut() {
            if !tool.description.is_empty() {
                tool.description.push('\n');
            }
            tool.description.push_str(text);
        }
    }
    tools
}

fn parse_number(value: &str) -> Option<f64> {
    strip_page_ref(value).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanises_page_names() {
        assert_eq!(humanise("profile-(id)"), "Profile (id)");
        assert_eq!(humanise("relationship"), "Relationship");
        assert_eq!(humanise("value-proposition"), "Value proposition");
    }

    #[test]
    fn key_names_come_from_links_refs_or_words() {
        let seed = "#block [[profile-(id)]] > #key \u{f8ff}\u{fc}75 [Customer Understanding](https://x/#/page/a) {{renderer :slider_rjxyar}}";
        assert_eq!(key_name(seed).as_deref(), Some("Customer Understanding"));
        assert_eq!(key_name("#key [[Trust]]").as_deref(), Some("Trust"));
        assert_eq!(
            key_name("#key [[opportunity/Momentum]] [[***]] [[-+]]").as_deref(),
            Some("Momentum")
        );
        assert_eq!(
            key_name("#key 80 Speed {{renderer x}}").as_deref(),
            Some("Speed")
        );
    }

    #[test]
    fn splits_the_glued_preamble() {
        let line = "If x is defined as :D, What could it be?What is it?";
        let entries = [
            Entry {
                line: 0,
                text: line,
                block: None,
            },
            Entry {
                line: 1,
                text: "How?",
                block: None,
            },
        ];
        let (preamble, questions) = read_questions(&entries);
        assert_eq!(
            preamble.as_deref(),
            Some("If x is defined as :D, What could it be?")
        );
        assert_eq!(questions, vec!["What is it?", "How?"]);
    }

    #[test]
    fn questions_lose_the_bullet_glued_to_the_preamble() {
        // The real graph's shape: the first question's bullet follows the preamble on its line.
        let line = "If keys is defined as :, What could it be?- How will you price it?";
        let entries = [
            Entry {
                line: 0,
                text: line,
                block: Some(1),
            },
            Entry {
                line: 1,
                text: "* Who pays?",
                block: None,
            },
            Entry {
                line: 2,
                text: "-",
                block: None,
            },
            Entry {
                line: 3,
                text: "What about -5 degrees?",
                block: Some(2),
            },
            Entry {
                line: 4,
                text: "**Bold** still?",
                block: Some(3),
            },
        ];
        let (preamble, questions) = read_questions(&entries);
        assert_eq!(
            preamble.as_deref(),
            Some("If keys is defined as :, What could it be?")
        );
        assert_eq!(
            questions,
            vec![
                "How will you price it?",
                "Who pays?",
                "What about -5 degrees?",
                "**Bold** still?"
            ]
        );
    }

    #[test]
    fn an_empty_inncopilot_section_has_no_questions() {
        let entries = [Entry {
            line: 0,
            text: "",
            block: None,
        }];
        assert_eq!(read_questions(&entries), (None, Vec::new()));
    }
}
