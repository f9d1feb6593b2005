//! The command line: flags, one variant per command, and what each command prints.
//!
//! stdout carries the command's output (a table, or JSON with `--json`); logs and warnings go
//! to stderr through `tracing`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Settings};
use crate::generate::{EventKind, Events};
use crate::graph::Graph;
use crate::pipeline::{self, Request};
use crate::prompt::Library;
use crate::report;
use crate::writeback::{self, Decision};

/// Exit code for a usage or input error (a missing graph, a bad config file).
pub const EXIT_INPUT_ERROR: u8 = 2;
/// Exit code when some items could not be drafted (the rest were).
pub const EXIT_SOME_FAILED: u8 = 1;

#[derive(Debug, Parser)]
#[command(name = "inncopilot", version, about, long_about = None)]
pub struct Cli {
    /// The Logseq graph folder [config: graph.path, env: INNCOPILOT_GRAPH_PATH].
    #[arg(long, global = true, value_name = "DIR")]
    pub graph: Option<PathBuf>,
    /// A config file layered over the built-in defaults [env: INNCOPILOT_CONFIG].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A folder of prompt files overriding the built-in ones file by file [config: prompts.dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub prompts: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The metamodel blocks of the graph: id, title, item class, questions, keys, ventures.
    Blocks(OutputArgs),
    /// The ventures of the graph and, per block, how many items each has.
    Ventures(OutputArgs),
    /// The exact request a generation would send: messages, schema, model, parameters, tokens
    /// and cost. No network, no key, no model load.
    Preview(PreviewArgs),
    /// Draft items for one venture: every block in dependency order, or the --block ones, and
    /// write them into the graph marked `draft:: true`. Exit code 1 when some items could not be
    /// drafted or written.
    Generate(GenerateArgs),
    /// Draft items for every (venture, block) pair of the graph that has none (or fewer than
    /// --min-items): concurrently, within --budget, journaled (run it again after a crash: no
    /// finished pair is asked again). --plan shows the pairs and their cost without sending
    /// anything. Exit code 1 when some pairs failed.
    Enrich(EnrichArgs),
    /// The runs of `generate` and `enrich` recorded in the graph's journal, newest first.
    Runs(RunsArgs),
    /// The effective settings (built-in defaults, then the --config file, then INNCOPILOT_*
    /// variables) as TOML: every key a config file or variable may set. Needs no graph.
    Config(OutputArgs),
    /// The drafts in the graph: list them, accept them (they become ordinary content), or
    /// reject them (they are removed).
    #[command(subcommand)]
    Drafts(DraftsCommand),
    /// Serve the graph over HTTP: the commands as JSON endpoints, enrich as jobs with live
    /// events, an OpenAPI document at /openapi.json. Endpoints that spend or write need the
    /// bearer token of INNCOPILOT_SERVE_TOKEN.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; beyond loopback only with INNCOPILOT_SERVE_TOKEN set.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDRESS:PORT")]
    pub bind: std::net::SocketAddr,
    /// Let browser pages of this origin call the service (CORS); off when absent.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    /// Seconds in-flight pairs may take to finish after SIGTERM or ctrl-c.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub grace_seconds: u64,
    /// Largest request body accepted, in KiB.
    #[arg(long, default_value_t = 256, value_name = "KIB")]
    pub body_limit_kib: usize,
}

#[derive(Debug, Subcommand)]
pub enum DraftsCommand {
    /// The draft items of the graph (all, or the selected ones).
    List(DraftsListArgs),
    /// Keep the selected drafts: their `draft:: true` marker goes, the items stay.
    Accept(DraftsDecideArgs),
    /// Remove the selected drafts from the graph; human-written blocks are never touched.
    Reject(DraftsDecideArgs),
}

