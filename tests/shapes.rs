//! The shapes of the real knowledge base, on a graph of our own written in them
//! (`tests/fixtures/shapes`): pages in nested folders, example pages without bullets, several
//! items packed into one block (`#class [[Name]]` lines, `[[Name]]` lines, `Name: description`
//! lines, numbered labels, short names over their descriptions, plain statements), empty and
//! missing example pages, relations written as page names, a block without an item class.

use std::path::{Path, PathBuf};

use inncopilot::graph::Graph;
use inncopilot::writeback::{self, DraftSet, Workspace};

mod common;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn shapes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes")
}

/// (name, description) of a venture's examples of a block.
fn examples(graph: &Graph, block: &str, venture: &str) -> Vec<(String, String)> {
    let Ok(block) = graph.find_block(block) else {
        return Vec::new();
    };
    graph
        .examples_of(block, venture)
        .map(|example| (example.name.clone(), example.description.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, description)| (name.to_string(), description.to_string()))
        .collect()
}

#[test]
fn every_packed_shape_reads_as_one_item_per_entry() -> TestResult {
    let graph = Graph::load(&shapes())?;
    // No bullets at all: tagged lines with their description lines.
    assert_eq!(
        examples(&graph, "goals", "Moon Bakery"),
        pairs(&[
            (
                "Open a second oven line",
                "Double the morning output so that cafes can be served before seven."
            ),
            (
                "Sell to twenty cafes",
                "Twenty regular cafe customers by the end of the year, each ordering weekly."
            ),
            (
                "Break even in month ten",
                "Monthly revenue covers rent, wages and flour from the tenth month on."
            ),
        ])
    );
    // Tagged lines packed in one block.
    assert_eq!(
        examples(&graph, "goals", "Tide Power"),
        pairs(&[
            (
                "Install three turbines",
                "Three tidal turbines in the bay, connected to the grid."
            ),
            (
                "Sign a municipal contract",
                "A ten-year supply contract with the harbor town."
            ),
        ])
    );
    // `[[Name]]` lines, each followed by its description.
    assert_eq!(
        examples(&graph, "Brand (kit)", "Moon Bakery"),
        pairs(&[
            (
                "Crescent logo",
                "A flour-dusted crescent moon drawn in one line."
            ),
            (
                "Night-shift voice",
                "Warm, short sentences, as if spoken at four in the morning."
            ),
            (
                "Blue paper bags",
                "Every loaf leaves in a midnight-blue bag."
            ),
        ])
    );
    // `Name: description` continuation lines.
    assert_eq!(
        examples(&graph, "Brand (kit)", "Tide Power"),
        pairs(&[
            (
                "Wave mark",
                "A logo of three stacked waves that also reads as a power meter."
            ),
            ("Engineer tone", "Plain numbers first, adjectives last."),
            (
                "Harbor colours",
                "Slate grey and buoy orange on every surface."
            ),
        ])
    );
    // `[[Name]]: description` on one line.
    assert_eq!(
        examples(&graph, "Brand (kit)", "Quiet Cafe"),
        pairs(&[
            ("Hush sign", "A finger-on-lips pictogram at the door."),
            (
                "Paper menus",
                "Menus printed on recycled paper, no screens."
            ),
        ])
    );
    // Plain statements: one item each, named by the statement or its head.
    assert_eq!(
        examples(&graph, "objectives", "Moon Bakery"),
        pairs(&[
            (
                "Bake every loaf with flour milled within fifty kilometres of the shop",
                ""
            ),
            (
                "Deliver to every customer before the first train leaves",
                "Deliver to every customer before the first train leaves, whatever the weather, with electric bikes only"
            ),
            ("Keep waste under two percent of the daily bake", ""),
        ])
    );
    // Numbered labels, the first line indented and the next ones not.
    assert_eq!(
        examples(&graph, "objectives", "Quiet Cafe"),
        pairs(&[
            (
                "Seed round",
                "Friends and a local angel put in the first savings."
            ),
            (
                "Green bank loan",
                "A loan at a reduced rate for renewable projects."
            ),
        ])
    );
    // Short names on lines of their own over their descriptions.
    assert_eq!(
        examples(&graph, "funding-(plan)", "Tide Power"),
        pairs(&[
            (
                "Green bonds",
                "Bonds sold to local savers, paid back from the electricity sold."
            ),
            (
                "Port authority grant",
                "A grant for projects that use the harbor without dredging."
            ),
        ])
    );
    // A whitespace-only example page holds no item.
    assert_eq!(examples(&graph, "objectives", "Tide Power"), pairs(&[]));
    Ok(())
}

#[test]
fn relations_name_pages_the_way_people_write_them() -> TestResult {
    let graph = Graph::load(&shapes())?;
    let relations = |id: &str| -> Vec<String> {
        graph
            .find_block(id)
            .map(|block| block.relations.clone())
            .unwrap_or_default()
    };
    // `[[funding (plan)]]` is the block `funding-(plan)`; `[[Brand (kit)]]` is a page title.
    assert_eq!(relations("goals"), ["funding-(plan)", "Brand (kit)"]);
    assert_eq!(relations("Brand (kit)"), ["goals"]);
    assert_eq!(relations("funding-(plan)"), ["objectives"]);
    assert!(relations("objectives").is_empty());
    assert!(
        graph
            .warnings
            .iter()
            .any(|warning| warning.message.contains("[[market size]]")),
        "{:?}",
        graph.warnings
    );
    Ok(())
}

