//! The embedded llama.cpp engine (`llama-cpp-2`): the process-wide backend, exact prompt token
//! counts (loading only the vocabulary, so `preview` needs no weights in memory), and
//! [`LocalModel`], which generates answers constrained to the answer schema by llguidance.
//!
//! Constraint: the schema is compiled to a token mask with `"whitespace_flexible": false`, so
//! the JSON is compact and a 135M model cannot loop on newlines; decoding ends when the grammar
//! accepts (llguidance then allows only end-of-generation). Every answer is therefore
//! schema-valid, and running out of `max_tokens` first is an error, never a draft. The grammar
//! is the schema with its texts capped (`local.max_name_length`, `local.max_text_length`): a
//! stricter schema, so its answers stay valid under the block's own.
//!
//! Speed: what the grammar forces (keys, punctuation, the rest of an enum value once its start
//! is chosen; about 40% of an answer) is decoded in one batch with the token sampled before it,
//! instead of a token at a time. That needs llguidance to tokenize forced text the way the
//! model does, so its tokenizer is the model's own ([`ModelTokenizer`]).
//!
//! Prompts read once: answers are generated on a thread of the model's own that keeps its
//! llama.cpp context, and a prompt reads only what the tokens already in the context's KV cache
//! do not begin with (the next attempt of a pair shares most of its prompt, every block the
//! system message). Flash attention is off: on CPU it made this model slower.
//!
//! Junk while decoding: a 135M model names items after the venture's existing ones (it copies
//! them from the prompt), gives a name twice, or writes a placeholder name or an empty
//! description. The guard (`llm::guard`) judges each text of an item as soon as it is closed,
//! with the request's avoided names and its [`super::TextCheck`] (the junk rules); the grammar
//! and the KV cache are taken back to where a refused text began, and the model begins it
//! again without the first tokens it tried there.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{InferenceCapabilities, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use super::Message;
use super::guard::TextGuard;
use super::{ChatModel, ChatRequest, Completion, ModelError, Progress, Provider, Usage};
use crate::config::LocalSettings;

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
    // The vocabulary is read once per file and process: `enrich --plan` counts hundreds of
    // prompts, and each read takes ~0.1 s.
    static VOCABULARIES: Mutex<Vec<(PathBuf, Arc<LlamaModel>)>> = Mutex::new(Vec::new());
    let known = VOCABULARIES.lock().ok().and_then(|read| {
        read.iter()
            .find(|(file, _)| file == path)
            .map(|(_, model)| model.clone())
    });
    let model = match known {
        Some(model) => model,
        None => {
            let model = Arc::new(load_model(path, true)?);
            if let Ok(mut read) = VOCABULARIES.lock() {
                read.push((path.to_path_buf(), model.clone()));
            }
            model
        }
    };
    let text = chat_prompt(&model, path, messages)?;
    Ok(model.vocab().tokenize(text.as_bytes(), true, true).len())
}

/// Prompt tokens decoded per llama.cpp batch. Batches of 64 read the prompt as fast as larger
/// ones on two cores (~240 tokens/s) with a compute buffer of 13 MB instead of 26 (128) or 105
/// (512). The KV cache stays f16 without flash attention: 8-bit K and V (which need flash
/// attention) took the peak of a 5-item generate from 210 to 183 MB but read prompts at ~130
/// tokens/s instead of ~240 and decoded at 58 tokens/s instead of 67.
const BATCH: usize = 64;

/// A context has this much room beyond the answer it is made for, rounded up to a multiple
/// of it: the next attempt's prompt, a few names longer, then fits in the same context.
const CONTEXT_STEP: usize = 128;

/// The engine's context kept between answers, and the tokens in its KV cache (sequence 0):
/// the next prompt that begins with the same tokens (the next attempt of a pair, the same
/// block for another venture, the system message of every block) reads only the rest.
struct Session<'m> {
    context: LlamaContext<'m>,
    tokens: Vec<LlamaToken>,
}

/// How many tokens `a` and `b` share from their start.
fn shared_start(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// llguidance's view of the vocabulary with the model's own tokenizer, so that llguidance may
/// force tokens: it computes forced tokens only with a canonical tokenizer, and llama-cpp-2's
/// token environment is an approximate one (greedy over the token trie).
struct ModelTokenizer {
    trie: TokTrie,
    model: Arc<LlamaModel>,
}

impl TokenizerEnv for ModelTokenizer {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(bytes, false, false)
            .into_iter()
            .map(|token| token.0.cast_unsigned())
            .collect()
    }
}

/// The embedded model, loaded once and used for every request of the process. Answers are
/// generated one at a time on a thread of its own, which keeps llama.cpp's context (and the
/// prompt in its KV cache) from one answer to the next: a context borrows the model, so it
/// lives where the model is never moved.
pub struct LocalModel {
    provider: Provider,
    engine: Arc<Engine>,
    /// The engine's thread, started by the first answer; it ends when this is dropped.
    worker: Mutex<Option<mpsc::Sender<Job>>>,
}

/// One answer to generate on the engine's thread, and where its pieces and result go.
struct Job {
    request: ChatRequest,
    events: mpsc::Sender<JobEvent>,
}

