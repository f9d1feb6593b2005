//! Running a plan: pairs start as tasks, up to the allowed concurrency, each once the pairs of
//! its venture that its prompt reads are finished; one [`Writer`] takes every finished draft
//! into the graph, the draft files and the journal, one pair at a time.
//!
//! A fatal model failure (a refused key, no quota, an unknown model) or the budget stops the
//! run: pairs in flight finish and are written, the rest are recorded as not attempted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::job::{self, Answers, PairOutcome, Slot};
use super::journal::{Journal, PairRecord, RunStart};
use super::plan::PlannedPair;
use super::{
    DraftSpool, Engine, Error, EventKind, Events, Failed, Failure, FailureKind, RunReport, Spooled,
    Totals, WrittenDrafts,
};
use crate::cache::Cache;
use crate::fsutil::{FileWrite, write_atomic_all};
use crate::graph::Graph;
use crate::llm::Completion;
use crate::prompt::{VentureInput, context};
use crate::writeback::{self, DraftSet, GraphLock, Workspace};

/// What to run.
pub struct RunSpec {
    pub run_id: String,
    /// `generate` or `enrich`.
    pub command: String,
    /// What the run was asked, as JSON: a run asked the same is resumed.
    pub args: String,
    /// In plan order.
    pub pairs: Vec<PlannedPair>,
    /// The ventures of the pairs, by name as the pairs spell it.
    pub ventures: BTreeMap<String, VentureInput>,
    /// A new venture's brief, written on a page of its own with its first drafts.
    pub briefs: BTreeMap<String, String>,
    pub concurrency: usize,
    /// Keep the venture's earlier unaccepted drafts of a block (replaced otherwise).
    pub append: bool,
    /// Stop at any model failure (`generate`), not only at fatal ones (`enrich`).
    pub stop_on_model_error: bool,
    /// Pairs a resumed run finished already (they are skipped).
    pub skip: BTreeSet<(String, String)>,
    /// Pairs an earlier try of the run failed, asked again (`--retry-failed`), with the attempts
    /// that try made: they are asked with seeds those attempts did not use.
    pub retry: BTreeMap<(String, String), u32>,
    /// Answers to pairs' first requests given by a Batch API result file.
    pub imported: BTreeMap<(String, String), Completion>,
    /// Ask the model for what the cache and the imported answers do not give.
    pub live: bool,
    /// Becomes `true` to cancel: pairs in flight finish and are written, no other starts.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// The report reads written drafts back from a spool instead of holding them
    /// ([`RunReport::written`]): what `enrich` does, whose runs have thousands of pairs.
    /// A dry run writes no file and holds its drafts anyway.
    pub report_files: bool,
}

/// The one writer of a run: holds the graph's lock (unless it is a dry run), the graph as it
/// will be, and the journal.
pub struct Writer {
    _lock: Option<GraphLock>,
    workspace: Workspace,
    journal: Option<Arc<Journal>>,
    drafts_dir: PathBuf,
    dry_run: bool,
    /// Where the pairs' answers are stored (the engine's: read-only in a dry run).
    cache: Cache,
    /// The JSON of the drafts written, for the report ([`RunSpec::report_files`]).
    spool: Option<DraftSpool>,
    /// The run's record, for the journal with the first batch: the first requests need not
    /// wait for the disk.
    start: Option<Start>,
    /// How the run ended, for the journal with the batch that is its last (the run's end
    /// waits for the disk once, not twice); `ended` once recorded.
    ending: Option<&'static str>,
    ended: bool,
    /// Time spent writing (the run's own overhead per pair, besides the model's time).
    seconds: f64,
}

/// A finished pair on its way into the graph, and back with its draft's pages and the
/// failure writing it may add.
struct ToWrite {
    index: usize,
    venture: String,
    block: String,
    outcome: PairOutcome,
    /// Where its draft file's JSON is in the run's spool, once written.
    spooled: Option<Spooled>,
}

/// A run as the journal records it when it starts, with its pairs in plan order.
struct Start {
    run: RunStart,
    pairs: Vec<(String, String)>,
}

/// What every pair of a run is written with.
#[derive(Clone)]
struct Marks {
    run_id: String,
    generated_by: String,
    append: bool,
    /// New ventures' briefs, written on a page of their own with their first drafts.
    briefs: Arc<BTreeMap<String, String>>,
}