#[derive(Debug, Args)]
pub struct EnrichArgs {
    /// Only this venture (case-insensitive); repeat for several; all ventures when absent.
    #[arg(long = "venture")]
    pub ventures: Vec<String>,
    /// Only this block (id, title, last part of its id, their words, or its item class); repeat
    /// for several; all blocks when absent.
    #[arg(long = "block")]
    pub blocks: Vec<String>,
    /// Pairs with fewer items than this are enriched (1: pairs with none).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub min_items: usize,
    /// Every selected pair, whatever it holds (its unaccepted drafts are replaced).
    #[arg(long)]
    pub force: bool,
    /// How many items per pair [config: generate.count].
    #[arg(long)]
    pub count: Option<usize>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Show the pairs, waves, tokens and estimated cost; send nothing, load no model.
    #[arg(long)]
    pub plan: bool,
    /// Refuse a plan estimated above this many USD, and stop before a request would pass it
    /// [config: generate.budget_usd].
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,
    /// Requests out at once to a remote provider [config: enrich.concurrency].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Ask again the pairs the run resumed recorded as failed; with no unfinished run to
    /// resume, resume the latest run asked the same if pairs of it failed (only those are asked).
    #[arg(long)]
    pub retry_failed: bool,
    /// Ask the model even when the cache has the answer (fresh answers are still cached).
    #[arg(long)]
    pub no_cache: bool,
    /// Write nothing (no page, draft file, cache entry or journal): print the change as a diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON (`{run_id, drafts, failed, totals}`; with --plan, the plan) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the first request of every pair of the current wave to FILE in the OpenAI Batch
    /// API format (OpenAI's Batch API, vLLM's offline runner); nothing is sent.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "plan")]
    pub batch_export: Option<PathBuf>,
    /// Take the answers of a Batch API result file, write the drafts, and ask live what they do
    /// not give (a line that is invalid or missing, too few usable items).
    #[arg(long, value_name = "RESULTS.jsonl", conflicts_with_all = ["plan", "batch_export"])]
    pub batch_import: Option<PathBuf>,
    /// With --batch-import or --batch-collect: ask nothing live; what the results do not give
    /// waits for the next --batch-export.
    #[arg(long)]
    pub no_live: bool,
    /// Upload the current wave's batch file to the provider's Batch API and create the batch
    /// (OpenAI: half price, results within 24 h); then --batch-collect.
    #[arg(long, conflicts_with_all = ["plan", "batch_export", "batch_import"])]
    pub batch_submit: bool,
    /// Wait for a submitted batch (the latest, or ID) to end, then import its results as
    /// --batch-import does.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["plan", "batch_export", "batch_import", "batch_submit"])]
    pub batch_collect: Option<String>,
    /// With --batch-collect: seconds between two looks at the batch.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub poll_seconds: u64,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The pairs of one run: state, attempts, items, tokens, cost, reason.
    Show {
        /// The run id (`runs` lists them).
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Which drafts: every given flag must match.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Drafts of this venture (case-insensitive).
    #[arg(long)]
    pub venture: Option<String>,
    /// Drafts of this block (id, title, last part of its id, their words, or its item class).
    #[arg(long)]
    pub block: Option<String>,
    /// Drafts written by this run (the `run::` property, the run id `generate` prints).
    #[arg(long)]
    pub run: Option<String>,
    /// Drafts with this item name (case-insensitive); repeat for several.
    #[arg(long = "item")]
    pub items: Vec<String>,
}

impl SelectionArgs {
    fn selection(&self, all: bool) -> writeback::Selection {
        writeback::Selection {
            venture: self.venture.clone(),
            block: self.block.clone(),
            run: self.run.clone(),
            items: self.items.clone(),
            all,
        }
    }
}

#[derive(Debug, Args)]
pub struct DraftsListArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Print JSON (an array of `{venture, block, name, description, page, line, run}`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DraftsDecideArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Every draft of the graph (when no other selection is given).
    #[arg(long)]
    pub all: bool,
    /// Print the change as a diff instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON (`{drafts, pages}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The flags `preview` and `generate` share: which venture, how many items, which model.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The venture (case-insensitive); a new one needs --brief or --brief-file.
    #[arg(long)]
    pub venture: String,
    /// What the venture is about (creates the venture when it is new).
    #[arg(long, conflicts_with = "brief_file")]
    pub brief: Option<String>,
    /// Read the brief from a file.
    #[arg(long, value_name = "FILE")]
    pub brief_file: Option<PathBuf>,
    /// How many items per block [config: generate.count].
    #[arg(long)]
    pub count: Option<usize>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Which model a command asks.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// `local` or a provider preset of the config [default: openai with a key, else local].
    #[arg(long)]
    pub provider: Option<String>,
    /// The model (for `local`, a GGUF file).
    #[arg(long)]
    pub model: Option<String>,
}

impl RequestArgs {
    /// The brief from `--brief-file` or `--brief`.
    fn brief(&self) -> anyhow::Result<Option<String>> {
        let brief = match &self.brief_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading the brief file {}", file.display()))?,
            ),
            None => self.brief.clone(),
        };
        if brief.as_deref().is_some_and(|text| text.trim().is_empty()) {
            anyhow::bail!(
                "the brief is empty: say in a sentence or two what the venture does (--brief TEXT or --brief-file FILE), or leave it out for a venture of the graph"
            );
        }
        Ok(brief)
    }

    /// The request these arguments make, for `blocks`.
    fn asking(&self, blocks: Vec<String>) -> anyhow::Result<Request> {
        Ok(Request {
            venture: self.venture.clone(),
            brief: self.brief()?,
            blocks,
            count: self.count,
            provider: self.model.provider.clone(),
            model: self.model.model.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// A block (id, title, last part of its id, their words, or its item class); repeat for
    /// several; all blocks when absent.
    #[arg(long = "block")]
    pub blocks: Vec<String>,
    /// Write nothing: print the drafts and the change to the graph as a diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the venture's earlier unaccepted drafts of a block (by default they are replaced).
    #[arg(long)]
    pub append: bool,
    /// Ask the model even when the cache has the answer (fresh answers are still cached).
    #[arg(long)]
    pub no_cache: bool,
    /// Print JSON (`{run_id, drafts, failed}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// The block: its id, its title, the last part of its id, their words (`profile id`), or its
    /// item class, when unique.
    #[arg(long)]
    pub block: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of a table (the keys are listed in the README).
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The tracing filter the verbosity flags ask for (`RUST_LOG` wins when set).
    pub fn log_filter(&self) -> &'static str {
        // async-openai warns about every 5xx itself; `llm::openai` says what happened and what
        // it does about it (a retry, a weaker response_format), once.
        match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn,async_openai=error",
            (false, 1) => "info,async_openai=error",
            (false, 2) => "debug",
            (false, _) => "trace",
        }
    }
}

