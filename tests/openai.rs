//! The `openai` provider against an HTTP server that misbehaves on demand: wiremock for status
//! codes, delays and bodies, and a raw TCP server for connections that drop or bodies cut
//! short. Each test runs `generate` for real (graph, prompts, checks, cache, draft files); only
//! the model's server is scripted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inncopilot::config::{ResponseFormat, Settings};
use inncopilot::generate::{self, RunReport};
use inncopilot::graph::Graph;
use inncopilot::prompt::Library;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod common;

use common::mock::{KEY, answer_for_block, api_error, command, good_answer, item, sse, streamed};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VENTURE: &str = "Exotic Pet Rental";
const BLOCK: &str = "relationship";

/// A copy of the sample graph (drafts, draft files and the cache are written inside it).
fn graph_copy() -> Result<(tempfile::TempDir, Graph), Box<dyn std::error::Error>> {
    let folder = common::sample_graph_copy()?;
    let graph = Graph::load(folder.path())?;
    Ok((folder, graph))
}

/// Settings whose `openai` preset points at `base_url`, with quick retries.
fn settings(base_url: &str) -> Result<Settings, Box<dyn std::error::Error>> {
    let mut settings = Settings::load(None)?;
    let openai = settings
        .providers
        .get_mut("openai")
        .ok_or("no openai preset")?;
    openai.base_url = format!("{base_url}/v1");
    openai.timeout_secs = 2;
    openai.max_retries = 3;
    openai.retry_budget_secs = 20;
    settings.generate.count = 2;
    Ok(settings)
}

fn env(name: &str) -> Option<String> {
    (name == "OPENAI_API_KEY").then(|| KEY.to_string())
}

fn request() -> generate::Request {
    generate::Request {
        venture: VENTURE.into(),
        blocks: vec![BLOCK.into()],
        provider: Some("openai".into()),
        ..generate::Request::default()
    }
}

async fn generate_with(
    graph: &Graph,
    settings: &Settings,
    request: &generate::Request,
) -> Result<RunReport, generate::Error> {
    generate_using_cache(graph, settings, request, true).await
}

async fn generate_using_cache(
    graph: &Graph,
    settings: &Settings,
    request: &generate::Request,
    use_cache: bool,
) -> Result<RunReport, generate::Error> {
    let engine = generate::engine(
        Arc::new(Graph::load(&graph.root)?),
        Arc::new(settings.clone()),
        Arc::new(Library::new(None)?),
        request.provider.as_deref(),
        request.model.as_deref(),
        Arc::new(env),
        use_cache,
    )?;
    let options = generate::Options::default();
    generate::run(
        Arc::new(engine),
        request,
        &options,
        generate::Events::none(),
    )
    .await
}

/// Answers with the given responses in turn, the last one for every further request.
struct Sequence(Vec<ResponseTemplate>, std::sync::atomic::AtomicUsize);

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let index = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0[index.min(self.0.len() - 1)].clone()
    }
}