impl Writer {
    /// Take the graph's lock and open its journal; with `dry_run`, neither: nothing at all is
    /// written. A graph without a journal gets one with the run's first record: creating it
    /// waits for the disk several times (~7 ms), and the first requests need not wait for that.
    pub fn open(engine: &Engine, dry_run: bool) -> Result<Writer, Error> {
        let root = &engine.graph.root;
        let lock = match dry_run {
            true => None,
            false => Some(GraphLock::acquire(root)?),
        };
        let journal = match dry_run {
            true => None,
            false => match Journal::open_existing(root)? {
                Some(journal) => {
                    // We hold the lock: a run recorded as running died with its process.
                    journal.mark_interrupted()?;
                    Some(Arc::new(journal))
                }
                None => None,
            },
        };
        // The graph the engine read, unless a page file changed since (another process's run,
        // an edit in Logseq): looked at now that the lock is ours. Its pages are shared until
        // the writer changes them, where a second reading held a copy of every page.
        let workspace = match engine.graph.unchanged_on_disk() {
            true => Workspace::of(Graph::clone(&engine.graph)),
            false => Workspace::load(root)?,
        };
        Ok(Writer {
            _lock: lock,
            workspace,
            journal,
            drafts_dir: super::state_dirs(&engine.settings, root).1,
            dry_run,
            cache: engine.cache.clone(),
            spool: None,
            start: None,
            ending: None,
            ended: false,
            seconds: 0.0,
        })
    }

