//! The command line: flags, one variant per command, and what each command prints.
//!
//! stdout carries the command's output (a table, or JSON with `--json`); logs and warnings go
//! to stderr through `tracing`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Settings};
use crate::generate::{Event, GenerateRequest};
use crate::graph::Graph;
use crate::pipeline::{self, Request};
use crate::prompt::Library;
use crate::report;
use crate::writeback;

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
    /// The drafts in the graph: list them, accept them (they become ordinary content), or
    /// reject them (they are removed).
    #[command(subcommand)]
    Drafts(DraftsCommand),
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
        match &self.brief_file {
            Some(file) => {
                Ok(Some(std::fs::read_to_string(file).with_context(|| {
                    format!("reading the brief file {}", file.display())
                })?))
            }
            None => Ok(self.brief.clone()),
        }
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
    /// Print JSON (the shapes of PRODUCT.md section 9) instead of a table.
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
        Command::Generate(args) => return generate(&cli, args, &settings, &graph),
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
        Command::Ventures(args) if args.json => report::ventures_json(&graph.ventures())? + "\n",
        Command::Ventures(_) => report::ventures_table(&graph.ventures()),
    };
    print!("{output}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy)]
enum Decision {
    Accept,
    Reject,
}

/// `drafts accept|reject`: under the graph's lock, on the graph as it is on disk now.
fn decide(
    graph_path: &std::path::Path,
    args: &DraftsDecideArgs,
    decision: Decision,
) -> anyhow::Result<String> {
    let _lock = match args.dry_run {
        true => None,
        false => Some(writeback::GraphLock::acquire(graph_path)?),
    };
    let mut workspace = writeback::Workspace::load(graph_path)?;
    let selection = args.selection.selection(args.all);
    let (drafts, verb) = match decision {
        Decision::Accept => (writeback::accept(&mut workspace, &selection)?, "accepted"),
        Decision::Reject => (writeback::reject(&mut workspace, &selection)?, "rejected"),
    };
    let diff = workspace.diff()?;
    let pages = match args.dry_run {
        true => Vec::new(),
        false => workspace.commit()?,
    };
    if args.json {
        let mut value = serde_json::json!({"drafts": drafts, "pages": pages});
        if args.dry_run {
            value["diff"] = diff.into();
        }
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out =
        format!("{verb} {} draft item(s)\n", drafts.len()) + &report::drafts_text(&drafts);
    if args.dry_run {
        out.push_str("\nwould change (--dry-run, nothing written):\n");
        out.push_str(&diff);
    } else if !pages.is_empty() {
        out.push_str(&format!("changed {}\n", pages.join(", ")));
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
    graph: &Graph,
) -> anyhow::Result<ExitCode> {
    let request = GenerateRequest {
        venture: args.request.venture.clone(),
        brief: args.request.brief()?,
        blocks: args.blocks.clone(),
        count: args.request.count,
        provider: args.request.provider.clone(),
        model: args.request.model.clone(),
        use_cache: !args.no_cache,
        dry_run: args.dry_run,
        append: args.append,
    };
    let library = library(cli, settings)?;
    let (provider, _) = crate::llm::choose(
        settings,
        args.request.provider.as_deref(),
        args.request.model.as_deref(),
        config::env_var,
    )?;
    let chosen_by_default =
        args.request.provider.is_none() && settings.generate.provider.is_empty();
    if !cli.quiet && chosen_by_default && provider.name() == "local" {
        let variable = settings
            .providers
            .get("openai")
            .map_or("OPENAI_API_KEY", |openai| openai.api_key_env.as_str());
        eprintln!(
            "{variable} is not set: using the embedded model {} (set it, or pass --provider, for a remote model)",
            provider.model()
        );
    }
    let progress = progress_bar(cli.quiet);
    let pieces = std::sync::atomic::AtomicUsize::new(0);
    let events = |event: Event<'_>| match event {
        Event::Attempt {
            block,
            attempt,
            cached,
        } => {
            pieces.store(0, std::sync::atomic::Ordering::Relaxed);
            let source = if cached { "from cache" } else { "asking" };
            progress.set_message(format!("{block}: attempt {attempt}, {source}"));
        }
        Event::Piece(_) => {
            let count = pieces.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress.set_position(count as u64);
        }
        Event::Done {
            block,
            items,
            wanted,
        } => progress.println(format!("{block}: {items} of {wanted} item(s)")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(crate::generate::run(
        graph,
        settings,
        &library,
        &request,
        &config::env_var,
        &events,
    ));
    progress.finish_and_clear();
    let report = report?;
    let output = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report::generate_text(&report)
    };
    print!("{output}");
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_FAILED)
    })
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
    let brief = args.request.brief()?;
    let library = library(cli, settings)?;
    let request = Request {
        venture: args.request.venture.clone(),
        brief,
        block: args.block.clone(),
        count: args.request.count,
        provider: args.request.provider.clone(),
        model: args.request.model.clone(),
    };
    let preview = pipeline::preview(graph, settings, &library, &request, config::env_var)?;
    if args.json {
        Ok(serde_json::to_string_pretty(&preview.report())? + "\n")
    } else {
        Ok(report::preview_text(&preview))
    }
}
