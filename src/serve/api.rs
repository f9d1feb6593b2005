//! The endpoints. Each is annotated for the OpenAPI document (`utoipa`), and the router is
//! built from the same annotations, so the document cannot miss a route.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::jobs::{Job, JobStatus};
use super::{Options, State, locked};
use crate::enrich::{self, EnrichRequest, JournalArgs};
use crate::pipeline;
use crate::pipeline::Request as Asked;
use crate::report;
use crate::run::plan::Selection;
use crate::run::{Events, FailureKind, Journal, journal};
use crate::writeback::{self, Decision};

type AppState = Arc<State>;

/// Ended jobs kept in memory, newest first.
const KEPT_JOBS: usize = 100;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inncopilot",
        description = "Drafts for the innCoPilot questions of a Logseq business-model knowledge base. Endpoints that spend or write need `Authorization: Bearer <INNCOPILOT_SERVE_TOKEN>`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken)
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router and its OpenAPI document.
pub fn router(
    state: AppState,
    options: &Options,
) -> anyhow::Result<(Router, utoipa::openapi::OpenApi)> {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(blocks))
        .routes(routes!(ventures))
        .routes(routes!(preview))
        .routes(routes!(generate))
        .routes(routes!(enrich_job))
        .routes(routes!(jobs_list))
        .routes(routes!(job_show, job_cancel))
        .routes(routes!(job_events))
        .routes(routes!(job_resume))
        .routes(routes!(drafts_list))
        .routes(routes!(drafts_accept))
        .routes(routes!(drafts_reject))
        .split_for_parts();
    // Serialised once: the handler is cloned for every connection.
    let document = axum::body::Bytes::from(serde_json::to_vec(&api)?);
    let mut router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .fallback(|| async {
            ApiError::not_found("no such endpoint: GET /openapi.json lists them")
        })
        .layer(axum::extract::DefaultBodyLimit::max(options.body_limit));
    if let Some(origin) = &options.cors {
        let origin: axum::http::HeaderValue = origin
            .parse()
            .map_err(|_| anyhow::anyhow!("--cors {origin}: not an origin"))?;
        router = router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([
                    axum::http::Method::GET,
                    axum::http::Method::POST,
                    axum::http::Method::DELETE,
                ])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT]),
        );
    }
    Ok((router.with_state(state), api))
}

/// A request carrying the server's token: endpoints that spend or write take it.
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        state.authorized(header).map(|()| Authorized)
    }
}

/// A JSON body whose errors are answered in the service's error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Body(value))
    }
}

/// Query parameters, with errors in the service's error shape.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

fn graph(state: &State) -> Result<Arc<crate::graph::Graph>, ApiError> {
    state.graph().map_err(ApiError::internal)
}

/// Run blocking work (reading pages, rendering prompts) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

/// The server is up, and on which graph.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "Up", body = Object)))]
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    let (pages, blocks) = state
        .graph()
        .map(|graph| (graph.pages.len(), graph.blocks.len()))
        .unwrap_or_default();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "graph": state.root.display().to_string(),
        "pages": pages,
        "blocks": blocks,
    }))
}

/// The metamodel blocks of the graph (`blocks --json`).
#[utoipa::path(get, path = "/v1/blocks", tag = "graph",
    responses((status = 200, description = "The blocks", body = Vec<Object>)))]
async fn blocks(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let graph = graph(&state)?;
    let text = report::blocks_json(&graph).map_err(ApiError::internal)?;
    Ok(Json(
        serde_json::from_str(&text).map_err(ApiError::internal)?,
    ))
}

/// The ventures of the graph (`ventures --json`).
#[utoipa::path(get, path = "/v1/ventures", tag = "graph",
    responses((status = 200, description = "The ventures", body = Vec<Object>)))]
async fn ventures(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let graph = graph(&state)?;
    Ok(Json(
        serde_json::to_value(graph.ventures()).map_err(ApiError::internal)?,
    ))
}

/// The exact prompt a block would send for a venture; no key, no network (`preview --json`).
#[utoipa::path(post, path = "/v1/preview", tag = "drafts", request_body = PreviewBody,
    responses(
        (status = 200, description = "The messages, schema, parameters and estimates", body = Object),
        (status = 400, description = "A field to fix", body = ErrorBody),
        (status = 404, description = "Unknown venture or block", body = ErrorBody),
    ))]
