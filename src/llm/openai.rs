//! The `openai` provider: any OpenAI-compatible Chat Completions endpoint, through
//! `async-openai`, streaming.
//!
//! Retries live here and only here. async-openai's default client wraps every request in its
//! own retry layer (429 except `insufficient_quota`, 5xx and connect errors, three times, with
//! `Retry-After`), but it cannot see what goes wrong after the headers: a timeout while the
//! answer streams, a connection dropped or a body cut short. So the client is built over the
//! bare transport ([`ReqwestService`]) and [`OpenAiModel::complete`] retries the whole request
//! (429, 5xx, timeouts, dropped connections, truncated or unreadable bodies) with exponential
//! backoff and jitter, honouring `Retry-After`, within `max_retries` and `retry_budget_secs`.
//!
//! Structured output: the preset says which `response_format` to ask for first. An endpoint that
//! refuses it (a 400, 422 or 5xx naming the format) is asked for the next weaker one, for the
//! rest of the run, and the user is told once per refused format: `json_schema` (OpenAI's
//! structured output), then `json_object` with the schema beside it (llama-cpp-python refuses
//! `json_schema` with HTTP 500 "Input should be 'text' or 'json_object'" but turns this one into
//! a grammar that constrains decoding; so does llama.cpp's server), then bare `json_object`, then
//! plain text. async-openai's typed `ResponseFormat` cannot say the second one, so the request is
//! its typed request with our own `response_format` beside it ([`WireRequest`]), sent through its
//! bring-your-own-types call. Answers are validated on our side whatever the endpoint promised.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionStreamResponse,
    FinishReason,
};
use futures::StreamExt;
use serde_json::Value;

use super::Role;
use super::{ChatModel, ChatRequest, Completion, ModelError, Progress, Provider, Usage};
use crate::config::{ProviderSettings, ResponseFormat};

/// Why an endpoint gave no answer. Each message names the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "the `{preset}` provider needs an API key: set {variable} in the environment or in .env"
    )]
    MissingKey { preset: String, variable: String },
    #[error("provider settings: {0}")]
    Config(String),
    #[error(
        "{url} refused the API key (HTTP {status}: {message}): check that {variable} holds a valid key for this endpoint"
    )]
    Auth {
        status: u16,
        url: String,
        variable: String,
        message: String,
    },
    #[error(
        "the account behind {variable} has no quota left ({message}): add credit or billing to it, or use another key (not retried)"
    )]
    Quota { variable: String, message: String },
    #[error(
        "model `{model}` is not available at {url} ({message}): choose another with --model or the preset's `model`"
    )]
    ModelNotFound {
        model: String,
        url: String,
        message: String,
    },
    #[error(
        "{url} has no chat completions endpoint (HTTP {status}): check the preset's base_url (an OpenAI-compatible URL usually ends in /v1)"
    )]
    BaseUrl { url: String, status: u16 },
    #[error("the endpoint rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error(
        "the answer was cut off at the token limit ({max_tokens} tokens): raise the preset's max_tokens"
    )]
    TokenLimit { max_tokens: u32 },
    #[error("the Batch API at {url}: {message}")]
    Batch { url: String, message: String },
    #[error("gave up after {attempts} attempt(s) in {seconds:.1} s: {last}{hint}")]
    GaveUp {
        attempts: u32,
        seconds: f64,
        last: String,
        hint: &'static str,
        /// The last attempt could not reach the server at all.
        unreachable: bool,
    },
}

/// A failure worth trying again, and how long the server asked us to wait.
#[derive(Debug)]
struct Transient {
    reason: String,
    retry_after: Option<Duration>,
    /// The server could not be reached at all (wrong host or port, server down).
    unreachable: bool,
}

enum Failure {
    Transient(Transient),
    Permanent(RemoteError),
    /// The endpoint refused the response format: ask again with a weaker one.
    FormatRefused(String),
}

