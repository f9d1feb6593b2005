//! `generate`: drafts for one venture, block by block in dependency order (`relations::`), each
//! later block seeing the earlier blocks' fresh drafts. It is the run engine ([`crate::run`])
//! over one venture's pairs, one at a time, streaming.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::config::Settings;
use crate::graph::Graph;
use crate::llm;
use crate::pipeline;
use crate::prompt::Library;
use crate::run::plan::{self, PlannedPair};
use crate::run::schedule::{self, RunSpec, Writer};
pub use crate::run::{
    Draft, Engine, Env, Error, Event, EventKind, Events, Failed, Provenance, RunReport,
    junk_summary,
};

pub use crate::pipeline::Request;

/// How `generate` runs a [`Request`] (the cache is the engine's business: `engine`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write nothing: the report carries the change as a diff instead.
    pub dry_run: bool,
    /// Keep the venture's earlier unaccepted drafts of a block (they are replaced otherwise).
    pub append: bool,
    /// Becomes `true` to stop after the block in flight (the service's shutdown).
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The engine for a request's provider and model (`llm::choose`); the model itself is connected
/// on the first request the cache cannot answer.
pub fn engine(
    graph: Arc<Graph>,
    settings: Arc<Settings>,
    library: Arc<Library>,
    provider: Option<&str>,
    model: Option<&str>,
    env: Env,
    use_cache: bool,
) -> Result<Engine, Error> {
    let (provider, params) = llm::choose(&settings, provider, model, |name| env(name))?;
    Ok(Engine::new(
        graph, settings, library, provider, params, env, use_cache,
    ))
}

/// Run `generate` on `engine` (made for the request's provider).
pub async fn run(
    engine: Arc<Engine>,
    request: &Request,
    options: &Options,
    events: Events,
) -> Result<RunReport, Error> {
    let graph = &engine.graph;
    let mut venture = pipeline::resolve_venture(graph, &request.venture, request.brief.clone())?;
    venture.keep_drafts = options.append;
    let count = request.count.unwrap_or(engine.settings.generate.count);
    let blocks = plan::select_blocks(graph, &request.blocks)?;
    let pairs: Vec<PlannedPair> = plan::dependency_order(blocks)
        .into_iter()
        .map(|(block, wave)| PlannedPair {
            venture: venture.name.clone(),
            block: block.id.clone(),
            wave,
            existing: 0,
            count,
            prompt_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
        })
        .collect();
    let spec = RunSpec {
        run_id: crate::run::new_run_id(),
        command: "generate".into(),
        args: json!({
            "venture": venture.name,
            "blocks": pairs.iter().map(|pair| pair.block.as_str()).collect::<Vec<_>>(),
            "count": count,
        })
        .to_string(),
        pairs,
        briefs: request
            .brief
            .iter()
            .map(|brief| (venture.name.clone(), brief.clone()))
            .collect(),
        ventures: BTreeMap::from([(venture.name.clone(), venture)]),
        concurrency: 1,
        append: options.append,
        stop_on_model_error: true,
        retry: Default::default(),
        skip: Default::default(),
        imported: Default::default(),
        live: true,
        cancel: options.cancel.clone(),
        report_files: false,
    };
    let writer = Writer::open(&engine, options.dry_run)?;
    schedule::execute(engine, spec, writer, events).await
}
