//! Models: which provider and model a request goes to, and (later) the chat model trait with
//! its OpenAI-compatible and embedded implementations.
//!
//! Today this module chooses the provider and counts prompt tokens for `preview`; sending lands
//! with `generate`.

#[cfg(feature = "local")]
pub mod local;
pub mod tokens;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Settings;

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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
