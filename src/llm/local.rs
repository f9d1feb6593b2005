//! The embedded llama.cpp engine (`llama-cpp-2`): the process-wide backend, exact prompt token
//! counts (loading only the vocabulary, so `preview` needs no weights in memory), and
//! [`LocalModel`], which generates answers constrained to the answer schema by llguidance.
//!
//! Constraint: the schema is compiled to a token mask with `"whitespace_flexible": false`, so
//! the JSON is compact and a 135M model cannot loop on newlines; decoding ends when the grammar
//! accepts (llguidance then allows only end-of-generation). Every answer is therefore
//! schema-valid, and running out of `max_tokens` first is an error, never a draft.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use super::{ChatModel, ChatRequest, Completion, ModelError, Progress, Provider, Usage};
use crate::config::LocalSettings;
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
    #[error("the answer schema cannot be used as a grammar: {0}")]
    Grammar(String),
    #[error(
        "the prompt ({prompt} tokens) and max_tokens ({max_tokens}) exceed the model's context of {context} tokens: lower generate.example_token_budget or local.max_tokens"
    )]
    TooLong {
        prompt: usize,
        max_tokens: u32,
        context: u32,
    },
    #[error(
        "the answer was cut off at the token limit ({max_tokens} tokens) before the JSON was complete: raise local.max_tokens or ask for fewer items"
    )]
    TokenLimit { max_tokens: u32 },
    #[error("llama.cpp failed while generating: {0}")]
    Decode(String),
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

/// Load a GGUF file's weights (or only its vocabulary).
fn load_model(path: &Path, vocab_only: bool) -> Result<LlamaModel, Error> {
    if !path.is_file() {
        return Err(Error::Missing {
            path: path.display().to_string(),
        });
    }
    let backend = backend()?;
    let params = LlamaModelParams::default().with_vocab_only(vocab_only);
    LlamaModel::load_from_file(backend, path, &params).map_err(|error| Error::Load {
        path: path.display().to_string(),
        message: error.to_string(),
    })
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
    let model = load_model(path, true)?;
    let text = chat_prompt(&model, path, messages)?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true).len())
}

/// Prompt tokens decoded per llama.cpp batch.
const BATCH: usize = 128;

/// The embedded model, loaded once and used for every request of the process.
pub struct LocalModel {
    provider: Provider,
    path: PathBuf,
    model: LlamaModel,
    /// llguidance's view of the vocabulary, built once (it walks every token).
    parsers: ParserFactory,
    threads: i32,
}

impl LocalModel {
    pub fn load(provider: Provider, settings: &LocalSettings) -> Result<LocalModel, Error> {
        let Provider::Local { path, .. } = &provider else {
            return Err(Error::Backend(
                "the local engine was given a remote provider".into(),
            ));
        };
        let path = path.clone();
        let model = load_model(&path, false)?;
        let tok_env = LlamaSampler::llguidance_tok_env(&model);
        let mut parsers = ParserFactory::new_simple(&tok_env)
            .map_err(|error| Error::Grammar(error.to_string()))?;
        parsers.quiet();
        Ok(LocalModel {
            provider,
            path,
            model,
            parsers,
            threads: i32::try_from(settings.threads.max(1)).unwrap_or(2),
        })
    }

    /// A sampler that only allows tokens continuing JSON valid under `schema`, then samples
    /// at the request's temperature (greedy at 0).
    fn sampler(&self, schema: &Value, temperature: f64, seed: i64) -> Result<LlamaSampler, Error> {
        let mut schema = schema.clone();
        if let Some(object) = schema.as_object_mut() {
            object.insert("x-guidance".into(), json!({"whitespace_flexible": false}));
        }
        let parser = self
            .parsers
            .create_parser(TopLevelGrammar::from_json_schema(schema))
            .map_err(|error| Error::Grammar(error.to_string()))?;
        let grammar = LlamaSampler::from(Matcher::new(Ok(parser)));
        // A light repetition penalty: a 135M model otherwise names every item alike. Tokens
        // the grammar forces (keys, punctuation) stay the only choice, so JSON is unaffected.
        let penalties = LlamaSampler::penalties(self.model.n_vocab(), 256, 1.15, 0.0, 0.0);
        let sampling = if temperature <= 0.0 {
            vec![LlamaSampler::greedy()]
        } else {
            vec![
                LlamaSampler::temp(temperature as f32),
                LlamaSampler::dist(seed as u32),
            ]
        };
        Ok(LlamaSampler::chain_simple(
            [grammar, penalties].into_iter().chain(sampling),
        ))
    }

