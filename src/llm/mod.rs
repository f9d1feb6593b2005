//! Models: which provider and model a request goes to ([`choose`]), and the one small trait
//! both providers implement ([`ChatModel`]): an OpenAI-compatible endpoint ([`openai`]) and the
//! embedded llama.cpp engine ([`local`]).

#[cfg(feature = "local")]
mod guard;
#[cfg(feature = "local")]
pub mod local;
pub mod openai;
pub mod tokens;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Settings;

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in chat APIs and chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// One chat request: the messages, the answer schema and the sampling parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// The JSON schema the answer must match (bound to the asked item count).
    pub schema: Arc<Value>,
    pub params: Params,
    /// Item names the answer must not use (the venture's items, items kept from earlier
    /// attempts). The prompt says so; the local engine also takes back such a name, or one the
    /// answer gave before, as soon as it is written, and has the model begin it anew.
    pub avoid_names: AvoidNames,
    /// Judges each text of the answer as the embedded model writes it (the junk rules): a
    /// refused text is taken back and written again. Not part of what is sent or cached.
    #[serde(skip)]
    pub check: Option<TextCheck>,
}

/// The names a request's answer must not use, in order: lists shared by every request of a
/// run (the graph's ventures: thousands in an incubator's graph, copied for every request
/// out) and names of the request's own. Serialised as one list, as the cache key has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvoidNames(Vec<NameList>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum NameList {
    Own(Vec<String>),
    Shared(Arc<[String]>),
}

impl AvoidNames {
    /// `names` after those so far.
    pub fn and(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> AvoidNames {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if !names.is_empty() {
            self.0.push(NameList::Own(names));
        }
        self
    }

    /// A list shared with other requests after the names so far.
    pub fn and_shared(mut self, names: Arc<[String]>) -> AvoidNames {
        if !names.is_empty() {
            self.0.push(NameList::Shared(names));
        }
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|list| match list {
                NameList::Own(names) => names.iter(),
                NameList::Shared(names) => names.iter(),
            })
            .map(String::as_str)
    }
}

impl From<Vec<String>> for AvoidNames {
    fn from(names: Vec<String>) -> AvoidNames {
        AvoidNames::default().and(names)
    }
}

impl Serialize for AvoidNames {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// Why a text of an item, at a JSON pointer inside the item (`/name`, `/description`,
/// `/segmentation/0/value`) of an item named as given, is not to be kept; `None` to keep it.
/// Called with (pointer, text, item name).
#[derive(Clone)]
pub struct TextCheck(pub Arc<TextJudge>);

/// The judge inside a [`TextCheck`]: (pointer, text, item name) -> why not, if not.
pub type TextJudge = dyn Fn(&str, &str, &str) -> Option<&'static str> + Send + Sync;

impl std::fmt::Debug for TextCheck {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TextCheck")
    }
}

/// Tokens read and written by one or more requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// A model's answer: its text as it came, and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    /// How the answer was constrained: `grammar` (local), or the `response_format` sent.
    pub constrained_by: String,
    /// Texts the embedded model wrote, the request's check refused and the model wrote again
    /// while decoding, by reason (see [`TextCheck`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub taken_back: BTreeMap<String, usize>,
}

/// Called with each piece of text as the model produces it.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A chat model: one request in, one answer out, streaming pieces to `progress`.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// Where requests go.
    fn provider(&self) -> &Provider;
    /// How many times the endpoint said "too many requests" (HTTP 429) so far.
    fn rate_limited(&self) -> u64 {
        0
    }
    async fn complete(
        &self,
        request: &ChatRequest,
        progress: Progress<'_>,
    ) -> Result<Completion, ModelError>;
}

/// Why a model gave no answer. Every message names the cause and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Remote(#[from] openai::RemoteError),
    #[cfg(feature = "local")]
    #[error(transparent)]
    Local(#[from] local::Error),
    #[error(
        "the local provider needs the `local` feature: rebuild with default features, or use an openai-compatible provider"
    )]
    NoLocalEngine,
}

/// The client of an OpenAI-compatible provider, with its key from the environment.
pub fn connect_openai(
    settings: &Settings,
    provider: &Provider,
    env: impl Fn(&str) -> Option<String>,
) -> Result<openai::OpenAiModel, openai::RemoteError> {
    let Provider::Openai {
        preset,
        api_key_env,
        ..
    } = provider
    else {
        return Err(openai::RemoteError::Config(
            "this needs an OpenAI-compatible provider: pass --provider openai (or another preset)"
                .into(),
        ));
    };
    let preset_settings = settings
        .providers
        .get(preset)
        .cloned()
        .ok_or_else(|| openai::RemoteError::Config(format!("no provider preset `{preset}`")))?;
    let key = (!api_key_env.is_empty())
        .then(|| env(api_key_env))
        .flatten()
        .filter(|key| !key.trim().is_empty());
    if !api_key_env.is_empty() && key.is_none() {
        return Err(openai::RemoteError::MissingKey {
            preset: preset.clone(),
            variable: api_key_env.clone(),
        });
    }
    openai::OpenAiModel::new(provider.clone(), &preset_settings, key)
}