    /// The graph's journal, when it has one yet (never in a dry run).
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_deref()
    }

    /// Write finished pairs: every draft into the graph (one commit for all, or kept in the
    /// workspace for the diff of a dry run), each JSON draft file flushed with the pages, then
    /// every pair's journal record in one transaction. A draft the graph cannot take is its
    /// pair's failure and leaves the others be; nothing of it reaches the disk.
    ///
    /// Writing pairs together waits for the disk once per batch instead of several times per
    /// pair: at 128 pairs in flight, one at a time took 2.4 to 3 ms per pair and held the run.
    ///
    /// `started` are pairs started since the last batch: the journal records them as running
    /// in the same transaction (here, so that the scheduler never waits for the disk).
    fn write_batch(
        &mut self,
        marks: &Marks,
        started: &[(String, String)],
        mut batch: Vec<ToWrite>,
    ) -> Result<Vec<ToWrite>, Error> {
        let writing = Instant::now();
        let ending = self.ending.take();
        self.record_start(&marks.run_id)?;
        // The answers first: a kill before the pages are written leaves them for the re-run.
        // Not those of a pair they left short of items: a re-run would fail it with them again,
        // where asking the model again may not.
        let answered = batch.iter().filter(|pair| {
            (pair.outcome.failure.as_ref())
                .is_none_or(|failure| failure.kind != FailureKind::TooFewItems)
        });
        for (key, answer) in answered.flat_map(|pair| &pair.outcome.answers) {
            self.cache.put(key, answer);
        }
        for pair in &mut batch {
            self.stage(marks, pair);
        }
        if !self.dry_run {
            // The JSON drafts go to disk with the pages they were written into.
            let files = self.draft_files(&mut batch)?;
            let writes: Vec<FileWrite<'_>> = files.iter().map(DraftFile::write).collect();
            let files = match self.workspace.commit_with(&writes) {
                Ok(_) => files,
                Err(error) => {
                    self.workspace.discard();
                    if batch.len() > 1 {
                        // Which pair's pages could not be written: one at a time tells.
                        let (mut written, last) =
                            (Vec::with_capacity(batch.len()), batch.len() - 1);
                        for (at, pair) in batch.into_iter().enumerate() {
                            let news = if at == 0 { started } else { &[] };
                            if at == last {
                                self.ending = ending;
                            }
                            written.extend(self.write_batch(marks, news, vec![pair])?);
                        }
                        return Ok(written);
                    }
                    for pair in &mut batch {
                        if let Some(draft) = pair.outcome.draft.as_mut() {
                            draft.pages.clear();
                        }
                        pair.outcome
                            .failure
                            .get_or_insert_with(|| not_written(&error));
                    }
                    // The draft file alone, in no page.
                    let files = self.draft_files(&mut batch)?;
                    let writes: Vec<FileWrite<'_>> = files.iter().map(DraftFile::write).collect();
                    write_atomic_all(&writes)
                        .map_err(|(path, source)| Error::Write { path, source })?;
                    files
                }
            };
            self.spool_drafts(&mut batch, &files)?;
            // Pages written whole with drafts are not touched again in the run.
            let pages: Vec<String> = batch
                .iter()
                .filter_map(|pair| pair.outcome.draft.as_ref())
                .flat_map(|draft| draft.pages.iter().cloned())
                .collect();
            self.workspace.forget_draft_pages(&pages)
        }
        if let Some(journal) = &self.journal
            && !(started.is_empty() && batch.is_empty() && ending.is_none())
        {
            let records: Vec<PairRecord> = batch.iter().map(record_of).collect();
            journal.pairs_progress(&marks.run_id, started, &records, ending)?;
            self.ended = ending.is_some();
        }
        let seconds = writing.elapsed().as_secs_f64();
        self.seconds += seconds;
        tracing::debug!(
            "wrote a batch of {} pair(s) in {:.1} ms",
            batch.len(),
            1000.0 * seconds
        );
        Ok(batch)
    }

    /// The run and its planned pairs into the journal, once, before anything else of the run;
    /// the journal is created then if the graph has none.
    fn record_start(&mut self, run_id: &str) -> Result<(), Error> {
        let Some(start) = self.start.take() else {
            return Ok(());
        };
        let journal = match &self.journal {
            Some(journal) => journal,
            None => self
                .journal
                .insert(Arc::new(Journal::open(self.workspace.root())?)),
        };
        journal.start_planned_run(run_id, &start.run, &start.pairs)?;
        Ok(())
    }

    /// Put a pair's drafts into the workspace, checked; a graph that cannot take them is the
    /// pair's failure, and its edits are dropped.
    fn stage(&mut self, marks: &Marks, pair: &mut ToWrite) {
        let Some(draft) = pair.outcome.draft.as_mut() else {
            return;
        };
        draft.items = draft
            .items
            .iter()
            .filter_map(writeback::text::safe_item)
            .collect();
        let set = DraftSet {
            venture: &draft.venture,
            brief: marks.briefs.get(&pair.venture).map(String::as_str),
            block_id: &draft.block,
            items: &draft.items,
            generated_by: &marks.generated_by,
            run: &draft.provenance.run_id,
        };
        let staged = writeback::write_drafts(&mut self.workspace, &set, marks.append)
            .and_then(|pages| self.workspace.changes_of(&pages).map(|_| pages));
        match staged {
            Ok(pages) => {
                draft.pages = pages;
                self.workspace.savepoint();
            }
            Err(error) => {
                // The pages stay as before this pair.
                self.workspace.rollback();
                pair.outcome
                    .failure
                    .get_or_insert_with(|| not_written(&error));
            }
        }
    }

    /// The JSON draft file of each pair of a batch that has a draft, to be written.
    fn draft_files(&self, batch: &mut [ToWrite]) -> Result<Vec<DraftFile>, Error> {
        let mut files = Vec::new();
        for (at, pair) in batch.iter_mut().enumerate() {
            let Some(draft) = pair.outcome.draft.as_mut() else {
                continue;
            };
            let path = super::draft_path(&self.drafts_dir, &draft.venture, &draft.block);
            draft.written_to = Some(
                path.strip_prefix(self.workspace.root())
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned(),
            );
            let bytes = serde_json::to_vec_pretty(&draft).map_err(|error| Error::Write {
                path: path.clone(),
                source: std::io::Error::other(error),
            })?;
            files.push(DraftFile { at, path, bytes });
        }
        Ok(files)
    }

    /// The written draft files into the spool, when the run keeps one.
    fn spool_drafts(&mut self, batch: &mut [ToWrite], files: &[DraftFile]) -> Result<(), Error> {
        if let Some(spool) = self.spool.as_mut() {
            for file in files {
                batch[file.at].spooled = Some(
                    spool
                        .append(&file.path, &file.bytes)
                        .map_err(Error::Spool)?,
                );
            }
        }
        Ok(())
    }
}

/// The JSON draft file of the pair at `at` in its batch.
struct DraftFile {
    at: usize,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl DraftFile {
    fn write(&self) -> FileWrite<'_> {
        FileWrite {
            path: &self.path,
            bytes: Some(&self.bytes),
        }
    }
}

fn not_written(error: &writeback::Error) -> Failure {
    Failure::new(
        FailureKind::Write,
        format!("drafted, but not written into the graph: {error}"),
    )
}

/// A written pair as the journal keeps it.
fn record_of(pair: &ToWrite) -> PairRecord {
    let outcome = &pair.outcome;
    PairRecord {
        venture: pair.venture.clone(),
        block: pair.block.clone(),
        state: match outcome.failure {
            Some(_) => "failed",
            None => "done",
        }
        .to_string(),
        attempts: outcome.attempts,
        items: outcome.draft.as_ref().map_or(0, |draft| draft.items.len()),
        tokens: outcome.tokens,
        cost_usd: outcome.cost_usd,
        reason: outcome.failure.as_ref().map(ToString::to_string),
        draft_file: outcome
            .draft
            .as_ref()
            .and_then(|draft| draft.written_to.clone()),
        updated_at: String::new(),
    }
}