async fn preview(
    axum::extract::State(state): axum::extract::State<AppState>,
    Body(body): Body<PreviewBody>,
) -> Result<Json<Value>, ApiError> {
    let graph = graph(&state)?;
    let request = Asked {
        venture: body.venture,
        brief: body.brief,
        blocks: vec![body.block],
        count: body.count,
        provider: body.provider,
        model: body.model,
    };
    blocking(move || {
        let env = state.env.clone();
        let preview =
            pipeline::preview(&graph, &state.settings, &state.library, &request, |name| {
                env(name)
            })?;
        Ok(Json(
            serde_json::to_value(preview.report()).map_err(ApiError::internal)?,
        ))
    })
    .await
}

/// `POST /v1/preview`: what `preview --json` shows.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// A venture of the graph, or a new one with `brief`.
    pub venture: String,
    pub brief: Option<String>,
    /// A block id, title or last id segment.
    pub block: String,
    pub count: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
}

/// `POST /v1/generate`: what `generate` does.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// A venture of the graph, or a new one with `brief`.
    pub venture: String,
    pub brief: Option<String>,
    /// Block ids, titles or last id segments; none for every block.
    #[serde(default)]
    pub blocks: Vec<String>,
    pub count: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Ask the model even when the cache has the answer.
    #[serde(default)]
    pub no_cache: bool,
    /// Write nothing: the report carries the change as a diff.
    #[serde(default)]
    pub dry_run: bool,
    /// Keep the venture's earlier unaccepted drafts of a block.
    #[serde(default)]
    pub append: bool,
}

/// Drafts for one venture, block by block (`generate --json`). With `Accept:
/// text/event-stream`, the progress as server-sent events (`queued`, `attempt`, `piece`, `done`),
/// then `report` and `end`.
#[utoipa::path(post, path = "/v1/generate", tag = "drafts", request_body = GenerateBody,
    security(("token" = [])),
    responses(
        (status = 200, description = "The run's report, or its events (text/event-stream)", body = Object),
        (status = 400, description = "A field to fix", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "Unknown venture or block", body = ErrorBody),
        (status = 502, description = "The provider failed", body = ErrorBody),
    ))]
async fn generate(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    headers: HeaderMap,
    Body(body): Body<GenerateBody>,
) -> Result<Response, ApiError> {
    let graph = graph(&state)?;
    // Names are checked before the answer starts (a stream has no status to fail with later).
    pipeline::resolve_venture(&graph, &body.venture, body.brief.clone())?;
    crate::run::plan::select_blocks(&graph, &body.blocks)?;
    let (provider, model, use_cache, dry_run) = (
        body.provider.clone(),
        body.model.clone(),
        !body.no_cache,
        body.dry_run,
    );
    let make_engine = {
        let state = state.clone();
        move |graph| -> Result<Arc<crate::run::Engine>, ApiError> {
            let engine = state.engine(
                graph,
                provider.as_deref(),
                model.as_deref(),
                use_cache,
                None,
            )?;
            Ok(Arc::new(match dry_run {
                true => engine.dry_run(),
                false => engine,
            }))
        }
    };
    let engine = make_engine(graph)?;
    let request = Asked {
        venture: body.venture,
        brief: body.brief,
        blocks: body.blocks,
        count: body.count,
        provider: body.provider,
        model: body.model,
    };
    let options = crate::generate::Options {
        dry_run: body.dry_run,
        append: body.append,
        cancel: Some(state.shutdown.subscribe()),
    };
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<SseEvent>();
    let (done_sender, done) = tokio::sync::oneshot::channel();
    let task_state = state.clone();
    // The run is a task of its own: a client that goes away does not cut a pair in half.
    state.spawn(async move {
        let state = task_state;
        let _writing = match options.dry_run {
            true => None,
            false => Some(
                queue(&state, |message| {
                    let _ = sender.send(sse("queued", &json!({"message": message})));
                })
                .await,
            ),
        };
        // A run that waited in line reads the graph as the runs before it left it.
        let engine = match state.graph() {
            Ok(fresh) if !Arc::ptr_eq(&fresh, &engine.graph) => match make_engine(fresh) {
                Ok(engine) => engine,
                Err(error) => {
                    let _ = done_sender.send(Err(error));
                    return;
                }
            },
            _ => engine,
        };
        let _local = local_turn(&state, &engine).await;
        let (events, mut engine_events) = tokio::sync::mpsc::unbounded_channel();
        let forward = {
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Some(event) = engine_events.recv().await {
                    let _ = sender.send(sse_event(&event));
                }
            })
        };
        let report =
            crate::generate::run(engine.clone(), &request, &options, Events::new(events)).await;
        let _ = forward.await;
        state.keep_model(&engine);
        let answer = generate_answer(report);
        match &answer {
            Ok(report) => {
                let _ = sender.send(sse("report", report));
                let _ = sender.send(sse("end", &json!({"state": "finished"})));
            }
            Err(error) => {
                let _ = sender.send(sse(
                    "error",
                    &json!({"code": error.code, "message": error.message}),
                ));
                let _ = sender.send(sse("end", &json!({"state": "failed"})));
            }
        }
        let _ = done_sender.send(answer);
    });
    if streaming {
        return Ok(Sse::new(channel_stream(receiver))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    drop(receiver);
    match done.await {
        Ok(Ok(report)) => Ok(Json(report).into_response()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ApiError::internal(
            "the generate task ended without an answer",
        )),
    }
}

/// A report, or the provider's failure when it could answer no pair.
fn generate_answer(
    report: Result<crate::run::RunReport, crate::run::Error>,
) -> Result<Value, ApiError> {
    let report = report?;
    if let Some(fatal) = report
        .failed
        .iter()
        .find(|failed| failed.kind == FailureKind::Fatal)
    {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider",
            fatal.reason.clone(),
        ));
    }
    serde_json::to_value(&report).map_err(ApiError::internal)
}

