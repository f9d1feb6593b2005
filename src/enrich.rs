//! `enrich`: the run engine ([`crate::run`]) over every (venture, block) pair of the graph that
//! lacks items, concurrently, within a budget, resumable from the journal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;

use crate::llm::{Completion, Provider, Usage};
use crate::run::plan::{self, Plan, Selection};
use crate::run::schedule::{self, RunSpec, Writer};
use crate::run::{Engine, Error, Events, RunReport};

/// What `enrich` is asked for, besides the plan's selection.
#[derive(Debug, Clone, Default)]
pub struct EnrichRequest {
    pub selection: Selection,
    /// Pairs in flight at once (the local model always takes one at a time).
    pub concurrency: usize,
    /// When resuming a run, ask again the pairs it recorded as failed.
    pub retry_failed: bool,
    pub dry_run: bool,
    /// Answers to pairs' first requests, from a Batch API result file (`--batch-import`).
    pub imported: BTreeMap<(String, String), Completion>,
    /// Ask nothing live: pairs the imported answers do not fill wait for the next export.
    pub no_live: bool,
    /// Resume this run of the journal (else the latest unfinished run asked the same).
    pub resume: Option<String>,
    /// Set to `true` to stop: pairs in flight finish and are written, no other pair starts,
    /// and the run is journaled as cancelled (resumable).
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// A budget of `budget` USD (0: none) that `plan` must fit, as the plan estimates it.
pub fn check_budget(plan: &Plan, budget: f64) -> Result<(), Error> {
    if budget <= 0.0 {
        return Ok(());
    }
    let Some(cost) = plan.cost_usd else {
        return Err(Error::Usage(format!(
            "model `{}` has no price, so a budget cannot be kept: add it to the config's [prices] table (input and output USD per million tokens)",
            plan.model
        )));
    };
    match cost <= budget {
        true => Ok(()),
        false => Err(Error::Usage(format!(
            "the plan is estimated at {cost:.4} USD, over the budget of {budget:.4} USD: raise --budget, or narrow the run with --venture, --block or --count (see --plan)"
        ))),
    }
}

/// What an `enrich` run was asked, as the journal keeps it (`args`): a run asked the same is
/// resumed, and a run resumed by id is asked this again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JournalArgs {
    pub ventures: Vec<String>,
    pub blocks: Vec<String>,
    pub min_items: usize,
    pub force: bool,
    pub count: usize,
    pub provider: String,
    pub model: String,
}

impl JournalArgs {
    /// The key of `selection` on `engine`: names sorted and lower-cased, so that the same
    /// request spelled differently resumes the same run.
    pub fn new(engine: &Engine, selection: &Selection) -> JournalArgs {
        let sorted = |names: &[String]| {
            let set: BTreeSet<String> = names.iter().map(|name| name.to_lowercase()).collect();
            set.into_iter().collect::<Vec<_>>()
        };
        JournalArgs {
            ventures: sorted(&selection.ventures),
            blocks: sorted(&selection.blocks),
            min_items: selection.min_items,
            force: selection.force,
            count: selection.count,
            provider: engine.provider.name().to_string(),
            model: engine.provider.model().to_string(),
        }
    }

