//! Prompts and answer schemas on the sample graph: the rendered requests (snapshots), the
//! context that reaches them, injection safety, overrides, template errors, schema checks and
//! token counts.

use std::path::{Path, PathBuf};

use inncopilot::config::Settings;
use inncopilot::draft::schema::validate;
use inncopilot::graph::Graph;
use inncopilot::llm::{self, Provider};
use inncopilot::pipeline::{self, Request};
use inncopilot::prompt::{self, Library, PromptOptions, VentureInput};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn sample_graph() -> Result<Graph, inncopilot::graph::Error> {
    Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"))
}

fn settings() -> Result<Settings, inncopilot::config::Error> {
    Settings::load_with_env(None, |_| None)
}

fn no_key(_: &str) -> Option<String> {
    None
}

const BUDGET: PromptOptions = PromptOptions {
    tokens: 800,
    ventures: 4,
    constrained: false,
};

fn existing(name: &str) -> VentureInput {
    VentureInput {
        name: name.into(),
        brief: None,
        is_new: false,
        ..Default::default()
    }
}

fn user_message(prompt: &prompt::Prompt) -> &str {
    prompt
        .messages
        .get(1)
        .map(|message| message.content.as_str())
        .unwrap_or_default()
}

#[test]
fn rendered_requests_for_every_block_existing_and_new_venture() -> TestResult {
    let graph = sample_graph()?;
    let settings = settings()?;
    let library = Library::new(None)?;
    for block in &graph.blocks {
        for (label, venture, brief) in [
            ("existing", "Underwater restaurant", None),
            (
                "new",
                "Solar Bikes",
                Some("Electric bikes rented by the hour, charged by solar roofs on city stations."),
            ),
        ] {
            let request = Request {
                venture: venture.into(),
                brief: brief.map(str::to_string),
                blocks: vec![block.id.clone()],
                count: Some(3),
                provider: Some("local".into()),
                model: None,
            };
            let preview = pipeline::preview(&graph, &settings, &library, &request, no_key)?;
            let mut report = serde_json::to_value(preview.report())?;
            // The token count depends on the model file being present; checked separately.
            if let Some(fields) = report.as_object_mut() {
                fields.remove("estimated_prompt_tokens");
                fields.remove("token_estimate");
            }
            let name = format!("request_{}_{label}", block.id.replace(['/', '(', ')'], "_"));
            insta::assert_json_snapshot!(name, report);
        }
    }
    Ok(())
}

#[test]
fn the_preamble_is_rebuilt_from_title_and_definition() -> TestResult {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let block = graph.find_block("relationship")?;
    let prompt = prompt::render(&library, &graph, block, &existing("Space X"), 5, BUDGET)?;
    let user = user_message(&prompt);
    assert!(user.contains(
        "If Relationship is defined as: Relationship that we maintain with our stakeholders, which can be personal, automated, self-service, etc., what could it be?"
    ), "{user}");
    assert!(
        !user.contains("___"),
        "a file name reached the prompt: {user}"
    );
    assert!(!user.contains("profile id"), "{user}");
    Ok(())
}

#[test]
fn related_blocks_items_existing_items_and_examples_reach_the_prompt() -> TestResult {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let block = graph.find_block("profile-(id)/relationship")?;
    let prompt = prompt::render(&library, &graph, block, &existing("Space X"), 5, BUDGET)?;
    let user = user_message(&prompt);
    // The relationship block relates to the profile block: Space X's profiles are context.
    assert!(user.contains("Government Space Agencies"), "{user}");
    assert!(user.contains("Commercial Satellite Operators"), "{user}");
    // Space X's own relationships are listed so they are not repeated ...
    assert!(
        user.contains("do not repeat them:\n- Long-term Partnerships"),
        "{user}"
    );
    // ... and other ventures' relationships are few-shot examples, Space X's are not.
    assert!(
        user.contains("vein visualizer:\n- Customer Support Portal: "),
        "{user}"
    );
    assert_eq!(
        prompt
            .context
            .examples
            .iter()
            .filter(|group| group.venture == "Space X")
            .count(),
        0
    );
    // The taxonomy of the schema is described for the model.
    assert!(
        user.contains("- type: ")
            && user.contains("One of: personal assistance, dedicated personal assistance"),
        "{user}"
    );
    Ok(())
}

