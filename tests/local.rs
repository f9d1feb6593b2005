//! The embedded model end to end: the real llama.cpp engine with the real SmolLM2 GGUF (fetched
//! by scripts/setup), constrained by llguidance to the block's answer schema. No mock anywhere.
#![cfg(feature = "local")]

use std::sync::Arc;

use inncopilot::config::Settings;
use inncopilot::draft::schema::validate;
use inncopilot::generate::{self, Request, RunReport};
use inncopilot::graph::Graph;
use inncopilot::llm::local::LocalModel;
use inncopilot::llm::{self, ChatRequest, Provider, TextCheck};
use inncopilot::prompt::Library;
use serde_json::{Value, json};

mod common;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The tests that run the model take turns: each engine computes on 2 threads, and llama.cpp's
/// threads wait for each other by spinning, so three at once on 2 cores took 303 s instead of
/// 19 s.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn settings() -> Result<Settings, Box<dyn std::error::Error>> {
    let settings = Settings::load(None)?;
    let model = settings.local.model_path();
    if !model.is_file() {
        return Err(format!(
            "the model {} is missing: run scripts/setup (it fetches it with pip)",
            model.display()
        )
        .into());
    }
    Ok(settings)
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// `generate` of two relationship items for Exotic Pet Rental, on a copy of the sample graph
/// (returned too: the draft files are inside it).
async fn exotic_pet_relationships(
    settings: &Settings,
) -> Result<(tempfile::TempDir, Graph, RunReport), Box<dyn std::error::Error>> {
    let folder = common::sample_graph_copy()?;
    let graph = Graph::load(folder.path())?;
    let library = Library::new(None)?;
    let request = Request {
        venture: "Exotic Pet Rental".into(),
        blocks: vec!["relationship".into()],
        count: Some(2),
        ..Request::default()
    };
    let engine = generate::engine(
        Arc::new(Graph::load(folder.path())?),
        Arc::new(settings.clone()),
        Arc::new(library),
        None,
        None,
        Arc::new(no_env),
        true,
    )?;
    let options = generate::Options::default();
    let report = generate::run(
        Arc::new(engine),
        &request,
        &options,
        generate::Events::none(),
    )
    .await?;
    Ok((folder, graph, report))
}

#[tokio::test(flavor = "multi_thread")]
async fn generates_a_schema_valid_relationship_draft() -> TestResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    let settings = settings()?;
    let (folder, graph, report) = exotic_pet_relationships(&settings).await?;
    let library = Library::new(None)?;
    assert_eq!(report.provider, "local");
    let draft = report
        .drafts
        .first()
        .ok_or_else(|| format!("no draft: {:?}", report.failed))?;
    assert!(!draft.items.is_empty());
    assert_eq!(draft.provenance.constrained_by, "grammar");
    assert!(draft.provenance.tokens.completion_tokens > 0);

    // Every item matches the block's schema, and the names are the venture's new ones.
    let block = graph.find_block("relationship")?;
    let schema = library.answer_schema(block)?.bound_to(draft.items.len())?;
    let answer = json!({"items": draft.items});
    assert_eq!(validate(&schema, &answer), []);
    let existing: Vec<String> = graph
        .examples_of(block, "Exotic Pet Rental")
        .map(|example| example.name.to_lowercase())
        .collect();
    for item in &draft.items {
        assert!(
            !existing.contains(&item.name.to_lowercase()),
            "{} repeated",
            item.name
        );
    }

    // The JSON draft file is in the graph's hidden state folder.
    let written = draft.written_to.as_deref().ok_or("not written")?;
    assert!(written.starts_with(".inncopilot/drafts/"), "{written}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(folder.path().join(written))?)?;
    assert_eq!(file["items"], serde_json::to_value(&draft.items)?);
    Ok(())
}

/// The sample graph's prompt for (venture, block) asking for `count` items, the embedded
/// model loaded with `settings`, and the request the engine would get (nothing to avoid).
fn model_and_request(
    settings: &Settings,
    venture: &str,
    block: &str,
    count: usize,
) -> Result<(inncopilot::prompt::Prompt, LocalModel, ChatRequest), Box<dyn std::error::Error>> {
    let folder = common::sample_graph_copy()?;
    let graph = Graph::load(folder.path())?;
    let library = Library::new(None)?;
    let (provider, params) = llm::choose(settings, Some("local"), None, no_env)?;
    let block = graph.find_block(block)?;
    let venture = inncopilot::pipeline::resolve_venture(&graph, venture, None)?;
    let options = inncopilot::pipeline::prompt_options(settings, &provider);
    let prompt = inncopilot::prompt::render(&library, &graph, block, &venture, count, options)?;
    let model = LocalModel::load(provider, &settings.local)?;
    let request = ChatRequest {
        messages: prompt.messages.clone(),
        schema: prompt.schema.clone(),
        params,
        avoid_names: Default::default(),
        check: None,
    };
    Ok((prompt, model, request))
}

