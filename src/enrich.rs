//! `enrich`: the run engine ([`crate::run`]) over every (venture, block) pair of the graph that
//! lacks items, concurrently, within a budget, resumable from the journal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;

use crate::llm::Provider;
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
}

/// The journal's key of a request: a run asked the same is resumed.
fn journal_args(engine: &Engine, selection: &Selection) -> String {
    let sorted = |names: &[String]| {
        let set: BTreeSet<String> = names.iter().map(|name| name.to_lowercase()).collect();
        set.into_iter().collect::<Vec<_>>()
    };
    json!({
        "ventures": sorted(&selection.ventures),
        "blocks": sorted(&selection.blocks),
        "min_items": selection.min_items,
        "force": selection.force,
        "count": selection.count,
        "provider": engine.provider.name(),
        "model": engine.provider.model(),
    })
    .to_string()
}

/// The pairs to work on and their estimated cost; nothing is sent, no model is loaded.
pub fn plan(engine: &Engine, selection: &Selection) -> Result<Plan, Error> {
    plan::enrich(engine, selection)
}

/// Run `plan` (made by [`plan`] for `request`): resume the latest unfinished run asked the
/// same, else start a new one.
pub async fn run(
    engine: Arc<Engine>,
    plan: Plan,
    request: &EnrichRequest,
    events: Events,
) -> Result<RunReport, Error> {
    let writer = Writer::open(&engine, request.dry_run)?;
    let args = journal_args(&engine, &request.selection);
    let mut run_id = None;
    let mut skip = BTreeSet::new();
    let resumable = match writer.journal() {
        Some(journal) => journal.resumable("enrich", &args)?,
        None => None,
    };
    if let (Some(journal), Some(id)) = (writer.journal(), resumable) {
        for ((venture, block), state) in journal.pair_states(&id)? {
            if state == "done" || (state == "failed" && !request.retry_failed) {
                skip.insert((venture, block));
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
    };
    schedule::execute(engine, spec, writer, events).await
}
