//! The knowledge-base reader against real pages: the seeds, the sample graph, and small graphs
//! built from them for each shape the reader must understand.

use std::path::{Path, PathBuf};

use inncopilot::graph::{Block, Error, Graph, Page};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(fixture("tests/fixtures/seeds").join(name)).unwrap_or_default()
}

/// Pages of `tests/fixtures/pages` as (path in a graph, text).
fn fixture_pages(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(fixture("tests/fixtures/pages").join(name));
            (format!("pages/{name}"), text.unwrap_or_default())
        })
        .collect()
}

/// A graph in a temporary folder holding `pages` (path relative to the graph, text).
fn graph_with(
    pages: &[(&str, &str)],
) -> Result<(tempfile::TempDir, Graph), Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    for (path, text) in pages {
        let file = folder.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, text)?;
    }
    let graph = Graph::load(folder.path())?;
    Ok((folder, graph))
}

fn only_block(graph: &Graph) -> Result<&Block, String> {
    match graph.blocks.as_slice() {
        [block] => Ok(block),
        blocks => Err(format!("expected one block, found {}", blocks.len())),
    }
}

/// (venture, name, description) of every example, in order.
fn examples(block: &Block) -> Vec<(String, String, String)> {
    block
        .examples
        .iter()
        .map(|example| {
            (
                example.venture.clone(),
                example.name.clone(),
                example.description.clone(),
            )
        })
        .collect()
}

fn count_for(block: &Block, venture: &str) -> usize {
    block
        .examples
        .iter()
        .filter(|example| example.venture == venture)
        .count()
}

fn markdown_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_fixture_page_round_trips_byte_for_byte() -> TestResult {
    let mut files = markdown_files(&fixture("tests/fixtures"));
    files.extend(markdown_files(&fixture("sample-graph")));
    assert!(files.len() >= 10, "fixtures missing: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let variants = [
            text.clone(),
            text.replace('\n', "\r\n"),
            format!("\u{feff}{}", text.replace('\n', "\r\n")),
            text.trim_end().to_string(),
        ];
        for variant in variants {
            let page = Page::parse("p.md".into(), file.clone(), variant.clone());
            assert!(
                page.render() == variant,
                "{} does not round-trip (crlf: {}, bom: {})",
                file.display(),
                variant.contains('\r'),
                page.outline.bom
            );
        }
    }
    Ok(())
}

#[test]
fn seed_000_inline_examples_under_venture_headings() -> TestResult {
    let (_folder, graph) = graph_with(&[(
        "pages/profile-(id)___relationship.md",
        &seed("000-relationship.md"),
    )])?;
    let block = only_block(&graph)?;
    assert_eq!(block.id, "profile-(id)/relationship");
    assert_eq!(block.title, "Relationship");
    assert_eq!(block.item_class.as_deref(), Some("relationship"));
    assert!(
        block
            .definition
            .starts_with("Relationship that we maintain with our stakeholders")
    );
    assert_eq!(block.questions.len(), 5);
    assert!(block.questions[0].starts_with("What is the unique value proposition"));
    assert!(
        block
            .preamble
            .as_deref()
            .is_some_and(|preamble| preamble.ends_with("What could it be?"))
    );
    assert_eq!(block.tools.len(), 6);
    assert_eq!(
        block.tools[2].name,
        "Customer Relationship Management (CRM)"
    );
    assert!(block.description.contains("\n\n"), "paragraphs kept");
    // Untagged items with an unbulleted description line (Space X) ...
    assert_eq!(
        examples(block)[..3].to_vec(),
        vec![
            ("Space X".into(), "Long-term Partnerships".into(), "Building sustained relationships through ongoing projects and contracts.".into()),
            ("Space X".into(), "Collaborative Development".into(), "Engaging in joint research and development efforts to push the boundaries of space exploration.".into()),
            ("Space X".into(), "Customer Support and Consultation".into(), "Offering expert guidance and support throughout the mission planning and execution phases.".into()),
        ]
    );
    // ... and tagged items with a child description, the venture heading sitting in the body of
    // the block before it.
    assert_eq!(
        examples(block)[3],
        (
            "vein visualizer".into(),
            "Customer Support Portal".into(),
            "A self-service online platform where customers can access resources, FAQs, and submit support tickets.".into()
        )
    );
    for venture in [
        "vein visualizer",
        "extinguished animals meat",
        "Exotic Pet Rental",
        "Underwater restaurant",
    ] {
        assert_eq!(count_for(block, venture), 5, "{venture}");
    }
    assert_eq!(block.examples.len(), 23);
    assert!(
        block
            .examples
            .iter()
            .skip(3)
            .all(|example| example.class.as_deref() == Some("relationship"))
    );
    Ok(())
}

