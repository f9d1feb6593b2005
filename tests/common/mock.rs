//! A scripted OpenAI-compatible server's answers, for the tests that run the real HTTP client
//! against wiremock: streamed chat completions, answers per block, and the binary without
//! inherited settings.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API key the tests give; it must never show up in output or logs.
pub const KEY: &str = "sk-test-4f1d2c9e8b7a6";

pub fn item(name: &str, kind: &str) -> Value {
    json!({
        "name": name,
        "description": format!("{name}: how the rental company stays close to its customers."),
        "type": kind,
        "nature": "long-term",
        "intimacy": "personal",
        "lifecycle_stage": "retention",
        "rationale": "Renters want reassurance from people who know the animals."
    })
}

pub fn good_answer() -> String {
    json!({"items": [item("Keeper Hotline", "personal assistance"), item("Renter Circle", "communities")]})
        .to_string()
}

/// A streamed chat completion (server-sent events) carrying `content` in two pieces.
pub fn sse(content: &str) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let middle = content.len() / 2;
    let middle = (middle..content.len())
        .find(|index| content.is_char_boundary(*index))
        .unwrap_or(content.len());
    let usage = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-4o-mini", "choices": [],
        "usage": {"prompt_tokens": 900, "completion_tokens": 120, "total_tokens": 1020}
    });
    format!(
        "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: {usage}\n\ndata: [DONE]\n\n",
        chunk(
            json!({"role": "assistant", "content": &content[..middle]}),
            Value::Null
        ),
        chunk(json!({"content": &content[middle..]}), Value::Null),
        chunk(json!({}), json!("stop")),
    )
}

pub fn streamed(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(sse(content), "text/event-stream")
}

pub fn api_error(status: u16, message: &str, code: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"message": message, "type": code, "param": null, "code": code}
    }))
}

/// Two items of the schema of the block a request body asks about (profile or relationship).
pub fn answer_for_block(body: &str) -> String {
    if body.contains("segmentation") {
        json!({"items": [
            {"name": "Weekend Riders", "description": "People who ride for fun on weekends.",
             "segmentation": [{"criterion": "use", "value": "leisure"}], "decision_makers": ["the riders"]},
            {"name": "Hotel Guests", "description": "Tourists who rent a bike from their hotel.",
             "segmentation": [{"criterion": "use", "value": "tourism"}], "decision_makers": ["hotel concierges"]}
        ]})
        .to_string()
    } else {
        good_answer()
    }
}

/// The binary on `graph` with `arguments`, no model settings inherited.
pub fn command(graph: &Path, arguments: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_inncopilot"));
    for (name, _) in std::env::vars() {
        if name.starts_with("INNCOPILOT_") || name.starts_with("OPENAI_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--graph", &graph.to_string_lossy()])
        .args(arguments);
    command
}

pub const PROFILE: &str = "profile-(id)";
pub const RELATIONSHIP: &str = "profile-(id)/relationship";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub venture: String,
    pub block: &'static str,
    pub at: Instant,
    /// Answered "too many requests".
    pub refused: bool,
    /// The request's `seed`.
    pub seed: Option<i64>,
}

/// Answers each block with items of its schema after `delay` (or with `refuse`), and records
/// which (venture, block) each request was for and when it came.
#[derive(Clone)]
pub struct Recorder {
    pub delay: Duration,
    pub refuse: Option<ResponseTemplate>,
    /// The first this many requests are answered 429 (Retry-After: 0).
    pub storm: usize,
    /// Requests for this venture are answered with text that is no draft (its pairs fail).
    pub broken: Option<&'static str>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start(
        delay: Duration,
        refuse: Option<ResponseTemplate>,
    ) -> (MockServer, Recorder) {
        Recorder::start_with(Recorder {
            delay,
            refuse,
            storm: 0,
            broken: None,
            seen: Arc::default(),
        })
        .await
    }

    pub async fn start_with(recorder: Recorder) -> (MockServer, Recorder) {
        let server = MockServer::start().await;
        recorder.clone().answer_on(&server).await;
        (server, recorder)
    }

    /// Answer `server`'s chat completions from now on, in place of whatever answered before.
    pub async fn answer_on(self, server: &MockServer) {
        server.reset().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(self)
            .mount(server)
            .await;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
        }
    }
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&request.body);
        let venture = body
            .rsplit_once("ideas for ")
            .and_then(|(_, rest)| rest.split_once('.'))
            .map(|(name, _)| name.to_string())
            .unwrap_or_default();
        let block = match body.contains("segmentation") {
            true => PROFILE,
            false => RELATIONSHIP,
        };
        let mut refused = false;
        if let Ok(mut seen) = self.seen.lock() {
            refused = seen.len() < self.storm;
            let seed = serde_json::from_slice::<Value>(&request.body)
                .ok()
                .and_then(|body| body["seed"].as_i64());
            seen.push(Seen {
                seed,
                venture: venture.clone(),
                block,
                at: Instant::now(),
                refused,
            });
        }
        if refused {
            return api_error(429, "Rate limit reached for requests", None)
                .insert_header("retry-after", "0");
        }
        // Each venture gets names of its own: another venture's drafts are items of the graph,
        // and copying them would be junk.
        let word: String = venture
            .split_whitespace()
            .filter_map(|word| word.chars().next())
            .collect::<String>()
            .to_uppercase();
        let answer = [
            "Keeper Hotline",
            "Renter Circle",
            "Weekend Riders",
            "Hotel Guests",
        ]
        .iter()
        .fold(answer_for_block(&body), |answer, name| {
            answer.replace(&format!("\"{name}\""), &format!("\"{name} {word}\""))
        });
        match &self.refuse {
            Some(refusal) => refusal.clone(),
            None if self.broken == Some(venture.as_str()) => {
                streamed("No ideas today.").set_delay(self.delay)
            }
            None => streamed(&answer).set_delay(self.delay),
        }
    }
}

/// The binary on `graph` against `server`, with the key.
pub fn inncopilot(graph: &Path, server: &MockServer, arguments: &[&str]) -> std::process::Command {
    let mut child = command(graph, arguments);
    child
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", format!("{}/v1", server.uri()));
    child
}

pub fn output(
    command: &mut std::process::Command,
) -> std::io::Result<(Option<i32>, String, String)> {
    let output = tokio::task::block_in_place(|| command.output())?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}
