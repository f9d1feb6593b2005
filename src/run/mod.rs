//! The run engine: one (venture, block) pair is the unit of work, for `generate` (one venture,
//! streaming, one pair at a time), `enrich` (every pair of the graph that lacks items,
//! concurrently) and, later, the HTTP service.
//!
//! - [`plan`]: which pairs, in what order (dependency waves, heavier blocks first), at what
//!   estimated cost.
//! - [`job`]: one pair: render, ask (or the cache), check, re-ask, record what it cost.
//! - [`schedule`]: pairs run up to the allowed concurrency, each after the pairs its prompt
//!   reads; one writer puts finished drafts into the graph and the journal.
//! - [`journal`]: runs and pairs recorded durably (SQLite), so a killed run resumes.
//!
//! The [`Engine`] owns what every pair shares (graph, settings, prompts, the model, the cache,
//! the budget); progress leaves as owned [`Event`]s over a channel.

pub mod job;
pub mod journal;
pub mod plan;
pub mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::cache::Cache;
use crate::config::Settings;
use crate::draft::{Item, JunkReason};
use crate::graph::name::file_name_from_page_name;
use crate::graph::{self, Graph};
use crate::llm::{self, ChatModel, ModelError, Params, Provider, Usage, openai::RemoteError};
use crate::prompt::{self, Library};
use crate::writeback;

pub use journal::Journal;

/// An environment lookup (API keys), shared by the pairs of a run.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What every pair of a run shares. Owned, so that runs can outlive the request that started
/// them (the HTTP service) and pairs can run as tasks of their own.
pub struct Engine {
    pub graph: Arc<Graph>,
    pub settings: Arc<Settings>,
    pub library: Arc<Library>,
    pub provider: Provider,
    pub params: Params,
    /// What besides the request shapes an answer (the cache key's model part).
    identity: Value,
    cache: Cache,
    /// Connected on the first request the cache cannot answer, then shared by every pair.
    model: tokio::sync::OnceCell<Arc<dyn ChatModel>>,
    env: Env,
    pub budget: Budget,
    /// What the pairs of one block or schema share, made for the first of them.
    shared: Shared,
}

/// The compiled parts of a pair's checks that do not depend on its venture: a run asks one
/// block for hundreds of ventures, and compiling them for each pair was a third of its work.
#[derive(Default)]
struct Shared {
    /// By block id.
    junk: Mutex<HashMap<String, Arc<crate::draft::BlockJunk>>>,
    /// By item schema (its JSON text).
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    /// The graph's item names ([`Engine::known_items`]).
    known_items: std::sync::OnceLock<Arc<crate::draft::junk::KnownItems>>,
}

impl Engine {
    /// The junk rules `block` shares with its other pairs, made from `context` (a context of
    /// the block) the first time.
    pub fn block_junk(
        &self,
        block: &str,
        context: &crate::draft::JunkContext,
    ) -> Arc<crate::draft::BlockJunk> {
        let mut junk = self
            .shared
            .junk
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        junk.entry(block.to_string())
            .or_insert_with(|| Arc::new(crate::draft::BlockJunk::new(&self.settings.junk, context)))
            .clone()
    }

    /// Every item name of the graph, for the junk rules of every pair: made the first time.
    pub fn known_items(&self) -> Arc<crate::draft::junk::KnownItems> {
        self.shared
            .known_items
            .get_or_init(|| {
                Arc::new(crate::draft::junk::KnownItems::of(
                    self.graph
                        .blocks
                        .iter()
                        .flat_map(|block| &block.examples)
                        .map(|example| example.name.as_str()),
                ))
            })
            .clone()
    }