#[test]
fn seed_001_export_format() -> TestResult {
    let (_folder, graph) =
        graph_with(&[("pages/relationship.md", &seed("001-relationship-export.md"))])?;
    let block = only_block(&graph)?;
    assert_eq!(block.id, "relationship");
    assert_eq!(block.title, "Relationship");
    assert_eq!(block.item_class.as_deref(), Some("relationship"));
    assert_eq!(
        block.definition,
        "Relationship that we maintain with our stakeholders, which can be personal, automated, self-service, etc."
    );
    // No innCoPilot section: the prompt will be the preamble alone.
    assert!(block.questions.is_empty());
    assert_eq!(block.preamble, None);
    assert_eq!(
        examples(block),
        vec![
            ("SpaceX".into(), "Long-term Partnerships".into(), "Building sustained relationships through ongoing projects and contracts.".into()),
            ("SpaceX".into(), "Collaborative Development".into(), "Engaging in joint research and development efforts to push the boundaries of space exploration.".into()),
            ("SpaceX".into(), "Customer Support and Consultation".into(), "Offering expert guidance and support throughout the mission planning and execution phases.".into()),
        ]
    );
    assert_eq!(block.tools.len(), 6);
    assert_eq!(block.tools[0].name, "Business Model Canvas");
    assert!(
        block.tools[0]
            .description
            .starts_with("In the Business Model Canvas")
    );
    Ok(())
}

#[test]
fn seed_002_embedded_example_pages_and_keys() -> TestResult {
    let graph = Graph::load(&fixture("sample-graph"))?;
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
    let block = graph
        .blocks
        .iter()
        .find(|block| block.id == "profile-(id)")
        .ok_or("profile block missing")?;
    assert_eq!(block.title, "Profile (id)");
    assert_eq!(block.weight, Some(70.0));
    assert_eq!(block.keys.len(), 2);
    assert_eq!(block.keys[0].name, "Customer Understanding");
    assert_eq!(
        (block.keys[0].weight, block.keys[0].value),
        (Some(75.0), Some(50.0))
    );
    assert_eq!(block.keys[1].name, "Customer retention");
    assert_eq!(block.keys[1].weight, Some(60.0));
    assert_eq!(count_for(block, "Space X"), 3);
    assert_eq!(count_for(block, "extinguished animals meat"), 2);
    let first = &block.examples[0];
    assert_eq!(first.name, "Government Space Agencies");
    assert_eq!(first.page, "pages/profile-(id)___examples___Space X.md");
    assert_eq!(first.line, 1);
    assert_eq!(
        block.item_class.as_deref(),
        Some("profile"),
        "class from the items' tags"
    );
    // The relationship page names the profile page in relations::.
    let relationship = graph
        .blocks
        .iter()
        .find(|block| block.id == "profile-(id)/relationship")
        .ok_or("relationship block missing")?;
    assert_eq!(relationship.relations, vec!["profile-(id)".to_string()]);
    Ok(())
}

const SHAPES_HEADER: &str = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  If thing is defined as :A thing., What could it be?Why?\n";

#[test]
fn several_items_in_one_block_and_untagged_items() -> TestResult {
    let page = format!(
        "{SHAPES_HEADER}- ## Examples\n  - ### Acme\n    #thing [[One]]\n    The first.\n    #thing [[Two]]\n    The second.\n  - ### Beta\n  - Plain item\n    - its description\n  - **Bold item**\n    described below\n"
    );
    let (_folder, graph) = graph_with(&[("pages/thing.md", &page)])?;
    let block = only_block(&graph)?;
    assert_eq!(
        examples(block),
        vec![
            ("Acme".into(), "One".into(), "The first.".into()),
            ("Acme".into(), "Two".into(), "The second.".into()),
            ("Beta".into(), "Plain item".into(), "its description".into()),
            ("Beta".into(), "Bold item".into(), "described below".into()),
        ]
    );
    assert_eq!(block.questions, vec!["Why?".to_string()]);
    Ok(())
}