#[test]
fn the_example_budget_bounds_few_shot_examples() -> TestResult {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let block = graph.find_block("relationship")?;
    let tight = PromptOptions {
        tokens: 250,
        ventures: 4,
        constrained: false,
    };
    let prompt = prompt::render(&library, &graph, block, &existing("Space X"), 5, tight)?;
    assert_eq!(prompt.context.examples.len(), 1);
    let none = PromptOptions {
        tokens: 10,
        ventures: 4,
        constrained: false,
    };
    let prompt = prompt::render(&library, &graph, block, &existing("Space X"), 5, none)?;
    assert!(prompt.context.examples.is_empty());
    assert!(!user_message(&prompt).contains("Examples of"));
    Ok(())
}

#[test]
fn a_constrained_prompt_lists_choices_without_their_explanations_or_the_schema() -> TestResult {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let block = graph.find_block("relationship")?;
    let options = |constrained| PromptOptions {
        tokens: 250,
        ventures: 4,
        constrained,
    };
    let remote = prompt::render(
        &library,
        &graph,
        block,
        &existing("Space X"),
        3,
        options(false),
    )?;
    let local = prompt::render(
        &library,
        &graph,
        block,
        &existing("Space X"),
        3,
        options(true),
    )?;
    let explanation = "The kind of relationship: human help on demand";
    assert!(user_message(&remote).contains(explanation));
    assert!(user_message(&remote).contains("Answer with JSON matching this schema"));
    // The schema shown is its shape: its title and descriptions were copied into items.
    let shown = user_message(&remote)
        .split_once("Answer with JSON matching this schema:")
        .map(|(_, schema)| schema.to_string())
        .unwrap_or_default();
    let shown: serde_json::Value = serde_json::from_str(&shown)?;
    assert_eq!(shown.get("title"), None);
    assert!(!shown.to_string().contains("\"description\":\""), "{shown}");
    assert_eq!(
        shown.pointer("/properties/items/items/properties/nature/enum"),
        Some(&serde_json::json!(["transactional", "long-term", "hybrid"]))
    );
    assert_eq!(
        shown.pointer("/properties/items/items/properties/description/minLength"),
        Some(&serde_json::json!(10))
    );
    let local_text = user_message(&local);
    assert!(!local_text.contains(explanation));
    assert!(!local_text.contains("matching this schema"));
    assert!(local_text.contains("\n- nature: one of transactional, long-term, hybrid.\n"));
    // Free-text fields keep their explanation.
    assert!(local_text.contains("- rationale: Why this relationship suits"));
    assert!(local_text.len() + 500 < user_message(&remote).len());
    Ok(())
}

#[test]
fn a_block_without_questions_stands_on_definition_description_and_keys() -> TestResult {
    // Shaped like the real graph's blocks whose innCoPilot section is empty.
    let folder = tempfile::tempdir()?;
    let pages = folder.path().join("pages");
    std::fs::create_dir_all(&pages)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pages");
    for name in [
        "market-timing_info.md",
        "market-timing___examples___Tide Mill.md",
    ] {
        std::fs::copy(fixtures.join(name), pages.join(name))?;
    }
    let graph = Graph::load(folder.path())?;
    let library = Library::new(None)?;
    let block = graph.find_block("market-timing")?;
    assert!(block.questions.is_empty());
    let prompt = prompt::render(
        &library,
        &graph,
        block,
        &existing("Harbour Ferry"),
        3,
        BUDGET,
    )?;
    let user = user_message(&prompt);
    assert!(
        user.contains("If Market timing is defined as: Market timing is the judgement of whether customers, technology and rules are ready for what the venture offers now., what could it be?\nAbout Market timing: In business modeling, market timing asks why a venture should start now"),
        "{user}"
    );
    // Only the first paragraph of the description, and no empty list of questions.
    assert!(!user.contains("Timing is judged against"), "{user}");
    assert!(!user.contains("Consider these questions"), "{user}");
    assert!(
        user.contains("What matters most when judging the ideas (weight out of 100):\n- "),
        "{user}"
    );
    assert!(
        user.contains(": 80\n- ") && user.contains(": 40\n"),
        "{user}"
    );
    // The other venture's items are its few-shot examples.
    assert!(
        user.contains("- Cheap tidal turbines: Small turbines fell"),
        "{user}"
    );
    Ok(())
}