/// An OpenAI-compatible endpoint with its preset's settings.
pub struct OpenAiModel {
    provider: Provider,
    base_url: String,
    model: String,
    key_variable: String,
    config: OpenAIConfig,
    http: reqwest::Client,
    /// The format asked for now; weakened when the endpoint refuses one.
    format: Mutex<ResponseFormat>,
    max_retries: u32,
    retry_budget: Duration,
    /// Backoff before the first retry when the server names no delay.
    base_delay: Duration,
    /// `requests_per_minute` and `tokens_per_minute` of the preset, when set.
    requests: Option<Limiter>,
    tokens: Option<(Limiter, NonZeroU32)>,
    /// HTTP 429 answers seen so far (the scheduler lowers its concurrency on new ones).
    rate_limited: AtomicU64,
    /// The last retry warned about, and when: requests out at once that meet the same trouble
    /// (128 of them against a server that went away) are warned about once every few seconds.
    retry_warned: Mutex<Option<(String, Instant)>>,
}

/// How long a retry's reason, once warned about, is only logged at debug level.
const RETRY_WARNING_QUIET: Duration = Duration::from_secs(5);

type Limiter = governor::DefaultDirectRateLimiter;

/// A limiter of `per_minute` units (a minute's worth may go at once), or none for 0.
fn per_minute(per_minute: u32) -> Option<(Limiter, NonZeroU32)> {
    let amount = NonZeroU32::new(per_minute)?;
    Some((
        governor::RateLimiter::direct(governor::Quota::per_minute(amount)),
        amount,
    ))
}