/// Run one command; errors are input errors (exit code 2) unless a command says otherwise.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_file = cli
        .config
        .clone()
        .or_else(|| config::env_var("INNCOPILOT_CONFIG").map(PathBuf::from));
    let settings = Settings::load(config_file.as_deref())?;
    if let Command::Config(args) = &cli.command {
        let output = match args.json {
            true => serde_json::to_string_pretty(&settings.effective)? + "\n",
            false => format!(
                "# inncopilot's effective settings: the built-in defaults{}, then INNCOPILOT_* variables.\n# Any key here may be set in a --config file or as INNCOPILOT_<SECTION>_<KEY>.\n\n{}",
                config_file
                    .as_ref()
                    .map(|file| format!(", then {}", file.display()))
                    .unwrap_or_default(),
                toml::to_string(&settings.effective)?
            ),
        };
        emit(&output);
        return Ok(ExitCode::SUCCESS);
    }
    let graph_path = cli.graph.clone().unwrap_or(settings.graph.path.clone());
    let graph = Graph::load(&graph_path)
        .with_context(|| format!("reading the graph at {}", graph_path.display()))?;
    if tracing::enabled!(tracing::Level::INFO) {
        for warning in &graph.warnings {
            tracing::warn!("{warning}");
        }
    } else {
        for line in report::warning_summary(&graph.warnings) {
            tracing::warn!("{line}");
        }
    }
    tracing::info!(
        pages = graph.pages.len(),
        blocks = graph.blocks.len(),
        "read graph {}",
        graph_path.display()
    );
    let output = match &cli.command {
        Command::Generate(args) => return generate(&cli, args, &settings, graph),
        Command::Enrich(args) => return enrich(&cli, args, settings, graph),
        Command::Serve(args) => return serve(&cli, args, settings, graph),
        Command::Runs(args) => runs(&graph, args)?,
        Command::Drafts(DraftsCommand::List(args)) => {
            let drafts = writeback::list(&graph, &args.selection.selection(false))?;
            if args.json {
                serde_json::to_string_pretty(&drafts)? + "\n"
            } else {
                match drafts.is_empty() {
                    true => "no drafts\n".to_string(),
                    false => report::drafts_text(&drafts),
                }
            }
        }
        Command::Drafts(DraftsCommand::Accept(args)) => {
            decide(&graph_path, args, Decision::Accept)?
        }
        Command::Drafts(DraftsCommand::Reject(args)) => {
            decide(&graph_path, args, Decision::Reject)?
        }
        Command::Preview(args) => preview(&cli, args, &settings, &graph)?,
        Command::Blocks(args) if args.json => report::blocks_json(&graph)? + "\n",
        Command::Blocks(_) => report::blocks_table(&graph),
        Command::Ventures(args) if args.json => report::ventures_json(graph.ventures())? + "\n",
        Command::Ventures(_) => report::ventures_table(graph.ventures()),
        Command::Config(_) => String::new(),
    };
    emit(&output);
    Ok(ExitCode::SUCCESS)
}