/// Wait for this server's other writing runs, then for other processes' (the graph's lock);
/// `waiting` hears why, once.
async fn queue(state: &State, mut waiting: impl FnMut(String)) -> tokio::sync::MutexGuard<'_, ()> {
    let writer = match state.writer.try_lock() {
        Ok(guard) => guard,
        Err(_) => {
            waiting("waiting for this server's run before it to finish".to_string());
            state.writer.lock().await
        }
    };
    state.wait_for_graph_lock(&mut waiting).await;
    writer
}

/// The embedded model's turn, for a run that uses it.
async fn local_turn<'s>(
    state: &'s State,
    engine: &crate::run::Engine,
) -> Option<tokio::sync::MutexGuard<'s, ()>> {
    match engine.provider {
        crate::llm::Provider::Local { .. } => Some(state.local_model.lock().await),
        crate::llm::Provider::Openai { .. } => None,
    }
}

fn sse(name: &str, data: &Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

fn sse_event(event: &crate::run::Event) -> SseEvent {
    let data = serde_json::to_value(event).unwrap_or(Value::Null);
    let name = data
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("event")
        .to_string();
    SseEvent::default().event(name).data(data.to_string())
}

fn channel_stream(
    receiver: tokio::sync::mpsc::UnboundedReceiver<SseEvent>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}

/// `POST /v1/enrich`: what `enrich` does.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrichBody {
    /// Venture names; none for every venture of the graph.
    #[serde(default)]
    pub ventures: Vec<String>,
    /// Block ids, titles or last id segments; none for every block.
    #[serde(default)]
    pub blocks: Vec<String>,
    /// Pairs with fewer items than this (default 1: pairs with none).
    pub min_items: Option<usize>,
    /// Every selected pair, whatever it holds.
    #[serde(default)]
    pub force: bool,
    pub count: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// USD; a plan over it is refused, a run stops before passing it.
    pub budget_usd: Option<f64>,
    pub concurrency: Option<usize>,
    /// When the run resumes, ask again the pairs it recorded as failed.
    #[serde(default)]
    pub retry_failed: bool,
    #[serde(default)]
    pub no_cache: bool,
}

/// Start `enrich` as a job: 202 with the job (its id is the run's id in the journal). An
/// unfinished run asked the same is resumed, as on the command line.
#[utoipa::path(post, path = "/v1/enrich", tag = "jobs", request_body = EnrichBody,
    security(("token" = [])),
    responses(
        (status = 202, description = "The job, queued or running", body = JobStatus),
        (status = 400, description = "A field to fix, or a plan over budget", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "Unknown venture or block", body = ErrorBody),
        (status = 409, description = "This run is already running", body = ErrorBody),
    ))]