    /// As the journal stores it.
    pub fn key(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(args: &str) -> Result<JournalArgs, Error> {
        serde_json::from_str(args).map_err(|error| {
            Error::Usage(format!(
                "the journal's record of this run cannot be read ({error}): start a new run"
            ))
        })
    }

    pub fn selection(&self) -> Selection {
        Selection {
            ventures: self.ventures.clone(),
            blocks: self.blocks.clone(),
            min_items: self.min_items,
            force: self.force,
            count: self.count,
        }
    }
}

/// The id the run of `selection` will have: the run of the journal it resumes
/// ([`resumable`]), else a new one.
pub fn run_id_for(
    engine: &Engine,
    selection: &Selection,
    retry_failed: bool,
) -> Result<String, Error> {
    let args = JournalArgs::new(engine, selection).key();
    let resumed = match crate::run::Journal::open_existing(&engine.graph.root)? {
        Some(journal) => resumable(&journal, &args, retry_failed)?,
        None => None,
    };
    Ok(resumed.unwrap_or_else(crate::run::new_run_id))
}

/// The run an `enrich` asked `args` resumes: the latest unfinished run asked the same; with
/// `retry_failed`, else the latest run asked the same if pairs of it failed (finished or not:
/// its failed pairs are asked again, its done ones are not, even with `--force`).
fn resumable(
    journal: &crate::run::Journal,
    args: &str,
    retry_failed: bool,
) -> Result<Option<String>, Error> {
    match journal.resumable("enrich", args)? {
        Some(id) => Ok(Some(id)),
        None if retry_failed => Ok(journal.latest_with_failures("enrich", args)?),
        None => Ok(None),
    }
}

/// The pairs to work on and their estimated cost; nothing is sent, no model is loaded.
pub fn plan(engine: &Engine, selection: &Selection) -> Result<Plan, Error> {
    plan::enrich(engine, selection, true)
}

/// The plan of a run that keeps `budget` (0: none): estimated only when there is a budget to
/// check it against ([`check_budget`]), so a plain run renders no prompt before it starts.
pub fn plan_for_budget(engine: &Engine, selection: &Selection, budget: f64) -> Result<Plan, Error> {
    plan::enrich(engine, selection, budget > 0.0)
}

/// Run `plan` (made by [`plan`] for `request`): resume the latest unfinished run asked the
/// same, else start a new one.
pub async fn run(
    engine: Arc<Engine>,
    mut plan: Plan,
    request: &EnrichRequest,
    events: Events,
) -> Result<RunReport, Error> {
    if request.no_live {
        // Only the pairs the batch answered; the others go in the next export.
        plan.pairs.retain(|pair| {
            request
                .imported
                .contains_key(&(pair.venture.clone(), pair.block.clone()))
        });
    }
    let writer = Writer::open(&engine, request.dry_run)?;
    let args = JournalArgs::new(&engine, &request.selection).key();
    let mut run_id = None;
    let (mut skip, mut retry) = (BTreeSet::new(), BTreeMap::new());
    let resumable = match (&request.resume, writer.journal()) {
        _ if request.dry_run => None,
        (Some(id), _) => Some(id.clone()),
        (None, Some(journal)) => resumable(journal, &args, request.retry_failed)?,
        (None, None) => None,
    };
    if let Some(id) = resumable {
        if let Some(journal) = writer.journal() {
            for (pair, (state, attempts)) in journal.pair_tries(&id)? {
                match state.as_str() {
                    "failed" if request.retry_failed => {
                        retry.insert(pair, attempts);
                    }
                    "done" | "failed" => {
                        skip.insert(pair);
                    }
                    _ => {}
                }
            }
        }
        tracing::info!("resuming run {id}: {} pair(s) finished already", skip.len());
        run_id = Some(id);
    }
    let ventures: BTreeMap<_, _> = engine
        .graph
        .ventures()
        .iter()
        .filter(|venture| plan.pairs.iter().any(|pair| pair.venture == venture.name))
        .map(|venture| (venture.name.clone(), plan::venture_input(venture)))
        .collect();
    let concurrency = match engine.provider {
        // One model in memory, one sequence at a time.
        Provider::Local { .. } => 1,
        Provider::Openai { .. } => request.concurrency.max(1),
    };
    let spec = RunSpec {
        run_id: run_id.unwrap_or_else(crate::run::new_run_id),
        command: "enrich".into(),
        args,
        pairs: plan.pairs,
        ventures,
        briefs: BTreeMap::new(),
        concurrency,
        append: false,
        stop_on_model_error: false,
        skip,
        retry,
        imported: request.imported.clone(),
        live: !request.no_live,
        cancel: request.cancel.clone(),
        report_files: true,
    };
    schedule::execute(engine, spec, writer, events).await
}

/// `--batch-export`: the first request of every pair that waits for no other pair of the plan
/// (the current wave), in the OpenAI Batch API file format: `custom_id` (`venture / block`),
/// `method`, `url`, `body` (what the live path sends, `json_schema`, not streamed).
pub fn batch_lines(engine: &Engine, plan: &Plan) -> Result<Vec<serde_json::Value>, Error> {
    let Provider::Openai { model, .. } = &engine.provider else {
        return Err(Error::Usage(
            "--batch-export writes requests for an OpenAI-compatible batch runner: pass --provider openai (or another preset)".into(),
        ));
    };
    let ventures: BTreeMap<String, crate::prompt::VentureInput> = engine
        .graph
        .ventures()
        .iter()
        .map(|venture| (venture.name.clone(), plan::venture_input(venture)))
        .collect();
    let mut lines = Vec::new();
    for pair in &plan.pairs {
        let block = engine.graph.find_block(&pair.block)?;
        let waits = plan.pairs.iter().any(|other| {
            other.venture == pair.venture
                && other.block != pair.block
                && block.relations.contains(&other.block)
        });
        if waits {
            continue;
        }
        let Some(venture) = ventures.get(&pair.venture) else {
            continue;
        };
        let request = crate::run::job::first_request(engine, venture, block, pair.count)?;
        lines.push(json!({
            "custom_id": batch_id(&pair.venture, &pair.block),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": crate::llm::openai::batch_body(model, &request),
        }));
    }
    Ok(lines)
}

/// A pair's `custom_id` in batch files.
pub fn batch_id(venture: &str, block: &str) -> String {
    format!("{venture} / {block}")
}

/// The answers of a Batch API result file (OpenAI's, or vLLM's `run_batch`), by pair, and what
/// was wrong with the lines that gave none (line number and cause: those pairs are asked live,
/// or left for the next export).
pub fn read_batch_results(
    text: &str,
    plan: &Plan,
) -> (BTreeMap<(String, String), Completion>, Vec<String>) {
    let planned: BTreeSet<(String, String)> = plan
        .pairs
        .iter()
        .map(|pair| (pair.venture.clone(), pair.block.clone()))
        .collect();
    let mut answers = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        match batch_answer(line, &planned) {
            Ok((pair, completion)) => {
                answers.insert(pair, completion);
            }
            Err(problem) => problems.push(format!("line {number}: {problem}")),
        }
    }
    (answers, problems)
}