    /// The compiled validator of `item_schema`, compiled the first time.
    pub fn item_validator(
        &self,
        item_schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, crate::draft::Issue> {
        let key = item_schema.to_string();
        let mut validators = self
            .shared
            .validators
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(validator) = validators.get(&key) {
            return Ok(validator.clone());
        }
        let validator = crate::draft::item_validator(item_schema)?;
        validators.insert(key, validator.clone());
        Ok(validator)
    }

    /// An engine for `provider`; the model is connected when first needed (a re-run of
    /// finished work loads no model and sends nothing).
    pub fn new(
        graph: Arc<Graph>,
        settings: Arc<Settings>,
        library: Arc<Library>,
        provider: Provider,
        params: Params,
        env: Env,
        use_cache: bool,
    ) -> Engine {
        let (cache_dir, _) = state_dirs(&settings, &graph.root);
        Engine {
            identity: model_identity(&provider, &settings),
            cache: Cache::new(cache_dir, use_cache),
            budget: Budget::new(settings.generate.budget_usd),
            model: tokio::sync::OnceCell::new(),
            shared: Shared::default(),
            graph,
            settings,
            library,
            provider,
            params,
            env,
        }
    }

    /// Use `model` instead of connecting to the provider (a model already loaded by the
    /// process, or a scripted one in tests).
    pub fn with_model(self, model: Arc<dyn ChatModel>) -> Engine {
        Engine {
            model: tokio::sync::OnceCell::new_with(Some(model)),
            ..self
        }
    }

    /// Write nothing at all (`--dry-run`): answers are read from the cache but not stored.
    pub fn dry_run(self) -> Engine {
        Engine {
            cache: self.cache.read_only(),
            ..self
        }
    }

    async fn model(&self) -> Result<Arc<dyn ChatModel>, ModelError> {
        self.model
            .get_or_try_init(|| async {
                llm::connect(&self.settings, &self.provider, |name| (self.env)(name))
            })
            .await
            .cloned()
    }

    /// The model, once a request has connected it (to hand to the next run of the process).
    pub fn connected_model(&self) -> Option<Arc<dyn ChatModel>> {
        self.model.get().cloned()
    }

    /// What tells one model from another: engines with equal keys can share a connected model.
    pub fn model_key(&self) -> String {
        self.identity.to_string()
    }

    /// The provider's client for what is not a chat request (the Batch API).
    pub fn openai_client(&self) -> Result<llm::openai::OpenAiModel, RemoteError> {
        llm::connect_openai(&self.settings, &self.provider, |name| (self.env)(name))
    }

    /// How many "too many requests" answers the model has had so far (0 before it is connected).
    pub fn rate_limited(&self) -> u64 {
        self.model.get().map_or(0, |model| model.rate_limited())
    }

    /// Extra items asked of the model beyond the wanted count.
    fn over_ask(&self) -> usize {
        match self.provider {
            Provider::Local { .. } => self.settings.local.over_ask,
            Provider::Openai { .. } => 0,
        }
    }

    /// The price of the model, when the price table knows it (the local model is free).
    pub fn price_known(&self) -> bool {
        matches!(self.provider, Provider::Local { .. })
            || self.settings.prices.contains_key(self.provider.model())
    }
}

/// The run's budget: a request reserves its estimated cost before it is sent and settles at
/// its real cost after, so concurrent pairs cannot all pass the check at once.
#[derive(Debug)]
pub struct Budget {
    /// USD; 0 for none.
    pub limit: f64,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct BudgetState {
    spent: f64,
    reserved: f64,
}

impl Budget {
    pub fn new(limit: f64) -> Budget {
        Budget {
            limit: limit.max(0.0),
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// Reserve `estimate` USD, or say why not.
    pub fn reserve(&self, estimate: f64) -> Result<(), Failure> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if self.limit > 0.0 && state.spent + state.reserved + estimate > self.limit {
            return Err(Failure::new(
                FailureKind::Budget,
                format!(
                    "the run's budget of {:.4} USD would be exceeded (spent {:.4} USD, {:.4} USD in flight, the next request is estimated at {estimate:.4} USD): raise --budget or generate.budget_usd",
                    self.limit, state.spent, state.reserved
                ),
            ));
        }
        state.reserved += estimate;
        Ok(())
    }

    /// Replace a reservation of `estimate` with what the request really cost.
    pub fn settle(&self, estimate: f64, cost: f64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        state.reserved = (state.reserved - estimate).max(0.0);
        state.spent += cost;
    }

    /// USD spent so far.
    pub fn spent(&self) -> f64 {
        self.state
            .lock()
            .map(|state| state.spent)
            .unwrap_or_default()
    }
}

/// Why a pair has fewer items than asked, typed so that the scheduler, the journal and (later)
/// HTTP statuses can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The answers never held enough usable items.
    TooFewItems,
    /// The next request would have taken the run past its budget: the run stops.
    Budget,
    /// The model failed for this pair (retries exhausted, cut off, ...).
    Model,
    /// The model cannot answer any pair (refused key, no quota, unknown model, wrong URL): the
    /// run stops at once.
    Fatal,
    /// Drafted, but the graph could not take the drafts.
    Write,
    /// Not attempted because the run stopped first.
    NotAttempted,
    /// Batch results did not give enough items and the run was not to ask live.
    Deferred,
}

impl FailureKind {
    /// Two failures, of kinds `self` and `other` and said `reason` and `other_reason`, have one
    /// cause, to be said once: the same kind and words, or both fatal (the requests out when a
    /// refused key or an unreachable server stopped the run, whatever timings they say).
    pub fn same_cause(self, reason: &str, other: FailureKind, other_reason: &str) -> bool {
        match (self, other) {
            (FailureKind::Fatal, FailureKind::Fatal) => true,
            _ => self == other && reason == other_reason,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: String) -> Failure {
        Failure { kind, message }
    }

    /// A model's failure, fatal when no other pair could succeed either.
    pub fn model(error: &ModelError) -> Failure {
        let fatal = match error {
            // A server that could not be reached through all the retries is not there for the
            // other pairs either (its address is wrong, or it is down): the run stops and can
            // be resumed, where each pair used to spend its retries (~10 s) on it in turn.
            ModelError::Remote(remote) => !matches!(
                remote,
                RemoteError::GaveUp {
                    unreachable: false,
                    ..
                } | RemoteError::TokenLimit { .. }
                    | RemoteError::Rejected { .. }
            ),
            #[cfg(feature = "local")]
            ModelError::Local(local) => !matches!(
                local,
                llm::local::Error::TokenLimit { .. }
                    | llm::local::Error::TooLong { .. }
                    | llm::local::Error::Decode(_)
                    | llm::local::Error::Grammar(_)
            ),
            ModelError::NoLocalEngine => true,
        };
        let kind = match fatal {
            true => FailureKind::Fatal,
            false => FailureKind::Model,
        };
        Failure::new(kind, error.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

/// What happens, as it happens: owned, so the progress bar, plain lines, JSON and server-sent
/// events can all consume it from a channel.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub venture: String,
    pub block: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    Attempt {
        attempt: u32,
        cached: bool,
    },
    /// A piece of the answer as the model writes it.
    Piece {
        text: String,
    },
    /// The pair is finished (written, or failed).
    Done {
        items: usize,
        wanted: usize,
        /// Every attempt came from the cache.
        cached: bool,
        tokens: Usage,
        cost_usd: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        failure: Option<Failure>,
    },
}

/// Where events go; `None` when nobody listens.
#[derive(Clone, Default)]
pub struct Events(Option<UnboundedSender<Event>>);

impl Events {
    pub fn new(sender: UnboundedSender<Event>) -> Events {
        Events(Some(sender))
    }

    pub fn none() -> Events {
        Events(None)
    }

    fn send(&self, venture: &str, block: &str, kind: EventKind) {
        if let Some(sender) = &self.0 {
            // A listener that went away does not stop the run.
            let _ = sender.send(Event {
                venture: venture.to_string(),
                block: block.to_string(),
                kind,
            });
        }
    }
}

/// `generate --json` and `enrich --json`: PRODUCT.md section 9, plus the run's totals.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub provider: String,
    pub model: String,
    /// The drafts held in memory (`generate`, a dry run).
    pub drafts: Vec<Draft>,
    /// The drafts written to files and kept out of memory (`enrich`: a run of thousands of
    /// pairs does not hold every draft); read back, after `drafts`, when the report is shown.
    pub written: Option<WrittenDrafts>,
    pub failed: Vec<Failed>,
    /// With `--dry-run`: what writing would change in the graph, as a unified diff.
    pub diff: Option<String>,
    pub totals: Totals,
}

impl RunReport {
    /// Every draft of the run, in order: those in memory, then the written ones.
    pub fn each_draft(&self) -> impl Iterator<Item = Result<std::borrow::Cow<'_, Draft>, Error>> {
        let kept = self
            .drafts
            .iter()
            .map(|draft| Ok(std::borrow::Cow::Borrowed(draft)));
        let written = self.written.iter().flat_map(WrittenDrafts::each);
        kept.chain(written.map(|draft| draft.map(std::borrow::Cow::Owned)))
    }

    /// How many drafts the report shows.
    pub fn draft_count(&self) -> usize {
        self.drafts.len() + self.written.as_ref().map_or(0, WrittenDrafts::len)
    }
}

/// The written drafts of a run, in plan order: the JSON of each draft file, as the writer wrote
/// it, appended to an unnamed temporary file (the spool) and read back from there for the
/// report. Reading 2,000 draft files back one by one, a file opened each, took 20 ms at the end
/// of a run; the spool is one file, and holds nothing in memory.
#[derive(Debug)]
pub struct WrittenDrafts {
    spool: DraftSpool,
    drafts: Vec<Spooled>,
}

impl WrittenDrafts {
    pub fn new(spool: DraftSpool, mut drafts: Vec<(usize, Spooled)>) -> WrittenDrafts {
        drafts.sort_by_key(|(position, _)| *position);
        WrittenDrafts {
            spool,
            drafts: drafts.into_iter().map(|(_, draft)| draft).collect(),
        }
    }