#[test]
fn injection_looking_content_renders_literally() -> TestResult {
    let page = "- ## Definition\n  - A {{ 7 * 7 }} thing {% if true %}yes{% endif %} {# hidden #}\n- ## innCoPilot\n  - Why {{ venture.name }}?\n- ## Examples\n  - ### Acme\n    - #thing [[{{ block.title }}]]\n      - {% include \"system.j2\" %}\n";
    let folder = tempfile::tempdir()?;
    std::fs::create_dir_all(folder.path().join("pages"))?;
    std::fs::write(folder.path().join("pages/thing.md"), page)?;
    let graph = Graph::load(folder.path())?;
    let library = Library::new(None)?;
    let block = graph.find_block("thing")?;
    let venture = VentureInput {
        name: "{{ count }} Corp".into(),
        brief: Some(
            "We sell {% for x in range(3) %}loops{% endfor %} and {{ answer.schema }}.".into(),
        ),
        is_new: true,
        ..Default::default()
    };
    let prompt = prompt::render(&library, &graph, block, &venture, 2, BUDGET)?;
    let user = user_message(&prompt);
    for literal in [
        "A {{ 7 * 7 }} thing {% if true %}yes{% endif %} {# hidden #}",
        "Why {{ venture.name }}?",
        "- {{ block.title }}: {% include \"system.j2\" %}",
        "Venture: {{ count }} Corp",
        "We sell {% for x in range(3) %}loops{% endfor %} and {{ answer.schema }}.",
    ] {
        assert!(
            user.contains(literal),
            "missing literal {literal:?} in:\n{user}"
        );
    }
    assert!(!user.contains("49") && !user.contains("loopsloops"));
    Ok(())
}

#[test]
fn a_prompts_folder_overrides_file_by_file() -> TestResult {
    let graph = sample_graph()?;
    let folder = tempfile::tempdir()?;
    std::fs::write(
        folder.path().join("system.j2"),
        "Answer as a pirate about {{ block.title }}.",
    )?;
    std::fs::create_dir_all(folder.path().join("blocks"))?;
    std::fs::write(
        folder.path().join("blocks/profile-(id).j2"),
        "Profiles for {{ venture.name }}: {{ count }}.\n{% include \"partials/answer.j2\" %}",
    )?;
    let library = Library::new(Some(folder.path()))?;
    let relationship = graph.find_block("relationship")?;
    let prompt = prompt::render(
        &library,
        &graph,
        relationship,
        &existing("Space X"),
        3,
        BUDGET,
    )?;
    assert_eq!(
        prompt.messages[0].content,
        "Answer as a pirate about Relationship."
    );
    assert!(
        user_message(&prompt).starts_with("Building block: Relationship"),
        "built-in user.j2 still used"
    );
    let profile = graph.find_block("profile-(id)")?;
    let prompt = prompt::render(&library, &graph, profile, &existing("Space X"), 3, BUDGET)?;
    assert!(
        user_message(&prompt).starts_with("Profiles for Space X: 3.\nPropose 3 new"),
        "{}",
        user_message(&prompt)
    );
    assert_eq!(prompt.templates[1], "blocks/profile-(id).j2");
    Ok(())
}

