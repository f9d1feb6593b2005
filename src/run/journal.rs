//! The journal: every run and pair, recorded durably in `<graph>/.inncopilot/journal.sqlite`.
//!
//! A pair is recorded done only after its pages and its JSON draft are on disk, so a run killed
//! at any moment (`kill -9` included) and started again redoes nothing that finished. SQLite in
//! WAL mode with full sync: each record is one transaction, on disk when the call returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::llm::Usage;

/// The file of the journal, inside the graph's state folder.
pub const FILE: &str = "journal.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct Error {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// A run as `runs` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub command: String,
    /// `running`, `finished`, `stopped` (budget or a fatal model error), or `interrupted` (the
    /// process ended without finishing it).
    pub state: String,
    pub provider: String,
    pub model: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub pairs: usize,
    pub done: usize,
    pub failed: usize,
    pub items: usize,
    pub tokens: Usage,
    pub cost_usd: f64,
    /// What the run was asked (its selection), as JSON.
    pub args: String,
}

/// Every run of the graph at `root`, newest first, as they stand: a run recorded as running
/// while no process holds the graph's lock was killed, and is shown `interrupted` (the next
/// writer records it so). None without a journal.
pub fn runs_as_seen(root: &Path) -> Result<Vec<RunRecord>, Error> {
    let Some(journal) = Journal::open_existing(root)? else {
        return Ok(Vec::new());
    };
    let held = crate::writeback::lock::is_held(root);
    Ok(journal
        .runs()?
        .into_iter()
        .map(|run| run.seen_with_lock(held))
        .collect())
}

/// One run of the graph at `root` as it stands (see [`runs_as_seen`]); with its pairs when
/// `with_pairs` (a run may have thousands: the service's job endpoints need the run only).
pub fn run_as_seen(
    root: &Path,
    id: &str,
    with_pairs: bool,
) -> Result<Option<(RunRecord, Vec<PairRecord>)>, Error> {
    let Some(journal) = Journal::open_existing(root)? else {
        return Ok(None);
    };
    let Some(run) = journal.run(id)? else {
        return Ok(None);
    };
    let pairs = match with_pairs {
        true => journal.pairs(id)?,
        false => Vec::new(),
    };
    Ok(Some((
        run.seen_with_lock(crate::writeback::lock::is_held(root)),
        pairs,
    )))
}

impl RunRecord {
    fn seen_with_lock(mut self, lock_held: bool) -> RunRecord {
        if self.state == "running" && !lock_held {
            self.state = "interrupted".to_string();
        }
        self
    }
}

/// A pair as `runs show` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PairRecord {
    pub venture: String,
    pub block: String,
    /// `planned`, `running`, `done` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub items: usize,
    pub tokens: Usage,
    pub cost_usd: f64,
    pub reason: Option<String>,
    pub draft_file: Option<String>,
    pub updated_at: String,
}

/// A (venture, block) pair, by name.
pub type Pair = (String, String);

pub struct Journal {
    path: PathBuf,
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS pairs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    venture TEXT NOT NULL,
    block TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    reason TEXT,
    draft_file TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, venture, block)
);
";

/// What a run is recorded with when it starts.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub command: String,
    /// The selection it was asked, as a key ([`Journal::resumable`] compares it).
    pub args: String,
    pub provider: String,
    pub model: String,
}

fn insert_run(db: &Connection, id: &str, start: &RunStart) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO runs (id, command, args, provider, model, state, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)
         ON CONFLICT(id) DO UPDATE SET state = 'running', finished_at = NULL,
           provider = excluded.provider, model = excluded.model",
        params![
            id,
            start.command,
            start.args,
            start.provider,
            start.model,
            now()
        ],
    )
    .map(|_| ())
}

fn end_run(db: &Connection, run_id: &str, state: &str) -> rusqlite::Result<()> {
    db.execute(
        "UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1",
        params![run_id, state, now()],
    )
    .map(|_| ())
}