enum JobEvent {
    Piece(String),
    Done(Result<Completion, Error>),
}

/// The loaded model and what generating with it needs.
struct Engine {
    path: PathBuf,
    model: Arc<LlamaModel>,
    /// llguidance's view of the vocabulary, built once (it walks every token).
    parsers: ParserFactory,
    threads: i32,
    /// The longest item name, and the longest other text, the grammar allows.
    max_name_length: usize,
    max_text_length: usize,
    /// Prompt tokens found in the kept KV cache instead of read, since the load.
    reused_tokens: AtomicU64,
    /// Sequences decoded side by side in one batch, each with its share of an answer's items.
    sequences: usize,
    /// Sequences decoded, over all answers since the load.
    sequences_decoded: AtomicU64,
}

impl LocalModel {
    pub fn load(provider: Provider, settings: &LocalSettings) -> Result<LocalModel, Error> {
        let Provider::Local { path, .. } = &provider else {
            return Err(Error::Backend(
                "the local engine was given a remote provider".into(),
            ));
        };
        let path = path.clone();
        let model = Arc::new(load_model(&path, false)?);
        let tokenizer = ModelTokenizer {
            trie: LlamaSampler::llguidance_tok_env(&model).tok_trie().clone(),
            model: Arc::clone(&model),
        };
        // No token slices (llguidance's precomputed masks for generic JSON strings): our texts
        // have patterns of their own, which the slices do not fit, so they took 11.6 MB and
        // left the grammar's time per answer the same (0.28 s without, 0.30 s with).
        let no_slices: &[String] = &[];
        let mut parsers = ParserFactory::new(
            &(Arc::new(tokenizer) as _),
            InferenceCapabilities::default(),
            no_slices,
        )
        .map_err(grammar)?;
        parsers.quiet();
        let engine = Engine {
            path,
            model,
            parsers,
            threads: i32::try_from(settings.threads.max(1)).unwrap_or(2),
            max_name_length: settings.max_name_length,
            max_text_length: settings.max_text_length,
            reused_tokens: AtomicU64::new(0),
            sequences: settings.sequences.max(1),
            sequences_decoded: AtomicU64::new(0),
        };
        Ok(LocalModel {
            provider,
            engine: Arc::new(engine),
            worker: Mutex::new(None),
        })
    }

    /// Generate one answer (blocking until it is done; `progress` is called on this thread).
    pub fn generate(
        &self,
        request: &ChatRequest,
        progress: Progress<'_>,
    ) -> Result<Completion, Error> {
        let stopped = || Error::Decode("the engine's thread stopped".into());
        let (events, replies) = mpsc::channel();
        let job = Job {
            request: request.clone(),
            events,
        };
        if self.worker()?.send(job).is_err() {
            self.forget_worker();
            return Err(stopped());
        }
        for event in replies {
            match event {
                JobEvent::Piece(text) => progress(&text),
                JobEvent::Done(result) => return result,
            }
        }
        // The thread ended without an answer (llama.cpp panicked): the next answer starts a
        // new one.
        self.forget_worker();
        Err(stopped())
    }

    fn forget_worker(&self) {
        if let Ok(mut worker) = self.worker.lock() {
            *worker = None;
        }
    }

    /// Prompt tokens this model found in its kept KV cache instead of reading them, since it
    /// was loaded.
    pub fn reused_prompt_tokens(&self) -> u64 {
        self.engine.reused_tokens.load(Ordering::Relaxed)
    }

    /// Sequences decoded (one per answer, or `local.sequences` side by side), since the load.
    pub fn sequences_decoded(&self) -> u64 {
        self.engine.sequences_decoded.load(Ordering::Relaxed)
    }

    /// The engine's thread (started on first use).
    fn worker(&self) -> Result<mpsc::Sender<Job>, Error> {
        let mut worker = self
            .worker
            .lock()
            .map_err(|_| Error::Decode("the engine's thread failed earlier".into()))?;
        if let Some(jobs) = worker.as_ref() {
            return Ok(jobs.clone());
        }
        let (jobs, received) = mpsc::channel::<Job>();
        let engine = Arc::clone(&self.engine);
        std::thread::Builder::new()
            .name("llama.cpp".into())
            .spawn(move || engine.serve(received))
            .map_err(|error| Error::Backend(format!("cannot start its thread: {error}")))?;
        *worker = Some(jobs.clone());
        Ok(jobs)
    }
}

impl Engine {
    /// Answer the jobs one after another, keeping the context between them.
    fn serve(&self, jobs: mpsc::Receiver<Job>) {
        let mut session = None;
        for job in jobs {
            let events = job.events;
            let progress = |text: &str| {
                let _ = events.send(JobEvent::Piece(text.to_string()));
            };
            let result = self.generate(&mut session, &job.request, &progress);
            let _ = events.send(JobEvent::Done(result));
        }
    }

    /// `schema` with its texts capped and shaped (see the module docs).
    fn capped(&self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        cap_texts(&mut schema, self.max_name_length, self.max_text_length);
        schema
    }