/// One result line: its pair and the answer.
fn batch_answer(
    line: &str,
    planned: &BTreeSet<(String, String)>,
) -> Result<((String, String), Completion), String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|error| format!("not JSON ({error})"))?;
    let id = value["custom_id"]
        .as_str()
        .ok_or("no custom_id")?
        .to_string();
    let (venture, block) = id
        .rsplit_once(" / ")
        .ok_or_else(|| format!("custom_id `{id}` is not `venture / block`"))?;
    let pair = (venture.to_string(), block.to_string());
    if !planned.contains(&pair) {
        return Err(format!(
            "`{id}` is not a pair of this plan (it has items by now, or other --venture/--block filters were used)"
        ));
    }
    if !value["error"].is_null() {
        return Err(format!("`{id}` failed in the batch: {}", value["error"]));
    }
    let response = &value["response"];
    let status = response["status_code"].as_u64().unwrap_or(0);
    if status != 200 {
        return Err(format!("`{id}` got HTTP {status} in the batch"));
    }
    let body = &response["body"];
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| format!("`{id}`: the response has no choices[0].message.content"))?;
    let usage = Usage {
        prompt_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: body["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    };
    Ok((
        pair,
        Completion {
            text: text.to_string(),
            usage,
            constrained_by: "batch json_schema".into(),
            taken_back: Default::default(),
        },
    ))
}

/// `--batch-submit`: upload the current wave's batch file and create the batch; recorded in the
/// journal (`runs`) as a `batch` run in state `submitted`. Returns the batch id and how many
/// requests it holds.
pub async fn batch_submit(engine: &Engine, plan: &Plan) -> Result<(String, usize), Error> {
    let lines = batch_lines(engine, plan)?;
    if lines.is_empty() {
        return Err(Error::Usage(
            "no pair to send: the plan is empty (see --plan)".into(),
        ));
    }
    let mut file = Vec::new();
    for line in &lines {
        file.extend(line.to_string().into_bytes());
        file.push(b'\n');
    }
    let client = engine
        .openai_client()
        .map_err(crate::llm::ModelError::from)?;
    let batch = client
        .submit_batch(file)
        .await
        .map_err(crate::llm::ModelError::from)?;
    let journal = crate::run::Journal::open(&engine.graph.root)?;
    let args = json!({"input_file_id": batch.input_file_id, "requests": lines.len()}).to_string();
    let start = crate::run::journal::RunStart {
        command: "batch".into(),
        args,
        provider: engine.provider.name().into(),
        model: engine.provider.model().into(),
    };
    journal.start_run(&batch.id, &start)?;
    journal.finish_run(&batch.id, "submitted")?;
    Ok((batch.id, lines.len()))
}

/// `--batch-collect [ID]`: wait for a submitted batch (the latest when no id is given) to end,
/// polling every `poll`, and return the text of its results file.
pub async fn batch_collect(
    engine: &Engine,
    id: Option<&str>,
    poll: std::time::Duration,
) -> Result<(String, String), Error> {
    use async_openai::types::batches::BatchStatus;
    let journal = crate::run::Journal::open(&engine.graph.root)?;
    let id = match id {
        Some(id) => id.to_string(),
        None => journal.latest_in_state("batch", "submitted")?.ok_or_else(|| {
            Error::Usage(
                "no submitted batch in this graph's journal: give its id (--batch-collect ID), or submit one with --batch-submit".into(),
            )
        })?,
    };
    let client = engine
        .openai_client()
        .map_err(crate::llm::ModelError::from)?;
    loop {
        let batch = client
            .batch(&id)
            .await
            .map_err(crate::llm::ModelError::from)?;
        match batch.status {
            BatchStatus::Completed => {
                let output = batch.output_file_id.ok_or_else(|| {
                    Error::Usage(format!("batch {id} is completed but has no output file"))
                })?;
                let text = client
                    .file_text(&output)
                    .await
                    .map_err(crate::llm::ModelError::from)?;
                journal.finish_run(&id, "collected")?;
                return Ok((id, text));
            }
            BatchStatus::Failed | BatchStatus::Expired | BatchStatus::Cancelled => {
                journal.finish_run(&id, "failed")?;
                let errors = batch
                    .errors
                    .map(|errors| {
                        errors
                            .data
                            .iter()
                            .map(|error| error.message.clone())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                return Err(Error::Usage(format!(
                    "batch {id} ended {:?}{}{errors}: export and submit again",
                    batch.status,
                    if errors.is_empty() { "" } else { ": " }
                )));
            }
            other => {
                tracing::info!(
                    "batch {id}: {other:?}; asking again in {} s",
                    poll.as_secs()
                );
                tokio::time::sleep(poll).await;
            }
        }
    }
}