#[test]
fn questions_glued_to_the_preamble_lose_their_bullet() -> TestResult {
    // The real graph writes the preamble and the first question's bullet on one line.
    let page = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - If thing is defined as :A thing., What could it be?- How will you sell it?\n  - Who buys it?\n- ## Examples\n";
    let (_folder, graph) = graph_with(&[("pages/thing.md", page)])?;
    let block = only_block(&graph)?;
    assert_eq!(
        block.preamble.as_deref(),
        Some("If thing is defined as :A thing., What could it be?")
    );
    assert_eq!(
        block.questions,
        vec!["How will you sell it?", "Who buys it?"]
    );
    Ok(())
}

#[test]
fn an_empty_inncopilot_section_keeps_definition_description_and_keys() -> TestResult {
    let pages = fixture_pages(&[
        "market-timing_info.md",
        "market-timing___examples___Tide Mill.md",
    ]);
    let pages: Vec<(&str, &str)> = pages
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let (_folder, graph) = graph_with(&pages)?;
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
    let block = only_block(&graph)?;
    assert_eq!(block.id, "market-timing");
    assert_eq!(block.preamble, None);
    assert!(block.questions.is_empty(), "{:?}", block.questions);
    assert!(
        block
            .definition
            .starts_with("Market timing is the judgement")
    );
    assert!(
        block
            .description
            .starts_with("In business modeling, market timing")
    );
    let weights: Vec<Option<f64>> = block.keys.iter().map(|key| key.weight).collect();
    assert_eq!(weights, vec![Some(80.0), Some(40.0)]);
    assert_eq!(count_for(block, "Tide Mill"), 2);
    Ok(())
}

#[test]
fn drafts_are_examples_marked_as_drafts() -> TestResult {
    let page = format!(
        "{SHAPES_HEADER}- ## Examples\n  ### Acme\n  - #thing [[Human]]\n  \t- written by a person\n  - #thing [[Machine]]\n    draft:: true\n    generated-by:: inncopilot 0.1.0 via local SmolLM2\n  \t- written by a model\n"
    );
    let (_folder, graph) = graph_with(&[("pages/thing.md", &page)])?;
    let block = only_block(&graph)?;
    let drafts: Vec<(&str, bool)> = block
        .examples
        .iter()
        .map(|example| (example.name.as_str(), example.draft))
        .collect();
    assert_eq!(drafts, vec![("Human", false), ("Machine", true)]);
    assert_eq!(block.examples[1].description, "written by a model");
    Ok(())
}

#[test]
fn every_indentation_style_reads_the_same() -> TestResult {
    let tabs = "- ## Definition\n\t- A thing.\n- ## innCoPilot\n\t- Why?\n\t- How?\n- ## Examples\n\t- ### Acme\n\t\t- #thing [[One]]\n\t\t\t- about one\n\t\t- #thing [[Two]]\n\t\t\t- about two\n";
    let two_spaces = tabs.replace('\t', "  ");
    let four_spaces = tabs.replace('\t', "    ");
    // Seed 000 style: two spaces for the first level, a tab added for the next.
    let mixed = tabs
        .replace("\t\t\t", "    \t")
        .replace("\t\t", "    ")
        .replace('\t', "  ");
    let mut results = Vec::new();
    for (style, text) in [
        ("tabs", tabs.to_string()),
        ("2 spaces", two_spaces),
        ("4 spaces", four_spaces),
        ("mixed", mixed),
    ] {
        let (_folder, graph) = graph_with(&[("pages/thing.md", &text)])?;
        let block = only_block(&graph)?;
        assert_eq!(
            block.questions,
            vec!["Why?".to_string(), "How?".to_string()],
            "{style}"
        );
        results.push((style, examples(block)));
    }
    let expected = vec![
        (
            "Acme".to_string(),
            "One".to_string(),
            "about one".to_string(),
        ),
        (
            "Acme".to_string(),
            "Two".to_string(),
            "about two".to_string(),
        ),
    ];
    for (style, found) in results {
        assert_eq!(found, expected, "{style}");
    }
    Ok(())
}