/// `drafts accept|reject`: under the graph's lock, on the graph as it is on disk now.
fn decide(
    graph_path: &std::path::Path,
    args: &DraftsDecideArgs,
    decision: Decision,
) -> anyhow::Result<String> {
    let selection = args.selection.selection(args.all);
    let decided = writeback::decide_on_disk(graph_path, &selection, decision, args.dry_run)?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&decided)? + "\n");
    }
    let mut out = format!(
        "{} {} draft item(s)\n",
        decision.verb(args.dry_run),
        decided.drafts.len()
    ) + &report::drafts_text(&decided.drafts);
    if let Some(diff) = &decided.diff {
        out.push_str("\nwould change (--dry-run, nothing written):\n");
        out.push_str(diff);
    } else if !decided.pages.is_empty() {
        let pages = &decided.pages;
        out.push_str(&match pages.len() {
            1..=5 => format!("changed {}\n", pages.join(", ")),
            many => format!(
                "changed {many} pages: {}, ... (--json lists them all)\n",
                pages[..3].join(", ")
            ),
        });
    }
    Ok(out)
}

/// The prompt library, with the overrides folder of `--prompts` or `prompts.dir`.
fn library(cli: &Cli, settings: &Settings) -> anyhow::Result<Library> {
    let prompts_dir = cli.prompts.clone().or_else(|| {
        (!settings.prompts.dir.as_os_str().is_empty()).then(|| settings.prompts.dir.clone())
    });
    Ok(Library::new(prompts_dir.as_deref())?)
}

fn generate(
    cli: &Cli,
    args: &GenerateArgs,
    settings: &Settings,
    graph: Graph,
) -> anyhow::Result<ExitCode> {
    let request = args.request.asking(args.blocks.clone())?;
    let options = crate::generate::Options {
        dry_run: args.dry_run,
        append: args.append,
        cancel: None,
    };
    let library = library(cli, settings)?;
    let engine = crate::generate::engine(
        Arc::new(graph),
        Arc::new(settings.clone()),
        Arc::new(library),
        args.request.model.provider.as_deref(),
        args.request.model.model.as_deref(),
        Arc::new(config::env_var),
        !args.no_cache,
    )?;
    announce_local(
        cli,
        settings,
        args.request.model.provider.as_deref(),
        &engine,
    );
    let engine = Arc::new(match args.dry_run {
        true => engine.dry_run(),
        false => engine,
    });
    let progress = progress_bar(cli.quiet);
    let runtime = runtime()?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<crate::run::Event>();
    let shown = progress.clone();
    let listener = runtime.spawn(async move {
        let mut pieces = 0_u64;
        while let Some(event) = receiver.recv().await {
            match event.kind {
                EventKind::Attempt { attempt, cached } => {
                    pieces = 0;
                    let source = if cached { "from cache" } else { "asking" };
                    shown.set_message(format!("{}: attempt {attempt}, {source}", event.block));
                }
                EventKind::Piece { .. } => {
                    pieces += 1;
                    shown.set_position(pieces);
                }
                EventKind::Done { items, wanted, .. } => {
                    shown.println(format!("{}: {items} of {wanted} item(s)", event.block))
                }
            }
        }
    });
    let report = runtime.block_on(async {
        let report = crate::generate::run(engine, &request, &options, Events::new(sender)).await;
        let _ = listener.await;
        report
    });
    progress.finish_and_clear();
    let report = report?;
    match args.json {
        true => emit_json(&report)?,
        false => emit(&report::generate_text(&report)),
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_FAILED)
    })
}