async fn enrich_job(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    Body(body): Body<EnrichBody>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    if let Some(budget) = body.budget_usd
        && !(budget.is_finite() && budget >= 0.0)
    {
        return Err(ApiError::bad_request(
            "budget_usd must be a number of USD, 0 or more (0: no budget)",
        )
        .field("budget_usd"));
    }
    if body.concurrency == Some(0) {
        return Err(ApiError::bad_request("concurrency must be 1 or more").field("concurrency"));
    }
    let selection = Selection {
        ventures: body.ventures,
        blocks: body.blocks,
        min_items: body.min_items.unwrap_or(1),
        force: body.force,
        count: body.count.unwrap_or(state.settings.generate.count),
    };
    let started = start_enrich(
        &state,
        EnrichJob {
            selection,
            provider: body.provider,
            model: body.model,
            budget_usd: body.budget_usd,
            concurrency: body.concurrency,
            retry_failed: body.retry_failed,
            use_cache: !body.no_cache,
            resume: None,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// What an enrich job is asked.
struct EnrichJob {
    selection: Selection,
    provider: Option<String>,
    model: Option<String>,
    budget_usd: Option<f64>,
    concurrency: Option<usize>,
    retry_failed: bool,
    use_cache: bool,
    /// The journal's run to go on with.
    resume: Option<String>,
}

impl EnrichJob {
    /// The engine and plan of this job on `graph`; a plan over the budget is refused.
    fn plan(
        &self,
        state: &State,
        graph: Arc<crate::graph::Graph>,
    ) -> Result<(crate::run::Engine, crate::run::plan::Plan), ApiError> {
        let engine = state.engine(
            graph,
            self.provider.as_deref(),
            self.model.as_deref(),
            self.use_cache,
            self.budget_usd,
        )?;
        // The fields of an enrich request are lists.
        let budget = engine.settings.generate.budget_usd;
        let plan = enrich::plan_for_budget(&engine, &self.selection, budget).map_err(|error| {
            let error = ApiError::from(error);
            match error.field.as_deref() {
                Some("venture") => error.field("ventures"),
                Some("block") => error.field("blocks"),
                _ => error,
            }
        })?;
        enrich::check_budget(&plan, budget)?;
        Ok((engine, plan))
    }
}

/// Plan an `enrich` run and start it as a job.
async fn start_enrich(state: &AppState, asked: EnrichJob) -> Result<JobStatus, ApiError> {
    let graph = graph(state)?;
    let (plan, asked, run_id) = {
        let state = state.clone();
        blocking(move || {
            let (engine, plan) = asked.plan(&state, graph)?;
            let run_id = match &asked.resume {
                Some(id) => id.clone(),
                None => enrich::run_id_for(&engine, &asked.selection, asked.retry_failed)?,
            };
            Ok((plan, asked, run_id))
        })
        .await?
    };
    let job = {
        let mut jobs = locked(&state.jobs);
        if let Some(job) = jobs.get(&run_id)
            && !job.ended()
        {
            return Err(ApiError::conflict(format!(
                "run {run_id} is already running as a job: GET /v1/jobs/{run_id} follows it"
            )));
        }
        // Ended jobs are kept in memory (with their reports and events) up to a number; the
        // journal keeps every run.
        let ended: Vec<String> = jobs
            .iter()
            .filter(|(_, job)| job.ended())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended.iter().take(ended.len().saturating_sub(KEPT_JOBS)) {
            jobs.remove(id);
        }
        let job = Job::new(run_id.clone(), plan.pairs.len());
        jobs.insert(run_id.clone(), job.clone());
        job
    };
    let request = EnrichRequest {
        selection: asked.selection.clone(),
        concurrency: asked
            .concurrency
            .unwrap_or(state.settings.enrich.concurrency),
        retry_failed: asked.retry_failed,
        resume: Some(run_id),
        cancel: Some(job.cancel_receiver()),
        ..Default::default()
    };
    let status = job.status();
    let task_state = state.clone();
    state.spawn(async move {
        let state = task_state;
        let _writing = queue(&state, |message| job.set_state("queued", Some(message))).await;
        if *job.cancel_receiver().borrow() {
            job.end(
                "cancelled",
                None,
                Some("cancelled before it started".into()),
            );
            return;
        }
        // Planned again on the graph as the runs before this one (and any edits) left it.
        let planned = state
            .fresh_graph()
            .map_err(ApiError::from)
            .and_then(|graph| asked.plan(&state, graph));
        let (engine, plan) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                job.end("failed", None, Some(error.message));
                return;
            }
        };
        let engine = Arc::new(engine);
        let _local = local_turn(&state, &engine).await;
        job.set_state("running", None);
        let (events, mut engine_events) = tokio::sync::mpsc::unbounded_channel();
        let forward = {
            let job = job.clone();
            tokio::spawn(async move {
                while let Some(event) = engine_events.recv().await {
                    job.engine_event(&event);
                }
            })
        };
        let report = enrich::run(engine.clone(), plan, &request, Events::new(events)).await;
        let _ = forward.await;
        state.keep_model(&engine);
        match report {
            Ok(report) => {
                let journaled = Journal::open_existing(&state.root)
                    .ok()
                    .flatten()
                    .and_then(|journal| journal.run(&report.run_id).ok().flatten())
                    .map_or_else(|| "finished".to_string(), |run| run.state);
                job.end(&journaled, serde_json::to_value(&report).ok(), None);
            }
            Err(error) => {
                let message = ApiError::from(error).message;
                job.end("failed", None, Some(message));
            }
        }
    });
    Ok(status)
}

/// The runs of the graph's journal, newest first (`runs --json`): command-line runs and jobs.
/// A job waiting for the graph is `queued`; a run cut short by a restart is `interrupted`.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, description = "The runs", body = Vec<Object>)))]
async fn jobs_list(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let mut runs = journal::runs_as_seen(&state.root).map_err(ApiError::internal)?;
    let jobs = locked(&state.jobs).clone();
    let mut listed: Vec<Value> = Vec::new();
    for job in jobs.values() {
        if !runs.iter().any(|run| run.id == job.id) {
            listed.push(serde_json::to_value(job.status()).map_err(ApiError::internal)?);
        }
    }
    for run in &mut runs {
        match jobs.get(&run.id) {
            Some(job) if !job.ended() => run.state = job.status().state,
            _ => {}
        }
        listed.push(serde_json::to_value(&*run).map_err(ApiError::internal)?);
    }
    Ok(Json(Value::Array(listed)))
}

/// One job: its state, counts, and its report once it has ended.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The job", body = JobStatus),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
async fn job_show(
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, ApiError> {
    if let Some(job) = find_job(&state, &id) {
        return Ok(Json(job.status()));
    }
    let run = journal_run(&state, &id)?;
    Ok(Json(JobStatus {
        id: run.id,
        state: run.state,
        message: None,
        pairs: run.pairs,
        done: run.done,
        failed: run.failed,
        report: None,
    }))
}

/// Cancel a job: pairs in flight finish and are written, the others are journaled as not
/// attempted; the run can be resumed.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    security(("token" = [])),
    responses(
        (status = 202, description = "Cancelling", body = JobStatus),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has ended", body = ErrorBody),
    ))]