#[test]
fn template_errors_name_the_file_and_line() -> TestResult {
    let graph = sample_graph()?;
    let folder = tempfile::tempdir()?;
    std::fs::create_dir_all(folder.path().join("partials"))?;
    std::fs::write(
        folder.path().join("partials/venture.j2"),
        "Venture: {{ venture.name }}\n\nBrief: {{ venture.breif }}\n",
    )?;
    let library = Library::new(Some(folder.path()))?;
    let block = graph.find_block("relationship")?;
    let message = prompt::render(&library, &graph, block, &existing("Space X"), 3, BUDGET)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    let expected_file = folder
        .path()
        .join("partials/venture.j2")
        .display()
        .to_string();
    assert!(
        message.contains(&expected_file) && message.contains("line 3"),
        "{message}"
    );
    assert!(message.contains("undefined"), "{message}");
    std::fs::write(folder.path().join("partials/venture.j2"), "{% if %}")?;
    let message = prompt::render(
        &Library::new(Some(folder.path()))?,
        &graph,
        block,
        &existing("Space X"),
        3,
        BUDGET,
    )
    .err()
    .map(|error| error.to_string())
    .unwrap_or_default();
    assert!(
        message.contains(&expected_file)
            && message.contains("line 1")
            && message.contains("syntax"),
        "{message}"
    );
    Ok(())
}

#[test]
fn every_file_of_the_prompts_folder_is_built_in() -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                on_disk.push(
                    path.strip_prefix(&root)?
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    on_disk.sort();
    let mut built_in: Vec<String> = prompt::library::built_in_names()
        .map(str::to_string)
        .collect();
    built_in.sort();
    assert_eq!(on_disk, built_in);
    Ok(())
}

// ---- answer schemas ----

fn schema_of(block_query: &str, count: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let block = graph.find_block(block_query)?;
    let bound = library.answer_schema(block)?.bound_to(count)?;
    Ok(Value::clone(&bound))
}

fn generic_schema(count: usize) -> Result<Value, Box<dyn std::error::Error>> {
    let folder = tempfile::tempdir()?;
    std::fs::create_dir_all(folder.path().join("pages"))?;
    std::fs::write(
        folder.path().join("pages/thing.md"),
        "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n",
    )?;
    let graph = Graph::load(folder.path())?;
    let library = Library::new(None)?;
    let schema = library.answer_schema(graph.find_block("thing")?)?;
    assert_eq!(schema.file, "schemas/generic.json");
    let bound = schema.bound_to(count)?;
    Ok(Value::clone(&bound))
}

/// The paths of the issues found, one string each (`/items/0/type: ...`).
fn issues(schema: &Value, answer: &Value) -> Vec<String> {
    validate(schema, answer)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_fails_at(schema: &Value, answer: Value, path: &str, words: &str) {
    let found = issues(schema, &answer);
    assert!(
        found
            .iter()
            .any(|issue| issue.starts_with(&format!("{path}: ")) && issue.contains(words)),
        "expected an issue at {path} mentioning {words:?}, found {found:?}"
    );
}

fn relationship_item(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Members get priority booking and a chef's table evening each season.",
        "type": "dedicated personal assistance",
        "nature": "long-term",
        "intimacy": "personal",
        "lifecycle_stage": "retention",
        "rationale": "Regular guests value recognition more than discounts."
    })
}

#[test]
fn relationship_schema_accepts_valid_and_rejects_invalid_answers() -> TestResult {
    let schema = schema_of("relationship", 2)?;
    let valid = json!({ "items": [relationship_item("VIP Dining Club"), relationship_item("Reef Friends")] });
    assert_eq!(issues(&schema, &valid), Vec::<String>::new());

    let mut missing = relationship_item("A");
    missing.as_object_mut().map(|item| item.remove("nature"));
    assert_fails_at(
        &schema,
        json!({ "items": [missing, relationship_item("B")] }),
        "/items/0",
        "nature",
    );

    let mut unknown = relationship_item("Club");
    unknown["price"] = json!("high");
    assert_fails_at(
        &schema,
        json!({ "items": [relationship_item("A"), unknown] }),
        "/items/1",
        "price",
    );

    let mut too_long = relationship_item("A");
    too_long["name"] = json!("x".repeat(81));
    assert_fails_at(
        &schema,
        json!({ "items": [too_long, relationship_item("B")] }),
        "/items/0/name",
        "longer than 80",
    );

    let mut wrong_enum = relationship_item("A");
    wrong_enum["type"] = json!("telepathy");
    assert_fails_at(
        &schema,
        json!({ "items": [relationship_item("B"), wrong_enum] }),
        "/items/1/type",
        "telepathy",
    );

    assert_fails_at(
        &schema,
        json!({ "items": [relationship_item("A")] }),
        "/items",
        "less than 2",
    );
    assert_fails_at(
        &schema,
        json!({ "items": [relationship_item("A"), relationship_item("B"), relationship_item("C")] }),
        "/items",
        "more than 2",
    );
    Ok(())
}