fn insert_planned(
    db: &Connection,
    run_id: &str,
    pairs: &[(String, String)],
) -> rusqlite::Result<()> {
    let mut insert = db.prepare(
        "INSERT INTO pairs (run_id, venture, block, position, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'planned', ?5)
         ON CONFLICT(run_id, venture, block) DO NOTHING",
    )?;
    let at = now();
    for (position, (venture, block)) in pairs.iter().enumerate() {
        insert.execute(params![run_id, venture, block, position as i64, at])?;
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

impl Journal {
    /// Open (or create) the journal of the graph at `graph_root`.
    pub fn open(graph_root: &Path) -> Result<Journal, Error> {
        let path = graph_root.join(".inncopilot").join(FILE);
        let error = |source| Error {
            path: path.clone(),
            source,
        };
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|io| error(rusqlite::Error::ToSqlConversionFailure(Box::new(io))))?;
        }
        let connection = Connection::open(&path).map_err(error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(error)?;
        // The journal is written a batch at a time and read by `runs`: a page cache of 256 KB
        // (SQLite's default is 2 MB) keeps a long run's memory from growing with it.
        connection
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-256;",
            )
            .map_err(error)?;
        // One transaction: one wait for the disk where each table took its own.
        connection
            .execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;"))
            .map_err(error)?;
        // Closing does not copy the write-ahead log into the database (the last connection
        // would, with a flush, at the end of every run and command): the log is as durable,
        // and SQLite copies it as it grows past 1,000 pages, on a write.
        connection
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(error)?;
        Ok(Journal {
            path,
            connection: Mutex::new(connection),
        })
    }

    /// Open the journal only if the graph has one (readers never create it).
    pub fn open_existing(graph_root: &Path) -> Result<Option<Journal>, Error> {
        match graph_root.join(".inncopilot").join(FILE).exists() {
            true => Journal::open(graph_root).map(Some),
            false => Ok(None),
        }
    }

    fn with<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        work(&connection).map_err(|source| Error {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs recorded as running belong to processes that ended without finishing them: called
    /// by a writer holding the graph's lock, when no other run can be going on.
    pub fn mark_interrupted(&self) -> Result<usize, Error> {
        self.with(|db| {
            db.execute(
                "UPDATE runs SET state = 'interrupted' WHERE state = 'running'",
                [],
            )?;
            db.execute(
                "UPDATE pairs SET state = 'planned' WHERE state = 'running'",
                [],
            )
        })
    }

    /// The latest unfinished run of `command` asked the same `args`: the one to resume.
    pub fn resumable(&self, command: &str, args: &str) -> Result<Option<String>, Error> {
        self.latest_run(
            "command = ?1 AND args = ?2 AND state != 'finished'",
            command,
            args,
        )
    }

    /// The latest run of `command` asked `args` when pairs of it failed (it may have finished):
    /// `--retry-failed` resumes it and asks those pairs again, where a new run of a `--force`
    /// selection would ask every pair again. `None` when the latest such run failed nothing.
    pub fn latest_with_failures(&self, command: &str, args: &str) -> Result<Option<String>, Error> {
        let Some(id) = self.latest_run("command = ?1 AND args = ?2", command, args)? else {
            return Ok(None);
        };
        let failed: bool = self.with(|db| {
            db.query_row(
                "SELECT EXISTS (SELECT 1 FROM pairs WHERE run_id = ?1 AND state = 'failed')",
                params![id],
                |row| row.get(0),
            )
        })?;
        Ok(failed.then_some(id))
    }

    /// The latest run of `command` left in `state` (a submitted batch, say).
    pub fn latest_in_state(&self, command: &str, state: &str) -> Result<Option<String>, Error> {
        self.latest_run("command = ?1 AND state = ?2", command, state)
    }

    /// The id of the newest run matching `condition` on `?1` and `?2`.
    fn latest_run(
        &self,
        condition: &str,
        first: &str,
        second: &str,
    ) -> Result<Option<String>, Error> {
        let query = format!(
            "SELECT id FROM runs WHERE {condition} ORDER BY started_at DESC, id DESC LIMIT 1"
        );
        self.with(|db| {
            db.query_row(&query, params![first, second], |row| row.get(0))
                .optional()
        })
    }

    /// Record a new run, or mark a resumed one running again.
    pub fn start_run(&self, id: &str, start: &RunStart) -> Result<(), Error> {
        self.with(|db| insert_run(db, id, start))
    }

    /// [`start_run`](Self::start_run) and the run's planned pairs (pairs already recorded keep
    /// their state), in one transaction.
    pub fn start_planned_run(
        &self,
        id: &str,
        start: &RunStart,
        pairs: &[(String, String)],
    ) -> Result<(), Error> {
        self.with(|db| {
            let transaction = db.unchecked_transaction()?;
            insert_run(&transaction, id, start)?;
            insert_planned(&transaction, id, pairs)?;
            transaction.commit()
        })
    }

    /// The state of each recorded pair of a run, and the attempts it made so far.
    pub fn pair_tries(&self, run_id: &str) -> Result<BTreeMap<Pair, (String, u32)>, Error> {
        self.with(|db| {
            let mut query =
                db.prepare("SELECT venture, block, state, attempts FROM pairs WHERE run_id = ?1")?;
            let rows = query.query_map(params![run_id], |row| {
                Ok(((row.get(0)?, row.get(1)?), (row.get(2)?, row.get(3)?)))
            })?;
            rows.collect()
        })
    }

    /// Record pairs that started (`running`) and how others ended, `done` (their drafts are on
    /// disk) or `failed`, and how the run ended when it did ([`finish_run`](Self::finish_run)),
    /// in one transaction: a pair's record is durable when this returns, and never there
    /// before. A pair in both lists ends as it finished. A pair that ended before (failed, then
    /// asked again by `--retry-failed`) adds its attempts, tokens and cost to those recorded:
    /// the run's record says what it spent.
    pub fn pairs_progress(
        &self,
        run_id: &str,
        started: &[(String, String)],
        finished: &[PairRecord],
        run_ended: Option<&str>,
    ) -> Result<(), Error> {
        self.with(|db| {
            let transaction = db.unchecked_transaction()?;
            if !started.is_empty() {
                let mut update = transaction.prepare(
                    "UPDATE pairs SET state = 'running', updated_at = ?4
                     WHERE run_id = ?1 AND venture = ?2 AND block = ?3",
                )?;
                let at = now();
                for (venture, block) in started {
                    update.execute(params![run_id, venture, block, at])?;
                }
            }
            if !finished.is_empty() {
                let mut upsert = transaction.prepare(
                    "INSERT INTO pairs (run_id, venture, block, position, state, attempts, items,
                       prompt_tokens, completion_tokens, cost_usd, reason, draft_file, updated_at)
                     VALUES (?1, ?2, ?3, -1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT(run_id, venture, block) DO UPDATE SET state = excluded.state,
                       attempts = attempts + excluded.attempts, items = excluded.items,
                       prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                       completion_tokens = completion_tokens + excluded.completion_tokens,
                       cost_usd = cost_usd + excluded.cost_usd, reason = excluded.reason,
                       draft_file = excluded.draft_file, updated_at = excluded.updated_at",
                )?;
                let at = now();
                for record in finished {
                    upsert.execute(params![
                        run_id,
                        record.venture,
                        record.block,
                        record.state,
                        record.attempts,
                        record.items as i64,
                        record.tokens.prompt_tokens as i64,
                        record.tokens.completion_tokens as i64,
                        record.cost_usd,
                        record.reason,
                        record.draft_file,
                        at,
                    ])?;
                }
            }
            if let Some(state) = run_ended {
                end_run(&transaction, run_id, state)?;
            }
            transaction.commit()
        })
    }

    /// Record how a run ended (`finished`, `stopped`, `cancelled`; a batch's `submitted`,
    /// `collected` or `failed`).
    pub fn finish_run(&self, run_id: &str, state: &str) -> Result<(), Error> {
        self.with(|db| end_run(db, run_id, state))
    }

    /// Every run, newest first, with its pairs counted.
    pub fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        self.select_runs("")
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, Error> {
        let mut runs = self.select_runs(id)?;
        Ok(runs.pop())
    }

    fn select_runs(&self, id: &str) -> Result<Vec<RunRecord>, Error> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT r.id, r.command, r.state, r.provider, r.model, r.started_at,
                   r.finished_at, r.args,
                   COUNT(p.block),
                   COALESCE(SUM(p.state = 'done'), 0), COALESCE(SUM(p.state = 'failed'), 0),
                   COALESCE(SUM(p.items), 0), COALESCE(SUM(p.prompt_tokens), 0),
                   COALESCE(SUM(p.completion_tokens), 0), COALESCE(SUM(p.cost_usd), 0)
                 FROM runs r LEFT JOIN pairs p ON p.run_id = r.id
                 WHERE ?1 = '' OR r.id = ?1
                 GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC",
            )?;
            let rows = query.query_map(params![id], |row| {
                Ok(RunRecord {
                    id: row.get(0)?,
                    command: row.get(1)?,
                    state: row.get(2)?,
                    provider: row.get(3)?,
                    model: row.get(4)?,
                    started_at: row.get(5)?,
                    finished_at: row.get(6)?,
                    args: row.get(7)?,
                    pairs: row.get::<_, i64>(8)? as usize,
                    done: row.get::<_, i64>(9)? as usize,
                    failed: row.get::<_, i64>(10)? as usize,
                    items: row.get::<_, i64>(11)? as usize,
                    tokens: Usage {
                        prompt_tokens: row.get::<_, i64>(12)? as u64,
                        completion_tokens: row.get::<_, i64>(13)? as u64,
                    },
                    cost_usd: row.get(14)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The pairs of a run, in plan order.
    pub fn pairs(&self, run_id: &str) -> Result<Vec<PairRecord>, Error> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT venture, block, state, attempts, items, prompt_tokens, completion_tokens,
                   cost_usd, reason, draft_file, updated_at
                 FROM pairs WHERE run_id = ?1 ORDER BY position, venture, block",
            )?;
            let rows = query.query_map(params![run_id], |row| {
                Ok(PairRecord {
                    venture: row.get(0)?,
                    block: row.get(1)?,
                    state: row.get(2)?,
                    attempts: row.get(3)?,
                    items: row.get::<_, i64>(4)? as usize,
                    tokens: Usage {
                        prompt_tokens: row.get::<_, i64>(5)? as u64,
                        completion_tokens: row.get::<_, i64>(6)? as u64,
                    },
                    cost_usd: row.get(7)?,
                    reason: row.get(8)?,
                    draft_file: row.get(9)?,
                    updated_at: row.get(10)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(venture: &str, block: &str, state: &str) -> PairRecord {
        PairRecord {
            venture: venture.into(),
            block: block.into(),
            state: state.into(),
            attempts: 1,
            items: 2,
            tokens: Usage {
                prompt_tokens: 100,
                completion_tokens: 50,
            },
            cost_usd: 0.25,
            reason: None,
            draft_file: None,
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_run_left_running_is_interrupted_and_resumable_with_its_done_pairs()
    -> Result<(), Box<dyn std::error::Error>> {
        let graph = tempfile::tempdir()?;
        let journal = Journal::open(graph.path())?;
        let pairs = [("A".to_string(), "x".to_string()), ("B".into(), "x".into())];
        let start = RunStart {
            command: "enrich".into(),
            args: "{}".into(),
            provider: "openai".into(),
            model: "m".into(),
        };
        journal.start_planned_run("r1", &start, &pairs)?;
        journal.pairs_progress("r1", &pairs, &[], None)?;
        // Started and finished between two records: it ends as it finished.
        journal.pairs_progress("r1", &pairs[..1], &[record("A", "x", "done")], None)?;
        drop(journal);
        // Closed without copying its log into the database: the log is what is read next.
        assert!(graph.path().join(".inncopilot/journal.sqlite-wal").exists());

        // The process died: the next writer finds the run interrupted and resumes it.
        let journal = Journal::open(graph.path())?;
        assert_eq!(journal.mark_interrupted()?, 1);
        assert_eq!(journal.resumable("enrich", "{}")?.as_deref(), Some("r1"));
        assert_eq!(journal.resumable("enrich", "{\"other\":1}")?, None);
        let states = journal.pair_tries("r1")?;
        assert_eq!(states[&pairs[0]].0, "done");
        assert_eq!(states[&pairs[1]].0, "planned");
        let run = journal.run("r1")?.ok_or("no run")?;
        assert_eq!(
            (run.state.as_str(), run.pairs, run.done),
            ("interrupted", 2, 1)
        );
        assert_eq!(run.tokens.prompt_tokens, 100);

        journal.finish_run("r1", "finished")?;
        assert_eq!(journal.resumable("enrich", "{}")?, None);
        assert_eq!(
            journal.latest_in_state("enrich", "finished")?.as_deref(),
            Some("r1")
        );
        Ok(())
    }
}