/// Connect to the provider `choose` picked: load the local model, or prepare the HTTP client.
pub fn connect(
    settings: &Settings,
    provider: &Provider,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ChatModel>, ModelError> {
    match provider {
        #[cfg(feature = "local")]
        Provider::Local { .. } => Ok(Arc::new(local::LocalModel::load(
            provider.clone(),
            &settings.local,
        )?)),
        #[cfg(not(feature = "local"))]
        Provider::Local { .. } => Err(ModelError::NoLocalEngine),
        Provider::Openai { .. } => Ok(Arc::new(connect_openai(settings, provider, env)?)),
    }
}

/// Where a request would go.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Provider {
    /// The embedded llama.cpp engine with a GGUF file.
    Local { model: String, path: PathBuf },
    /// An OpenAI-compatible endpoint (a preset of `providers`).
    Openai {
        preset: String,
        model: String,
        base_url: String,
        /// The environment variable the key is read from (never the key).
        api_key_env: String,
    },
}

/// The sampling parameters sent with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown provider `{name}`: use `local` or one of the presets in config ({known})")]
    UnknownProvider { name: String, known: String },
}

impl Provider {
    /// The name shown to users: `local` or the preset name.
    pub fn name(&self) -> &str {
        match self {
            Provider::Local { .. } => "local",
            Provider::Openai { preset, .. } => preset,
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Provider::Local { model, .. } | Provider::Openai { model, .. } => model,
        }
    }
}

/// Choose the provider: `--provider` (or `generate.provider`) when given; otherwise `openai`
/// when its key variable is set, else `local`. `--model` replaces the model. `env` is the
/// process environment (tests pass their own).
pub fn choose(
    settings: &Settings,
    provider_flag: Option<&str>,
    model_flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Provider, Params), Error> {
    let configured = provider_flag.map(str::to_string).or_else(|| {
        (!settings.generate.provider.is_empty()).then(|| settings.generate.provider.clone())
    });
    let name = configured.unwrap_or_else(|| {
        let key_set = settings
            .providers
            .get("openai")
            .and_then(|openai| env(&openai.api_key_env))
            .is_some_and(|key| !key.trim().is_empty());
        if key_set {
            "openai".into()
        } else {
            "local".into()
        }
    });
    if name == "local" {
        let local = &settings.local;
        // For the local provider, --model is a GGUF file.
        let path = model_flag.map_or_else(|| local.model_path(), PathBuf::from);
        let model = if model_flag.is_none() && local.model.as_os_str().is_empty() {
            local.model_name.clone()
        } else {
            path.file_stem().map_or_else(
                || local.model_name.clone(),
                |stem| stem.to_string_lossy().into_owned(),
            )
        };
        let params = Params {
            temperature: local.temperature,
            max_tokens: local.max_tokens,
            seed: local.seed,
        };
        return Ok((Provider::Local { model, path }, params));
    }
    let Some(preset) = settings.providers.get(&name) else {
        let mut known: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
        known.sort();
        return Err(Error::UnknownProvider {
            name,
            known: known.join(", "),
        });
    };
    let base_url = match (name.as_str(), env("OPENAI_BASE_URL")) {
        ("openai", Some(url)) if !url.trim().is_empty() => url,
        _ => preset.base_url.clone(),
    };
    let params = Params {
        temperature: preset.temperature,
        max_tokens: preset.max_tokens,
        seed: preset.seed,
    };
    Ok((
        Provider::Openai {
            preset: name.clone(),
            model: model_flag.map_or_else(|| preset.model.clone(), str::to_string),
            base_url,
            api_key_env: preset.api_key_env.clone(),
        },
        params,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoided_names_share_their_long_lists_and_serialise_as_one_list() {
        let ventures: Arc<[String]> = ["Space X".to_string(), "Solar Bikes".to_string()].into();
        let avoid = AvoidNames::default()
            .and(["Loyalty Club"])
            .and(Vec::<String>::new())
            .and_shared(ventures.clone())
            .and(["Relationship"]);
        let copy = avoid.clone().and(["Kept Idea"]);
        let names: Vec<&str> = copy.iter().collect();
        assert_eq!(
            names,
            [
                "Loyalty Club",
                "Space X",
                "Solar Bikes",
                "Relationship",
                "Kept Idea"
            ]
        );
        assert!(copy.0.iter().any(
            |list| matches!(list, NameList::Shared(shared) if Arc::ptr_eq(shared, &ventures))
        ));
        // The cache key reads the list as a plain JSON array.
        let plain: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        assert_eq!(
            serde_json::to_string(&copy).ok(),
            serde_json::to_string(&plain).ok()
        );
        assert_eq!(
            serde_json::to_string(&AvoidNames::default()).ok(),
            Some("[]".into())
        );
    }
}
