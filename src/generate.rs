//! `generate`: drafts for one venture, block by block in dependency order (`relations::`), each
//! later block seeing the earlier blocks' fresh drafts.
//!
//! Per (venture, block): render the prompt, ask the model (or the cache), check the answer
//! against the schema and the item rules, keep the usable items, and re-ask with the problems
//! listed until the count is met or the attempts run out. The local model may be over-asked
//! (`local.over_ask`), is told which names to avoid (its engine takes a repeated name back), and
//! is asked again with a fresh, short request rather than the conversation. What could not be
//! filled is recorded as a failure with its reason, next to the draft of what could.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::config::Settings;
use crate::draft::{Checker, Issue, Item, Junk, JunkContext, JunkReason};
use crate::fsutil::write_atomic;
use crate::graph::name::file_name_from_page_name;
use crate::graph::{self, Block, Graph};
use crate::llm::{self, ChatModel, ChatRequest, ModelError, Params, Provider, Usage, tokens};
use crate::pipeline;
use crate::prompt::library::sha256_hex;
use crate::prompt::{self, Library, Message, Role, VentureInput, context};
use crate::writeback::{self, DraftSet, GraphLock, Workspace};

/// What `generate` is asked for.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub venture: String,
    pub brief: Option<String>,
    /// Block ids, titles or last id segments; empty for every block.
    pub blocks: Vec<String>,
    pub count: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Read answers from the cache (`--no-cache` turns this off; answers are still stored).
    pub use_cache: bool,
    /// Write nothing: the report carries the change as a diff instead.
    pub dry_run: bool,
    /// Keep the venture's earlier unaccepted drafts of a block (they are replaced otherwise).
    pub append: bool,
}

/// What happens, as it happens (the command line draws progress from these).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Attempt {
        block: &'a str,
        attempt: u32,
        cached: bool,
    },
    Piece(&'a str),
    Done {
        block: &'a str,
        items: usize,
        wanted: usize,
    },
}

/// `generate --json`: PRODUCT.md section 9.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub provider: String,
    pub model: String,
    pub drafts: Vec<Draft>,
    pub failed: Vec<Failed>,
    /// With `--dry-run`: what writing would change in the graph, as a unified diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
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

/// The selected blocks, each after the blocks it relates to (when both are selected); ties
/// and cycles in id order.
pub fn dependency_order(blocks: Vec<&Block>) -> Vec<&Block> {
    let selected: BTreeSet<&str> = blocks.iter().map(|block| block.id.as_str()).collect();
    let mut remaining: Vec<&Block> = blocks;
    remaining.sort_by(|a, b| a.id.cmp(&b.id));
    remaining.dedup_by(|a, b| a.id == b.id);
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut ordered = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|block| {
            block.relations.iter().all(|id| {
                id == &block.id || !selected.contains(id.as_str()) || done.contains(id.as_str())
            })
        });
        // A cycle: take the first remaining block as it is.
        let next = remaining.remove(ready.unwrap_or(0));
        done.insert(next.id.as_str());
        ordered.push(next);
    }
    ordered
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

