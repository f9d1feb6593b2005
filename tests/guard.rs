//! Property tests of the promise that nothing a person wrote is changed: random example pages
//! (tabs and spaces mixed, blank and whitespace-only lines, continuation lines without a marker,
//! properties, fences, headings, CRLF, a BOM, no final line ending) get drafts written and then
//! rejected, and must come back byte-identical; and the guard refuses every change to a line a
//! person wrote.

use std::path::Path;

use inncopilot::graph::Graph;
use inncopilot::graph::page::Page;
use inncopilot::writeback::guard::{self, our_ranges};
use inncopilot::writeback::{self, DraftSet, Selection, Workspace};
use proptest::prelude::*;

mod common;

const BLOCK_PAGE: &str = "metamodel-id:: [[goals]]\n\n- ## Definition\n  - Outcomes to reach.\n- ## innCoPilot\n  - If goals is defined as :Outcomes to reach., What could it be?\n- ## Examples\n  - ### goals/examples/Moon Bakery\n    {{embed [[goals/examples/Moon Bakery]]}}\n";
const EXAMPLE_PAGE: &str = "pages/goals___examples___Moon Bakery.md";

/// One line of a random page, before indentation and line endings.
fn line() -> impl Strategy<Value = String> {
    let indent = prop::sample::select(vec!["", "  ", "\t", "  \t", "    ", "\t\t", "      ", " "]);
    let words = prop::sample::select(vec![
        "Open a second oven",
        "Sell to cafes",
        "Twenty customers by the end of the year.",
        "Green bonds",
        "Name: what it does",
        "a [[link]] inside",
        "#goal [[Break even]]",
        "[[Crescent logo]]",
        "1. Seed round:",
        "### Another venture",
        "{{embed [[goals/examples/Elsewhere]]}}",
        "draft:: true",
        "key:: value",
        "```",
        "- ",
        "",
    ]);
    let shape = prop::sample::select(vec!["bullet", "text", "blank", "spaces"]);
    (indent, words, shape).prop_map(|(indent, words, shape)| match shape {
        "bullet" => format!("{indent}- {words}"),
        "text" => format!("{indent}{words}"),
        "blank" => String::new(),
        _ => indent.to_string(),
    })
}

prop_compose! {
    fn page()(
        lines in prop::collection::vec(line(), 0..14),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        final_newline in any::<bool>(),
    ) -> String {
        let ending = if crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(ending);
        if final_newline && !text.is_empty() {
            text.push_str(ending);
        }
        if bom {
            text.insert(0, '\u{feff}');
        }
        text
    }
}

fn write(root: &Path) -> Result<(), writeback::Error> {
    let mut workspace = Workspace::load(root)?;
    let items = common::draft_items();
    let set = DraftSet {
        venture: "Moon Bakery",
        brief: None,
        block_id: "goals",
        items: &items,
        generated_by: "inncopilot test",
        run: "run-1",
    };
    writeback::write_drafts(&mut workspace, &set, false)?;
    workspace.commit()?;
    Ok(())
}

fn reject(root: &Path) -> Result<(), writeback::Error> {
    let mut workspace = Workspace::load(root)?;
    let selection = Selection {
        venture: Some("Moon Bakery".into()),
        ..Selection::default()
    };
    writeback::reject(&mut workspace, &selection)?;
    workspace.commit()?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Write then reject: byte-identical, or refused with the page untouched.
    #[test]
    fn drafts_written_then_rejected_leave_the_page_byte_identical(example in page()) {
        let folder = tempfile::tempdir().map_err(|error| TestCaseError::fail(error.to_string()))?;
        let root = folder.path();
        let write_page = |path: &str, text: &str| -> Result<(), TestCaseError> {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap_or(root))
                .and_then(|()| std::fs::write(file, text))
                .map_err(|error| TestCaseError::fail(error.to_string()))
        };
        write_page("pages/goals.md", BLOCK_PAGE)?;
        write_page(EXAMPLE_PAGE, &example)?;
        let read = |path: &str| String::from_utf8_lossy(&std::fs::read(root.join(path)).unwrap_or_default()).into_owned();
        match write(root) {
            Ok(()) => {
                let graph = Graph::load(root).map_err(|error| TestCaseError::fail(error.to_string()))?;
                let block = graph.find_block("goals").map_err(|error| TestCaseError::fail(error.to_string()))?;
                let drafts: Vec<String> = graph
                    .examples_of(block, "Moon Bakery")
                    .filter(|example| example.draft)
                    .map(|example| example.name.clone())
                    .collect();
                prop_assert_eq!(drafts, vec!["Night bakery tours", "Sourdough club"], "drafts read back");
                reject(root).map_err(|error| TestCaseError::fail(error.to_string()))?;
            }
            Err(error) => {
                // A page the drafts cannot safely go into is refused, and nothing is written.
                prop_assert!(
                    matches!(error, writeback::Error::NotReadBack { .. } | writeback::Error::HumanText { .. }),
                    "unexpected error: {}", error
                );
            }
        }
        prop_assert_eq!(read(EXAMPLE_PAGE), example);
        prop_assert_eq!(read("pages/goals.md"), BLOCK_PAGE);
    }

    /// Removing or changing any line a person wrote is refused by the guard.
    #[test]
    fn the_guard_refuses_any_change_to_a_human_line(example in page(), pick in any::<prop::sample::Index>(), delete in any::<bool>()) {
        let page = Page::parse("p.md".into(), "p.md".into(), example.clone());
        let ours = our_ranges(&page);
        let human: Vec<usize> = (0..page.outline.lines.len())
            .filter(|index| !ours.iter().any(|range| range.contains(index)))
            .collect();
        prop_assume!(!human.is_empty());
        let target = human[pick.index(human.len())];
        let line = &page.outline.lines[target];
        let mut changed = example.clone();
        if delete {
            changed.replace_range(line.content.start..line.next, "");
        } else {
            changed.insert(line.content.end, 'x');
        }
        prop_assume!(changed != example);
        prop_assert!(guard::check("p.md", Some(&example), Some(&changed)).is_err());
    }
}
