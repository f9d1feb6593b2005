//! `serve`: the HTTP service. A request does what the matching command does, on the same run
//! engine ([`crate::run`]), the same graph lock and the same journal.
//!
//! - [`api`]: the endpoints and the OpenAPI document generated from them.
//! - [`jobs`]: `enrich` runs started by requests, with their events for subscribers.
//! - [`error`]: the JSON error answers.

pub mod api;
pub mod error;
pub mod jobs;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::Settings;
use crate::graph::Graph;
use crate::llm::ChatModel;
use crate::prompt::Library;
use crate::run::{Engine, Env};
use crate::writeback;

/// A mutex's value; a panic elsewhere while it was held leaves it usable (the data is plain).
pub(crate) fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// How `serve` was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    /// `--cors ORIGIN`: the one origin browsers may call from (none: CORS off).
    pub cors: Option<String>,
    /// How long in-flight pairs may take to finish after SIGTERM or ctrl-c.
    pub grace: Duration,
    /// Request bodies larger than this are refused (413).
    pub body_limit: usize,
}

/// The server's state, shared by its handlers and jobs.
pub struct State {
    pub root: PathBuf,
    pub settings: Arc<Settings>,
    pub library: Arc<Library>,
    pub env: Env,
    token: Option<String>,
    /// The graph as last read, and what its folders looked like then.
    graph: RwLock<(Arc<Graph>, Signature)>,
    /// One writing run of this server at a time; the others wait in line for it.
    pub writer: tokio::sync::Mutex<()>,
    /// One run of the embedded model at a time (dry runs too): two would share two cores.
    pub local_model: tokio::sync::Mutex<()>,
    pub jobs: Mutex<BTreeMap<String, Arc<jobs::Job>>>,
    /// Models connected by earlier runs, by model key: loaded once per process.
    models: Mutex<HashMap<String, Arc<dyn ChatModel>>>,
    /// Becomes `true` on SIGTERM or ctrl-c.
    pub shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// When the graph's lock was last taken: every process that writes the graph takes it (and
/// writes who it is into it), so a graph read after that is out of date.
type Signature = Option<SystemTime>;

fn signature(root: &Path) -> Signature {
    std::fs::metadata(root.join(".inncopilot").join("lock"))
        .and_then(|meta| meta.modified())
        .ok()
}

impl State {
    pub fn new(
        graph: Graph,
        settings: Arc<Settings>,
        library: Arc<Library>,
        env: Env,
        token: Option<String>,
    ) -> State {
        let root = graph.root.clone();
        State {
            graph: RwLock::new((Arc::new(graph), signature(&root))),
            root,
            settings,
            library,
            env,
            token,
            writer: tokio::sync::Mutex::new(()),
            local_model: tokio::sync::Mutex::new(()),
            jobs: Mutex::new(BTreeMap::new()),
            models: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The graph for reading: as the last writer left it. Read again when a process has taken
    /// the graph's lock since; while one holds it, the state before it (readers never wait).
    /// Edits made without the lock (in Logseq, say) are seen after the next write.
    pub fn graph(&self) -> Result<Arc<Graph>, crate::graph::Error> {
        {
            let current = self
                .graph
                .read()
                .unwrap_or_else(|poison| poison.into_inner());
            if writeback::lock::is_held(&self.root) || current.1 == signature(&self.root) {
                return Ok(current.0.clone());
            }
        }
        self.fresh_graph()
    }

    /// The graph as it is on disk now, for a run about to write it.
    pub fn fresh_graph(&self) -> Result<Arc<Graph>, crate::graph::Error> {
        let before = signature(&self.root);
        let graph = Arc::new(Graph::load(&self.root)?);
        *self
            .graph
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = (graph.clone(), before);
        Ok(graph)
    }

    /// The engine for a request's provider and model, with the model this process already
    /// connected for it, if any.
    pub fn engine(
        &self,
        graph: Arc<Graph>,
        provider: Option<&str>,
        model: Option<&str>,
        use_cache: bool,
        budget_usd: Option<f64>,
    ) -> Result<Engine, crate::run::Error> {
        let settings = match budget_usd {
            Some(budget) => {
                let mut settings = (*self.settings).clone();
                settings.generate.budget_usd = budget;
                Arc::new(settings)
            }
            None => self.settings.clone(),
        };
        let engine = crate::generate::engine(
            graph,
            settings,
            self.library.clone(),
            provider,
            model,
            self.env.clone(),
            use_cache,
        )?;
        let known = locked(&self.models).get(&engine.model_key()).cloned();
        Ok(match known {
            Some(model) => engine.with_model(model),
            None => engine,
        })
    }

    /// Keep the model a run connected, for the next runs.
    pub fn keep_model(&self, engine: &Engine) {
        if let Some(model) = engine.connected_model() {
            locked(&self.models)
                .entry(engine.model_key())
                .or_insert(model);
        }
    }

    /// Whether a request carries the server's token (compared in constant time).
    pub fn authorized(&self, header: Option<&str>) -> Result<(), error::ApiError> {
        use subtle::ConstantTimeEq;
        let Some(token) = &self.token else {
            return Err(error::ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server has no token, so it neither spends nor writes: set INNCOPILOT_SERVE_TOKEN and restart it, then send `Authorization: Bearer <token>`",
            ));
        };
        let given = header
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        match bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            true => Ok(()),
            false => Err(error::ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint spends or writes: send `Authorization: Bearer <token>` with the server's INNCOPILOT_SERVE_TOKEN",
            )),
        }
    }