/// Run `generate`. The chosen provider is connected on the first request the cache cannot
/// answer (a re-run of finished work loads no model and sends nothing).
pub async fn run(
    graph: &Graph,
    settings: &Settings,
    library: &Library,
    request: &GenerateRequest,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    events: &(dyn Fn(Event<'_>) + Send + Sync),
) -> Result<RunReport, Error> {
    let mut venture = pipeline::resolve_venture(graph, &request.venture, request.brief.clone())?;
    venture.keep_drafts = request.append;
    let blocks = if request.blocks.is_empty() {
        graph.blocks.iter().collect()
    } else {
        request
            .blocks
            .iter()
            .map(|query| graph.find_block(query))
            .collect::<Result<Vec<_>, _>>()?
    };
    let (provider, params) = llm::choose(
        settings,
        request.provider.as_deref(),
        request.model.as_deref(),
        |name| env(name),
    )?;
    let (cache_dir, drafts_dir) = state_dirs(settings, &graph.root);
    let over_ask = match provider {
        Provider::Local { .. } => settings.local.over_ask,
        Provider::Openai { .. } => 0,
    };
    let run = Run {
        graph,
        settings,
        library,
        run_id: new_run_id(),
        identity: model_identity(&provider, settings),
        cache: Cache::new(cache_dir, request.use_cache),
        provider,
        params,
        model: tokio::sync::OnceCell::new(),
        env,
        events,
        over_ask,
        spent_usd: std::sync::Mutex::new(0.0),
    };
    let count = request.count.unwrap_or(settings.generate.count);
    let mut report = RunReport {
        run_id: run.run_id.clone(),
        provider: run.provider.name().to_string(),
        model: run.provider.model().to_string(),
        drafts: Vec::new(),
        failed: Vec::new(),
        diff: None,
    };
    // One writer per graph; the drafts are placed in the graph as it is once the lock is held.
    let _lock = match request.dry_run {
        true => None,
        false => Some(GraphLock::acquire(&graph.root)?),
    };
    let mut workspace = Workspace::load(&graph.root)?;
    let generated_by = writeback::generated_by(&report.provider, &report.model);
    let mut stop: Option<String> = None;
    for block in dependency_order(blocks) {
        if let Some(reason) = &stop {
            report.failed.push(Failed {
                venture: venture.name.clone(),
                block: block.id.clone(),
                reason: format!("not attempted: {reason}"),
            });
            continue;
        }
        let outcome = run.block(&venture, block, count).await?;
        if let Some(error) = outcome.error {
            // Too few usable items is this block's problem; a model or budget error ends the run.
            if !matches!(error, BlockError::Items(_)) {
                stop = Some(error.to_string());
            }
            report.failed.push(Failed {
                venture: venture.name.clone(),
                block: block.id.clone(),
                reason: error.to_string(),
            });
        }
        if let Some(mut draft) = outcome.draft {
            draft.items = draft
                .items
                .iter()
                .filter_map(writeback::text::safe_item)
                .collect();
            let set = DraftSet {
                venture: &venture.name,
                brief: request.brief.as_deref(),
                block_id: &block.id,
                items: &draft.items,
                generated_by: &generated_by,
                run: &run.run_id,
            };
            let written =
                writeback::write_drafts(&mut workspace, &set, request.append).and_then(|pages| {
                    match request.dry_run {
                        true => workspace.changes().map(|_| pages),
                        false => workspace.commit().map(|_| pages),
                    }
                });
            match written {
                Ok(pages) => draft.pages = pages,
                Err(error) => {
                    // Nothing of this block reaches the disk; the pages are as last committed.
                    workspace.rollback();
                    report.failed.push(Failed {
                        venture: venture.name.clone(),
                        block: block.id.clone(),
                        reason: format!("drafted, but not written into the graph: {error}"),
                    })
                }
            }
            if !request.dry_run {
                let path = draft_path(&drafts_dir, &venture.name, &block.id);
                draft.written_to = Some(display_path(&path, &graph.root));
                let bytes = serde_json::to_vec_pretty(&draft).map_err(std::io::Error::other);
                bytes
                    .and_then(|bytes| write_atomic(&path, &bytes))
                    .map_err(|source| Error::Write {
                        path: path.clone(),
                        source,
                    })?;
            }
            venture.drafted.insert(
                block.id.clone(),
                draft
                    .items
                    .iter()
                    .map(|item| context::Item {
                        name: item.name.clone(),
                        description: item.description.clone(),
                    })
                    .collect(),
            );
            report.drafts.push(draft);
        }
    }
    if request.dry_run {
        report.diff = Some(workspace.diff()?);
    }
    Ok(report)
}

/// How many items an answer holds (0 when it is not an object with an `items` array).
fn answer_items(text: &str) -> usize {
    crate::draft::parse_answer(text)
        .ok()
        .and_then(|answer| answer.get("items").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0)
}

/// How many items of an answer have a problem that is not junk (the schema, the name rules,
/// a duplicate).
fn invalid_items(problems: &[Issue]) -> usize {
    let items: BTreeSet<&str> = problems
        .iter()
        .filter(|issue| issue.junk.is_none())
        .filter_map(|issue| issue.path.strip_prefix("/items/"))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .collect();
    items.len()
}

/// Junk counts as `venture-name 2, code-or-markup 1`, or `None` when there was none.
pub fn junk_summary(junk: &BTreeMap<JunkReason, usize>) -> Option<String> {
    let parts: Vec<String> = junk
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `path` relative to the graph when inside it.
fn display_path(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Why a block has fewer items than asked.
#[derive(Debug, thiserror::Error)]
enum BlockError {
    /// The answers never held enough usable items.
    #[error("{0}")]
    Items(String),
    #[error("{0}")]
    Model(ModelError),
    #[error(
        "the run's budget of {budget:.4} USD would be exceeded (spent {spent:.4} USD, the next request is estimated at {next:.4} USD): raise generate.budget_usd"
    )]
    Budget { budget: f64, spent: f64, next: f64 },
}

struct BlockOutcome {
    draft: Option<Draft>,
    error: Option<BlockError>,
}

/// A fresh request for the missing items (`again`, rendered for their count), with the items
/// kept so far listed as taken (`resample.j2`) at the end of its user message.
fn fresh_messages(
    library: &Library,
    mut again: Vec<Message>,
    kept: &[&str],
) -> Result<Vec<Message>, Error> {
    let taken = library.render("resample.j2", &json!({ "kept": kept }))?;
    if let Some(last) = again.last_mut().filter(|_| !taken.trim().is_empty()) {
        last.content = format!("{}\n\n{}", last.content.trim_end(), taken.trim());
    }
    Ok(again)
}

/// The conversation of a re-ask: the first request, the model's answer, and what was wrong
/// with it (`reask.j2`), asking for `asked` new items.
fn reask_messages(
    library: &Library,
    first: &[Message],
    answer: &str,
    problems: &[Issue],
    kept: &[&str],
    asked: usize,
) -> Result<Vec<Message>, Error> {
    let reask = library.render(
        "reask.j2",
        &json!({
            "issues": problems.iter().take(12).map(ToString::to_string).collect::<Vec<_>>(),
            "kept": kept,
            "count": asked,
        }),
    )?;
    let mut messages = first.to_vec();
    messages.push(Message {
        role: Role::Assistant,
        content: answer.to_string(),
    });
    messages.push(Message {
        role: Role::User,
        content: reask.trim().to_string(),
    });
    Ok(messages)
}

/// How much hotter the local model samples on each fresh request after the first.
const RESAMPLE_HEAT: f64 = 0.2;

/// The state of one run.
struct Run<'r> {
    graph: &'r Graph,
    settings: &'r Settings,
    library: &'r Library,
    run_id: String,
    identity: Value,
    cache: Cache,
    provider: Provider,
    params: Params,
    model: tokio::sync::OnceCell<Arc<dyn ChatModel>>,
    env: &'r (dyn Fn(&str) -> Option<String> + Sync),
    events: &'r (dyn Fn(Event<'_>) + Send + Sync),
    over_ask: usize,
    spent_usd: std::sync::Mutex<f64>,
}