/// How many requests may be out at once: the asked concurrency, halved when the endpoint
/// answers "too many requests" (HTTP 429, retried by the model's one retry layer), and raised
/// again by one after twice as many pairs as are allowed finish without one. A pair holds one
/// of `places` while its request is out (a [`job::Slot`]).
struct Pace {
    limit: usize,
    allowed: usize,
    seen: u64,
    calm: usize,
    places: Arc<Semaphore>,
    /// Places to take out of use as they come back: the pace was lowered while they were out.
    owed: usize,
}

impl Pace {
    fn new(limit: usize) -> Pace {
        Pace {
            limit,
            allowed: limit,
            seen: 0,
            calm: 0,
            places: Arc::new(Semaphore::new(limit)),
            owed: 0,
        }
    }

    /// A pair finished; `rate_limited` is the model's count of 429 answers so far.
    fn finished(&mut self, rate_limited: u64) {
        if rate_limited > self.seen {
            self.seen = rate_limited;
            self.calm = 0;
            if self.allowed > 1 {
                let lowered = (self.allowed / 2).max(1);
                let out_of_use = self.allowed - lowered;
                self.owed += out_of_use - self.places.forget_permits(out_of_use);
                self.allowed = lowered;
                tracing::warn!(
                    "the endpoint is rate limiting: {} request(s) at once from now on",
                    self.allowed
                );
            }
            return;
        }
        self.calm += 1;
        if self.allowed < self.limit && self.calm >= 2 * self.allowed {
            self.allowed += 1;
            self.calm = 0;
            match self.owed {
                0 => self.places.add_permits(1),
                _ => self.owed -= 1,
            }
            tracing::info!("{} request(s) at once again", self.allowed);
        }
    }

    /// A place for a new pair's request: `ready` (one that came free while the run waited),
    /// else one free now; places owed to a lowered pace are taken out of use first.
    fn place(&mut self, ready: &mut Option<OwnedSemaphorePermit>) -> Option<OwnedSemaphorePermit> {
        loop {
            let place = ready
                .take()
                .or_else(|| self.places.clone().try_acquire_owned().ok())?;
            match self.owed {
                0 => return Some(place),
                _ => {
                    place.forget();
                    self.owed -= 1;
                }
            }
        }
    }
}

/// Whether a pair's failure ends the run: the model cannot answer any pair, or the budget is
/// spent; with `stop_on_model_error`, any model failure.
fn stops_run(failure: &Failure, stop_on_model_error: bool) -> bool {
    match failure.kind {
        FailureKind::Fatal | FailureKind::Budget => true,
        FailureKind::Model => stop_on_model_error,
        _ => false,
    }
}