    fn len(&self) -> usize {
        self.drafts.len()
    }

    fn each(&self) -> impl Iterator<Item = Result<Draft, Error>> {
        self.each_json().map(|json| {
            let (spooled, bytes) = json?;
            serde_json::from_slice(&bytes)
                .map_err(|error| spooled.unread(format!("not a draft: {error}")))
        })
    }

    /// The JSON of each draft as the report prints it.
    fn each_raw(&self) -> impl Iterator<Item = Result<Box<RawValue>, Error>> {
        self.each_json().map(|json| {
            let (spooled, bytes) = json?;
            String::from_utf8(bytes)
                .map_err(|error| error.to_string())
                .and_then(|text| RawValue::from_string(text).map_err(|error| error.to_string()))
                .map_err(|message| spooled.unread(format!("not a draft: {message}")))
        })
    }

    fn each_json(&self) -> impl Iterator<Item = Result<(&Spooled, Vec<u8>), Error>> {
        self.drafts.iter().map(|spooled| {
            let bytes = self
                .spool
                .read(spooled)
                .map_err(|error| spooled.unread(error.to_string()))?;
            Ok((spooled, bytes))
        })
    }
}

/// Where the JSON of one written draft is in the spool, and the file it was written to.
#[derive(Debug, Clone)]
pub struct Spooled {
    path: PathBuf,
    offset: u64,
    len: usize,
}

impl Spooled {
    fn unread(&self, message: String) -> Error {
        Error::DraftFile {
            path: self.path.clone(),
            message,
        }
    }
}

/// What the report's pretty JSON puts before every line of a draft but its first: a draft is
/// an element of `drafts`, a field of the report, two levels of two spaces.
const REPORT_DRAFT_INDENT: &[u8] = b"    ";

/// An unnamed temporary file the JSON of written drafts is appended to ([`WrittenDrafts`]).
#[derive(Debug)]
pub struct DraftSpool {
    file: Mutex<SpoolFile>,
    end: u64,
}

/// The spool's file, read through a buffer: drafts finish in about the order the report lists
/// them, so most are read where the last one ended, without a call to the system each.
#[derive(Debug)]
struct SpoolFile {
    reader: std::io::BufReader<std::fs::File>,
    /// Where the reader is.
    at: u64,
}

impl DraftSpool {
    pub fn new() -> std::io::Result<DraftSpool> {
        let reader = std::io::BufReader::with_capacity(1 << 18, tempfile::tempfile()?);
        Ok(DraftSpool {
            file: Mutex::new(SpoolFile { reader, at: 0 }),
            end: 0,
        })
    }

