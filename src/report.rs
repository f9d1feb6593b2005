//! What commands print: the JSON shapes of the output contract (PRODUCT.md section 9) and the
//! readable tables shown without `--json`. Pure functions from graph types to text.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::generate::{Draft, Failed, RunReport};
use crate::graph::{Block, Graph, Key, Tool, Venture, Warning, WarningKind};
use crate::pipeline::Preview;
use crate::run::FailureKind;
use crate::run::journal::{PairRecord, RunRecord};
use crate::run::plan::Plan;
use crate::writeback::ListedDraft;

/// One block in `blocks --json`.
#[derive(Debug, Serialize)]
pub struct BlockReport<'g> {
    pub id: &'g str,
    pub title: &'g str,
    pub page: &'g str,
    pub item_class: Option<&'g str>,
    pub definition: &'g str,
    pub preamble: Option<&'g str>,
    pub questions: &'g [String],
    pub keys: &'g [Key],
    pub relations: &'g [String],
    pub weight: Option<f64>,
    pub description: &'g str,
    pub topics: &'g [String],
    pub tools: &'g [Tool],
    pub properties: Map<String, Value>,
    /// Venture name -> its items for this block, in page order.
    pub examples: Map<String, Value>,
}

impl<'g> BlockReport<'g> {
    pub fn new(block: &'g Block) -> Self {
        let mut examples = Map::new();
        for example in &block.examples {
            let items = examples
                .entry(example.venture.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = items {
                let mut item = json!({ "name": example.name, "description": example.description });
                if example.draft
                    && let Value::Object(fields) = &mut item
                {
                    fields.insert("draft".into(), Value::Bool(true));
                }
                items.push(item);
            }
        }
        BlockReport {
            id: &block.id,
            title: &block.title,
            page: &block.page,
            item_class: block.item_class.as_deref(),
            definition: &block.definition,
            preamble: block.preamble.as_deref(),
            questions: &block.questions,
            keys: &block.keys,
            relations: &block.relations,
            weight: block.weight,
            description: &block.description,
            topics: &block.topics,
            tools: &block.tools,
            properties: block
                .properties
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect(),
            examples,
        }
    }
}

/// The graph's warnings in one line per kind: how many, and the first. A real graph has
/// hundreds (a copied folder tree names every page twice), which buried the command's own
/// output; `-v` prints them all instead.
pub fn warning_summary(warnings: &[Warning]) -> Vec<String> {
    let mut by_kind: BTreeMap<WarningKind, (usize, &Warning)> = BTreeMap::new();
    for warning in warnings {
        by_kind.entry(warning.kind).or_insert((0, warning)).0 += 1;
    }
    by_kind
        .into_iter()
        .map(|(kind, (count, first))| {
            if count == 1 {
                return first.to_string();
            }
            let what = match kind {
                WarningKind::Unlisted => "entries of the graph folder could not be listed",
                WarningKind::Unreadable => "pages could not be read",
                WarningKind::NotText => "pages are not UTF-8 text",
                WarningKind::DuplicatePageName => "pages share their name with another page",
                WarningKind::MissingEmbed => "embedded pages are not in the graph",
                WarningKind::EmbedLoop => "embeds lead back to a page being read",
                WarningKind::UnresolvedRelation => "relations:: entries are not block pages",
            };
            format!("{count} {what} (first: {first}); -v lists them all")
        })
        .collect()
}

pub fn blocks_json(graph: &Graph) -> serde_json::Result<String> {
    let reports: Vec<BlockReport<'_>> = graph.blocks.iter().map(BlockReport::new).collect();
    serde_json::to_string_pretty(&reports)
}

pub fn ventures_json(ventures: &[Venture]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(ventures)
}

pub fn blocks_table(graph: &Graph) -> String {
    let rows = graph
        .blocks
        .iter()
        .map(|block| {
            let mut per_venture: Vec<(String, usize)> = Vec::new();
            for example in &block.examples {
                match per_venture
                    .iter_mut()
                    .find(|(venture, _)| venture.eq_ignore_ascii_case(&example.venture))
                {
                    Some((_, count)) => *count += 1,
                    None => per_venture.push((example.venture.clone(), 1)),
                }
            }
            let ventures = per_venture
                .iter()
                .map(|(venture, count)| format!("{venture} ({count})"))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                block.id.clone(),
                block.title.clone(),
                block.item_class.clone().unwrap_or_else(|| "-".into()),
                block.questions.len().to_string(),
                block.keys.len().to_string(),
                if ventures.is_empty() {
                    "-".into()
                } else {
                    ventures
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TITLE",
            "ITEM CLASS",
            "QUESTIONS",
            "KEYS",
            "VENTURES WITH EXAMPLES (ITEMS)",
        ],
        rows,
    )
}

pub fn ventures_table(ventures: &[Venture]) -> String {
    let rows = ventures
        .iter()
        .map(|venture| {
            let total: usize = venture.blocks.values().sum();
            let per_block = venture
                .blocks
                .iter()
                .map(|(block, count)| format!("{block} {count}"))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                venture.name.clone(),
                total.to_string(),
                venture.empty_canvases.to_string(),
                if per_block.is_empty() {
                    "-".into()
                } else {
                    per_block
                },
            ]
        })
        .collect();
    table(
        &["VENTURE", "ITEMS", "EMPTY CANVASES", "ITEMS PER BLOCK"],
        rows,
    )
}

/// Columns padded to their widest cell (the last one is not padded).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in &rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(column) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if column < last {
                let padding = widths[column] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `preview` without `--json`: a header, then each message and the schema.
pub fn preview_text(preview: &Preview) -> String {
    let report = preview.report();
    let mut out = String::new();
    let venture = if report.new_venture {
        format!("{} (new)", report.venture)
    } else {
        report.venture.to_string()
    };
    let provider = match report.base_url {
        Some(url) => format!("{} ({}, {url})", report.provider, report.model),
        None => format!("{} ({})", report.provider, report.model),
    };
    let rows = [
        ("block", report.block.to_string()),
        ("venture", venture),
        ("provider", provider),
        (
            "params",
            format!(
                "temperature {}, max_tokens {}, seed {}",
                report.params.temperature, report.params.max_tokens, report.params.seed
            ),
        ),
        (
            "prompt tokens",
            format!(
                "{} ({})",
                report.estimated_prompt_tokens, report.token_estimate
            ),
        ),
        (
            "cost",
            format!(
                "${:.6} (prompt + about {} output tokens)",
                report.estimated_cost_usd, preview.expected_output_tokens
            ),
        ),
        ("templates", report.templates.join(", ")),
        ("schema", report.schema_file.to_string()),
    ];
    for (label, value) in rows {
        out.push_str(&format!("{label:<14} {value}\n"));
    }
    for message in report.messages {
        out.push_str(&format!(
            "\n--- {} ---\n{}\n",
            message.role.as_str(),
            message.content
        ));
    }
    out.push_str(&format!(
        "\n--- schema ---\n{}\n",
        serde_json::to_string_pretty(report.schema).unwrap_or_default()
    ));
    out
}

/// `generate` as text: per block, the items and how they were made; then the failures and a
/// summary with the next step.
pub fn generate_text(report: &RunReport) -> String {
    run_text(report, true)
}

/// `enrich` as text: one line per pair drafted (the items are in the graph and `drafts list`),
/// the failures, and a summary with the next step.
pub fn enrich_text(report: &RunReport) -> String {
    run_text(report, false)
}

fn run_text(report: &RunReport, items: bool) -> String {
    let mut out = format!(
        "run {}: {} ({})\n",
        report.run_id, report.provider, report.model
    );
    let price_known = report.totals.cost_usd.is_some();
    if !(items || report.draft_count() == 0) {
        out.push('\n');
    }
    for draft in report.each_draft() {
        let draft = match draft {
            Ok(draft) => draft,
            Err(error) => {
                out.push_str(&format!("{error}\n"));
                continue;
            }
        };
        if items {
            out.push('\n');
            out.push_str(&draft_text(&draft, report.diff.is_some(), price_known));
        } else {
            out.push_str(&draft_line(&draft, price_known));
        }
    }
    if !report.failed.is_empty() {
        out.push_str("\nfailed:\n");
        out.push_str(&failed_text(&report.failed));
    }
    if let Some(diff) = &report.diff {
        out.push_str("\nwould change (--dry-run, nothing written):\n");
        out.push_str(if diff.is_empty() { "  nothing\n" } else { diff });
    }
    out.push('\n');
    out.push_str(&summary_line(report, !items));
    out
}

/// Cost in USD, or `cost unknown` for a model without a price.
fn cost_text(cost: Option<f64>) -> String {
    match cost {
        Some(cost) => format!("${cost:.6}"),
        None => "cost unknown".to_string(),
    }
}

/// The failed pairs, one line per reason: pairs that share one are said once with their count
/// and the first few of them, not once per pair: those a stopped run did not start, and those
/// out when a refused key or an unreachable server stopped it (fatal failures are one reason
/// whatever their timings say). Pairs tried come before pairs not started.
fn failed_text(failed: &[Failed]) -> String {
    const NAMED: usize = 3;
    // Same cause means same kind (or both fatal): a group is all started or all not.
    let mut groups: Vec<Vec<&Failed>> = Vec::new();
    for each in failed {
        let same = |group: &&mut Vec<&Failed>| {
            (group[0].kind).same_cause(&group[0].reason, each.kind, &each.reason)
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.push(each),
            None => groups.push(vec![each]),
        }
    }
    groups.sort_by_key(|group| group[0].kind == FailureKind::NotAttempted);
    let name = |pair: &&Failed| format!("{} / {}", pair.venture, pair.block);
    let mut out = String::new();
    for pairs in groups {
        let (not_started, reason) = (pairs[0].kind == FailureKind::NotAttempted, &pairs[0].reason);
        let line = match (not_started, pairs.as_slice()) {
            (_, [one]) => format!("{}: {reason}", name(one)),
            (true, _) => format!("{} more pairs: {reason}", pairs.len()),
            (false, _) => {
                let named: Vec<String> = pairs.iter().take(NAMED).map(name).collect();
                let more = match pairs.len().saturating_sub(NAMED) {
                    0 => String::new(),
                    more => format!(" and {more} more"),
                };
                format!(
                    "{} pairs ({}{more}): {reason}",
                    pairs.len(),
                    named.join(", ")
                )
            }
        };
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The run in one line, and what to do next; `resumable` for a command whose stopped runs the
/// same command resumes (`enrich`).
fn summary_line(report: &RunReport, resumable: bool) -> String {
    let totals = &report.totals;
    let mut parts = vec![format!(
        "{} item(s) in {} of {} pair(s)",
        totals.items, totals.drafted, totals.pairs
    )];
    if totals.from_cache > 0 {
        parts.push(format!("{} from cache", totals.from_cache));
    }
    if totals.resumed > 0 {
        // Pairs an earlier try of the run failed are not asked again unless --retry-failed.
        parts.push(format!(
            "{} done or failed by an earlier try",
            totals.resumed
        ));
    }
    if totals.failed > 0 {
        parts.push(format!("{} failed", totals.failed));
    }
    parts.push(format!(
        "{} + {} tokens",
        totals.tokens.prompt_tokens, totals.tokens.completion_tokens
    ));
    parts.push(cost_text(totals.cost_usd));
    parts.push(format!("{:.1} s", totals.seconds));
    let next = match (report.diff.is_some(), totals.items > 0) {
        (true, _) => "nothing was written (--dry-run)".to_string(),
        (false, true) => format!(
            "next: inncopilot drafts list --run {id}, then drafts accept --run {id} or drafts reject --run {id}",
            id = report.run_id
        ),
        (false, false) => "nothing was written".to_string(),
    };
    // Pairs not started are in `totals.failed` too: only the others need --retry-failed.
    let not_started = |each: &Failed| each.kind == FailureKind::NotAttempted;
    let skipped = report.failed.iter().any(not_started);
    let failed = !report.failed.iter().all(not_started);
    let resume = match (resumable, skipped, failed) {
        (false, _, _) | (true, false, false) => "",
        (true, true, false) => "\nthe run stopped: the same command resumes it",
        (true, true, true) => {
            "\nthe run stopped: the same command resumes it (with --retry-failed it asks the failed pairs again)"
        }
        (true, false, true) => {
            "\nthe same command with --retry-failed asks the failed pairs again (and no other)"
        }
    };
    format!("{}\n{next}{resume}\n", parts.join(", "))
}

/// Draft items as text (`drafts list|accept|reject`): one line per item, with where it is.
pub fn drafts_text(drafts: &[ListedDraft]) -> String {
    let mut out = String::new();
    for draft in drafts {
        out.push_str(&format!(
            "{} / {}: {}  ({}:{}{})\n",
            draft.venture,
            draft.block,
            draft.name,
            draft.page,
            draft.line,
            draft
                .run
                .as_deref()
                .map(|run| format!(", run {run}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// One pair of an `enrich` run in one line.
fn draft_line(draft: &Draft, price_known: bool) -> String {
    let provenance = &draft.provenance;
    format!(
        "{} / {}: {} item(s), {} attempt(s){}, {} + {} tokens, {}, {:.1} s\n",
        draft.venture,
        draft.block,
        draft.items.len(),
        provenance.attempts,
        match provenance.cached_attempts {
            0 => String::new(),
            cached => format!(", {cached} from cache"),
        },
        provenance.tokens.prompt_tokens,
        provenance.tokens.completion_tokens,
        cost_text(price_known.then_some(provenance.cost_usd)),
        provenance.seconds,
    )
}

fn draft_text(draft: &Draft, dry_run: bool, price_known: bool) -> String {
    let provenance = &draft.provenance;
    let cached = if provenance.cached_attempts > 0 {
        format!(", {} from cache", provenance.cached_attempts)
    } else {
        String::new()
    };
    let mut out = format!(
        "{} / {}: {} item(s), {} attempt(s){cached}, {} + {} tokens, {}, {:.1} s\n",
        draft.venture,
        draft.block,
        draft.items.len(),
        provenance.attempts,
        provenance.tokens.prompt_tokens,
        provenance.tokens.completion_tokens,
        cost_text(price_known.then_some(provenance.cost_usd)),
        provenance.seconds,
    );
    if let Some(summary) = crate::generate::junk_summary(&provenance.junk) {
        out.push_str(&format!("  junk rejected (re-asked): {summary}\n"));
    }
    if let Some(summary) = crate::generate::junk_summary(&provenance.taken_back) {
        out.push_str(&format!("  junk taken back while written: {summary}\n"));
    }
    if !draft.pages.is_empty() {
        let verb = if dry_run {
            "would go into"
        } else {
            "written into"
        };
        out.push_str(&format!("  {verb} {}\n", draft.pages.join(", ")));
    }
    if let Some(path) = &draft.written_to {
        out.push_str(&format!("  draft file {path}\n"));
    }
    for item in &draft.items {
        out.push_str(&format!("  - {}\n", item.name));
        if !item.description.is_empty() {
            out.push_str(&format!("      {}\n", item.description));
        }
        for (field, value) in &item.fields {
            let shown = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("      {field}: {shown}\n"));
        }
    }
    out
}

/// `enrich --plan` as text: the pairs by wave, and the totals.
pub fn plan_text(plan: &Plan) -> String {
    let rows = plan
        .pairs
        .iter()
        .map(|pair| {
            vec![
                pair.wave.to_string(),
                pair.venture.clone(),
                pair.block.clone(),
                pair.existing.to_string(),
                pair.count.to_string(),
                pair.prompt_tokens.to_string(),
                cost_text(pair.cost_usd),
            ]
        })
        .collect();
    let mut out = format!("plan: {} ({})\n", plan.provider, plan.model);
    if plan.pairs.is_empty() {
        out.push_str("no pair needs items (see --min-items and --force)\n");
        return out;
    }
    out.push_str(&table(
        &[
            "WAVE",
            "VENTURE",
            "BLOCK",
            "HAS",
            "ASK",
            "PROMPT TOKENS",
            "COST",
        ],
        rows,
    ));
    out.push_str(&format!(
        "{} pair(s) in {} wave(s), {} prompt + {} answer tokens (estimated), {}\n",
        plan.pairs.len(),
        plan.waves,
        plan.prompt_tokens,
        plan.output_tokens,
        cost_text(plan.cost_usd),
    ));
    if !plan.name_only_ventures.is_empty() {
        out.push_str(&format!(
            "{} venture(s) known by name only (no brief, no items): {}\n",
            plan.name_only_ventures.len(),
            plan.name_only_ventures.join(", ")
        ));
    }
    out
}

/// `runs` as a table, newest first.
pub fn runs_table(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs recorded\n".to_string();
    }
    let rows = runs
        .iter()
        .map(|run| {
            vec![
                run.id.clone(),
                run.command.clone(),
                run.state.clone(),
                format!("{}/{}", run.done, run.pairs),
                run.failed.to_string(),
                run.items.to_string(),
                format!(
                    "{}+{}",
                    run.tokens.prompt_tokens, run.tokens.completion_tokens
                ),
                format!("${:.6}", run.cost_usd),
                format!("{} ({})", run.provider, run.model),
            ]
        })
        .collect();
    table(
        &[
            "RUN", "COMMAND", "STATE", "DONE", "FAILED", "ITEMS", "TOKENS", "COST", "PROVIDER",
        ],
        rows,
    )
}

/// `runs show ID` as a table, in plan order.
pub fn run_pairs_table(run: &RunRecord, pairs: &[PairRecord]) -> String {
    let rows = pairs
        .iter()
        .map(|pair| {
            vec![
                pair.venture.clone(),
                pair.block.clone(),
                pair.state.clone(),
                pair.attempts.to_string(),
                pair.items.to_string(),
                format!(
                    "{}+{}",
                    pair.tokens.prompt_tokens, pair.tokens.completion_tokens
                ),
                format!("${:.6}", pair.cost_usd),
                pair.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "run {} ({}, {}): {}, started {}\n",
        run.id, run.command, run.provider, run.state, run.started_at
    ) + &table(
        &[
            "VENTURE", "BLOCK", "STATE", "ATTEMPTS", "ITEMS", "TOKENS", "COST", "REASON",
        ],
        rows,
    )
}