impl OpenAiModel {
    pub fn new(
        provider: Provider,
        settings: &ProviderSettings,
        key: Option<String>,
    ) -> Result<OpenAiModel, RemoteError> {
        let Provider::Openai {
            model,
            base_url,
            api_key_env,
            ..
        } = &provider
        else {
            return Err(RemoteError::Config(
                "the openai provider was given a local model".into(),
            ));
        };
        install_crypto_provider();
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 30)));
        // A plain-HTTP endpoint (a server on this machine or network) uses no certificates:
        // reading the platform's store (some 140 files here) is left to https ones.
        if base_url
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("http://")
        {
            http = http.tls_certs_only(std::iter::empty());
        }
        let http = http
            .build()
            .map_err(|error| RemoteError::Config(format!("HTTP client: {error}")))?;
        // An explicit key (possibly empty): OpenAIConfig would otherwise read OPENAI_API_KEY
        // and send it to whatever server the preset names.
        let config = OpenAIConfig::new()
            .with_api_base(base_url.trim_end_matches('/'))
            .with_api_key(key.unwrap_or_default());
        Ok(OpenAiModel {
            base_url: base_url.clone(),
            model: model.clone(),
            key_variable: api_key_env.clone(),
            config,
            http,
            format: Mutex::new(settings.response_format),
            max_retries: settings.max_retries,
            retry_budget: Duration::from_secs(settings.retry_budget_secs),
            base_delay: Duration::from_millis(500),
            // Evenly spaced, no burst: `n` a minute is one every 60/n seconds.
            requests: NonZeroU32::new(settings.requests_per_minute).map(|amount| {
                governor::RateLimiter::direct(
                    governor::Quota::per_minute(amount).allow_burst(NonZeroU32::MIN),
                )
            }),
            tokens: per_minute(settings.tokens_per_minute),
            rate_limited: AtomicU64::new(0),
            retry_warned: Mutex::new(None),
            provider,
        })
    }

    /// Wait until the preset's request and token rates allow one more request.
    async fn pace(&self, request: &ChatRequest) {
        if let Some(limiter) = &self.requests {
            limiter.until_ready().await;
        }
        if let Some((limiter, capacity)) = &self.tokens {
            let tokens = super::tokens::by_characters(&request.messages, 4.0, 4, 3)
                + request.params.max_tokens as usize;
            let wanted = u32::try_from(tokens)
                .ok()
                .and_then(NonZeroU32::new)
                .map_or(*capacity, |wanted| wanted.min(*capacity));
            // Never more than the capacity: a request larger than a minute's tokens waits for a
            // whole minute's worth.
            let _ = limiter.until_n_ready(wanted).await;
        }
    }

    fn current_format(&self) -> ResponseFormat {
        self.format
            .lock()
            .map(|format| *format)
            .unwrap_or(ResponseFormat::Text)
    }

    /// Weaken the format after a refusal; false when there is nothing weaker.
    fn weaken_format(&self, refused: ResponseFormat, message: &str) -> bool {
        let Ok(mut format) = self.format.lock() else {
            return false;
        };
        if *format != refused {
            // Another request already weakened it.
            return true;
        }
        match refused.weaker() {
            Some(weaker) => {
                tracing::warn!(
                    "{} refused response_format {} ({message}); asking for {} from now on",
                    self.base_url,
                    refused.as_str(),
                    weaker.as_str()
                );
                *format = weaker;
                true
            }
            None => false,
        }
    }

    fn wire_request<'r>(
        &self,
        request: &'r ChatRequest,
        format: ResponseFormat,
    ) -> WireRequest<'r> {
        wire_request(&self.model, request, format, true)
    }

    /// One attempt: send, stream the answer, classify what went wrong.
    async fn attempt(
        &self,
        request: &ChatRequest,
        format: ResponseFormat,
        progress: Progress<'_>,
    ) -> Result<Completion, Failure> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let service = ResponseProbe {
            inner: ReqwestService::new(self.http.clone()),
            seen: seen.clone(),
        };
        // `build` takes our client as it is: `with_config` would build (and load the system's
        // certificates for) a client of its own on every request, only to drop it.
        let client = async_openai::Client::build(self.http.clone(), self.config.clone())
            .with_http_service(service);
        let wire = self.wire_request(request, format);
        let sent = client
            .chat()
            .create_stream_byot::<_, CreateChatCompletionStreamResponse>(&wire)
            .await;
        let mut stream = match sent {
            Ok(stream) => stream,
            Err(error) => {
                let seen = seen.lock().map(|seen| *seen).unwrap_or_default();
                return Err(self.classify(error, seen, format));
            }
        };
        let mut text = String::new();
        let mut usage = Usage::default();
        let mut finish = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.classify(error, Seen::default(), format))?;
            if let Some(reported) = chunk.usage {
                usage = Usage {
                    prompt_tokens: u64::from(reported.prompt_tokens),
                    completion_tokens: u64::from(reported.completion_tokens),
                };
            }
            for choice in chunk.choices {
                if let Some(piece) = choice.delta.content {
                    progress(&piece);
                    text.push_str(&piece);
                }
                if let Some(reason) = choice.finish_reason {
                    finish = Some(reason);
                }
            }
        }
        match finish {
            None => Err(Failure::Transient(Transient {
                reason: "the connection closed before the answer was complete".into(),
                retry_after: None,
                unreachable: false,
            })),
            Some(FinishReason::Length) => Err(Failure::Permanent(RemoteError::TokenLimit {
                max_tokens: request.params.max_tokens,
            })),
            Some(_) => Ok(Completion {
                text,
                usage,
                constrained_by: format.as_str().to_string(),
                taken_back: Default::default(),
            }),
        }
    }

    fn classify(&self, error: OpenAIError, seen: Seen, format: ResponseFormat) -> Failure {
        let transient = |reason: String, unreachable: bool| {
            Failure::Transient(Transient {
                reason,
                retry_after: seen.retry_after,
                unreachable,
            })
        };
        // An error status whose body is not OpenAI's error JSON (an empty 404, an HTML page):
        // async-openai reports the body; the status tells what happened.
        if let (OpenAIError::JSONDeserialize(_, body), Some(status)) = (&error, seen.status)
            && !(200..300).contains(&status)
        {
            let message = body.chars().take(200).collect::<String>();
            let api = async_openai::error::ApiErrorResponse {
                status_code: reqwest::StatusCode::from_u16(status)
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                api_error: async_openai::error::ApiError {
                    message: if message.trim().is_empty() {
                        "(no body)".into()
                    } else {
                        message
                    },
                    r#type: None,
                    param: None,
                    code: None,
                    misalignment: None,
                },
            };
            return self.classify(OpenAIError::ApiError(api), seen, format);
        }
        match error {
            OpenAIError::ApiError(response) => {
                let status = response.status_code.as_u16();
                let api = response.api_error;
                let code = api.code.clone().unwrap_or_default();
                let kind = api.r#type.clone().unwrap_or_default();
                let message = server_message(&api.message);
                let lower = message.to_lowercase();
                if code == "insufficient_quota" || kind == "insufficient_quota" {
                    return Failure::Permanent(RemoteError::Quota {
                        variable: self.key_variable.clone(),
                        message,
                    });
                }
                if status == 401 || status == 403 {
                    return Failure::Permanent(RemoteError::Auth {
                        status,
                        url: self.base_url.clone(),
                        variable: if self.key_variable.is_empty() {
                            "the preset's api_key_env variable".into()
                        } else {
                            self.key_variable.clone()
                        },
                        message,
                    });
                }
                if status == 429 {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    return transient(format!("rate limited (HTTP 429): {message}"), false);
                }
                let mentions_model = code == "model_not_found"
                    || (lower.contains("model")
                        && (lower.contains("not found")
                            || lower.contains("does not exist")
                            || lower.contains("not exist")));
                if mentions_model && (status == 404 || status == 400) {
                    return Failure::Permanent(RemoteError::ModelNotFound {
                        model: self.model.clone(),
                        url: self.base_url.clone(),
                        message,
                    });
                }
                let refuses_format = format != ResponseFormat::Text
                    && (lower.contains("response_format")
                        || lower.contains("json_schema")
                        || lower.contains("json_object"));
                if refuses_format && (status == 400 || status == 422 || status >= 500) {
                    return Failure::FormatRefused(message);
                }
                if status == 404 || status == 405 {
                    return Failure::Permanent(RemoteError::BaseUrl {
                        url: self.base_url.clone(),
                        status,
                    });
                }
                if status >= 500 {
                    return transient(format!("server error (HTTP {status}): {message}"), false);
                }
                Failure::Permanent(RemoteError::Rejected { status, message })
            }
            OpenAIError::Reqwest(error) if error.is_timeout() => transient(
                format!("no complete answer within the timeout ({error})"),
                false,
            ),
            OpenAIError::Reqwest(error) if error.is_connect() => transient(
                format!("cannot connect to {} ({error})", self.base_url),
                true,
            ),
            OpenAIError::Reqwest(error) => transient(
                format!("the connection failed ({})", error_chain(&error)),
                false,
            ),
            OpenAIError::JSONDeserialize(error, _) => transient(
                format!("the endpoint sent a malformed response ({error})"),
                false,
            ),
            OpenAIError::StreamError(error) => {
                transient(format!("the answer stream broke off ({error})"), false)
            }
            other => transient(other.to_string(), false),
        }
    }

    /// Whether a retry for `reason` was warned about within [`RETRY_WARNING_QUIET`]; if not, it
    /// is about to be, and counts from now.
    fn warned_lately(&self, reason: &str) -> bool {
        let mut warned = self
            .retry_warned
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let lately = warned
            .as_ref()
            .is_some_and(|(last, at)| last == reason && at.elapsed() < RETRY_WARNING_QUIET);
        if !lately {
            *warned = Some((reason.to_string(), Instant::now()));
        }
        lately
    }

    /// The wait before retry number `retry` (1-based): the server's Retry-After, else
    /// exponential backoff with full jitter on top.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let exponential = self
            .base_delay
            .saturating_mul(2_u32.saturating_pow(retry.saturating_sub(1)))
            .min(Duration::from_secs(30));
        let jitter = exponential.mul_f64(fastrand::f64() * 0.5);
        exponential + jitter
    }
}