fn profile_item(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Agencies that contract launches for national science missions.",
        "segmentation": [{ "criterion": "sector", "value": "government" }, { "criterion": "budget", "value": "over $100M" }],
        "decision_makers": ["program director", "procurement board"]
    })
}

#[test]
fn profile_schema_accepts_valid_and_rejects_invalid_answers() -> TestResult {
    let schema = schema_of("profile-(id)", 1)?;
    assert_eq!(
        issues(
            &schema,
            &json!({ "items": [profile_item("Space Agencies")] })
        ),
        Vec::<String>::new()
    );

    let mut missing = profile_item("A");
    missing
        .as_object_mut()
        .map(|item| item.remove("decision_makers"));
    assert_fails_at(
        &schema,
        json!({ "items": [missing] }),
        "/items/0",
        "decision_makers",
    );

    let mut unknown = profile_item("A");
    unknown["segmentation"][0]["weight"] = json!(3);
    assert_fails_at(
        &schema,
        json!({ "items": [unknown] }),
        "/items/0/segmentation/0",
        "weight",
    );

    let mut too_long = profile_item("A");
    too_long["decision_makers"][1] = json!("y".repeat(61));
    assert_fails_at(
        &schema,
        json!({ "items": [too_long] }),
        "/items/0/decision_makers/1",
        "longer than 60",
    );

    let mut wrong_type = profile_item("A");
    wrong_type["segmentation"] = json!("everyone");
    assert_fails_at(
        &schema,
        json!({ "items": [wrong_type] }),
        "/items/0/segmentation",
        "array",
    );

    assert_fails_at(&schema, json!({ "items": [] }), "/items", "less than 1");
    Ok(())
}

#[test]
fn generic_schema_accepts_valid_and_rejects_invalid_answers() -> TestResult {
    let schema = generic_schema(2)?;
    let item = |name: &str| json!({ "name": name, "description": "A description long enough." });
    assert_eq!(
        issues(&schema, &json!({ "items": [item("A1"), item("B1")] })),
        Vec::<String>::new()
    );
    assert_fails_at(
        &schema,
        json!({ "items": [item("A1"), { "name": "B1" }] }),
        "/items/1",
        "description",
    );
    assert_fails_at(
        &schema,
        json!({ "items": [item("A1"), item("B1")], "note": "x" }),
        "/",
        "note",
    );
    let mut long = item("A1");
    long["description"] = json!("z".repeat(401));
    assert_fails_at(
        &schema,
        json!({ "items": [long, item("B1")] }),
        "/items/0/description",
        "longer than 400",
    );
    assert_fails_at(
        &schema,
        json!({ "items": [item("A1")] }),
        "/items",
        "less than 2",
    );
    Ok(())
}

#[test]
fn a_count_beyond_the_schema_is_refused() -> TestResult {
    let graph = sample_graph()?;
    let library = Library::new(None)?;
    let schema = library.answer_schema(graph.find_block("relationship")?)?;
    let message = schema
        .bound_to(21)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("--count 21") && message.contains("1 to 20"),
        "{message}"
    );
    Ok(())
}

// ---- providers and tokens ----