    /// A matcher of JSON valid under `capped`, the answer schema with its texts capped
    /// ([`LocalModel::capped`]).
    fn grammar(&self, capped: &Value) -> Result<Matcher, Error> {
        let mut schema = capped.clone();
        if let Some(object) = schema.as_object_mut() {
            object.insert("x-guidance".into(), json!({"whitespace_flexible": false}));
        }
        let parser = self
            .parsers
            .create_parser(TopLevelGrammar::from_json_schema(schema))
            .map_err(grammar)?;
        Ok(Matcher::new(Ok(parser)))
    }

    /// A sampler that only allows the tokens `grammar` allows, then samples at `temperature`
    /// (greedy at 0); `history` is the answer so far, for the repetition penalty.
    fn sampler(
        &self,
        grammar: Matcher,
        history: &[LlamaToken],
        temperature: f64,
        seed: i64,
    ) -> LlamaSampler {
        // A light repetition penalty: a 135M model otherwise names every item alike. Tokens
        // the grammar forces (keys, punctuation) stay the only choice, so JSON is unaffected.
        let mut penalties = LlamaSampler::penalties(self.model.n_vocab(), 256, 1.15, 0.0, 0.0);
        penalties.accept_many(history);
        // The samplers after the grammar see its 40 best allowed tokens, not all 49,152: the
        // penalty and the softmax then cost little (sampling was ~5.5% of decoding time).
        let shortlist = LlamaSampler::top_k(40);
        let sampling = if temperature <= 0.0 {
            vec![LlamaSampler::greedy()]
        } else {
            vec![
                LlamaSampler::temp(temperature as f32),
                LlamaSampler::dist(seed as u32),
            ]
        };
        LlamaSampler::chain_simple(
            [LlamaSampler::from(grammar), shortlist, penalties]
                .into_iter()
                .chain(sampling),
        )
    }