#[async_trait::async_trait]
impl ChatModel for OpenAiModel {
    fn provider(&self) -> &Provider {
        &self.provider
    }

    fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        progress: Progress<'_>,
    ) -> Result<Completion, ModelError> {
        let started = Instant::now();
        let mut retries = 0;
        loop {
            self.pace(request).await;
            let format = self.current_format();
            let failure = match self.attempt(request, format, progress).await {
                Ok(completion) => return Ok(completion),
                Err(failure) => failure,
            };
            let transient = match failure {
                Failure::Permanent(error) => return Err(error.into()),
                Failure::FormatRefused(message) => {
                    if self.weaken_format(format, &message) {
                        continue;
                    }
                    return Err(RemoteError::Rejected {
                        status: 400,
                        message,
                    }
                    .into());
                }
                Failure::Transient(transient) => transient,
            };
            retries += 1;
            let wait = self.delay(retries, transient.retry_after);
            let out_of_budget = started.elapsed() + wait > self.retry_budget;
            if retries > self.max_retries || out_of_budget {
                return Err(RemoteError::GaveUp {
                    attempts: retries,
                    seconds: started.elapsed().as_secs_f64(),
                    last: transient.reason,
                    hint: if transient.unreachable {
                        ": is the server running, and is the preset's base_url right?"
                    } else {
                        ""
                    },
                    unreachable: transient.unreachable,
                }
                .into());
            }
            let retrying = format!(
                "{}; retrying in {:.1} s (retry {retries} of {})",
                transient.reason,
                wait.as_secs_f64(),
                self.max_retries
            );
            match self.warned_lately(&transient.reason) {
                false => tracing::warn!("{retrying}"),
                true => tracing::debug!("{retrying}"),
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// OpenAI's Batch API (Files and Batches endpoints): the way past one machine's rate limits, at
/// half price.
impl OpenAiModel {
    fn batch_client(&self) -> async_openai::Client<OpenAIConfig> {
        async_openai::Client::build(self.http.clone(), self.config.clone())
    }

    fn batch_error(&self, error: OpenAIError) -> RemoteError {
        RemoteError::Batch {
            url: self.base_url.clone(),
            message: match error {
                OpenAIError::ApiError(response) => format!(
                    "HTTP {}: {}",
                    response.status_code.as_u16(),
                    server_message(&response.api_error.message)
                ),
                other => error_chain(&other),
            },
        }
    }

    /// Upload `jsonl` (a batch file) and create a batch of chat completions from it.
    pub async fn submit_batch(
        &self,
        jsonl: Vec<u8>,
    ) -> Result<async_openai::types::batches::Batch, RemoteError> {
        use async_openai::types::batches::{BatchCompletionWindow, BatchEndpoint, BatchRequest};
        use async_openai::types::files::{CreateFileRequest, FileInput, FilePurpose};
        let client = self.batch_client();
        let file = client
            .files()
            .create(CreateFileRequest {
                file: FileInput::from_vec_u8("inncopilot-batch.jsonl".into(), jsonl),
                purpose: FilePurpose::Batch,
                expires_after: None,
            })
            .await
            .map_err(|error| self.batch_error(error))?;
        client
            .batches()
            .create(BatchRequest {
                input_file_id: file.id,
                endpoint: BatchEndpoint::V1ChatCompletions,
                completion_window: BatchCompletionWindow::W24H,
                metadata: None,
                output_expires_after: None,
            })
            .await
            .map_err(|error| self.batch_error(error))
    }

    /// A batch as the endpoint reports it now.
    pub async fn batch(
        &self,
        id: &str,
    ) -> Result<async_openai::types::batches::Batch, RemoteError> {
        self.batch_client()
            .batches()
            .retrieve(id)
            .await
            .map_err(|error| self.batch_error(error))
    }

    /// The text of a file (a finished batch's results).
    pub async fn file_text(&self, file_id: &str) -> Result<String, RemoteError> {
        let bytes = self
            .batch_client()
            .files()
            .content(file_id)
            .await
            .map_err(|error| self.batch_error(error))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The body of a request as the OpenAI Batch API (and vLLM's offline runner) takes it: what the
/// live path sends, with `json_schema`, not streamed.
pub fn batch_body(model: &str, request: &ChatRequest) -> Value {
    serde_json::to_value(wire_request(
        model,
        request,
        ResponseFormat::JsonSchema,
        false,
    ))
    .unwrap_or(Value::Null)
}

// `seed` is deprecated by OpenAI but honoured by vLLM, llama.cpp, Ollama and others.
#[allow(deprecated)]
fn wire_request<'r>(
    model: &str,
    request: &'r ChatRequest,
    format: ResponseFormat,
    stream: bool,
) -> WireRequest<'r> {
    let messages = request
        .messages
        .iter()
        .map(|message| match message.role {
            Role::System => ChatCompletionRequestMessage::System(
                ChatCompletionRequestSystemMessage::from(message.content.as_str()),
            ),
            Role::User => ChatCompletionRequestMessage::User(
                ChatCompletionRequestUserMessage::from(message.content.as_str()),
            ),
            Role::Assistant => ChatCompletionRequestMessage::Assistant(
                ChatCompletionRequestAssistantMessage::from(message.content.as_str()),
            ),
        })
        .collect();
    let typed = CreateChatCompletionRequest {
        messages,
        model: model.to_string(),
        temperature: Some(request.params.temperature as f32),
        max_completion_tokens: Some(request.params.max_tokens),
        seed: Some(request.params.seed),
        // Beside it, in `WireRequest`.
        response_format: None,
        stream: stream.then_some(true),
        stream_options: stream.then_some(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        }),
        ..Default::default()
    };
    WireRequest {
        typed,
        response_format: response_format(format, &request.schema),
    }
}

/// The request body: async-openai's typed request, and the `response_format` beside it.
#[derive(serde::Serialize)]
struct WireRequest<'r> {
    #[serde(flatten)]
    typed: CreateChatCompletionRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<WireFormat<'r>>,
}

/// A `response_format`, borrowing the request's schema: `json!` made a copy of it per request,
/// held by every request out.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireFormat<'r> {
    JsonSchema {
        json_schema: NamedSchema<'r>,
    },
    JsonObject {
        #[serde(skip_serializing_if = "Option::is_none")]
        schema: Option<&'r Value>,
    },
}

#[derive(serde::Serialize)]
struct NamedSchema<'r> {
    name: &'static str,
    schema: &'r Value,
}

