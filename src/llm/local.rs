//! The embedded llama.cpp engine (`llama-cpp-2`). Today: the process-wide backend and counting
//! a chat prompt's tokens with the model's own tokenizer and chat template, loading only the
//! vocabulary (no weights), so `preview` stays fast and needs no model in memory.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};

use crate::prompt::Message;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "model file {path} does not exist (run scripts/setup, or set INNCOPILOT_LOCAL_MODEL or local.model)"
    )]
    Missing { path: String },
    #[error("llama.cpp could not start: {0}")]
    Backend(String),
    #[error("cannot load {path}: {message}")]
    Load { path: String, message: String },
    #[error("the chat template of {path} failed: {message}")]
    ChatTemplate { path: String, message: String },
}

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
static BACKEND_INIT: Mutex<()> = Mutex::new(());

/// The llama.cpp backend, initialised once per process (llama.cpp allows only one).
pub fn backend() -> Result<&'static LlamaBackend, Error> {
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    let _guard = BACKEND_INIT
        .lock()
        .map_err(|error| Error::Backend(error.to_string()))?;
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    // llama.cpp logs every load step to stderr; route it through tracing (debug level).
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let backend = LlamaBackend::init().map_err(|error| Error::Backend(error.to_string()))?;
    Ok(BACKEND.get_or_init(|| backend))
}

/// The prompt text the model reads: the messages through the model's chat template, ready for
/// the assistant's turn.
pub fn chat_prompt(model: &LlamaModel, path: &Path, messages: &[Message]) -> Result<String, Error> {
    let template_error = |message: String| Error::ChatTemplate {
        path: path.display().to_string(),
        message,
    };
    let template = model
        .chat_template(None)
        .map_err(|error| template_error(error.to_string()))?;
    let chat = messages
        .iter()
        .map(|message| {
            LlamaChatMessage::new(message.role.as_str().to_string(), message.content.clone())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| template_error(error.to_string()))?;
    model
        .apply_chat_template(&template, &chat, true)
        .map_err(|error| template_error(error.to_string()))
}

/// How many tokens the model reads for these messages, with its own tokenizer.
pub fn count_prompt_tokens(path: &Path, messages: &[Message]) -> Result<usize, Error> {
    if !path.is_file() {
        return Err(Error::Missing {
            path: path.display().to_string(),
        });
    }
    let backend = backend()?;
    let params = LlamaModelParams::default().with_vocab_only(true);
    let model =
        LlamaModel::load_from_file(backend, path, &params).map_err(|error| Error::Load {
            path: path.display().to_string(),
            message: error.to_string(),
        })?;
    let text = chat_prompt(&model, path, messages)?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true).len())
}