fn enrich(
    cli: &Cli,
    args: &EnrichArgs,
    mut settings: Settings,
    graph: Graph,
) -> anyhow::Result<ExitCode> {
    if let Some(budget) = args.budget {
        anyhow::ensure!(
            budget.is_finite() && budget >= 0.0,
            "--budget must be a number of USD, 0 or more (0: no budget)"
        );
        settings.generate.budget_usd = budget;
    }
    anyhow::ensure!(
        !args.no_live || args.batch_import.is_some() || args.batch_collect.is_some(),
        "--no-live goes with --batch-import or --batch-collect"
    );
    let concurrency = args.concurrency.unwrap_or(settings.enrich.concurrency);
    anyhow::ensure!(concurrency >= 1, "--concurrency must be 1 or more");
    let library = library(cli, &settings)?;
    let budget = settings.generate.budget_usd;
    let engine = crate::generate::engine(
        Arc::new(graph),
        Arc::new(settings.clone()),
        Arc::new(library),
        args.model.provider.as_deref(),
        args.model.model.as_deref(),
        Arc::new(config::env_var),
        !args.no_cache,
    )?;
    announce_local(cli, &settings, args.model.provider.as_deref(), &engine);
    let engine = match args.dry_run {
        true => engine.dry_run(),
        false => engine,
    };
    let selection = crate::run::plan::Selection {
        ventures: args.ventures.clone(),
        blocks: args.blocks.clone(),
        min_items: args.min_items,
        force: args.force,
        count: args.count.unwrap_or(settings.generate.count),
    };
    // Batch files go without estimates too: `batch_lines` renders each request it writes.
    let plan = match args.plan {
        true => crate::enrich::plan(&engine, &selection)?,
        false => crate::enrich::plan_for_budget(&engine, &selection, budget)?,
    };
    if args.plan {
        let output = match args.json {
            true => serde_json::to_string_pretty(&plan)? + "\n",
            false => report::plan_text(&plan),
        };
        emit(&output);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.batch_export {
        let lines = crate::enrich::batch_lines(&engine, &plan)?;
        let mut text = String::new();
        for line in &lines {
            text.push_str(&serde_json::to_string(line)?);
            text.push('\n');
        }
        crate::fsutil::write_atomic(file, text.as_bytes())
            .with_context(|| format!("writing {}", file.display()))?;
        emit(&format!(
            "wrote {} request(s) of {} planned pair(s) to {} (the pairs that wait for no other; the rest go in the next export)\nrun it: OpenAI's Batch API (upload, then create a batch with endpoint /v1/chat/completions), or vLLM: python -m vllm.entrypoints.openai.run_batch -i {} -o results.jsonl --model MODEL\n",
            lines.len(),
            plan.pairs.len(),
            file.display(),
            file.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    crate::enrich::check_budget(&plan, budget)?;
    if plan.pairs.is_empty() {
        emit(&report::plan_text(&plan));
        return Ok(ExitCode::SUCCESS);
    }
    if !plan.name_only_ventures.is_empty() && !cli.quiet {
        tracing::warn!(
            "{} venture(s) are known by name only (no brief, no items): their drafts stand on the name alone; a brief page (`type:: venture`) improves them",
            plan.name_only_ventures.len()
        );
    }
    let mut request = crate::enrich::EnrichRequest {
        selection,
        concurrency,
        retry_failed: args.retry_failed,
        dry_run: args.dry_run,
        no_live: args.no_live,
        ..Default::default()
    };
    let runtime = runtime()?;
    if args.batch_submit {
        let (id, requests) = runtime.block_on(crate::enrich::batch_submit(&engine, &plan))?;
        emit(&format!(
            "submitted batch {id}: {requests} request(s) of {} planned pair(s)\nwhen it is done (OpenAI: within 24 h): inncopilot enrich --batch-collect {id} (with the same --venture/--block/--count as now)\n",
            plan.pairs.len()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let results = match (&args.batch_import, &args.batch_collect) {
        (Some(file), _) => Some((
            file.display().to_string(),
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the batch results {}", file.display()))?,
        )),
        (None, Some(id)) => {
            let id = Some(id.as_str()).filter(|id| !id.is_empty());
            let poll = std::time::Duration::from_secs(args.poll_seconds.max(1));
            let (id, text) = runtime.block_on(crate::enrich::batch_collect(&engine, id, poll))?;
            Some((format!("batch {id}"), text))
        }
        (None, None) => None,
    };
    if let Some((source, text)) = results {
        let (answers, problems) = crate::enrich::read_batch_results(&text, &plan);
        for problem in &problems {
            tracing::warn!("{source}: {problem}");
        }
        if !cli.quiet {
            eprintln!(
                "{source}: {} answer(s) for {} planned pair(s), {} line(s) unusable",
                answers.len(),
                plan.pairs.len(),
                problems.len()
            );
        }
        request.imported = answers;
    }
    let pairs = plan.pairs.len() as u64;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<crate::run::Event>();
    let progress = enrich_progress(cli.quiet, pairs);
    let shown = progress.clone();
    let listener = runtime.spawn(async move {
        let (mut done, mut cached, mut failed, mut tokens, mut cost) = (0, 0, 0, 0_u64, 0.0);
        // A failure with the cause of the one before is not said again: the requests out when
        // a refused key stops the run fail alike, up to --concurrency of them.
        let mut last_failure: Option<crate::run::Failure> = None;
        while let Some(event) = receiver.recv().await {
            let EventKind::Done {
                items,
                wanted,
                cached: from_cache,
                tokens: used,
                cost_usd,
                failure,
            } = event.kind
            else {
                continue;
            };
            done += 1;
            cached += usize::from(from_cache);
            failed += usize::from(failure.is_some());
            tokens += used.prompt_tokens + used.completion_tokens;
            cost += cost_usd;
            let said = match failure {
                Some(failure) => {
                    let again = last_failure.as_ref().is_some_and(|last| {
                        last.kind
                            .same_cause(&last.message, failure.kind, &failure.message)
                    });
                    let said = match again {
                        true => " (failed: as the failed pair before)".to_string(),
                        false => format!(" (failed: {failure})"),
                    };
                    last_failure = Some(failure);
                    said
                }
                None => String::new(),
            };
            let line = format!(
                "[{done}/{pairs}] {} / {}: {items} of {wanted} item(s){}{said}",
                event.venture,
                event.block,
                if from_cache { ", from cache" } else { "" },
            );
            match &shown {
                PairProgress::Bar(bar) => {
                    bar.set_position(done as u64);
                    bar.set_message(format!(
                        "{cached} from cache, {failed} failed, {tokens} tokens, ${cost:.4}"
                    ));
                    bar.println(line);
                }
                PairProgress::Lines => eprintln!("{line}"),
                PairProgress::Quiet => {}
            }
        }
    });
    let report = runtime.block_on(async {
        let report =
            crate::enrich::run(Arc::new(engine), plan, &request, Events::new(sender)).await;
        let _ = listener.await;
        report
    });
    if let PairProgress::Bar(bar) = progress {
        bar.finish_and_clear();
    }
    let report = report?;
    match args.json {
        true => emit_json(&report)?,
        false => emit(&report::enrich_text(&report)),
    }
    Ok(match report.failed.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(EXIT_SOME_FAILED),
    })
}

/// How `enrich` shows its progress on stderr.
#[derive(Clone)]
enum PairProgress {
    /// `--quiet`.
    Quiet,
    /// stderr is not a terminal: a plain line per pair.
    Lines,
    /// A bar: pairs done, from cache, failed, tokens, cost, ETA.
    Bar(indicatif::ProgressBar),
}

fn enrich_progress(quiet: bool, pairs: u64) -> PairProgress {
    use std::io::IsTerminal;
    if quiet {
        return PairProgress::Quiet;
    }
    if !std::io::stderr().is_terminal() {
        return PairProgress::Lines;
    }
    let bar = indicatif::ProgressBar::new(pairs);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} pairs, {msg} ({elapsed}, ETA {eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    PairProgress::Bar(bar)
}

fn serve(
    cli: &Cli,
    args: &ServeArgs,
    settings: Settings,
    graph: Graph,
) -> anyhow::Result<ExitCode> {
    let library = library(cli, &settings)?;
    let token = config::env_var("INNCOPILOT_SERVE_TOKEN").filter(|token| !token.is_empty());
    let state = Arc::new(crate::serve::State::new(
        graph,
        Arc::new(settings),
        Arc::new(library),
        Arc::new(config::env_var),
        token,
    ));
    let options = crate::serve::Options {
        bind: args.bind,
        cors: args.cors.clone(),
        grace: std::time::Duration::from_secs(args.grace_seconds),
        body_limit: args.body_limit_kib.max(1) * 1024,
    };
    runtime()?.block_on(crate::serve::serve(state, options))?;
    Ok(ExitCode::SUCCESS)
}

/// `runs` and `runs show ID`.
fn runs(graph: &Graph, args: &RunsArgs) -> anyhow::Result<String> {
    use crate::run::journal;
    match &args.command {
        None => {
            let runs = journal::runs_as_seen(&graph.root)?;
            Ok(match args.json {
                true => serde_json::to_string_pretty(&runs)? + "\n",
                false => report::runs_table(&runs),
            })
        }
        Some(RunsCommand::Show { id, json }) => {
            let (run, pairs) = journal::run_as_seen(&graph.root, id, true)?.with_context(|| {
                format!("no run `{id}` in the journal of this graph (`inncopilot runs` lists them)")
            })?;
            Ok(match *json || args.json {
                true => {
                    serde_json::to_string_pretty(&serde_json::json!({"run": run, "pairs": pairs}))?
                        + "\n"
                }
                false => report::run_pairs_table(&run, &pairs),
            })
        }
    }
}

/// Say on stderr when the embedded model was chosen because no API key is set.
fn announce_local(cli: &Cli, settings: &Settings, flag: Option<&str>, engine: &crate::run::Engine) {
    let chosen_by_default = flag.is_none() && settings.generate.provider.is_empty();
    if !cli.quiet && chosen_by_default && engine.provider.name() == "local" {
        let variable = settings
            .providers
            .get("openai")
            .map_or("OPENAI_API_KEY", |openai| openai.api_key_env.as_str());
        eprintln!(
            "{variable} is not set: using the embedded model {} (set it, or pass --provider, for a remote model)",
            engine.provider.model()
        );
    }
}

/// Print a command's output on stdout; a reader that went away (`| head -1`) ends it quietly.
fn emit(output: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush());
}

/// `value` as pretty JSON on stdout, written as it is serialised: a report of thousands of
/// drafts made into one string first was the peak of an `enrich --json` run's memory. A closed
/// stdout ends quietly, as with [`emit`].
fn emit_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    // A run's report is megabytes: written a quarter of one at a time, not 8 KB.
    let mut stdout = std::io::BufWriter::with_capacity(1 << 18, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("writing the report to stdout"))
        }
        _ => Ok(()),
    }
}

/// The async runtime of a command that asks a model.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work (the service's page reads and prompt renders) on two cores gains
        // nothing from hundreds of threads.
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A spinner on stderr with the pieces received so far; hidden when stderr is not a terminal.
fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({pos} pieces, {elapsed})")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn preview(
    cli: &Cli,
    args: &PreviewArgs,
    settings: &Settings,
    graph: &Graph,
) -> anyhow::Result<String> {
    let request = args.request.asking(vec![args.block.clone()])?;
    let library = library(cli, settings)?;
    let preview = pipeline::preview(graph, settings, &library, &request, config::env_var)?;
    if args.json {
        Ok(serde_json::to_string_pretty(&preview.report())? + "\n")
    } else {
        Ok(report::preview_text(&preview))
    }
}