    /// Appends the pretty JSON of the draft written to `path`, indented as the report's pretty
    /// JSON holds it: the report then prints it as it is (every line break in pretty JSON is
    /// between tokens: one inside a string is written `\n`).
    pub fn append(&mut self, path: &Path, pretty: &[u8]) -> std::io::Result<Spooled> {
        use std::io::{Seek, SeekFrom, Write};
        let mut indented = Vec::with_capacity(pretty.len() + pretty.len() / 8);
        for (at, line) in pretty.split(|&byte| byte == b'\n').enumerate() {
            if at > 0 {
                indented.push(b'\n');
                indented.extend_from_slice(REPORT_DRAFT_INDENT);
            }
            indented.extend_from_slice(line);
        }
        let file = self.file.get_mut().map_err(|_| poisoned())?;
        // Seeking through the reader empties its buffer, which the write makes stale.
        file.reader.seek(SeekFrom::Start(self.end))?;
        file.reader.get_mut().write_all(&indented)?;
        let spooled = Spooled {
            path: path.to_path_buf(),
            offset: self.end,
            len: indented.len(),
        };
        self.end += indented.len() as u64;
        file.at = self.end;
        Ok(spooled)
    }

    fn read(&self, spooled: &Spooled) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        let SpoolFile { reader, at } = &mut *file;
        let step = i64::try_from(spooled.offset).map_err(std::io::Error::other)?
            - i64::try_from(*at).map_err(std::io::Error::other)?;
        reader.seek_relative(step)?;
        let mut bytes = vec![0; spooled.len];
        reader.read_exact(&mut bytes)?;
        *at = spooled.offset + spooled.len as u64;
        Ok(bytes)
    }
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("the spool's lock was poisoned")
}

/// The fields of PRODUCT.md section 9 in their order; `drafts` reads the spool a draft at a time.
impl Serialize for RunReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq, SerializeStruct};
        struct Drafts<'r>(&'r RunReport);
        impl Serialize for Drafts<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let report = self.0;
                let mut seq = serializer.serialize_seq(Some(report.draft_count()))?;
                for draft in &report.drafts {
                    seq.serialize_element(draft)?;
                }
                for draft in report.written.iter().flat_map(WrittenDrafts::each_raw) {
                    seq.serialize_element(&draft.map_err(S::Error::custom)?)?;
                }
                seq.end()
            }
        }
        let mut out = serializer.serialize_struct("RunReport", 7)?;
        out.serialize_field("run_id", &self.run_id)?;
        out.serialize_field("provider", &self.provider)?;
        out.serialize_field("model", &self.model)?;
        out.serialize_field("drafts", &Drafts(self))?;
        out.serialize_field("failed", &self.failed)?;
        if let Some(diff) = &self.diff {
            out.serialize_field("diff", diff)?;
        }
        out.serialize_field("totals", &self.totals)?;
        out.end()
    }
}