#[test]
fn crlf_and_bom_pages_read_like_lf_pages() -> TestResult {
    let lf = seed("000-relationship.md");
    let crlf_bom = format!("\u{feff}{}", lf.replace('\n', "\r\n"));
    let (_a, plain) = graph_with(&[("pages/profile-(id)___relationship.md", &lf)])?;
    let (_b, windows) = graph_with(&[("pages/profile-(id)___relationship.md", &crlf_bom)])?;
    let plain_json = inncopilot::report::blocks_json(&plain)?;
    let windows_json = inncopilot::report::blocks_json(&windows)?;
    assert_eq!(plain_json, windows_json);
    assert!(!windows_json.contains('\r'));
    Ok(())
}

#[test]
fn code_fences_are_opaque_text() -> TestResult {
    let page = format!(
        "{SHAPES_HEADER}- ## Examples\n  - ### Acme\n    - #thing [[Real]]\n      - real one\n    - a snippet:\n      ```\n      - #thing [[Fake]]\n      ### Other\n      draft:: true\n      ```\n"
    );
    let (_folder, graph) = graph_with(&[("pages/thing.md", &page)])?;
    let block = only_block(&graph)?;
    let names: Vec<&str> = block
        .examples
        .iter()
        .map(|example| example.name.as_str())
        .collect();
    assert_eq!(names, vec!["Real", "a snippet"]);
    assert!(
        block
            .examples
            .iter()
            .all(|example| example.venture == "Acme")
    );
    Ok(())
}

#[test]
fn file_names_decode_to_page_names_and_reserved_folders_are_skipped() -> TestResult {
    let block_page = format!(
        "{SHAPES_HEADER}- ## Examples\n  - ### Acme\n    - {{{{embed [[ns/examples/Acme]]}}}}\n"
    );
    let (_folder, graph) = graph_with(&[
        ("pages/ns.md", &block_page),
        (
            "pages/deep/folder/ns%2Fexamples%2FAcme.md",
            "- #thing [[Legacy]]\n  - from a %2F file name\n",
        ),
        ("pages/What%3F.md", "- a question page\n"),
        ("pages/titled.md", "title:: Custom Title\n\n- x\n"),
        (
            "journals/2024_01_01.md",
            "- ## innCoPilot\n  - not a block page\n",
        ),
        ("logseq/bak/pages/ns.md", "- ## innCoPilot\n  - backup\n"),
        (".hidden/page.md", "- ## innCoPilot\n  - hidden\n"),
        ("pages/readme.txt", "not a page"),
    ])?;
    let mut names: Vec<&str> = graph.pages.iter().map(|page| page.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["Custom Title", "What?", "ns", "ns/examples/Acme"]
    );
    let block = only_block(&graph)?;
    assert_eq!(
        examples(block),
        vec![(
            "Acme".into(),
            "Legacy".into(),
            "from a %2F file name".into()
        )]
    );
    assert_eq!(
        block.examples[0].page,
        "pages/deep/folder/ns%2Fexamples%2FAcme.md"
    );
    Ok(())
}

#[test]
fn unreadable_pages_are_reported_and_skipped() -> TestResult {
    let folder = tempfile::tempdir()?;
    let pages = folder.path().join("pages");
    std::fs::create_dir_all(&pages)?;
    std::fs::write(
        pages.join("profile-(id)___relationship.md"),
        seed("000-relationship.md"),
    )?;
    std::fs::write(pages.join("latin1.md"), b"- caf\xe9\n")?;
    std::fs::write(
        pages.join("image.md"),
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00],
    )?;
    let graph = Graph::load(folder.path())?;
    assert_eq!(graph.blocks.len(), 1, "the rest of the graph still loads");
    let skipped: Vec<String> = graph.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].starts_with("pages/image.md: skipped: not UTF-8"),
        "{skipped:?}"
    );
    assert!(
        skipped[1]
            .starts_with("pages/latin1.md: skipped: not UTF-8 text (invalid byte at offset 5)"),
        "{skipped:?}"
    );
    Ok(())
}