#[test]
fn the_provider_is_local_without_a_key_and_openai_with_one() -> TestResult {
    let settings = settings()?;
    let (provider, _) = llm::choose(&settings, None, None, no_key)?;
    assert_eq!(provider.name(), "local");
    let with_key = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-test".to_string());
    let (provider, params) = llm::choose(&settings, None, None, with_key)?;
    assert_eq!(
        (provider.name(), provider.model()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(params.max_tokens, 1500);
    let with_url = |name: &str| match name {
        "OPENAI_API_KEY" => Some("sk-test".to_string()),
        "OPENAI_BASE_URL" => Some("http://localhost:8080/v1".to_string()),
        _ => None,
    };
    let (provider, _) = llm::choose(&settings, None, Some("qwen2.5"), with_url)?;
    assert!(
        matches!(&provider, Provider::Openai { base_url, model, .. } if base_url == "http://localhost:8080/v1" && model == "qwen2.5")
    );
    let (provider, _) = llm::choose(&settings, Some("local"), None, with_key)?;
    assert_eq!(provider.name(), "local");
    let message = llm::choose(&settings, Some("antropic"), None, no_key)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("antropic") && message.contains("openai"),
        "{message}"
    );
    Ok(())
}

fn default_model() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = settings()?.local.model_path();
    if !path.is_file() {
        return Err(format!("{} is missing: run scripts/setup", path.display()).into());
    }
    Ok(path)
}

/// The exact count uses SmolLM2's tokenizer; the fallback estimate (used when the model file is
/// absent) must stay within 5% of it on the sample graph's prompts.
#[test]
fn local_token_counts_are_exact_and_the_fallback_is_within_five_percent() -> TestResult {
    let model = default_model()?;
    let graph = sample_graph()?;
    let settings = settings()?;
    let library = Library::new(None)?;
    let mut exact_total = 0usize;
    let mut estimate_total = 0usize;
    for block in &graph.blocks {
        for venture in graph.ventures() {
            let request = Request {
                venture: venture.name.clone(),
                blocks: vec![block.id.clone()],
                provider: Some("local".into()),
                ..Request::default()
            };
            let preview = pipeline::preview(&graph, &settings, &library, &request, no_key)?;
            assert!(
                preview.tokens.method.starts_with("exact"),
                "{}",
                preview.tokens.method
            );
            let missing_model = Provider::Local {
                model: "x".into(),
                path: model.with_file_name("absent.gguf"),
            };
            let estimate = llm::tokens::prompt_tokens(&missing_model, &preview.prompt.messages);
            assert!(estimate.method.starts_with("estimate"));
            let ratio = estimate.tokens as f64 / preview.tokens.tokens as f64;
            eprintln!(
                "{} / {}: estimate {} exact {} ratio {ratio:.3}",
                venture.name, block.id, estimate.tokens, preview.tokens.tokens
            );
            assert!(
                (0.95..=1.05).contains(&ratio),
                "{} / {}: estimate {} vs exact {}",
                venture.name,
                block.id,
                estimate.tokens,
                preview.tokens.tokens
            );
            exact_total += preview.tokens.tokens;
            estimate_total += estimate.tokens;
        }
    }
    eprintln!("exact {exact_total}, estimate {estimate_total}");
    assert!(exact_total > 1000);
    Ok(())
}

#[test]
fn a_broken_schema_override_names_the_file() -> TestResult {
    let graph = sample_graph()?;
    let folder = tempfile::tempdir()?;
    std::fs::create_dir_all(folder.path().join("schemas"))?;
    let file = folder.path().join("schemas/profile-(id).json");
    std::fs::write(&file, "{\n  \"type\": \"object\",\n  \"properties\": {\n")?;
    let library = Library::new(Some(folder.path()))?;
    let block = graph.find_block("profile-(id)")?;
    let message = library
        .answer_schema(block)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&file.display().to_string())
            && message.contains("not valid JSON at line 4"),
        "{message}"
    );
    std::fs::write(
        &file,
        "{ \"type\": \"object\", \"properties\": { \"items\": { \"type\": \"array\" } } }",
    )?;
    let message = Library::new(Some(folder.path()))?
        .answer_schema(block)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("must describe an object with an `items` array"),
        "{message}"
    );
    Ok(())
}