/// Run `spec` on `engine`, writing through `writer`.
///
/// The writer works on a thread of its own: while it writes the pairs that finished, more
/// start and finish, and it takes all of those in its next batch.
pub async fn execute(
    engine: Arc<Engine>,
    spec: RunSpec,
    mut writer: Writer,
    events: Events,
) -> Result<RunReport, Error> {
    let started = Instant::now();
    let RunSpec {
        run_id,
        command,
        args,
        pairs,
        mut ventures,
        briefs,
        concurrency,
        append,
        stop_on_model_error,
        skip,
        retry,
        mut imported,
        live,
        cancel,
        report_files,
    } = spec;
    let cancelled = || cancel.as_ref().is_some_and(|cancel| *cancel.borrow());
    if report_files && !writer.dry_run {
        writer.spool = Some(DraftSpool::new().map_err(Error::Spool)?);
    }
    if !writer.dry_run {
        writer.start = Some(Start {
            run: RunStart {
                command,
                args,
                provider: engine.provider.name().to_string(),
                model: engine.provider.model().to_string(),
            },
            pairs: pairs
                .iter()
                .map(|pair| (pair.venture.clone(), pair.block.clone()))
                .collect(),
        });
    }
    let marks = Marks {
        run_id: run_id.clone(),
        generated_by: writeback::generated_by(engine.provider.name(), engine.provider.model()),
        append,
        briefs: Arc::new(briefs),
    };
    let mut report = RunReport {
        run_id: run_id.clone(),
        provider: engine.provider.name().to_string(),
        model: engine.provider.model().to_string(),
        drafts: Vec::new(),
        written: None,
        failed: Vec::new(),
        diff: None,
        totals: Totals {
            pairs: pairs.len(),
            cost_usd: engine.price_known().then_some(0.0),
            ..Totals::default()
        },
    };
    // Each pair waits for the earlier pairs of its venture whose blocks it relates to.
    let mut relations: HashMap<&str, Vec<String>> = HashMap::new();
    let mut earlier_of_venture: HashMap<&str, Vec<usize>> = HashMap::new();
    let waits_for: Vec<Vec<usize>> = pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| {
            let related = relations.entry(pair.block.as_str()).or_insert_with(|| {
                engine
                    .graph
                    .find_block(&pair.block)
                    .map(|block| block.relations.clone())
                    .unwrap_or_default()
            });
            let earlier = earlier_of_venture.entry(pair.venture.as_str()).or_default();
            let waits = earlier
                .iter()
                .copied()
                .filter(|&earlier| related.contains(&pairs[earlier].block))
                .collect();
            earlier.push(index);
            waits
        })
        .collect();
    // The drafts the prompts of pairs still to start read: the others are not kept.
    let mut read_later = vec![false; pairs.len()];
    for earlier in waits_for.iter().flatten() {
        read_later[*earlier] = true;
    }
    let mut kept = Kept {
        read_later,
        written: Vec::new(),
    };
    let mut finished = vec![false; pairs.len()];
    let mut pending: Vec<usize> = Vec::new();
    for (index, pair) in pairs.iter().enumerate() {
        match skip.contains(&(pair.venture.clone(), pair.block.clone())) {
            true => {
                finished[index] = true;
                report.totals.resumed += 1;
            }
            false => pending.push(index),
        }
    }
    let mut in_flight: JoinSet<(usize, Result<PairOutcome, Error>, Slot)> = JoinSet::new();
    let mut stop: Option<Failure> = None;
    let mut fatal: Option<Error> = None;
    let mut pace = Pace::new(concurrency.max(1));
    let mut ready: Option<OwnedSemaphorePermit> = None;
    let mut desk = Desk::Idle(Box::new(writer));
    // Beside other requests, writing gives way to them ([`WriterThread`]).
    let writer_thread =
        WriterThread::start(concurrency > 1).map_err(|error| task_failed_with(&engine, &error))?;
    let mut to_write: Vec<ToWrite> = Vec::new();
    let mut newly_started: Vec<(String, String)> = Vec::new();
    loop {
        if stop.is_none() && cancelled() {
            stop = Some(Failure::new(
                FailureKind::NotAttempted,
                "the run was cancelled".to_string(),
            ));
        }
        // A pair starts when it waits for nothing and a place for its request is free.
        let mut startable = false;
        while stop.is_none() {
            let Some(position) = pending
                .iter()
                .position(|&index| waits_for[index].iter().all(|&earlier| finished[earlier]))
            else {
                break;
            };
            let Some(place) = pace.place(&mut ready) else {
                startable = true;
                break;
            };
            let index = pending.remove(position);
            let pair = &pairs[index];
            newly_started.push((pair.venture.clone(), pair.block.clone()));
            let venture = ventures
                .get(&pair.venture)
                .cloned()
                .unwrap_or_else(|| VentureInput {
                    name: pair.venture.clone(),
                    ..VentureInput::default()
                });
            let (engine, events, run_id) = (engine.clone(), events.clone(), run_id.clone());
            let (block_id, count) = (pair.block.clone(), pair.count);
            let first_answer = imported.remove(&(pair.venture.clone(), pair.block.clone()));
            let earlier_attempts = retry
                .get(&(pair.venture.clone(), pair.block.clone()))
                .copied()
                .unwrap_or(0);
            let mut slot = Slot::new(pace.places.clone(), place);
            in_flight.spawn(async move {
                let answers = Answers {
                    imported: first_answer,
                    live,
                    earlier_attempts,
                    slot: &mut slot,
                };
                let outcome = match engine.graph.find_block(&block_id) {
                    Ok(block) => {
                        job::draft_pair(&engine, &run_id, &venture, block, count, answers, &events)
                            .await
                    }
                    Err(error) => Err(error.into()),
                };
                (index, outcome, slot)
            });
        }
        // Finished pairs (and the news of started ones) go to the writer as soon as it is
        // free; their slots were filled above already: pairs that wait for them start once
        // they are written, the others need not wait for the writer.
        if !(to_write.is_empty() && newly_started.is_empty()) {
            desk = match desk {
                Desk::Idle(mut away) => {
                    // Nothing starts or finishes after the last batch: it records the end.
                    if in_flight.is_empty() && (stop.is_some() || pending.is_empty()) {
                        away.ending = Some(run_state(&stop, cancelled()));
                    }
                    let (news, batch) = (
                        std::mem::take(&mut newly_started),
                        std::mem::take(&mut to_write),
                    );
                    Desk::away(away, marks.clone(), news, batch, &writer_thread)
                        .map_err(|error| task_failed_with(&engine, &error))?
                }
                busy => busy,
            };
        }
        if in_flight.is_empty() && matches!(desk, Desk::Idle(_)) {
            break;
        }
        tokio::select! {
            place = pace.places.clone().acquire_owned(), if startable => {
                ready = place.ok();
            }
            joined = in_flight.join_next(), if !in_flight.is_empty() => {
                let Some(joined) = joined else { continue };
                let (index, outcome, slot) = joined.map_err(|join| task_failed(&engine, join))?;
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    // A pair that could not be asked at all (no key for the provider, a
                    // template or schema that does not compile): no other pair starts, those
                    // out finish, the journal records this pair failed and the run stopped,
                    // and the run ends with this error (said once, not once per pair).
                    Err(error) => {
                        let failure = Failure::new(FailureKind::Fatal, error.to_string());
                        stop.get_or_insert_with(|| failure.clone());
                        fatal.get_or_insert(error);
                        PairOutcome::failed(failure)
                    }
                };
                pace.finished(engine.rate_limited());
                // A failure that ends the run ends it before another pair starts: the place
                // of a failed request is given back only now.
                if let Some(failure) = &outcome.failure
                    && stop.is_none()
                    && stops_run(failure, stop_on_model_error)
                {
                    stop = Some(failure.clone());
                }
                drop(slot);
                let pair = &pairs[index];
                to_write.push(ToWrite {
                    index,
                    venture: pair.venture.clone(),
                    block: pair.block.clone(),
                    outcome,
                    spooled: None,
                });
            }
            done = desk.batch_written(), if matches!(desk, Desk::Busy(_)) => {
                let (back, written) =
                    done.map_err(|_| task_failed_with(&engine, "the writer stopped writing"))?;
                desk = Desk::Idle(back);
                for pair in written? {
                    finished[pair.index] = true;
                    let index = pair.index;
                    settle(&pairs[index], index, pair, &mut kept, &mut report, &mut ventures, &events);
                }
            }
        }
    }
    // The loop ends only with the writer back.
    let Desk::Idle(mut writer) = desk else {
        return Err(task_failed_with(&engine, "the writer did not come back"));
    };
    // The run stopped: what was not started is recorded as such.
    for index in pending {
        let pair = &pairs[index];
        let reason = format!(
            "not attempted: {}",
            stop.as_ref()
                .map_or("the run stopped", |stop| stop.message.as_str())
        );
        report.totals.failed += 1;
        report.failed.push(Failed {
            venture: pair.venture.clone(),
            block: pair.block.clone(),
            reason,
            kind: FailureKind::NotAttempted,
        });
    }
    // Reports list pairs in plan order, whatever order they finished in (looked up in the
    // plan, not kept as two strings per started pair for the whole run).
    let order: HashMap<(&str, &str), usize> = pairs
        .iter()
        .enumerate()
        .map(|(index, pair)| ((pair.venture.as_str(), pair.block.as_str()), index))
        .collect();
    let position =
        |venture: &str, block: &str| order.get(&(venture, block)).copied().unwrap_or(usize::MAX);
    report
        .drafts
        .sort_by_key(|draft| position(&draft.venture, &draft.block));
    report
        .failed
        .sort_by_key(|failed| position(&failed.venture, &failed.block));
    report.written = writer
        .spool
        .take()
        .map(|spool| WrittenDrafts::new(spool, kept.written));
    if writer.dry_run {
        report.diff = Some(writer.workspace.diff()?);
    }
    // A run that wrote no batch (cancelled before a pair started, or every pair finished
    // already) is recorded all the same.
    writer.record_start(&run_id)?;
    if let Some(journal) = &writer.journal
        && !writer.ended
    {
        journal.finish_run(&run_id, run_state(&stop, cancelled()))?;
    }
    report.totals.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "{} pair(s) in {:.2} s; writing the drafts took {:.2} s of it ({:.1} ms per pair drafted)",
        report.totals.pairs,
        report.totals.seconds,
        writer.seconds,
        1000.0 * writer.seconds / report.totals.drafted.max(1) as f64
    );
    match fatal {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// The writer: here and idle, or away writing a batch on a thread (and coming back with it).
enum Desk {
    Idle(Box<Writer>),
    Busy(tokio::sync::oneshot::Receiver<Returned>),
}

/// The writer, and the pairs it wrote (or why it could not).
type Returned = (Box<Writer>, Result<Vec<ToWrite>, Error>);

/// The nice value of a writer thread that gives way ([`WriterThread`]): its share of a busy
/// core is about a tenth of a request task's.
const WRITER_NICE: i32 = 10;

impl Desk {
    /// Send the writer away with a batch, to `thread`.
    fn away(
        mut writer: Box<Writer>,
        marks: Marks,
        news: Vec<(String, String)>,
        batch: Vec<ToWrite>,
        thread: &WriterThread,
    ) -> Result<Desk, String> {
        let (done, back) = tokio::sync::oneshot::channel();
        thread.run(Box::new(move || {
            let written = writer.write_batch(&marks, &news, batch);
            let _ = done.send((writer, written));
        }))?;
        Ok(Desk::Busy(back))
    }

    /// The writer back with the batch it wrote; never ready while it is idle. An error when
    /// its thread ended without it (a panic).
    async fn batch_written(&mut self) -> Result<Returned, tokio::sync::oneshot::error::RecvError> {
        match self {
            Desk::Busy(back) => back.await,
            Desk::Idle(_) => std::future::pending().await,
        }
    }
}

/// The thread the writer writes on, started and ended with the run; with requests in flight
/// beside it, it gives way to the rest of the process (below its priority, on Linux).
///
/// Writing (pages, flushes, the journal) waits for no answer, while every request waits for
/// a core to be sent. With 128 requests in flight on two cores, a writer at the requests'
/// priority took a share of each burst of answers, and the bench's 2,000 pairs took 11 ms
/// longer (3.334 against 3.323 s, medians of 12 runs in turns, the same build otherwise).
/// When nothing else runs, the writer has the cores to itself all the same. One thread for
/// the run, as the runtime's pool gave before: a thread per batch held 5 to 9 MB more.
struct WriterThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl WriterThread {
    fn start(give_way: bool) -> Result<WriterThread, String> {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("inncopilot-writer".into())
            .spawn(move || {
                if give_way {
                    lower_priority();
                }
                for job in queue {
                    job();
                }
            })
            .map_err(|error| format!("cannot start the writer's thread: {error}"))?;
        Ok(WriterThread { jobs })
    }

    fn run(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the writer's thread has ended".to_string())
    }
}

/// Lower the calling thread's priority to [`WRITER_NICE`], best effort (a thread's nice value
/// is its own on Linux; elsewhere this does nothing).
#[cfg(target_os = "linux")]
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), WRITER_NICE) {
        tracing::debug!("the writer keeps its priority: {error}");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// How a run ended, as the journal records it.
fn run_state(stop: &Option<Failure>, cancelled: bool) -> &'static str {
    match stop {
        Some(_) if cancelled => "cancelled",
        Some(_) => "stopped",
        None => "finished",
    }
}