#[test]
fn a_missing_embedded_page_is_a_warning_with_its_line() -> TestResult {
    let page = format!(
        "{SHAPES_HEADER}- ## Examples\n  - ### Acme\n    {{{{embed [[ns/notes/Nowhere]]}}}}\n"
    );
    let (_folder, graph) = graph_with(&[("pages/ns.md", &page)])?;
    let warnings: Vec<String> = graph.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["pages/ns.md:7: embedded page [[ns/notes/Nowhere]] is not in the graph"]
    );
    Ok(())
}

#[test]
fn a_missing_example_page_is_an_empty_canvas_not_a_warning() -> TestResult {
    let page = format!(
        "{SHAPES_HEADER}- ## Examples\n  - ### Acme\n    {{{{embed [[ns/examples/Acme]]}}}}\n"
    );
    let (_folder, graph) = graph_with(&[("pages/ns.md", &page)])?;
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
    let ventures = graph.ventures();
    assert_eq!(ventures.len(), 1);
    assert_eq!(ventures[0].name, "Acme");
    assert!(ventures[0].blocks.is_empty());
    assert_eq!(ventures[0].empty_canvases, 1);
    Ok(())
}

#[test]
fn a_page_without_the_sections_is_not_a_block() -> TestResult {
    let (_folder, graph) = graph_with(&[
        ("pages/thing.md", SHAPES_HEADER),
        (
            "pages/definition-only.md",
            "- ## Definition\n  - Something.\n",
        ),
        (
            "pages/notes.md",
            "- ## Meeting notes\n  - ### Acme\n  - #thing [[X]]\n",
        ),
    ])?;
    let ids: Vec<&str> = graph.blocks.iter().map(|block| block.id.as_str()).collect();
    assert_eq!(ids, vec!["thing"]);
    Ok(())
}

#[test]
fn venture_pages_are_ventures_with_their_brief() -> TestResult {
    let (_folder, graph) = graph_with(&[
        ("pages/thing.md", SHAPES_HEADER),
        (
            "pages/Solar Bikes.md",
            "type:: [[venture]]\nbrief:: Electric bikes charged by solar roofs.\n\n- notes\n",
        ),
        (
            "pages/Tea Club.md",
            "type:: venture\n\n- A subscription for rare teas.\n",
        ),
    ])?;
    let ventures = graph.ventures();
    let summary: Vec<(&str, Option<&str>)> = ventures
        .iter()
        .map(|venture| (venture.name.as_str(), venture.brief.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "Solar Bikes",
                Some("Electric bikes charged by solar roofs.")
            ),
            ("Tea Club", Some("A subscription for rare teas.")),
        ]
    );
    Ok(())
}

#[test]
fn build_tool_and_hidden_folders_are_never_read() -> TestResult {
    let page = seed("000-relationship.md");
    let path = "profile-(id)___relationship.md";
    let copies = [
        format!("pages/{path}"),
        format!("target/sample-graph/pages/{path}"),
        format!("pages/deep/target/{path}"),
        format!("node_modules/kb/pages/{path}"),
        format!("pages/vendor/node_modules/{path}"),
        format!(".git/{path}"),
        format!("pages/.backup/{path}"),
    ];
    let pages: Vec<(&str, &str)> = copies
        .iter()
        .map(|copy| (copy.as_str(), page.as_str()))
        .collect();
    let (_folder, graph) = graph_with(&pages)?;
    let block = only_block(&graph)?;
    assert_eq!(block.page, format!("pages/{path}"));
    let read: Vec<&str> = graph.pages.iter().map(|page| page.path.as_str()).collect();
    assert_eq!(read, vec![format!("pages/{path}")]);
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
    Ok(())
}

#[test]
fn a_folder_without_a_block_page_is_not_a_graph() -> TestResult {
    let folder = tempfile::tempdir()?;
    std::fs::create_dir_all(folder.path().join("pages"))?;
    std::fs::write(folder.path().join("pages/notes.md"), "- just notes\n")?;
    std::fs::write(folder.path().join("README.md"), "# A project\n")?;
    match Graph::load(folder.path()) {
        Err(Error::NoBlocks { path, pages }) => {
            assert_eq!(path, folder.path());
            assert_eq!(pages, 2);
        }
        other => return Err(format!("expected NoBlocks, got {other:?}").into()),
    }
    Ok(())
}