/// What a run did, in numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub pairs: usize,
    pub drafted: usize,
    /// Pairs whose every attempt came from the cache.
    pub from_cache: usize,
    pub failed: usize,
    /// Pairs skipped because a resumed run had finished them already.
    pub resumed: usize,
    pub items: usize,
    pub tokens: Usage,
    /// `None` when the model has no price in the price table.
    pub cost_usd: Option<f64>,
    pub seconds: f64,
}

/// The items drafted for one (venture, block), with where they came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Draft {
    pub venture: String,
    pub block: String,
    pub items: Vec<Item>,
    pub provenance: Provenance,
    /// The JSON draft file, relative to the graph when inside it (`None` with `--dry-run`).
    pub written_to: Option<String>,
    /// The graph pages the items were written into (relative to the graph).
    #[serde(default)]
    pub pages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub venture: String,
    pub block: String,
    pub reason: String,
    pub kind: FailureKind,
}

/// Everything needed to tell how a draft was made. Never holds a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub run_id: String,
    pub provider: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `grammar` (local), or the response_format the endpoint was asked for.
    pub constrained_by: String,
    pub templates_hash: String,
    pub schema_file: String,
    pub schema_hash: String,
    /// sha256 of the first request's messages and schema.
    pub prompt_hash: String,
    pub params: Params,
    pub asked: usize,
    pub attempts: u32,
    /// Attempts answered from the response cache.
    pub cached_attempts: u32,
    /// Items the answers held across the attempts (kept, junk and otherwise rejected).
    #[serde(default)]
    pub proposed: usize,
    /// Items rejected for breaking the schema or the name rules (not junk), across the attempts.
    #[serde(default)]
    pub invalid: usize,
    /// Junk items rejected across the attempts, by reason (`draft::junk`); none were kept.
    #[serde(default)]
    pub junk: BTreeMap<JunkReason, usize>,
    /// Texts the embedded model wrote and took back while decoding because the junk rules
    /// refused them (and wrote again), by reason; they never were items of an answer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub taken_back: BTreeMap<String, usize>,
    pub tokens: Usage,
    /// What the requests sent in this run cost (cached answers are free).
    pub cost_usd: f64,
    pub seconds: f64,
    pub started_at: String,
    pub inncopilot_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error(transparent)]
    Prompt(#[from] prompt::Error),
    #[error(transparent)]
    Provider(#[from] llm::Error),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("answer schema {file}: {message}")]
    Schema { file: String, message: String },
    #[error(transparent)]
    Writeback(#[from] writeback::Error),
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// A request that cannot be done as asked (the message says what to change).
    #[error("{0}")]
    Usage(String),
    /// A written draft could not be read back from the run's spool for its report (the drafts
    /// stay in the graph and in their files).
    #[error("cannot read back the run's draft {path} for the report: {message}")]
    DraftFile { path: PathBuf, message: String },
    /// The spool of a run's written drafts ([`WrittenDrafts`]) could not be made or written.
    #[error(
        "cannot keep the run's drafts for its report in a temporary file (TMPDIR, else /tmp): {0}"
    )]
    Spool(std::io::Error),
    #[error("cannot write the draft file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A new run id: UTC time and a random suffix, sortable and unique enough.
pub fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}