/// The `response_format` that asks for `format`; none for plain text.
fn response_format(format: ResponseFormat, schema: &Value) -> Option<WireFormat<'_>> {
    match format {
        ResponseFormat::JsonSchema => Some(WireFormat::JsonSchema {
            json_schema: NamedSchema {
                name: "draft",
                schema,
            },
        }),
        // The shape llama-cpp-python documents (after Anyscale's JSON mode) and llama.cpp's
        // server reads too.
        ResponseFormat::JsonObjectSchema => Some(WireFormat::JsonObject {
            schema: Some(schema),
        }),
        ResponseFormat::JsonObject => Some(WireFormat::JsonObject { schema: None }),
        ResponseFormat::Text => None,
    }
}

/// A server's error message on one line. async-openai hands over the whole body of a 5xx
/// (OpenAI does not promise JSON there), so an OpenAI-shaped body is opened to its
/// `error.message`; llama-cpp-python's spans lines (a validation error and a traceback).
fn server_message(message: &str) -> String {
    let inner = serde_json::from_str::<Value>(message.trim())
        .ok()
        .and_then(|body| body["error"]["message"].as_str().map(str::to_string));
    inner
        .as_deref()
        .unwrap_or(message)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The full cause of a transport error ("error sending request: connection reset by peer").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Use ring for TLS (reqwest is built without a default provider, which would bring
/// aws-lc's C build). Installing twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What the transport saw of the last response before async-openai turned it into an error.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    status: Option<u16>,
    /// The `Retry-After` header, in seconds.
    retry_after: Option<Duration>,
}

/// The bare transport, noting the status and `Retry-After` of each response.
#[derive(Clone)]
struct ResponseProbe {
    inner: ReqwestService,
    seen: Arc<Mutex<Seen>>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for ResponseProbe {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let response = self.inner.call(request);
        let slot = self.seen.clone();
        Box::pin(async move {
            let response = response.await?;
            let seconds = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<f64>().ok())
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0);
            if let Ok(mut seen) = slot.lock() {
                *seen = Seen {
                    status: Some(response.status().as_u16()),
                    retry_after: seconds
                        .map(|seconds| Duration::from_secs_f64(seconds.min(3600.0))),
                };
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::llm::Params;

    #[tokio::test]
    async fn requests_per_minute_spaces_the_requests_evenly()
    -> Result<(), Box<dyn std::error::Error>> {
        let settings = Settings::load(None)?;
        let mut preset = settings
            .providers
            .get("openai")
            .cloned()
            .ok_or("no preset")?;
        preset.requests_per_minute = 600;
        let provider = Provider::Openai {
            preset: "openai".into(),
            model: "m".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key_env: String::new(),
        };
        let model = OpenAiModel::new(provider, &preset, None)?;
        let request = ChatRequest {
            messages: Vec::new(),
            schema: Arc::new(Value::Null),
            params: Params {
                temperature: 0.0,
                max_tokens: 10,
                seed: 1,
            },
            avoid_names: Default::default(),
            check: None,
        };
        let started = Instant::now();
        for _ in 0..4 {
            model.pace(&request).await;
        }
        // 600 a minute: one every 100 ms, the first at once.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
        Ok(())
    }
}