impl Run<'_> {
    async fn model(&self) -> Result<Arc<dyn ChatModel>, ModelError> {
        self.model
            .get_or_try_init(|| async {
                llm::connect(self.settings, &self.provider, |name| (self.env)(name))
            })
            .await
            .cloned()
    }

    async fn block(
        &self,
        venture: &VentureInput,
        block: &Block,
        count: usize,
    ) -> Result<BlockOutcome, Error> {
        let started = Instant::now();
        let started_at = chrono::Utc::now().to_rfc3339();
        let budget = pipeline::prompt_options(self.settings, &self.provider);
        let schema = crate::draft::AnswerSchema::for_block(self.library, block)?;
        // Over-asking never goes past the schema's maximum (asking beyond it is a usage error).
        let ask = |missing: usize| {
            (missing + self.over_ask)
                .min(schema.max_items())
                .max(missing)
        };
        let first = prompt::render(self.library, self.graph, block, venture, ask(count), budget)?;
        let existing: Vec<&str> = first
            .context
            .existing
            .iter()
            .map(|item| item.name.as_str())
            .collect();
        let junk_context = JunkContext::new(self.graph, block, &first, venture.keep_drafts);
        // Names the embedded model takes back as soon as it writes them (`llm::local`): the
        // venture's items, every venture of the graph, every name the prompt shows, and the
        // block's own names. A remote model is only checked afterwards.
        let avoid: Vec<String> = existing
            .iter()
            .map(|name| name.to_string())
            .chain(std::iter::once(junk_context.venture.clone()))
            .chain(junk_context.ventures.iter().cloned())
            .chain(junk_context.shown.iter().cloned())
            .chain(junk_context.block_names.iter().cloned())
            .collect();
        let checker = Checker::new(&first.schema, existing.clone())
            .map_err(|issue| Error::Schema {
                file: first.schema_file.clone(),
                message: issue.to_string(),
            })?
            .with_junk(Junk::new(&self.settings.junk, &junk_context));
        let mut junk: BTreeMap<JunkReason, usize> = BTreeMap::new();
        let (mut proposed, mut invalid) = (0, 0);
        let prompt_hash = sha256_hex(
            json!({"messages": first.messages, "schema": first.schema})
                .to_string()
                .as_bytes(),
        );
        let mut kept: Vec<Item> = Vec::new();
        let mut usage = Usage::default();
        let mut paid = Usage::default();
        let (mut attempts, mut cached_attempts) = (0_u32, 0_u32);
        let mut constrained_by = String::new();
        let mut messages = first.messages.clone();
        let mut schema_sent = first.schema.clone();
        let mut asked = ask(count);
        let mut problems = Vec::new();
        let mut error = None;
        let price = self.settings.prices.get(self.provider.model());
        for attempt in 1..=self.settings.generate.attempts.max(1) {
            attempts = attempt;
            // A new seed each attempt; the local model's fresh requests also sample hotter, or
            // it gives the same few ideas again.
            let hotter = match budget.constrained {
                true => RESAMPLE_HEAT * f64::from(attempt - 1),
                false => 0.0,
            };
            let params = Params {
                seed: self.params.seed + i64::from(attempt - 1),
                temperature: self.params.temperature + hotter,
                ..self.params.clone()
            };
            let chat = ChatRequest {
                messages: messages.clone(),
                schema: schema_sent.clone(),
                params,
                avoid_names: avoid
                    .iter()
                    .cloned()
                    .chain(kept.iter().map(|item| item.name.clone()))
                    .collect(),
            };
            let key = Cache::key(&self.identity, &chat);
            let cached = self.cache.get(&key);
            (self.events)(Event::Attempt {
                block: &block.id,
                attempt,
                cached: cached.is_some(),
            });
            let completion = match cached {
                Some(completion) => {
                    cached_attempts += 1;
                    completion
                }
                None => {
                    if let Some(exceeded) = self.over_budget(&chat, asked) {
                        error = Some(exceeded);
                        break;
                    }
                    let model = match self.model().await {
                        Ok(model) => model,
                        Err(connect) => return Err(connect.into()),
                    };
                    let events = self.events;
                    let piece = move |text: &str| events(Event::Piece(text));
                    match model.complete(&chat, &piece).await {
                        Ok(completion) => {
                            self.cache.put(&key, &completion);
                            paid += completion.usage;
                            completion
                        }
                        Err(failure) => {
                            error = Some(BlockError::Model(failure));
                            break;
                        }
                    }
                }
            };
            usage += completion.usage;
            constrained_by = completion.constrained_by.clone();
            proposed += answer_items(&completion.text);
            problems = checker.review(&completion.text, &mut kept, count);
            for reason in problems.iter().filter_map(|issue| issue.junk) {
                *junk.entry(reason).or_insert(0) += 1;
            }
            invalid += invalid_items(&problems);
            for issue in &problems {
                tracing::info!("{} attempt {attempt}: {issue}", block.id);
            }
            if kept.len() >= count {
                break;
            }
            let missing = count - kept.len();
            asked = ask(missing);
            schema_sent = schema.bound_to(asked)?;
            let kept_names: Vec<&str> = kept.iter().map(|item| item.name.as_str()).collect();
            messages = match budget.constrained {
                // Decoding under the schema, the local model cannot break the JSON, only repeat
                // itself: a fresh request is shorter than the conversation it would read again.
                true => {
                    let again =
                        prompt::render(self.library, self.graph, block, venture, asked, budget)?;
                    fresh_messages(self.library, again.messages, &kept_names)?
                }
                false => reask_messages(
                    self.library,
                    &first.messages,
                    &completion.text,
                    &problems,
                    &kept_names,
                    asked,
                )?,
            };
        }
        if error.is_none() && kept.len() < count {
            let listed: Vec<String> = problems.iter().take(5).map(ToString::to_string).collect();
            error = Some(BlockError::Items(format!(
                "{} of {count} items after {attempts} attempt(s){}; last problems: {}",
                kept.len(),
                junk_summary(&junk)
                    .map(|summary| format!(", junk rejected: {summary}"))
                    .unwrap_or_default(),
                listed.join("; ")
            )));
        }
        (self.events)(Event::Done {
            block: &block.id,
            items: kept.len(),
            wanted: count,
        });
        let cost_usd = tokens::cost_usd(
            &self.provider,
            price,
            paid.prompt_tokens as usize,
            paid.completion_tokens as usize,
        );
        if let Ok(mut spent) = self.spent_usd.lock() {
            *spent += cost_usd;
        }
        let draft = (!kept.is_empty()).then(|| Draft {
            venture: venture.name.clone(),
            block: block.id.clone(),
            items: kept,
            provenance: Provenance {
                run_id: self.run_id.clone(),
                provider: self.provider.name().to_string(),
                model: self.provider.model().to_string(),
                base_url: match &self.provider {
                    Provider::Openai { base_url, .. } => Some(base_url.clone()),
                    Provider::Local { .. } => None,
                },
                constrained_by,
                templates_hash: self.library.templates_hash(&first.templates),
                schema_file: first.schema_file.clone(),
                schema_hash: sha256_hex(schema.value.to_string().as_bytes()),
                prompt_hash,
                params: self.params.clone(),
                asked: ask(count),
                attempts,
                cached_attempts,
                proposed,
                invalid,
                junk,
                tokens: usage,
                cost_usd,
                seconds: started.elapsed().as_secs_f64(),
                started_at,
                inncopilot_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            written_to: None,
            pages: Vec::new(),
        });
        Ok(BlockOutcome { draft, error })
    }

    /// The budget error when the next request would take the run past `generate.budget_usd`.
    fn over_budget(&self, chat: &ChatRequest, asked: usize) -> Option<BlockError> {
        let budget = self.settings.generate.budget_usd;
        if budget <= 0.0 {
            return None;
        }
        let next = tokens::cost_usd(
            &self.provider,
            self.settings.prices.get(self.provider.model()),
            tokens::prompt_tokens(&self.provider, &chat.messages).tokens,
            tokens::expected_output_tokens(asked, &chat.params),
        );
        let spent = self.spent_usd.lock().map(|spent| *spent).unwrap_or(0.0);
        (spent + next > budget).then_some(BlockError::Budget {
            budget,
            spent,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: &str, relations: &[&str]) -> Block {
        Block {
            id: id.into(),
            relations: relations.iter().map(ToString::to_string).collect(),
            ..Block::default()
        }
    }

    #[test]
    fn a_fresh_request_lists_the_kept_items_and_a_reask_carries_the_conversation()
    -> Result<(), Box<dyn std::error::Error>> {
        let library = Library::new(None)?;
        let graph = Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"))?;
        let block = graph.find_block("relationship")?;
        let venture = pipeline::resolve_venture(&graph, "Space X", None)?;
        let options = prompt::PromptOptions {
            tokens: 150,
            ventures: 4,
            constrained: true,
        };
        let again = prompt::render(&library, &graph, block, &venture, 2, options)?;
        let roles = |messages: &[Message]| messages.iter().map(|m| m.role).collect::<Vec<_>>();
        let user = |messages: &[Message]| {
            messages
                .last()
                .map(|message| message.content.clone())
                .unwrap_or_default()
        };

        // Fresh: the request for the missing count, not a conversation, the kept items last.
        let fresh = fresh_messages(
            &library,
            again.messages.clone(),
            &["Keeper Hotline", "Pet Club"],
        )?;
        assert_eq!(roles(&fresh), [Role::System, Role::User]);
        let text = user(&fresh);
        assert!(text.starts_with(user(&again.messages).trim_end()));
        assert!(text.contains("Propose 2 new Relationship ideas for Space X."));
        assert!(
            text.ends_with("do not repeat them:\n- Keeper Hotline\n- Pet Club"),
            "{text}"
        );
        assert_eq!(
            fresh_messages(&library, again.messages.clone(), &[])?,
            again.messages
        );

        // Re-ask: the first request, the answer, and its problems.
        let problems = [Issue {
            path: "/items/1/name".into(),
            message: "`Pet Club` is named twice".into(),
            junk: None,
        }];
        let answer = r#"{"items":[]}"#;
        let reask = reask_messages(
            &library,
            &again.messages,
            answer,
            &problems,
            &["Keeper Hotline"],
            1,
        )?;
        assert_eq!(
            roles(&reask),
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(reask[..2], again.messages[..]);
        assert_eq!(reask[2].content, answer);
        let text = user(&reask);
        assert!(
            text.contains("/items/1/name: `Pet Club` is named twice"),
            "{text}"
        );
        assert!(text.contains("- Keeper Hotline"));
        assert!(text.contains("with 1 new ideas"));
        Ok(())
    }

    #[test]
    fn related_blocks_come_first_and_cycles_still_finish() {
        let profile = block("profile", &[]);
        let relationship = block("profile/relationship", &["profile", "channel"]);
        let channel = block("channel", &["profile/relationship"]);
        let ordered: Vec<&str> = dependency_order(vec![&relationship, &profile])
            .iter()
            .map(|block| block.id.as_str())
            .collect();
        assert_eq!(ordered, ["profile", "profile/relationship"]);
        let cyclic: Vec<&str> = dependency_order(vec![&relationship, &channel, &profile])
            .iter()
            .map(|block| block.id.as_str())
            .collect();
        assert_eq!(cyclic.len(), 3);
        assert_eq!(cyclic[0], "profile");
    }

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
}