#[test]
fn ventures_that_exist_only_as_embeds_are_ventures_with_empty_canvases() -> TestResult {
    let graph = Graph::load(&shapes())?;
    let ventures = graph.ventures();
    let summary: Vec<(String, usize, usize)> = ventures
        .iter()
        .map(|venture| {
            (
                venture.name.clone(),
                venture.blocks.values().sum(),
                venture.empty_canvases,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Harbor Tours".to_string(), 0, 3),
            ("Moon Bakery".to_string(), 9, 0),
            ("Quiet Cafe".to_string(), 4, 0),
            ("Tide Power".to_string(), 7, 1),
        ]
    );
    // Missing example pages are canvases, not problems.
    assert!(
        !graph
            .warnings
            .iter()
            .any(|warning| warning.message.contains("Harbor Tours")),
        "{:?}",
        graph.warnings
    );
    Ok(())
}

fn write(root: &Path, venture: &str, block: &str) -> Result<Vec<String>, writeback::Error> {
    let mut workspace = Workspace::load(root)?;
    let items = common::draft_items();
    writeback::write_drafts(
        &mut workspace,
        &DraftSet {
            venture,
            brief: None,
            block_id: block,
            items: &items,
            generated_by: "inncopilot test",
            run: "run-1",
        },
        false,
    )?;
    workspace.commit()
}

fn copy_shapes() -> std::io::Result<tempfile::TempDir> {
    common::fixture_copy("tests/fixtures/shapes")
}

#[test]
fn drafts_go_after_what_a_person_wrote_in_the_shape_of_the_block() -> TestResult {
    let folder = copy_shapes()?;
    let root = folder.path();
    let page = "kb/artifacts/goals___examples___Moon Bakery.md";
    let before = std::fs::read_to_string(root.join(page))?;
    write(root, "Moon Bakery", "goals")?;
    let after = std::fs::read_to_string(root.join(page))?;
    // A page without bullets keeps every line; the drafts follow its last text line, tagged
    // the way the block's items are, indented like the block's other example pages.
    let text_end = before.trim_end().len();
    assert_eq!(&after[..text_end], before.trim_end());
    assert!(
        after[text_end..]
            .starts_with("\n      - #goal [[Night bakery tours]]\n        draft:: true\n"),
        "{after}"
    );
    assert!(
        after.ends_with("\n\n\n"),
        "trailing blank lines kept: {after:?}"
    );

    // A block whose examples carry no tag gets `[[Name]]` items.
    write(root, "Tide Power", "Brand (kit)")?;
    let brand =
        std::fs::read_to_string(root.join("kb/artifacts/brand-kit___examples___Tide Power.md"))?;
    assert!(
        brand.contains("\n      - [[Night bakery tours]]\n        draft:: true\n"),
        "{brand}"
    );
    Ok(())
}

#[test]
fn an_embedded_venture_without_a_page_gets_one_where_the_embed_points() -> TestResult {
    let folder = copy_shapes()?;
    let root = folder.path();
    let written = write(root, "Harbor Tours", "funding-(plan)")?;
    assert_eq!(
        written,
        ["kb/plans/funding-(plan)___examples___Harbor Tours.md"]
    );
    let page = std::fs::read_to_string(root.join(&written[0]))?;
    // Shaped like its sibling example page: its indentation, no tag (its items have none).
    assert!(
        page.starts_with("      - [[Night bakery tours]]\n        draft:: true\n"),
        "{page}"
    );
    let graph = Graph::load(root)?;
    assert_eq!(examples(&graph, "funding-(plan)", "Harbor Tours").len(), 2);
    Ok(())
}

#[test]
fn packed_examples_read_the_same_on_an_export_page() -> TestResult {
    let graph =
        Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes-export"))?;
    let block = graph.find_block("pricing")?;
    assert_eq!(
        block.questions,
        [
            "Who pays, and when?",
            "How does the price follow the value?"
        ]
    );
    assert_eq!(
        examples(&graph, "pricing", "Moon Bakery"),
        pairs(&[
            (
                "Day-old discount",
                "Yesterday's loaves at half price from noon."
            ),
            ("Cafe subscription", "A fixed weekly order billed monthly."),
        ])
    );
    assert_eq!(
        examples(&graph, "pricing", "Tide Power"),
        pairs(&[
            (
                "Per kilowatt-hour",
                "Households pay for what the turbines deliver, read from a smart meter."
            ),
            (
                "Capacity fee",
                "Businesses reserve a share of the output for a flat monthly fee."
            ),
        ])
    );
    Ok(())
}

#[test]
fn few_shot_examples_from_packed_pages_are_clean_items() -> TestResult {
    use inncopilot::config::Settings;
    use inncopilot::pipeline::{self, Request};
    use inncopilot::prompt::Library;

    let graph = Graph::load(&shapes())?;
    let settings = Settings::load_with_env(None, |_| None)?;
    let request = Request {
        venture: "Harbor Tours".into(),
        blocks: vec!["Brand (kit)".into()],
        provider: Some("openai".into()),
        ..Request::default()
    };
    let preview = pipeline::preview(&graph, &settings, &Library::new(None)?, &request, |_| None)?;
    let user = &preview.prompt.messages[1].content;
    // The packed pages' entries, one per line, as name and description.
    assert!(
        user.contains("Crescent logo: A flour-dusted crescent moon drawn in one line."),
        "{user}"
    );
    assert!(
        user.contains("Wave mark: A logo of three stacked waves"),
        "{user}"
    );
    assert!(!user.contains("[["), "{user}");
    assert!(
        !user.contains("Engineer tone: Plain numbers first, adjectives last.\nHarbor colours"),
        "{user}"
    );
    Ok(())
}