    /// A context for `needed` tokens, with room for longer prompts after it, holding what
    /// the `earlier` (smaller) one held: its KV cache is copied over, and the earlier one is
    /// dropped before the new one is made (one context at a time in memory).
    fn session<'m>(
        &'m self,
        earlier: Option<Session<'m>>,
        needed: usize,
        limit: usize,
    ) -> Result<Session<'m>, Error> {
        let carried = earlier.and_then(|earlier| {
            let state = earlier
                .context
                .state_seq_get(0, LlamaStateSeqFlags::empty())
                .ok()?;
            Some((state, earlier.tokens))
        });
        let size = (needed + CONTEXT_STEP)
            .next_multiple_of(CONTEXT_STEP)
            .min(limit);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(u32::try_from(size).unwrap_or(u32::MAX)))
            .with_n_batch(BATCH as u32)
            .with_n_ubatch(BATCH as u32)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads)
            // Lanes share the prompt's cells of one cache.
            .with_n_seq_max(self.sequences as u32)
            .with_kv_unified(true)
            // llama.cpp's default ("auto") turns flash attention on, and on CPU it decoded
            // this model at 50 tokens/s instead of 76 and read prompts at 275/s instead of 320
            // (2 cores, AVX-512).
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
            .with_no_perf(false);
        let mut context = self.model.new_context(backend()?, params).map_err(decode)?;
        let tokens = match carried {
            Some((state, tokens)) if context.state_seq_set(&state, 0).is_ok() => tokens,
            _ => {
                context.clear_kv_cache();
                Vec::new()
            }
        };
        Ok(Session { context, tokens })
    }

    /// Generate one answer on this thread, in the kept context when it is large enough (the
    /// prompt then reads only what the tokens in its KV cache do not begin with). The context
    /// is kept again only when the answer succeeds: after an error its cache is not known.
    fn generate<'m>(
        &'m self,
        session: &mut Option<Session<'m>>,
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
        let started = std::time::Instant::now();
        let Session {
            mut context,
            tokens: mut kept,
        } = match session.take() {
            Some(kept) if kept.context.n_ctx() as usize >= needed => kept,
            too_small => self.session(too_small, needed, context_size as usize)?,
        };
        // The prompt's last token is read again even when the cache holds it: its logits
        // begin the answer.
        let reused = shared_start(&kept, &prompt).min(prompt.len().saturating_sub(1));
        kept.truncate(reused);
        if !context
            .clear_kv_cache_seq(Some(0), Some(reused as u32), None)
            .map_err(decode)?
        {
            return Err(Error::Decode(
                "llama.cpp could not drop the end of the kept prompt".into(),
            ));
        }
        self.reused_tokens
            .fetch_add(reused as u64, Ordering::Relaxed);
        let mut batch = LlamaBatch::new(BATCH, 1);
        for (chunk_index, chunk) in prompt[reused..].chunks(BATCH).enumerate() {
            batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let position = reused + chunk_index * BATCH + offset;
                let last = position + 1 == prompt.len();
                batch
                    .add(*token, position as i32, &[0], last)
                    .map_err(decode)?;
            }
            context.decode(&mut batch).map_err(decode)?;
        }
        // llama.cpp accounts a decode's time when its results are waited for; wait for the
        // prompt's here, so that its own timing from here on covers the answer only.
        context.synchronize();
        let prompt_seconds = started.elapsed().as_secs_f64();
        context.reset_timings();
        let capped = self.capped(&request.schema);
        let (temperature, seed) = (request.params.temperature, request.params.seed);
        // The items are shared out among the lanes (parallel sequences; one unless
        // `local.sequences` says more), each after the same prompt in the KV cache.
        let wanted = item_count(&capped).unwrap_or(1).max(1);
        let lane_count = self.sequences.clamp(1, wanted);
        let prompt_logits = batch.n_tokens() - 1;
        self.sequences_decoded
            .fetch_add(lane_count as u64, Ordering::Relaxed);
        let mut lanes = Vec::with_capacity(lane_count);
        for lane in 0..lane_count {
            let items = wanted / lane_count + usize::from(lane < wanted % lane_count);
            let mut schema = capped.clone();
            if items != wanted {
                crate::draft::schema::set_item_count(&mut schema, items);
            }
            let seq = lane as i32;
            if seq > 0 {
                context
                    .copy_kv_cache_seq(0, seq, None, None)
                    .map_err(decode)?;
            }
            let forced = self.grammar(&schema)?;
            let lane_seed = seed + lane as i64 * 1000;
            lanes.push(Lane {
                seq,
                sampler: self.sampler(forced.deep_clone(), &[], temperature, lane_seed),
                forced,
                seed: lane_seed,
                texts: TextGuard::new(request.avoid_names.iter(), request.check.clone()),
                history: Vec::new(),
                answer: Vec::new(),
                ends: Vec::new(),
                before: 0,
                position: prompt.len(),
                logits: prompt_logits,
                redo: None,
                first: true,
                done: false,
            });
        }
        let answer_started = std::time::Instant::now();
        let mut sampling = std::time::Duration::ZERO;
        let vocab = self.model.vocab();
        let mut shown = 0;
        let mut generated = 0_u32;
        let mut sampled = 0_u32;
        let mut backtracked = 0_u32;
        let mut batch = LlamaBatch::new(BATCH.max(lane_count * 16), 1);
        loop {
            // One round: each lane that is not done adds to one batch the token it samples
            // with the tokens forced after it (the first round: what the grammar forces at the
            // start, if anything), or, after a refused text, the token before the text again.
            batch.clear();
            let mut active = Vec::new();
            for (index, lane) in lanes.iter_mut().enumerate().filter(|(_, lane)| !lane.done) {
                if let Some((token, position)) = lane.redo.take() {
                    batch
                        .add(token, position as i32, &[lane.seq], true)
                        .map_err(decode)?;
                    lane.logits = batch.n_tokens() - 1;
                    continue;
                }
                let sample_started = std::time::Instant::now();
                let Some((next, was_sampled)) = lane.next_tokens(&context, &vocab)? else {
                    continue;
                };
                sampled += u32::from(was_sampled);
                sampling += sample_started.elapsed();
                if next.is_empty() {
                    // Nothing forced at the start: the next round samples from the prompt's
                    // last logits, which it still has.
                    continue;
                }
                if generated as usize + next.len() > max_tokens as usize {
                    return Err(Error::TokenLimit { max_tokens });
                }
                generated += next.len() as u32;
                lane.write(&next, &mut batch, &vocab)?;
                active.push(index);
            }
            if lanes.iter().all(|lane| lane.done) {
                break;
            }
            // The first lane's answer is shown as it grows (whole characters only: a token
            // may end inside a UTF-8 sequence); the others' when they are done.
            let first_answer = &lanes[0].answer;
            let complete = match std::str::from_utf8(&first_answer[shown.min(first_answer.len())..])
            {
                Ok(_) => first_answer.len(),
                Err(error) => shown + error.valid_up_to(),
            };
            if complete > shown {
                progress(&String::from_utf8_lossy(&first_answer[shown..complete]));
                shown = complete;
            }
            if batch.n_tokens() > 0 {
                context.decode(&mut batch).map_err(decode)?;
            }
            for index in active {
                let lane = &mut lanes[index];
                match lane
                    .texts
                    .step(lane.before, &lane.answer, &lane.history, &lane.ends)
                {
                    Some(back) => {
                        backtracked += 1;
                        lane.take_back(back.tokens, prompt.len(), &mut context)?;
                        lane.seed += 1;
                        lane.sampler = self.sampler(
                            lane.forced.deep_clone(),
                            &lane.history,
                            temperature,
                            lane.seed,
                        );
                        if index == 0 {
                            shown = shown.min(lane.answer.len());
                        }
                    }
                    None => {
                        // A name this lane has just written is one the others must not repeat.
                        if let Some(name) = lane.texts.closed.take() {
                            for (other, lane) in lanes.iter_mut().enumerate() {
                                if other != index {
                                    lane.texts.avoid.insert(name.clone());
                                }
                            }
                        }
                    }
                }
            }
        }
        for lane in lanes.iter().skip(1) {
            progress(&format!("\n{}", String::from_utf8_lossy(&lane.answer)));
            context
                .clear_kv_cache_seq(Some(lane.seq as u32), None, None)
                .map_err(decode)?;
        }
        let answer_seconds = answer_started.elapsed().as_secs_f64();
        // llama.cpp's own account of the answer's evaluations (the reference for our overhead):
        // single tokens as "eval", a sampled token with the tokens forced after it as "prompt
        // eval". The rest of the answer's time is ours: grammar, sampling, the loop.
        let timings = context.timings();
        let mut taken_back: BTreeMap<String, usize> = BTreeMap::new();
        for (reason, count) in lanes.iter().flat_map(|lane| &lane.texts.taken_back) {
            *taken_back.entry(reason.to_string()).or_default() += count;
        }
        let engine_seconds = (timings.t_eval_ms() + timings.t_p_eval_ms()) / 1000.0;
        tracing::info!(
            "prompt {} tokens ({reused} kept from an earlier prompt), read {} tokens in {prompt_seconds:.2} s ({:.0}/s); answer {generated} tokens ({sampled} sampled, {} forced by the grammar, {backtracked} refused texts taken back: {:?}) in {answer_seconds:.2} s ({:.1}/s), of which sampling with the grammar {:.2} s; llama.cpp's own timing of the answer: {engine_seconds:.2} s ({:.3} of it), single-token eval {} tokens at {:.1}/s",
            prompt.len(),
            prompt.len() - reused,
            (prompt.len() - reused) as f64 / prompt_seconds.max(1e-9),
            generated - sampled,
            taken_back,
            f64::from(generated) / answer_seconds.max(1e-9),
            sampling.as_secs_f64(),
            engine_seconds / answer_seconds.max(1e-9),
            timings.n_eval(),
            f64::from(timings.n_eval()) / (timings.t_eval_ms() / 1000.0).max(1e-9),
        );
        // The cache now holds the prompt and the first lane's answer, for the next prompt to
        // begin with (the other lanes' were dropped above).
        kept.extend(&prompt[reused..]);
        kept.extend(&lanes[0].history);
        *session = Some(Session {
            context,
            tokens: kept,
        });
        let mut text = merge_answers(&lanes)?;
        // A text the grammar ended at its cap was cut wherever the cap fell: end it at its
        // last whole word instead.
        if let Ok(mut value) = serde_json::from_str::<Value>(&text)
            && end_capped_texts_at_words(&mut value, &capped)
        {
            text = value.to_string();
        }
        Ok(Completion {
            text,
            usage: Usage {
                prompt_tokens: prompt.len() as u64,
                completion_tokens: u64::from(generated),
            },
            constrained_by: "grammar".into(),
            taken_back,
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

/// A name of 1 to 6 words of letters (an apostrophe or hyphen inside; `&` between two words),
/// the first capitalised, no word over 16 letters, no capital inside a word unless it is all
/// capitals and an acronym's length, 4 letters at most (`VIP`; not `AbcEzrecadio`,
/// `RenewableBikesSr` or `HARMEN`): a small model otherwise writes
/// `Loyalty Club','description':'...` into it, lists several names in one, numbers it
/// (`Idea 1`, `petscanada3210568794`) or glues words together. One word is enough: when two
/// were the least, a model that wanted to stop after `Profile` had to add a second word and
/// wrote garbage (`Profile iax`); now `Profile` is closed and the guard takes it back.
const NAME_PATTERN: &str =
    r"^([A-Z]{1,4}|[A-Z][a-z'-]{0,15})( (& )?([A-Z]{1,4}|[A-Za-z][a-z'-]{0,15})){0,5}$";

/// One sentence of plain words: it starts with a capital or a digit, ends at its first full
/// stop, has single spaces and no word over 20 characters, and holds none of the characters
/// of code or markup (`{ } < > [ ] | $ \ "` and backticks), which a small model otherwise
/// copies from JSON and HTML it has seen.
const SENTENCE_PATTERN: &str =
    r#"^[A-Z0-9][^ .{}<>\[\]|$\\`"\x00-\x1f]{0,19}( [^ .{}<>\[\]|$\\`"\x00-\x1f]{1,20})*\.$"#;

/// A text inside a field (a list entry, an object's value): plain text on one line, starting
/// with a letter or digit (not `]["` or `.4,`). Not word-shaped like a sentence: glued words
/// inside fields are left to the junk rules (`garbled`).
const PLAIN_PATTERN: &str = r#"^[A-Za-z0-9][^{}<>\[\]|$\\`"\x00-\x1f]*$"#;

/// Cap the `maxLength` of the item name and of every other text field of an answer schema.
fn cap_texts(schema: &mut Value, name: usize, text: usize) {
    let Some(Value::Object(properties)) = schema.pointer_mut("/properties/items/items/properties")
    else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        let Some(property) = property.as_object_mut() else {
            continue;
        };
        if property.get("type").and_then(Value::as_str) != Some("string") {
            // Lists and objects: every text inside them is plain and capped too.
            for nested in ["items", "properties", "additionalProperties"] {
                if let Some(inner) = property.get_mut(nested) {
                    cap_nested_texts(inner, text);
                }
            }
            continue;
        }
        if property.contains_key("enum") {
            continue;
        }
        let cap = if field == "name" { name } else { text };
        let length = property
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(cap, |length| (length as usize).min(cap));
        // Never below the field's own minimum (the schema would become unsatisfiable).
        let minimum = property
            .get("minLength")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let length = length.max(minimum);
        property.insert("maxLength".into(), Value::from(length));
        if property.contains_key("pattern") || property.contains_key("format") {
            continue;
        }
        let pattern = match field == "name" {
            true => NAME_PATTERN,
            false => SENTENCE_PATTERN,
        };
        property.insert("pattern".into(), Value::from(pattern));
    }
}

/// Cap and shape every free text in a nested schema (a list's items, an object's properties).
fn cap_nested_texts(schema: &mut Value, cap: usize) {
    match schema {
        Value::Object(object) => {
            let is_free_text = object.get("type").and_then(Value::as_str) == Some("string")
                && !["enum", "const", "pattern", "format"]
                    .iter()
                    .any(|key| object.contains_key(*key));
            if is_free_text {
                let minimum = object.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
                let length = object
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .map_or(cap, |length| (length as usize).min(cap))
                    .max(minimum);
                object.insert("maxLength".into(), Value::from(length));
                object.insert("pattern".into(), Value::from(PLAIN_PATTERN));
                return;
            }
            for (key, value) in object.iter_mut() {
                if key == "properties" {
                    if let Value::Object(fields) = value {
                        fields
                            .values_mut()
                            .for_each(|field| cap_nested_texts(field, cap));
                    }
                } else if matches!(
                    key.as_str(),
                    "items" | "additionalProperties" | "anyOf" | "oneOf"
                ) {
                    cap_nested_texts(value, cap);
                }
            }
        }
        Value::Array(variants) => variants
            .iter_mut()
            .for_each(|variant| cap_nested_texts(variant, cap)),
        _ => {}
    }
}

/// End every text of `answer` that reached its cap in `schema` (the capped schema) at its last
/// whole word: the grammar closes a capped text wherever the cap falls, often inside a word
/// ("... advanced hydrop."). True when some text changed.
fn end_capped_texts_at_words(answer: &mut Value, schema: &Value) -> bool {
    match answer {
        Value::Object(fields) => {
            let mut changed = false;
            for (key, value) in fields.iter_mut() {
                let inner = schema
                    .get("properties")
                    .and_then(|properties| properties.get(key))
                    .or_else(|| schema.get("additionalProperties"));
                if let Some(inner) = inner {
                    changed |= end_capped_texts_at_words(value, inner);
                }
            }
            changed
        }
        Value::Array(values) => match schema.get("items") {
            Some(inner) => values.iter_mut().fold(false, |changed, value| {
                end_capped_texts_at_words(value, inner) | changed
            }),
            None => false,
        },
        Value::String(text) => {
            let (Some(cap), Some(pattern)) = (
                schema.get("maxLength").and_then(Value::as_u64),
                schema.get("pattern").and_then(Value::as_str),
            ) else {
                return false;
            };
            if ![NAME_PATTERN, SENTENCE_PATTERN, PLAIN_PATTERN].contains(&pattern) {
                return false;
            }
            let minimum = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let sentence = pattern == SENTENCE_PATTERN;
            match end_at_word(text, cap as usize, minimum as usize, sentence) {
                Some(shorter) => {
                    *text = shorter;
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// `text` without the word the cap cut into (and without a dangling small word or punctuation
/// before it), ending in a full stop again when it is a sentence; `None` when `text` did not
/// reach its cap or nothing of at least `minimum` characters would be left.
fn end_at_word(text: &str, cap: usize, minimum: usize, sentence: bool) -> Option<String> {
    let body = match sentence {
        true => text.strip_suffix('.')?,
        false => text,
    };
    if text.chars().count() < cap {
        return None;
    }
    let mut words: Vec<&str> = body.split_whitespace().collect();
    words.pop();
    crate::text::drop_dangling_end(&mut words, 0);
    let joined = words.join(" ");
    let mut shorter = joined
        .trim_end_matches(|character: char| !character.is_alphanumeric() && character != ')')
        .to_string();
    if sentence {
        shorter.push('.');
    }
    let letters = shorter
        .chars()
        .filter(|character| character.is_alphanumeric())
        .count();
    (letters > 0 && shorter.chars().count() >= minimum).then_some(shorter)
}

/// Sample from position `last` without the `banned` tokens.
fn sample_without(
    context: &LlamaContext<'_>,
    last: i32,
    sampler: &mut LlamaSampler,
    banned: &[LlamaToken],
) -> LlamaToken {
    let mut candidates = context.token_data_array_ith(last);
    for candidate in &mut candidates.data {
        if banned.contains(&candidate.id()) {
            candidate.set_logit(f32::NEG_INFINITY);
        }
    }
    candidates.apply_sampler(sampler);
    match candidates.selected_token() {
        Some(token) => {
            sampler.accept(token);
            token
        }
        None => sampler.sample(context, last),
    }
}

/// One sequence of an answer being generated: its grammar, sampler and name guard, what it
/// wrote, and where it is in the KV cache (sequence `seq`) and in the last batch (`logits`).
struct Lane {
    seq: i32,
    /// Follows the same tokens as the grammar inside `sampler`, to say which tokens the
    /// grammar forces next and to go back to the start of a refused text.
    forced: Matcher,
    sampler: LlamaSampler,
    seed: i64,
    texts: TextGuard,
    history: Vec<LlamaToken>,
    answer: Vec<u8>,
    /// The answer's length in bytes after each token of `history`, and before the tokens of
    /// the last round.
    ends: Vec<usize>,
    before: usize,
    /// The position of its next token.
    position: usize,
    logits: i32,
    /// After a refused text: the token before it, to decode again at this position.
    redo: Option<(LlamaToken, usize)>,
    /// Nothing sampled yet (the first round decodes what the grammar forces at the start).
    first: bool,
    done: bool,
}

impl Lane {
    /// The tokens this lane adds next: the token it samples (not in the first round, which
    /// decodes what the grammar forces at the start) and the tokens the grammar forces after
    /// it, and whether one was sampled; `None` when the lane is done.
    fn next_tokens(
        &mut self,
        context: &LlamaContext<'_>,
        vocab: &LlamaVocab,
    ) -> Result<Option<(Vec<LlamaToken>, bool)>, Error> {
        let mut next: Vec<LlamaToken> = Vec::new();
        let first = std::mem::replace(&mut self.first, false);
        if !first {
            let token = match self.texts.banned(self.history.len()) {
                [] => self.sampler.sample(context, self.logits),
                banned => sample_without(context, self.logits, &mut self.sampler, banned),
            };
            if vocab.is_eog(token) {
                self.done = true;
                return Ok(None);
            }
            self.forced
                .consume_token(token.0.cast_unsigned())
                .map_err(grammar)?;
            next.push(token);
        }
        let ff: Vec<LlamaToken> = self
            .forced
            .consume_ff_tokens()
            .into_iter()
            .map(|token| LlamaToken(token.cast_signed()))
            .collect();
        self.sampler.accept_many(&ff);
        next.extend(ff);
        Ok(Some((next, !first)))
    }

    /// Write `next` into the answer and into `batch` at this lane's positions (logits for the
    /// last).
    fn write(
        &mut self,
        next: &[LlamaToken],
        batch: &mut LlamaBatch,
        vocab: &LlamaVocab,
    ) -> Result<(), Error> {
        self.history.extend(next);
        self.before = self.answer.len();
        for (offset, token) in next.iter().enumerate() {
            self.answer
                .extend(vocab.token_to_piece(*token, false, None));
            self.ends.push(self.answer.len());
            batch
                .add(
                    *token,
                    self.position as i32,
                    &[self.seq],
                    offset + 1 == next.len(),
                )
                .map_err(decode)?;
            self.position += 1;
        }
        self.logits = batch.n_tokens() - 1;
        Ok(())
    }

    /// A refused text: back to its first `tokens` answer tokens (grammar, answer and KV
    /// cache), and decode the token before them again next round, for the logits of the text's
    /// first token (which the guard now bans there).
    fn take_back(
        &mut self,
        tokens: usize,
        prompt: usize,
        context: &mut LlamaContext<'_>,
    ) -> Result<(), Error> {
        self.forced
            .rollback(self.history.len() - tokens)
            .map_err(grammar)?;
        self.history.truncate(tokens);
        self.ends.truncate(tokens);
        self.answer.truncate(self.ends.last().copied().unwrap_or(0));
        self.position = prompt + self.history.len();
        let before = self.position - 1;
        context
            .clear_kv_cache_seq(Some(self.seq as u32), Some(before as u32), None)
            .map_err(decode)?;
        self.redo = Some((self.history[self.history.len() - 1], before));
        Ok(())
    }
}

/// A llama.cpp call that failed, as our error.
fn decode(error: impl std::fmt::Display) -> Error {
    Error::Decode(error.to_string())
}

/// A grammar step that failed, as our error.
fn grammar(error: impl std::fmt::Display) -> Error {
    Error::Grammar(error.to_string())
}

/// The item count an answer schema asks for (its `items` array's `maxItems`).
fn item_count(schema: &Value) -> Option<usize> {
    schema
        .pointer("/properties/items/maxItems")
        .and_then(Value::as_u64)
        .map(|count| count as usize)
}

/// The answer of all lanes: the first lane's as written when it is the only one, else one
/// object with every lane's items in lane order.
fn merge_answers(lanes: &[Lane]) -> Result<String, Error> {
    if let [lane] = lanes {
        return Ok(String::from_utf8_lossy(&lane.answer).into_owned());
    }
    let mut items = Vec::new();
    for lane in lanes {
        let mut answer: Value = serde_json::from_slice(&lane.answer).map_err(|error| {
            Error::Decode(format!("sequence {} gave no JSON ({error})", lane.seq))
        })?;
        if let Some(Value::Array(some)) = answer.get_mut("items").map(Value::take) {
            items.extend(some);
        }
    }
    Ok(json!({ "items": items }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_text_ends_at_its_last_whole_word() {
        let cut = "Growers learn to run advanced hydrop.";
        assert_eq!(
            end_at_word(cut, cut.chars().count(), 0, true).as_deref(),
            Some("Growers learn to run advanced.")
        );
        // A dangling small word and punctuation go with the cut word.
        let cut = "Members swap seeds, and the";
        assert_eq!(
            end_at_word(cut, cut.chars().count(), 0, false).as_deref(),
            Some("Members swap seeds")
        );
        // Under the cap nothing changes; nor when too little would be left.
        assert_eq!(end_at_word("Short and whole.", 40, 0, true), None);
        assert_eq!(end_at_word("Hydroponi", 9, 0, false), None);
        assert_eq!(end_at_word("Seed Swap Clu", 13, 12, false), None);
        let mut schema = json!({"type": "object", "properties": {"items": {"type": "array",
            "items": {"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 80},
                "description": {"type": "string", "maxLength": 400},
                "segmentation": {"type": "array", "items": {"type": "string", "maxLength": 60}}}}}}});
        cap_texts(&mut schema, 13, 20);
        let mut answer = json!({"items": [{"name": "Seed Swap Clu", "description": "Members swap seeds.",
            "segmentation": ["Urban growers with sma"]}]});
        assert!(end_capped_texts_at_words(&mut answer, &schema));
        assert_eq!(
            answer,
            json!({"items": [{"name": "Seed Swap", "description": "Members swap seeds.",
                "segmentation": ["Urban growers"]}]})
        );
    }

    #[test]
    fn texts_are_capped_and_shaped_without_loosening_the_schema() {
        let mut schema = json!({"type": "object", "properties": {"items": {"type": "array",
            "items": {"type": "object", "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 80},
                "description": {"type": "string", "minLength": 10, "maxLength": 400},
                "note": {"type": "string", "maxLength": 50},
                "code": {"type": "string", "pattern": "^[A-Z]+$"},
                "long_minimum": {"type": "string", "minLength": 200},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}}}}}}});
        cap_texts(&mut schema, 40, 100);
        let fields = &schema["properties"]["items"]["items"]["properties"];
        assert_eq!(fields["name"]["maxLength"], 40);
        assert_eq!(fields["name"]["pattern"], NAME_PATTERN);
        assert_eq!(fields["description"]["maxLength"], 100);
        assert_eq!(fields["description"]["minLength"], 10);
        assert_eq!(fields["description"]["pattern"], SENTENCE_PATTERN);
        // A lower limit of the schema's own stays; so do its own pattern and its minimum.
        assert_eq!(fields["note"]["maxLength"], 50);
        assert_eq!(fields["code"]["pattern"], "^[A-Z]+$");
        assert_eq!(fields["long_minimum"]["maxLength"], 200);
        // Enumerations and non-strings are left alone.
        assert_eq!(
            fields["kind"],
            json!({"type": "string", "enum": ["a", "b"]})
        );
        // Texts inside lists and objects are plain and capped as well.
        assert_eq!(
            fields["tags"],
            json!({"type": "array", "items": {"type": "string", "maxLength": 100, "pattern": PLAIN_PATTERN}})
        );
    }

    #[test]
    fn texts_hold_no_code_or_markup() -> Result<(), Box<dyn std::error::Error>> {
        let matcher = |pattern: &str| -> Result<jsonschema::Validator, Box<dyn std::error::Error>> {
            Ok(jsonschema::validator_for(
                &json!({"type": "string", "pattern": pattern}),
            )?)
        };
        let sentence = matcher(SENTENCE_PATTERN)?;
        let plain = matcher(PLAIN_PATTERN)?;
        assert!(sentence.is_valid(&json!("Members get a free ride each month.")));
        assert!(!sentence.is_valid(&json!("A club {with} braces.")));
        assert!(!sentence.is_valid(&json!("See <ref> here.")));
        assert!(!sentence.is_valid(&json!("this [brand name] offer.")));
        assert!(!sentence.is_valid(&json!(
            "Glued environmentismepeopelagosisamellenaiwoiw words."
        )));
        assert!(plain.is_valid(&json!("age 30-55")));
        assert!(!plain.is_valid(&json!("{ { {$ref} } }")));
        assert!(!plain.is_valid(&json!("a `code` span")));
        for bad in ["][", "] ],", ".4,", "say \"hi\""] {
            assert!(!plain.is_valid(&json!(bad)), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn the_shapes_accept_plain_names_and_sentences_only() -> Result<(), Box<dyn std::error::Error>>
    {
        let name = jsonschema::validator_for(&json!({"type": "string", "pattern": NAME_PATTERN}))?;
        assert!(name.is_valid(&json!("Loyalty Club for Families")));
        assert!(name.is_valid(&json!("Pets & Parents' VIP Club")));
        assert!(name.is_valid(&json!("Seed Co-op")));
        assert!(name.is_valid(&json!("Concierge")));
        for bad in [
            "Idea 1",
            "religion",
            "Premise & &",
            "HARMEN Kayaks",
            "Pets &",
            "Pets & & Parents",
            "petscanada3210568794 x",
            "AbcEzrecadio Cru",
            "PetRescue Dog",
            "Two  Spaces",
            "Club','description':'x",
            "A, B",
            "Club\n",
            "a\"b",
            "[[Page]]",
        ] {
            assert!(!name.is_valid(&json!(bad)), "{bad:?}");
        }
        let sentence =
            jsonschema::validator_for(&json!({"type": "string", "pattern": SENTENCE_PATTERN}))?;
        assert!(sentence.is_valid(&json!("Owners meet monthly to share care tips.")));
        assert!(!sentence.is_valid(&json!("First sentence. Second one.")));
        assert!(!sentence.is_valid(&json!("No full stop")));
        Ok(())
    }
}