async fn job_cancel(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    let Some(job) = find_job(&state, &id) else {
        journal_run(&state, &id)?;
        return Err(ApiError::conflict(format!(
            "run {id} is not running in this server: nothing to cancel"
        )));
    };
    if job.ended() {
        return Err(ApiError::conflict(format!(
            "job {id} has ended ({}): nothing to cancel",
            job.status().state
        )));
    }
    job.cancel();
    let mut status = job.status();
    status.message = Some("cancelling: pairs in flight finish, no other starts".into());
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// The job's events as server-sent events, from its first: `state`, `started`, `done`,
/// `failed`, then `totals` and `end`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
async fn job_events(
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(job) = find_job(&state, &id) {
        return Ok(Sse::new(job.events())
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    // A run of another process or an earlier server: only how it ended is known.
    let run = journal_run(&state, &id)?;
    let end = sse("end", &json!({"state": run.state, "message": null}));
    Ok(Sse::new(futures::stream::iter([Ok::<_, Infallible>(end)])).into_response())
}

/// Resume an `enrich` run that was cancelled, stopped or cut short by a restart: pairs it
/// finished are not asked again.
#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs",
    params(("id" = String, Path, description = "The run's id")),
    security(("token" = [])),
    responses(
        (status = 202, description = "The job, queued or running", body = JobStatus),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "Running, finished, or not an enrich run", body = ErrorBody),
    ))]