/// The raw answer of the engine, before any of our checks, is already schema-valid JSON.
#[tokio::test(flavor = "multi_thread")]
async fn constrained_decoding_gives_schema_valid_json() -> TestResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (prompt, model, request) = model_and_request(&settings()?, "Space X", "profile-(id)", 3)?;
    let pieces = std::sync::Mutex::new(0_usize);
    let completion = model.generate(&request, &|_| {
        if let Ok(mut count) = pieces.lock() {
            *count += 1;
        }
    })?;
    let answer: Value = serde_json::from_str(&completion.text)?;
    assert_eq!(validate(&prompt.schema, &answer), []);
    assert_eq!(answer["items"].as_array().map(Vec::len), Some(3));
    // Progress saw the answer as it was generated, piece by piece.
    assert!(*pieces.lock().map_err(|_| "poisoned")? > 10);

    // The same request (same seed) with those names to avoid: the engine takes each back as
    // it is written, and the answer has other names, still schema-valid.
    let names = |answer: &Value| -> Vec<String> {
        answer["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str())
            .map(|name| name.trim().to_lowercase())
            .collect()
    };
    let first = names(&answer);
    // The model read that prompt into its kept context: the same prompt again reads only its
    // last token (whose logits begin the answer).
    assert_eq!(model.reused_prompt_tokens(), 0);
    let prompt_tokens = completion.usage.prompt_tokens;
    let again = model.generate(
        &ChatRequest {
            avoid_names: first.clone().into(),
            ..request.clone()
        },
        &|_| {},
    )?;
    let answer: Value = serde_json::from_str(&again.text)?;
    assert_eq!(validate(&prompt.schema, &answer), []);
    let second = names(&answer);
    assert_eq!(model.reused_prompt_tokens(), prompt_tokens - 1);
    assert_eq!(again.usage.prompt_tokens, prompt_tokens);
    assert_eq!(second.len(), 3);
    assert!(
        second.iter().all(|name| !first.contains(name)),
        "{first:?} came again: {second:?}"
    );

    // A check on every text as it is written (the junk rules, in a run): here the first two
    // names and the first description written are refused. The engine takes each back and
    // writes it again; the answer holds none of them and says what it took back.
    let refused = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&refused);
    let check = TextCheck(Arc::new(move |path: &str, text: &str, _name: &str| {
        let mut seen = seen.lock().ok()?;
        let (names, descriptions) = seen.iter().fold((0, 0), |(names, descriptions), text| {
            match text.starts_with("/name ") {
                true => (names + 1, descriptions),
                false => (names, descriptions + 1),
            }
        });
        let refuse = match path {
            "/name" => names < 2,
            "/description" => descriptions < 1,
            _ => false,
        };
        refuse.then(|| seen.push(format!("{path} {text}")))?;
        Some(if path == "/name" {
            "test-name"
        } else {
            "test-description"
        })
    }));
    let checked = model.generate(
        &ChatRequest {
            check: Some(check),
            ..request
        },
        &|_| {},
    )?;
    let answer: Value = serde_json::from_str(&checked.text)?;
    assert_eq!(validate(&prompt.schema, &answer), []);
    let refused = refused.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(refused.len(), 3, "{refused:?}");
    for item in answer["items"].as_array().into_iter().flatten() {
        for field in ["name", "description"] {
            let written = format!("/{field} {}", item[field].as_str().unwrap_or(""));
            assert!(
                !refused.contains(&written),
                "{written} was refused, yet kept"
            );
        }
    }
    let taken_back: Vec<(&str, usize)> = checked
        .taken_back
        .iter()
        .map(|(reason, count)| (reason.as_str(), *count))
        .collect();
    assert_eq!(taken_back, [("test-description", 1), ("test-name", 2)]);
    Ok(())
}

/// With `local.sequences = 2`, the items of one answer are shared out between two sequences
/// decoded side by side: the answer is one schema-valid object with all of them, and no name
/// twice (each sequence avoids the names the other has written).
#[tokio::test(flavor = "multi_thread")]
async fn items_decoded_as_parallel_sequences_make_one_valid_answer() -> TestResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut settings = settings()?;
    settings.local.sequences = 2;
    let (prompt, model, request) =
        model_and_request(&settings, "Underwater restaurant", "relationship", 3)?;
    let completion = model.generate(&request, &|_| {})?;
    assert_eq!(model.sequences_decoded(), 2);
    let answer: Value = serde_json::from_str(&completion.text)?;
    assert_eq!(validate(&prompt.schema, &answer), []);
    let names: Vec<String> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["name"].as_str())
        .map(inncopilot::draft::name_key)
        .collect();
    assert_eq!(names.len(), 3);
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 3, "{names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_tokens_is_an_error_not_a_draft() -> TestResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut settings = settings()?;
    settings.local.max_tokens = 24;
    let (_folder, _graph, report) = exotic_pet_relationships(&settings).await?;
    assert!(report.drafts.is_empty());
    let reason = &report.failed.first().ok_or("no failure")?.reason;
    assert!(reason.contains("token limit (24 tokens)"), "{reason}");
    assert!(reason.contains("local.max_tokens"), "{reason}");
    Ok(())
}

#[test]
fn a_missing_model_file_says_how_to_get_it() -> TestResult {
    let mut settings = Settings::load(None)?;
    settings.local.model = "/nonexistent/model.gguf".into();
    let provider = Provider::Local {
        model: "model".into(),
        path: settings.local.model_path(),
    };
    let error = LocalModel::load(provider, &settings.local)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("/nonexistent/model.gguf"), "{error}");
    assert!(error.contains("scripts/setup"), "{error}");
    Ok(())
}