async fn server(responses: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Sequence(responses, Default::default()))
        .mount(&server)
        .await;
    server
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|request| serde_json::from_slice(&request.body).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_the_rendered_request_and_drafts_the_answer() -> TestResult {
    let (folder, graph) = graph_copy()?;
    let server = server(vec![streamed(&good_answer())]).await;
    let settings = settings(&server.uri())?;
    let report = generate_with(&graph, &settings, &request()).await?;

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let draft = &report.drafts[0];
    let names: Vec<&str> = draft.items.iter().map(|item| item.name.as_str()).collect();
    assert_eq!(names, ["Keeper Hotline", "Renter Circle"]);
    assert_eq!(draft.items[1].fields["type"], "communities");
    assert_eq!(draft.provenance.attempts, 1);
    assert_eq!(draft.provenance.tokens.prompt_tokens, 900);
    assert!(draft.provenance.cost_usd > 0.0);

    // The request is exactly what preview shows.
    let library = Library::new(None)?;
    let preview = inncopilot::pipeline::preview(
        &graph,
        &settings,
        &library,
        &inncopilot::pipeline::Request {
            venture: VENTURE.into(),
            blocks: vec![BLOCK.into()],
            provider: Some("openai".into()),
            ..Default::default()
        },
        env,
    )?;
    let sent = &bodies(&server).await[0];
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(
        sent["messages"],
        serde_json::to_value(&preview.prompt.messages)?
    );
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        *preview.prompt.schema
    );
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["properties"]["items"]["minItems"],
        2
    );
    assert_eq!(sent["seed"], 42);
    assert_eq!(sent["max_completion_tokens"], 1500);
    assert!((sent["temperature"].as_f64().unwrap_or_default() - 0.7).abs() < 1e-6);
    assert_eq!(sent["stream"], true);
    let received = server.received_requests().await.unwrap_or_default();
    let authorization = received[0]
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert_eq!(authorization, format!("Bearer {KEY}"));

    // The draft file, the provenance and the report never hold the key.
    let written = folder
        .path()
        .join(draft.written_to.as_deref().unwrap_or_default());
    let file = std::fs::read_to_string(&written)?;
    assert!(file.contains("Keeper Hotline"));
    assert!(!file.contains(KEY));
    assert!(!serde_json::to_string(&report)?.contains(KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_comes_from_the_cache_and_no_cache_asks_again() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = server(vec![streamed(&good_answer())]).await;
    let settings = settings(&server.uri())?;
    generate_with(&graph, &settings, &request()).await?;
    let again = generate_with(&graph, &settings, &request()).await?;
    assert_eq!(bodies(&server).await.len(), 1, "the re-run sent a request");
    assert_eq!(again.drafts[0].provenance.cached_attempts, 1);
    assert_eq!(again.drafts[0].provenance.cost_usd, 0.0);

    generate_using_cache(&graph, &settings, &request(), false).await?;
    assert_eq!(bodies(&server).await.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_waits_for_retry_after() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let limited = api_error(
        429,
        "Rate limit reached for requests",
        Some("rate_limit_exceeded"),
    )
    .insert_header("retry-after", "1");
    let server = server(vec![limited, streamed(&good_answer())]).await;
    let started = Instant::now();
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(bodies(&server).await.len(), 2);
    // The backoff without Retry-After starts at 0.5-0.75 s; waiting a full second shows the
    // header was honoured.
    assert!(started.elapsed() >= Duration::from_millis(1000));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_then_success() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = server(vec![
        ResponseTemplate::new(500).set_body_string("upstream overloaded"),
        streamed(&good_answer()),
    ])
    .await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2);
    // A server error that does not name the format is retried, not taken as a refusal.
    assert_eq!(sent[1]["response_format"]["type"], "json_schema");
    assert_eq!(report.drafts[0].provenance.constrained_by, "json_schema");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_retried() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let slow = streamed(&good_answer()).set_delay(Duration::from_secs(4));
    let server = server(vec![slow, streamed(&good_answer())]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(bodies(&server).await.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_retried_then_recorded_as_a_failure() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let broken = ResponseTemplate::new(200).set_body_raw(
        "data: {\"id\": \"chatcmpl-1\", \"choi\n\n",
        "text/event-stream",
    );
    let server = server(vec![broken.clone(), streamed(&good_answer())]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(bodies(&server).await.len(), 2);

    let (_folder, graph) = graph_copy()?;
    let server = self::server(vec![broken]).await;
    let mut settings = settings(&server.uri())?;
    if let Some(openai) = settings.providers.get_mut("openai") {
        openai.max_retries = 1;
    }
    let report = generate_with(&graph, &settings, &request()).await?;
    assert!(report.drafts.is_empty());
    assert_eq!(report.failed.len(), 1);
    let reason = &report.failed[0].reason;
    assert!(reason.contains("gave up after 2 attempt(s)"), "{reason}");
    assert!(reason.contains("malformed"), "{reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_invalid_answer_is_re_asked_and_fixed() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    // A made-up relationship type, and a name the venture already has.
    let invalid = json!({"items": [
        item("Keeper Hotline", "telepathy"),
        item("VIP Membership Program", "communities"),
    ]})
    .to_string();
    let fixed = json!({"items": [item("Renter Circle", "communities"), item("Night Vet Line", "personal assistance")]})
        .to_string();
    let fenced = format!("Here you are:\n```json\n{fixed}\n```");
    let server = server(vec![streamed(&invalid), streamed(&fenced)]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let draft = &report.drafts[0];
    let names: Vec<&str> = draft.items.iter().map(|item| item.name.as_str()).collect();
    assert_eq!(names, ["Renter Circle", "Night Vet Line"]);
    assert_eq!(draft.provenance.attempts, 2);
    assert_eq!(
        draft.provenance.tokens.prompt_tokens, 1800,
        "tokens summed over attempts"
    );
    // Four items proposed; the made-up type is invalid, the existing name is junk.
    assert_eq!(
        (draft.provenance.proposed, draft.provenance.invalid),
        (4, 1)
    );

    let sent = bodies(&server).await;
    let reask = sent[1]["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(reask.len(), 4);
    assert_eq!(reask[2]["role"], "assistant");
    assert_eq!(reask[2]["content"], invalid);
    let feedback = reask[3]["content"].as_str().unwrap_or_default();
    assert!(feedback.contains("/items/0/type"), "{feedback}");
    assert!(feedback.contains("already exists"), "{feedback}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_items_are_re_asked_counted_and_never_written() -> TestResult {
    let (folder, graph) = graph_copy()?;
    // Schema-valid, but junk: the venture's own name, a template reference in a field, and a
    // description echoing the prompt's label.
    let mut echo = item("Pet Whisperer Visits", "personal assistance");
    echo["description"] = json!("Building block: Relationship (items tagged #relationship) #1.");
    let mut code = item("Zoo Night Club", "communities");
    code["rationale"] = json!("{ {$ref} }");
    let junk = json!({"items": [item(VENTURE, "communities"), code, echo]}).to_string();
    let server = server(vec![streamed(&junk), streamed(&good_answer())]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;

    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let draft = &report.drafts[0];
    let names: Vec<&str> = draft.items.iter().map(|item| item.name.as_str()).collect();
    assert_eq!(names, ["Keeper Hotline", "Renter Circle"]);
    assert_eq!(draft.provenance.attempts, 2);
    assert_eq!(
        (draft.provenance.proposed, draft.provenance.invalid),
        (3 + 2, 0)
    );
    let counted = serde_json::to_value(&draft.provenance)?["junk"].clone();
    assert_eq!(
        counted,
        json!({"venture-name": 1, "code-or-markup": 1, "echoes-prompt": 1})
    );
    assert_eq!(
        serde_json::to_value(&report)?["drafts"][0]["provenance"]["junk"],
        counted
    );

    // The re-ask names each problem where it is.
    let sent = bodies(&server).await;
    let feedback = sent[1]["messages"][3]["content"]
        .as_str()
        .unwrap_or_default();
    for expected in [
        "/items/0/name: `Exotic Pet Rental` is the venture's own name",
        "/items/1/rationale: the text holds `{`",
        "/items/2/description: the text starts with the prompt's label `building block:`",
    ] {
        assert!(feedback.contains(expected), "{expected}\n{feedback}");
    }

    // No page holds the junk.
    for (page, text) in pages_of(&folder.path().join("pages")) {
        for junk in ["Zoo Night Club", "Pet Whisperer Visits", "$ref"] {
            assert!(!text.contains(junk), "{page} holds {junk}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn junk_that_never_goes_away_is_a_failure_naming_its_reasons() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let junk = json!({"items": [item("Space X", "communities"), item("Idea 1", "communities")]})
        .to_string();
    let server = server(vec![streamed(&junk)]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;

    assert!(report.drafts.is_empty());
    let reason = &report.failed[0].reason;
    assert!(
        reason.contains(
            "0 of 2 items after 3 attempt(s), junk rejected: venture-name 3, placeholder 3"
        ),
        "{reason}"
    );
    Ok(())
}

/// What llama-cpp-python 0.3.36's server answered to `"type": "json_schema"` (recorded from
/// `scripts/llama-cpp-python serve`): HTTP 500, a pydantic validation error and a traceback.
fn llama_cpp_python_refusal() -> ResponseTemplate {
    let message = "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/work/venvs/llamacpp/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions";
    ResponseTemplate::new(500).set_body_json(json!({
        "error": {"message": message, "type": "internal_server_error", "param": null, "code": null}
    }))
}

/// The format a request body asks for: `json_schema`, `json_object_schema`, `json_object` or
/// `text` (no response_format).
fn format_of(body: &Value) -> &'static str {
    let format = &body["response_format"];
    match (format["type"].as_str(), format.get("schema").is_some()) {
        (None, _) => "text",
        (Some("json_schema"), _) => "json_schema",
        (Some("json_object"), true) => "json_object_schema",
        (Some("json_object"), false) => "json_object",
        (Some(_), _) => "other",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_refusing_json_schema_gets_json_object_with_the_schema() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = server(vec![llama_cpp_python_refusal(), streamed(&good_answer())]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2, "one refusal, one answer");
    let schema = &sent[0]["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["items"]["minItems"], 2);
    assert_eq!(
        sent[1]["response_format"],
        json!({"type": "json_object", "schema": schema})
    );
    // Nothing else changes with the format.
    let without_format = |body: &Value| {
        let mut body = body.clone();
        body.as_object_mut()
            .map(|body| body.remove("response_format"));
        body
    };
    assert_eq!(without_format(&sent[0]), without_format(&sent[1]));
    assert_eq!(
        report.drafts[0].provenance.constrained_by,
        "json_object_schema"
    );
    assert_eq!(
        report.drafts[0].provenance.attempts, 1,
        "a refusal is no attempt"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_weaker_format_is_asked_only_after_a_refusal() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    // Refusals in turn, whatever was asked: the bodies show that each one moved the client
    // exactly one step down the chain.
    let server = server(vec![
        llama_cpp_python_refusal(),
        api_error(
            400,
            "response_format.schema: Extra inputs are not permitted",
            Some("invalid_request_error"),
        ),
        api_error(
            422,
            "'response_format.type' must be 'json_schema' or 'text'",
            None,
        ),
        streamed(&good_answer()),
    ])
    .await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sent = bodies(&server).await;
    let formats: Vec<&str> = sent.iter().map(format_of).collect();
    assert_eq!(
        formats,
        ["json_schema", "json_object_schema", "json_object", "text"]
    );
    let schema = &sent[0]["response_format"]["json_schema"]["schema"];
    assert_eq!(
        sent[0]["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "draft", "schema": schema}})
    );
    assert_eq!(
        sent[1]["response_format"],
        json!({"type": "json_object", "schema": schema})
    );
    assert_eq!(sent[2]["response_format"], json!({"type": "json_object"}));
    assert!(sent[3].get("response_format").is_none(), "{}", sent[3]);
    assert_eq!(report.drafts[0].provenance.constrained_by, "text");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preset_may_start_lower_in_the_chain() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = server(vec![streamed(&good_answer())]).await;
    let mut settings = settings(&server.uri())?;
    if let Some(openai) = settings.providers.get_mut("openai") {
        openai.response_format = ResponseFormat::JsonObjectSchema;
    }
    let report = generate_with(&graph, &settings, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(format_of(&sent[0]), "json_object_schema");
    assert_eq!(
        report.drafts[0].provenance.constrained_by,
        "json_object_schema"
    );
    Ok(())
}

/// Refuses the formats in `refused` as the servers that do not know them would, and answers
/// every other request with items of the block's schema.
struct RefusingFormats(&'static [&'static str]);

impl Respond for RefusingFormats {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        match format_of(&body) {
            "json_schema" if self.0.contains(&"json_schema") => llama_cpp_python_refusal(),
            "json_object_schema" if self.0.contains(&"json_object_schema") => api_error(
                400,
                "response_format.schema: Extra inputs are not permitted",
                None,
            ),
            "json_object" if self.0.contains(&"json_object") => api_error(
                400,
                "'response_format.type' must be 'json_schema' or 'text'",
                None,
            ),
            _ => streamed(&answer_for_block(&String::from_utf8_lossy(&request.body))),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_format_is_said_once_and_not_asked_again_in_the_run() -> TestResult {
    let (folder, _graph) = graph_copy()?;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(RefusingFormats(&["json_schema", "json_object_schema"]))
        .mount(&server)
        .await;
    // Two blocks in one run (the profile, then the relationship), at the default log level.
    let url = format!("{}/v1", server.uri());
    let arguments = ["generate", "--venture", VENTURE, "--block", "profile"];
    let mut run = command(folder.path(), &arguments);
    run.args(["--block", BLOCK, "--count", "2", "--json"])
        .env_remove("RUST_LOG")
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", url);
    let output = tokio::task::block_in_place(|| run.output())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)?;
    let drafts = report["drafts"].as_array().ok_or("drafts")?;
    assert_eq!(drafts.len(), 2);
    for draft in drafts {
        assert_eq!(draft["provenance"]["constrained_by"], "json_object");
        assert_eq!(draft["provenance"]["attempts"], 1);
    }

    let sent = bodies(&server).await;
    let formats: Vec<&str> = sent.iter().map(format_of).collect();
    assert_eq!(
        formats,
        [
            "json_schema",
            "json_object_schema",
            "json_object",
            "json_object"
        ],
        "the second block went straight to the format that worked"
    );
    for refused in ["json_schema", "json_object_schema"] {
        let said = format!("refused response_format {refused} (");
        assert_eq!(stderr.matches(&said).count(), 1, "{said}\n{stderr}");
    }
    // The server's own words, once, on one line (async-openai's warning about the 500 is
    // left out of the default log).
    assert_eq!(
        stderr
            .matches("Input should be 'text' or 'json_object'\", 'input': 'json_schema'")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("{\"error\""), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    Ok(())
}

/// Permanent errors: one request, a failure naming the cause and the fix.
async fn fails_once_with(response: ResponseTemplate, expected: &[&str]) -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = server(vec![response]).await;
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    assert_eq!(
        bodies(&server).await.len(),
        1,
        "a permanent error was retried"
    );
    let reason = &report.failed[0].reason;
    for part in expected {
        assert!(reason.contains(part), "`{part}` missing from: {reason}");
    }
    assert!(!reason.contains(KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_names_the_variable() -> TestResult {
    fails_once_with(
        api_error(401, "Incorrect API key provided", Some("invalid_api_key")),
        &["HTTP 401", "OPENAI_API_KEY"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn no_quota_is_not_retried() -> TestResult {
    fails_once_with(
        api_error(
            429,
            "You exceeded your current quota",
            Some("insufficient_quota"),
        ),
        &["no quota left", "OPENAI_API_KEY"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_is_named() -> TestResult {
    fails_once_with(
        api_error(
            404,
            "The model `gpt-4o-mini` does not exist or you do not have access to it.",
            Some("model_not_found"),
        ),
        &["model `gpt-4o-mini`", "--model"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_base_url_says_so() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let server = MockServer::start().await;
    // Nothing mounted: every path is a 404, as on a server without /v1.
    let report = generate_with(&graph, &settings(&server.uri())?, &request()).await?;
    let reason = &report.failed[0].reason;
    assert!(reason.contains("base_url"), "{reason}");
    assert!(reason.contains("/v1"), "{reason}");
    Ok(())
}

/// A server that, per connection in turn: drops the connection without answering, sends the
/// headers and half a body then closes, and finally answers properly.
async fn flaky_server(
    answer: String,
) -> Result<(String, Arc<std::sync::atomic::AtomicUsize>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let index = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = vec![0_u8; 64 * 1024];
            let mut request = Vec::new();
            // Read the headers and the body (its length from Content-Length).
            while let Ok(read) = socket.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let body = sse(&answer);
            match index {
                0 => drop(socket),
                1 => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body.as_bytes()[..body.len() / 3]).await;
                    drop(socket);
                }
                _ => {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
            }
        }
    });
    Ok((format!("http://{address}"), connections))
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_and_truncated_bodies_are_retried() -> TestResult {
    let (_folder, graph) = graph_copy()?;
    let (url, connections) = flaky_server(good_answer()).await?;
    let report = generate_with(&graph, &settings(&url)?, &request()).await?;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.drafts[0].items.len(), 2);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    Ok(())
}

/// The binary, with the key and base URL of `server`, and no inherited settings.
async fn inncopilot(
    graph: &Path,
    server: &MockServer,
    extra: &[&str],
) -> std::io::Result<std::process::Output> {
    let graph_path: PathBuf = graph.to_path_buf();
    let url = format!("{}/v1", server.uri());
    let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_inncopilot"));
        for (name, _) in std::env::vars() {
            if name.starts_with("INNCOPILOT_") || name.starts_with("OPENAI_") {
                command.env_remove(name);
            }
        }
        command.args(["--graph", &graph_path.to_string_lossy(), "-vvv", "generate"]);
        if !extra.iter().any(|argument| argument == "--venture") {
            command.args(["--venture", VENTURE]);
        }
        command
            .args(["--block", BLOCK, "--count", "2"])
            .args(&extra)
            .env("OPENAI_API_KEY", KEY)
            .env("OPENAI_BASE_URL", url)
            .env("RUST_LOG", "trace")
            .output()
    })
    .await?
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_dry_run() -> TestResult {
    let (folder, _graph) = graph_copy()?;
    let refusing = server(vec![api_error(401, "Incorrect API key provided", None)]).await;
    let output = inncopilot(folder.path(), &refusing, &[]).await?;
    assert_eq!(output.status.code(), Some(1), "a failed block exits 1");
    assert!(String::from_utf8_lossy(&output.stdout).contains("OPENAI_API_KEY"));

    let output = inncopilot(folder.path(), &refusing, &["--venture", "Nobody"]).await?;
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown venture is an input error"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("Exotic Pet Rental"));

    let answering = server(vec![streamed(&good_answer())]).await;
    let output = inncopilot(folder.path(), &answering, &["--dry-run"]).await?;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Keeper Hotline"), "{stdout}");
    assert!(
        !folder.path().join(".inncopilot/drafts").exists(),
        "--dry-run wrote drafts"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_never_reaches_logs_or_output() -> TestResult {
    let (folder, _graph) = graph_copy()?;
    let server = server(vec![streamed(&good_answer())]).await;
    let output = inncopilot(folder.path(), &server, &["--json"]).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["drafts"][0]["provenance"]["provider"], "openai");
    assert!(report["run_id"].is_string());
    assert!(!stdout.contains(KEY));
    assert!(!stderr.contains(KEY), "the key is in the log");
    for entry in walk(folder.path()) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(KEY),
            "the key is in {}",
            entry.display()
        );
    }
    Ok(())
}

fn walk(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(folder) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn presets_cover_the_common_servers() -> TestResult {
    let settings = Settings::load(None)?;
    for preset in [
        "openai",
        "azure",
        "openrouter",
        "ollama",
        "vllm",
        "llamacpp",
    ] {
        let found = settings.providers.get(preset).ok_or(preset)?;
        assert!(found.base_url.contains("/v1"), "{preset}");
        assert_eq!(found.response_format, ResponseFormat::JsonSchema);
    }
    Ok(())
}

/// Answers each block with items of its own schema, after `delay`.
struct ByBlock(Duration);

impl Respond for ByBlock {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        streamed(&answer_for_block(&String::from_utf8_lossy(&request.body))).set_delay(self.0)
    }
}

async fn server_by_block(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ByBlock(delay))
        .mount(&server)
        .await;
    server
}

const RELATIONSHIP_PAGE: &str = "pages/profile-(id)___relationship.md";

#[tokio::test(flavor = "multi_thread")]
async fn generate_writes_drafts_and_drafts_lists_accepts_and_rejects_them() -> TestResult {
    let (folder, _graph) = graph_copy()?;
    let page = folder.path().join(RELATIONSHIP_PAGE);
    let original = std::fs::read_to_string(&page)?;
    let server = server(vec![streamed(&good_answer())]).await;

    // --dry-run shows the change as a diff and writes nothing.
    let output = inncopilot(folder.path(), &server, &["--dry-run"]).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("+++ b/pages/profile-(id)___relationship.md"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+  - #relationship [[Keeper Hotline]]\n+    draft:: true\n"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&page)?, original);

    let output = inncopilot(folder.path(), &server, &["--json"]).await?;
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["drafts"][0]["pages"], json!([RELATIONSHIP_PAGE]));
    let written = std::fs::read_to_string(&page)?;
    assert!(
        written.contains(
            "  - #relationship [[Renter Circle]]\n    draft:: true\n    type:: communities\n"
        ),
        "{written}"
    );

    let output = command(folder.path(), &["drafts", "list", "--json"]).output()?;
    let listed: Value = serde_json::from_slice(&output.stdout)?;
    let names: Vec<&str> = listed
        .as_array()
        .ok_or("a list")?
        .iter()
        .filter_map(|draft| draft["name"].as_str())
        .collect();
    assert_eq!(names, ["Keeper Hotline", "Renter Circle"]);
    assert_eq!(listed[0]["venture"], VENTURE);
    assert_eq!(listed[0]["run"], report["run_id"]);

    let output = command(folder.path(), &["drafts", "reject"]).output()?;
    assert_eq!(output.status.code(), Some(2), "reject needs a selection");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--all"));

    let output = command(
        folder.path(),
        &["drafts", "accept", "--item", "keeper hotline"],
    )
    .output()?;
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("accepted 1 draft item(s)"));
    let output = command(folder.path(), &["drafts", "reject", "--venture", VENTURE]).output()?;
    assert_eq!(output.status.code(), Some(0));
    let after = std::fs::read_to_string(&page)?;
    assert!(
        after.contains("  - #relationship [[Keeper Hotline]]\n    type:: personal assistance\n"),
        "{after}"
    );
    assert!(
        !after.contains("Renter Circle") && !after.contains("draft::"),
        "{after}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_gets_a_clear_message() -> TestResult {
    let (folder, _graph) = graph_copy()?;
    let server = server(vec![streamed(&good_answer())]).await;
    let lock = inncopilot::writeback::GraphLock::acquire(folder.path())?;
    let output = inncopilot(folder.path(), &server, &[]).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another inncopilot process is writing this graph"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "asked the model while locked"
    );
    drop(lock);
    let output = inncopilot(folder.path(), &server, &[]).await?;
    assert_eq!(output.status.code(), Some(0));
    Ok(())
}

/// Pages with their `run::` values blanked (they differ from run to run).
fn pages_of(folder: &Path) -> std::collections::BTreeMap<String, String> {
    walk(folder)
        .into_iter()
        .filter(|file| file.extension().is_some_and(|extension| extension == "md"))
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).ok()?;
            let text: String = text
                .split_inclusive('\n')
                .map(|line| match line.find("run:: ") {
                    Some(at) => format!("{}run:: *\n", &line[..at]),
                    None => line.to_string(),
                })
                .collect();
            let relative = file
                .strip_prefix(folder)
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((relative, text))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_at_any_moment_no_page_is_ever_partial() -> TestResult {
    let server = server_by_block(Duration::from_millis(60)).await;
    let url = format!("{}/v1", server.uri());
    let arguments = [
        "generate",
        "--venture",
        "Solar Bikes",
        "--brief",
        "Solar-roofed e-bikes by the hour.",
        "--count",
        "2",
    ];
    let run = |folder: &Path| {
        let mut child = command(folder, &arguments);
        child
            .env("OPENAI_API_KEY", KEY)
            .env("OPENAI_BASE_URL", &url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        child
    };
    // The pages of a run that was left alone.
    let (complete, _) = graph_copy()?;
    let original = pages_of(complete.path());
    let output = tokio::task::block_in_place(|| {
        run(complete.path())
            .stdout(std::process::Stdio::piped())
            .output()
    })?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let finished = pages_of(complete.path());
    assert!(finished.len() > original.len(), "the run created no page");

    let mut interrupted = 0;
    for step in 0..16u64 {
        let (folder, _) = graph_copy()?;
        let mut child = run(folder.path()).spawn()?;
        tokio::time::sleep(Duration::from_millis(step * 12)).await;
        let killed = child.try_wait()?.is_none();
        child.kill()?;
        child.wait()?;
        interrupted += usize::from(killed);
        for (path, text) in pages_of(folder.path()) {
            let as_before = original.get(&path) == Some(&text);
            let as_after = finished.get(&path) == Some(&text);
            assert!(
                as_before || as_after,
                "killed after {} ms: {path} is neither the page before nor after:\n{text}",
                step * 12
            );
        }
        // A re-run finishes the work (from the cache for the blocks already answered).
        let status = tokio::task::block_in_place(|| run(folder.path()).status())?;
        assert_eq!(status.code(), Some(0));
        assert_eq!(
            pages_of(folder.path()),
            finished,
            "after kill at {} ms and a re-run",
            step * 12
        );
    }
    assert!(
        interrupted >= 8,
        "only {interrupted} runs were still going when killed"
    );
    Ok(())
}