/// Where the cache and the drafts live: the configured folders, else `.inncopilot/` inside
/// the graph.
pub fn state_dirs(settings: &Settings, graph_root: &Path) -> (PathBuf, PathBuf) {
    let state = graph_root.join(".inncopilot");
    let pick = |configured: &Path, default: &str| {
        if configured.as_os_str().is_empty() {
            state.join(default)
        } else {
            configured.to_path_buf()
        }
    };
    (
        pick(&settings.generate.cache_dir, "cache"),
        pick(&settings.generate.drafts_dir, "drafts"),
    )
}

/// The identity of a model for the cache key: what besides the request shapes its answer.
fn model_identity(provider: &Provider, settings: &Settings) -> Value {
    match provider {
        Provider::Local { model, path } => json!({
            "provider": "local",
            "model": model,
            "file": path.file_name().map(|name| name.to_string_lossy().into_owned()),
            "bytes": std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0),
            "max_name_length": settings.local.max_name_length,
            "max_text_length": settings.local.max_text_length,
        }),
        Provider::Openai {
            preset,
            model,
            base_url,
            ..
        } => json!({
            "provider": preset,
            "model": model,
            "base_url": base_url,
            "response_format": settings
                .providers
                .get(preset)
                .map(|preset| preset.response_format.as_str()),
        }),
    }
}

/// The JSON draft file of a (venture, block).
pub fn draft_path(drafts_dir: &Path, venture: &str, block_id: &str) -> PathBuf {
    let stem = |name: &str| {
        let file = file_name_from_page_name(name);
        file.strip_suffix(".md").unwrap_or(&file).to_string()
    };
    drafts_dir
        .join(stem(venture))
        .join(format!("{}.json", stem(block_id)))
}

