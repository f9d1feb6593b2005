//! Jobs: `enrich` runs started by requests. Each keeps the events it has sent, so a subscriber
//! that comes late sees them all, in order, then the live ones.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::response::sse::Event as SseEvent;
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use utoipa::ToSchema;

use super::locked;
use crate::run::{self, EventKind};

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobStatus {
    /// The run's id in the graph's journal (`inncopilot runs show ID`).
    pub id: String,
    /// `queued` (waiting for the graph), `running`, `finished`, `stopped` (budget or provider),
    /// `cancelled`, `failed` (could not run), or `interrupted` (a restart cut it short: resume it).
    pub state: String,
    /// Why it is queued, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub pairs: usize,
    pub done: usize,
    pub failed: usize,
    /// The run's report (`enrich --json`) once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
}

/// One event of a job, as sent to subscribers: its data serialised once, shared by all.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub name: &'static str,
    pub data: Arc<str>,
}

pub struct Job {
    pub id: String,
    status: Mutex<JobStatus>,
    history: Mutex<Vec<JobEvent>>,
    /// How many events there are, and whether the job has ended; subscribers wait on it.
    progress: watch::Sender<(usize, bool)>,
    cancel: watch::Sender<bool>,
}

impl Job {
    pub fn new(id: String, pairs: usize) -> Arc<Job> {
        Arc::new(Job {
            status: Mutex::new(JobStatus {
                id: id.clone(),
                state: "queued".into(),
                message: None,
                pairs,
                done: 0,
                failed: 0,
                report: None,
            }),
            id,
            history: Mutex::new(Vec::new()),
            progress: watch::channel((0, false)).0,
            cancel: watch::channel(false).0,
        })
    }

    pub fn status(&self) -> JobStatus {
        locked(&self.status).clone()
    }

    pub fn ended(&self) -> bool {
        self.progress.borrow().1
    }

    /// Change the status and tell subscribers with an event named `state`.
    pub fn set_state(&self, state: &str, message: Option<String>) {
        {
            let mut status = locked(&self.status);
            status.state = state.to_string();
            status.message = message.clone();
        }
        self.push("state", json!({"state": state, "message": message}), false);
    }

    /// What the run engine says, as job events: a pair `started`, `done` or `failed`.
    pub fn engine_event(&self, event: &run::Event) {
        let (name, data) = match &event.kind {
            EventKind::Attempt { attempt: 1, cached } => (
                "started",
                json!({"venture": event.venture, "block": event.block, "cached": cached}),
            ),
            EventKind::Done {
                items,
                wanted,
                cached,
                tokens,
                cost_usd,
                failure,
            } => {
                {
                    let mut status = locked(&self.status);
                    status.done += 1;
                    status.failed += usize::from(failure.is_some());
                }
                let mut data = json!({
                    "venture": event.venture,
                    "block": event.block,
                    "items": items,
                    "wanted": wanted,
                    "cached": cached,
                    "tokens": tokens,
                    "cost_usd": cost_usd,
                });
                match failure {
                    Some(failure) => {
                        data["reason"] = failure.message.clone().into();
                        data["kind"] = json!(failure.kind);
                        ("failed", data)
                    }
                    None => ("done", data),
                }
            }
            _ => return,
        };
        self.push(name, data, false);
    }

    /// The run ended with `report` (its state from the journal's point of view) or an error.
    pub fn end(&self, state: &str, report: Option<Value>, message: Option<String>) {
        {
            let mut status = locked(&self.status);
            status.state = state.to_string();
            status.message = message.clone();
            if let Some(report) = &report {
                status.report = Some(report.clone());
            }
        }
        let totals = report
            .as_ref()
            .and_then(|report| report.get("totals"))
            .cloned()
            .unwrap_or(Value::Null);
        self.push("totals", totals, false);
        self.push("end", json!({"state": state, "message": message}), true);
    }

    fn push(&self, name: &'static str, data: Value, last: bool) {
        let count = {
            let mut history = locked(&self.history);
            history.push(JobEvent {
                name,
                data: data.to_string().into(),
            });
            history.len()
        };
        self.progress.send_replace((count, last));
    }

    /// Ask the run to stop: pairs in flight finish and are written, no other starts.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    pub fn cancel_receiver(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }

    /// Every event so far, then the live ones, until the job ends.
    pub fn events(self: &Arc<Job>) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
        let job = self.clone();
        let progress = self.progress.subscribe();
        futures::stream::unfold(
            (job, progress, 0_usize),
            |(job, mut progress, next)| async move {
                loop {
                    let event = {
                        let history = locked(&job.history);
                        history.get(next).cloned()
                    };
                    if let Some(event) = event {
                        let sse = SseEvent::default()
                            .event(event.name)
                            .id(next.to_string())
                            .data(&*event.data);
                        return Some((Ok(sse), (job, progress, next + 1)));
                    }
                    let (count, ended) = *progress.borrow_and_update();
                    if count > next {
                        continue;
                    }
                    if ended {
                        return None;
                    }
                    if progress.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
    }
}
