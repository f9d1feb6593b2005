//! A scripted OpenAI-compatible server's answers, for the tests that run the real HTTP client
//! against wiremock: streamed chat completions, answers per block, and the binary without
//! inherited settings.

use std::path::Path;

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

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