fn task_failed(engine: &Engine, join: tokio::task::JoinError) -> Error {
    task_failed_with(engine, &format!("a pair's task failed: {join}"))
}

fn task_failed_with(engine: &Engine, message: &str) -> Error {
    Error::Write {
        path: engine.graph.root.clone(),
        source: std::io::Error::other(message.to_string()),
    }
}

/// What a run keeps of its written pairs.
struct Kept {
    /// By plan position: a pair that starts later waits for this one, and its prompt reads
    /// this one's items.
    read_later: Vec<bool>,
    /// The drafts in the writer's spool so far, with their pairs' plan positions.
    written: Vec<(usize, Spooled)>,
}

/// A written pair into the report, the venture's drafts (where the prompts of the pairs that
/// wait for it read them) and the events.
fn settle(
    pair: &PlannedPair,
    index: usize,
    written: ToWrite,
    kept: &mut Kept,
    report: &mut RunReport,
    ventures: &mut BTreeMap<String, VentureInput>,
    events: &Events,
) {
    let ToWrite {
        outcome, spooled, ..
    } = written;
    let items = outcome.draft.as_ref().map_or(0, |draft| draft.items.len());
    if let Some(draft) = outcome.draft {
        if kept.read_later[index]
            && let Some(venture) = ventures.get_mut(&pair.venture)
        {
            venture.drafted.insert(
                pair.block.clone(),
                draft
                    .items
                    .iter()
                    .map(|item| context::Item {
                        name: item.name.clone(),
                        description: item.description.clone(),
                    })
                    .collect(),
            );
        }
        match spooled {
            Some(spooled) => kept.written.push((index, spooled)),
            None => report.drafts.push(draft),
        }
    }
    report.totals.drafted += usize::from(items > 0);
    report.totals.from_cache += usize::from(outcome.cached);
    report.totals.items += items;
    report.totals.tokens += outcome.tokens;
    if let Some(cost) = report.totals.cost_usd.as_mut() {
        *cost += outcome.cost_usd;
    }
    events.send(
        &pair.venture,
        &pair.block,
        EventKind::Done {
            items,
            wanted: pair.count,
            cached: outcome.cached,
            tokens: outcome.tokens,
            cost_usd: outcome.cost_usd,
            failure: outcome.failure.clone(),
        },
    );
    if let Some(failure) = outcome.failure {
        report.totals.failed += 1;
        report.failed.push(Failed {
            venture: pair.venture.clone(),
            block: pair.block.clone(),
            reason: failure.message,
            kind: failure.kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the thread a job of `thread` runs on.
    #[cfg(target_os = "linux")]
    fn nice_of_jobs(thread: &WriterThread) -> Result<i32, Box<dyn std::error::Error>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        thread.run(Box::new(move || {
            let own = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            let _ = sender.send(own);
        }))?;
        Ok(receiver.recv()??)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_writer_beside_requests_writes_below_their_priority()
    -> Result<(), Box<dyn std::error::Error>> {
        let ours = rustix::process::getpriority_process(Some(rustix::thread::gettid()))?;
        let giving_way = WriterThread::start(true)?;
        assert_eq!(nice_of_jobs(&giving_way)?, WRITER_NICE.max(ours));
        // Every job after the first too: the thread is the run's.
        assert_eq!(nice_of_jobs(&giving_way)?, WRITER_NICE.max(ours));
        assert_eq!(nice_of_jobs(&WriterThread::start(false)?)?, ours);
        Ok(())
    }

    #[test]
    fn a_lowered_pace_takes_places_out_of_use_as_they_come_back() {
        let mut pace = Pace::new(4);
        let mut ready = None;
        let mut out: Vec<OwnedSemaphorePermit> =
            std::iter::from_fn(|| pace.place(&mut ready)).collect();
        assert_eq!(out.len(), 4);
        // All four requests are out when the 429 is seen: two places are owed.
        pace.finished(1);
        assert_eq!((pace.allowed, pace.owed), (2, 2));
        // The first two back are taken out of use, not given to a new pair.
        out.truncate(2);
        assert!(pace.place(&mut ready).is_none());
        assert_eq!(pace.owed, 0);
        out.truncate(1);
        let next = pace.place(&mut ready);
        assert!(next.is_some());
        assert!(pace.place(&mut ready).is_none(), "two at once at most");
        // Raised again: a new place, nothing owed.
        for _ in 0..4 {
            pace.finished(1);
        }
        assert_eq!(pace.allowed, 3);
        assert!(pace.place(&mut ready).is_some());
        drop(next);
    }

    #[test]
    fn a_pace_lowered_again_before_it_is_paid_owes_the_sum() {
        let mut pace = Pace::new(8);
        let mut ready = None;
        let out: Vec<OwnedSemaphorePermit> =
            std::iter::from_fn(|| pace.place(&mut ready)).collect();
        pace.finished(1);
        pace.finished(2);
        assert_eq!((pace.allowed, pace.owed), (2, 6));
        drop(out);
        let now: Vec<OwnedSemaphorePermit> =
            std::iter::from_fn(|| pace.place(&mut ready)).collect();
        assert_eq!((now.len(), pace.owed), (2, 0));
    }

    #[test]
    fn a_429_halves_the_pace_and_calm_pairs_raise_it_one_at_a_time() {
        let mut pace = Pace::new(8);
        pace.finished(0);
        assert_eq!(pace.allowed, 8);
        pace.finished(3);
        assert_eq!(pace.allowed, 4);
        pace.finished(5);
        assert_eq!(pace.allowed, 2);
        for _ in 0..3 {
            pace.finished(5);
        }
        assert_eq!(pace.allowed, 2);
        pace.finished(5);
        assert_eq!(pace.allowed, 3, "after 2 x 2 calm pairs");
        for _ in 0..6 {
            pace.finished(5);
        }
        assert_eq!(pace.allowed, 4);
        pace.finished(6);
        assert_eq!(pace.allowed, 2);
    }
}