    /// Run `task` in the background; shutdown waits for it (within the grace period).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = locked(&self.tasks);
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }

    /// Take the graph's lock the way the command line does, waiting (and saying so through
    /// `waiting`) while another process holds it.
    pub async fn wait_for_graph_lock(&self, mut waiting: impl FnMut(String)) {
        let mut said = false;
        while writeback::lock::is_held(&self.root) {
            if !said {
                waiting(format!(
                    "waiting for the graph's lock: another inncopilot process is writing {}",
                    self.root.display()
                ));
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Serve `state` until SIGTERM or ctrl-c, then let in-flight pairs finish within the grace
/// period.
pub async fn serve(state: Arc<State>, options: Options) -> anyhow::Result<()> {
    use anyhow::Context;
    if !options.bind.ip().is_loopback() && state.token.is_none() {
        anyhow::bail!(
            "refusing to serve on {} (beyond this machine) without a token: set INNCOPILOT_SERVE_TOKEN to a long random secret (for example `export INNCOPILOT_SERVE_TOKEN=$(openssl rand -hex 32)`), or bind to 127.0.0.1",
            options.bind
        );
    }
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .with_context(|| format!("binding {}", options.bind))?;
    let address = listener.local_addr()?;
    let (router, _) = api::router(state.clone(), &options)?;
    eprintln!(
        "serving {} on http://{address} (OpenAPI: /openapi.json){}",
        state.root.display(),
        match state.token {
            Some(_) => "",
            None =>
                "; no INNCOPILOT_SERVE_TOKEN: read-only (generate, enrich, accept, reject and cancel answer 401)",
        }
    );
    let signalled_at = Arc::new(std::sync::OnceLock::new());
    let signalled = {
        let (state, signalled_at) = (state.clone(), signalled_at.clone());
        async move {
            shutdown_signal().await;
            let _ = signalled_at.set(std::time::Instant::now());
            eprintln!(
                "stopping: no new requests; in-flight pairs finish and the rest is journaled"
            );
            state.shutdown.send_replace(true);
            let jobs: Vec<_> = locked(&state.jobs).values().cloned().collect();
            for job in jobs {
                job.cancel();
            }
        }
    };
    let mut stopped = state.shutdown.subscribe();
    let grace = options.grace;
    let past_grace = || {
        eprintln!(
            "the grace period of {} s passed: pairs still in flight are left to the journal (resume them)",
            grace.as_secs()
        );
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(signalled);
    tokio::select! {
        served = server => served.context("serving")?,
        () = async {
            let _ = stopped.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            past_grace();
            return Ok(());
        }
    }
    // Connections are closed; runs may still be writing their last pairs.
    let tasks: Vec<_> = std::mem::take(&mut *locked(&state.tasks));
    let left = signalled_at
        .get()
        .map_or(grace, |at| grace.saturating_sub(at.elapsed()));
    if tokio::time::timeout(left, futures::future::join_all(tasks))
        .await
        .is_err()
    {
        past_grace();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