    /// Generate one answer (blocking: llama.cpp runs on this thread).
    pub fn generate(
        &self,
        request: &ChatRequest,
        progress: Progress<'_>,
    ) -> Result<Completion, Error> {
        let text = chat_prompt(&self.model, &self.path, &request.messages)?;
        let prompt = self.model.vocab().tokenize(text.as_bytes(), true, true);
        let max_tokens = request.params.max_tokens;
        let needed = prompt.len() + max_tokens as usize + 1;
        let context_size = self.model.n_ctx_train();
        if needed > context_size as usize {
            return Err(Error::TooLong {
                prompt: prompt.len(),
                max_tokens,
                context: context_size,
            });
        }
        let decode = |error: &dyn std::fmt::Display| Error::Decode(error.to_string());
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(
                u32::try_from(needed).unwrap_or(context_size),
            ))
            .with_n_batch(BATCH as u32)
            .with_n_ubatch(BATCH as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads)
            .with_no_perf(false);
        let started = std::time::Instant::now();
        let mut context = self
            .model
            .new_context(backend()?, params)
            .map_err(|error| decode(&error))?;
        let mut batch = LlamaBatch::new(BATCH, 1);
        for (chunk_index, chunk) in prompt.chunks(BATCH).enumerate() {
            batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let position = chunk_index * BATCH + offset;
                let last = position + 1 == prompt.len();
                batch
                    .add(*token, position as i32, &[0], last)
                    .map_err(|error| decode(&error))?;
            }
            context.decode(&mut batch).map_err(|error| decode(&error))?;
        }
        let prompt_seconds = started.elapsed().as_secs_f64();
        let mut sampler = self.sampler(
            &request.schema,
            request.params.temperature,
            request.params.seed,
        )?;
        let answer_started = std::time::Instant::now();
        let mut sampling = std::time::Duration::ZERO;
        let vocab = self.model.vocab();
        let mut answer = Vec::new();
        let mut shown = 0;
        let mut position = prompt.len();
        let mut generated = 0_u32;
        loop {
            let sample_started = std::time::Instant::now();
            let token = sampler.sample(&context, batch.n_tokens() - 1);
            sampling += sample_started.elapsed();
            if vocab.is_eog(token) {
                break;
            }
            if generated == max_tokens {
                return Err(Error::TokenLimit { max_tokens });
            }
            generated += 1;
            answer.extend(vocab.token_to_piece(token, false, None));
            // Show whole characters only (a token may end inside a UTF-8 sequence).
            let complete = match std::str::from_utf8(&answer[shown..]) {
                Ok(_) => answer.len(),
                Err(error) => shown + error.valid_up_to(),
            };
            if complete > shown {
                progress(&String::from_utf8_lossy(&answer[shown..complete]));
                shown = complete;
            }
            batch.clear();
            batch
                .add(token, position as i32, &[0], true)
                .map_err(|error| decode(&error))?;
            position += 1;
            context.decode(&mut batch).map_err(|error| decode(&error))?;
        }
        let answer_seconds = answer_started.elapsed().as_secs_f64();
        // llama.cpp's own account of its evaluation time (the reference for our overhead).
        let timings = context.timings();
        tracing::info!(
            "prompt {} tokens in {prompt_seconds:.2} s ({:.0}/s); answer {generated} tokens in {answer_seconds:.2} s ({:.1}/s), of which sampling with the grammar {:.2} s; llama.cpp's own timing: eval {} tokens in {:.2} s ({:.1}/s), prompt eval {} tokens in {:.2} s",
            prompt.len(),
            prompt.len() as f64 / prompt_seconds.max(1e-9),
            f64::from(generated) / answer_seconds.max(1e-9),
            sampling.as_secs_f64(),
            timings.n_eval(),
            timings.t_eval_ms() / 1000.0,
            f64::from(timings.n_eval()) / (timings.t_eval_ms() / 1000.0).max(1e-9),
            timings.n_p_eval(),
            timings.t_p_eval_ms() / 1000.0,
        );
        Ok(Completion {
            text: String::from_utf8_lossy(&answer).into_owned(),
            usage: Usage {
                prompt_tokens: prompt.len() as u64,
                completion_tokens: u64::from(generated),
            },
            constrained_by: "grammar".into(),
        })
    }
}

#[async_trait::async_trait]
impl ChatModel for LocalModel {
    fn provider(&self) -> &Provider {
        &self.provider
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        progress: Progress<'_>,
    ) -> Result<Completion, ModelError> {
        // llama.cpp blocks this thread; let the runtime move other tasks off it.
        let run = || self.generate(request, progress).map_err(ModelError::from);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }
}