/// Junk counts as `venture-name 2, code-or-markup 1`, or `None` when there was none.
pub fn junk_summary<Reason: std::fmt::Display>(junk: &BTreeMap<Reason, usize>) -> Option<String> {
    let parts: Vec<String> = junk
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_files_use_logseq_file_names() {
        let path = draft_path(
            Path::new("/g/.inncopilot/drafts"),
            "Space X",
            "profile-(id)/relationship",
        );
        assert_eq!(
            path,
            Path::new("/g/.inncopilot/drafts/Space X/profile-(id)___relationship.json")
        );
    }

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    fn draft_of(venture: &str, block: &str) -> serde_json::Result<Draft> {
        serde_json::from_value(json!({
            "venture": venture,
            "block": block,
            "items": [{"name": "Harbor Circle", "description": "A circle of harbor pilots."}],
            "provenance": {
                "run_id": "r1", "provider": "openai", "model": "m", "constrained_by": "json_schema",
                "templates_hash": "t", "schema_file": "s", "schema_hash": "h", "prompt_hash": "p",
                "params": {"temperature": 0.7, "max_tokens": 100, "seed": 1},
                "asked": 1, "attempts": 1, "cached_attempts": 0,
                "tokens": {"prompt_tokens": 10, "completion_tokens": 5},
                "cost_usd": 0.0, "seconds": 0.1, "started_at": "now", "inncopilot_version": "0"
            },
            "written_to": null
        }))
    }

    fn blocks_of(shown: &Value) -> Vec<&str> {
        shown["drafts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|draft| draft["block"].as_str())
            .collect()
    }

    fn report_of(drafts: Vec<Draft>, written: Option<WrittenDrafts>) -> RunReport {
        RunReport {
            run_id: "r1".into(),
            provider: "openai".into(),
            model: "m".into(),
            drafts,
            written,
            failed: Vec::new(),
            diff: None,
            totals: Totals::default(),
        }
    }

    /// A spool and where its drafts are, with their plan positions.
    type Spooling = (DraftSpool, Vec<(usize, Spooled)>);

    /// Drafts of Space X appended to a spool in the order given (the order they finished),
    /// with their plan positions.
    fn spooled(blocks: &[(usize, &str)]) -> Result<Spooling, Box<dyn std::error::Error>> {
        let mut spool = DraftSpool::new()?;
        let mut written = Vec::new();
        for &(position, block) in blocks {
            let pretty = serde_json::to_vec_pretty(&draft_of("Space X", block)?)?;
            let file = PathBuf::from(format!("drafts/Space X/{block}.json"));
            written.push((position, spool.append(&file, &pretty)?));
        }
        Ok((spool, written))
    }

    #[test]
    fn a_report_prints_its_spooled_drafts_in_plan_order_as_it_prints_drafts_it_holds() -> Outcome {
        // b2 finished before b1.
        let (spool, written) = spooled(&[(2, "b2"), (1, "b1")])?;
        let from_spool = report_of(
            vec![draft_of("Acme", "b0")?],
            Some(WrittenDrafts::new(spool, written)),
        );
        let held = report_of(
            vec![
                draft_of("Acme", "b0")?,
                draft_of("Space X", "b1")?,
                draft_of("Space X", "b2")?,
            ],
            None,
        );
        // The same bytes: the spool keeps each draft indented as the report holds it.
        assert_eq!(
            serde_json::to_string_pretty(&from_spool)?,
            serde_json::to_string_pretty(&held)?
        );
        let shown = serde_json::to_value(&from_spool)?;
        assert_eq!(blocks_of(&shown), ["b0", "b1", "b2"]);
        assert_eq!(shown["drafts"][2]["items"][0]["name"], "Harbor Circle");
        assert!(shown.get("diff").is_none(), "{shown}");
        // Compact JSON (the service's) is JSON all the same.
        let compact: Value = serde_json::from_str(&serde_json::to_string(&from_spool)?)?;
        assert_eq!(compact, serde_json::to_value(&held)?);
        assert_eq!(
            crate::report::enrich_text(&from_spool),
            crate::report::enrich_text(&held)
        );
        Ok(())
    }

    #[test]
    fn a_draft_the_spool_cannot_give_back_is_named_and_the_others_are_shown() -> Outcome {
        let (spool, mut written) = spooled(&[(1, "b1"), (2, "b2")])?;
        // b1's record cut short: not a draft any more.
        written[0].1.len -= 10;
        let report = report_of(Vec::new(), Some(WrittenDrafts::new(spool, written)));
        let error = serde_json::to_string(&report)
            .err()
            .map(|error| error.to_string());
        let b1 = Path::new("drafts/Space X/b1.json").display().to_string();
        assert!(
            error.as_ref().is_some_and(|error| error.contains(&b1)),
            "{error:?}"
        );
        let text = crate::report::enrich_text(&report);
        assert!(
            text.contains(&format!(
                "cannot read back the run's draft {b1} for the report: not a draft"
            )),
            "{text}"
        );
        assert!(text.contains("Space X / b2: 1 item(s)"), "{text}");
        Ok(())
    }

    #[test]
    fn reservations_count_against_the_budget_until_settled() {
        let budget = Budget::new(1.0);
        assert!(budget.reserve(0.4).is_ok());
        assert!(budget.reserve(0.4).is_ok());
        // Two requests in flight hold 0.8: a third of 0.4 would pass the limit.
        let refused = budget.reserve(0.4);
        assert!(
            matches!(&refused, Err(failure) if failure.kind == FailureKind::Budget
                && failure.message.contains("0.8000 USD in flight")),
            "{refused:?}"
        );
        // One settles cheaper than estimated: room again.
        budget.settle(0.4, 0.1);
        assert!(budget.reserve(0.4).is_ok());
        assert!((budget.spent() - 0.1).abs() < 1e-9);
        // No limit: everything passes.
        assert!(Budget::new(0.0).reserve(1e9).is_ok());
    }
}