async fn job_resume(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobStatus>), ApiError> {
    if find_job(&state, &id).is_some_and(|job| !job.ended()) {
        return Err(ApiError::conflict(format!("job {id} is running")));
    }
    let run = journal_run(&state, &id)?;
    if run.command != "enrich" {
        return Err(ApiError::conflict(format!(
            "run {id} is a `{}` run: only enrich runs resume (run generate again)",
            run.command
        )));
    }
    if run.state == "finished" {
        return Err(ApiError::conflict(format!(
            "run {id} has finished: nothing to resume"
        )));
    }
    let args = JournalArgs::parse(&run.args)?;
    let started = start_enrich(
        &state,
        EnrichJob {
            selection: args.selection(),
            provider: Some(args.provider),
            model: Some(args.model),
            budget_usd: None,
            concurrency: None,
            retry_failed: false,
            use_cache: true,
            resume: Some(id),
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

fn find_job(state: &State, id: &str) -> Option<Arc<Job>> {
    locked(&state.jobs).get(id).cloned()
}

/// A run of the journal as it stands (`interrupted` when its process died).
fn journal_run(state: &State, id: &str) -> Result<crate::run::journal::RunRecord, ApiError> {
    journal::run_as_seen(&state.root, id, false)
        .map_err(ApiError::internal)?
        .map(|(run, _)| run)
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`: GET /v1/jobs lists them")))
}

/// Which drafts (`drafts list`): every parameter narrows the choice.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DraftsQuery {
    pub venture: Option<String>,
    /// A block id, title or last id segment.
    pub block: Option<String>,
    pub run: Option<String>,
    /// An item name.
    pub item: Option<String>,
}

/// The unaccepted drafts of the graph (`drafts list --json`).
#[utoipa::path(get, path = "/v1/drafts", tag = "drafts", params(DraftsQuery),
    responses(
        (status = 200, description = "The drafts", body = Vec<Object>),
        (status = 400, description = "A parameter to fix", body = ErrorBody),
    ))]
async fn drafts_list(
    axum::extract::State(state): axum::extract::State<AppState>,
    Params(query): Params<DraftsQuery>,
) -> Result<Json<Value>, ApiError> {
    let graph = graph(&state)?;
    let selection = writeback::Selection {
        venture: query.venture,
        block: query.block,
        run: query.run,
        items: query.item.into_iter().collect(),
        all: false,
    };
    let drafts = writeback::list(&graph, &selection)?;
    Ok(Json(
        serde_json::to_value(drafts).map_err(ApiError::internal)?,
    ))
}

/// `POST /v1/drafts/accept` and `/reject`: the same selection as the commands.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    pub venture: Option<String>,
    /// A block id, title or last id segment.
    pub block: Option<String>,
    pub run: Option<String>,
    /// Item names (any of them).
    #[serde(default)]
    pub items: Vec<String>,
    /// Every draft of the graph (when nothing else is given).
    #[serde(default)]
    pub all: bool,
    /// Say what would change, as a diff; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Accept drafts: their draft marks go, the items stay (`drafts accept --json`).
#[utoipa::path(post, path = "/v1/drafts/accept", tag = "drafts", request_body = DecideBody,
    security(("token" = [])),
    responses(
        (status = 200, description = "The drafts and the pages changed", body = Object),
        (status = 400, description = "An empty selection", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No draft matches", body = ErrorBody),
    ))]
async fn drafts_accept(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    Body(body): Body<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    decide(state, body, Decision::Accept).await
}

/// Reject drafts: their items go (`drafts reject --json`).
#[utoipa::path(post, path = "/v1/drafts/reject", tag = "drafts", request_body = DecideBody,
    security(("token" = [])),
    responses(
        (status = 200, description = "The drafts and the pages changed", body = Object),
        (status = 400, description = "An empty selection", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No draft matches", body = ErrorBody),
    ))]
async fn drafts_reject(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: Authorized,
    Body(body): Body<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    decide(state, body, Decision::Reject).await
}

async fn decide(
    state: AppState,
    body: DecideBody,
    decision: Decision,
) -> Result<Json<Value>, ApiError> {
    let selection = writeback::Selection {
        venture: body.venture,
        block: body.block,
        run: body.run,
        items: body.items,
        all: body.all,
    };
    let _writing = match body.dry_run {
        true => None,
        false => Some(queue(&state, |_| {}).await),
    };
    let root = state.root.clone();
    blocking(move || {
        let decided = writeback::decide_on_disk(&root, &selection, decision, body.dry_run)?;
        Ok(Json(
            serde_json::to_value(decided).map_err(ApiError::internal)?,
        ))
    })
    .await
}
