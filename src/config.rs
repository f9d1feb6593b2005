//! Settings: the compiled-in `config/default.toml`, a config file over it, `INNCOPILOT_*`
//! environment variables over that, and flags over everything (applied by `cli`).
//!
//! Every key a file or variable may set exists in the defaults, so a misspelt key is an error
//! naming the file (or variable) and the key, not a silently ignored setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

/// The defaults shipped with the binary.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Keys holding paths: relative values in a config file resolve against the file's folder.
const PATH_KEYS: &[&str] = &[
    "graph.path",
    "prompts.dir",
    "local.model",
    "generate.cache_dir",
    "generate.drafts_dir",
];

/// Tables whose keys are names chosen by the user (presets, models): a file may add new ones.
const OPEN_TABLES: &[&str] = &["providers", "prices"];

/// The prefix of every environment variable that sets a key.
pub const ENV_PREFIX: &str = "INNCOPILOT_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub graph: GraphSettings,
    pub prompts: PromptSettings,
    pub generate: GenerateSettings,
    pub enrich: EnrichSettings,
    pub local: LocalSettings,
    pub junk: JunkSettings,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub prices: BTreeMap<String, Price>,
    /// Every key as the layers set it (`inncopilot config` prints it).
    #[serde(skip)]
    pub effective: Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSettings {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSettings {
    /// Overrides of the built-in prompts; empty for none.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSettings {
    pub count: usize,
    pub provider: String,
    pub example_token_budget: usize,
    pub max_example_ventures: usize,
    pub attempts: u32,
    /// Empty for `.inncopilot/cache` in the graph.
    pub cache_dir: PathBuf,
    /// Empty for `.inncopilot/drafts` in the graph.
    pub drafts_dir: PathBuf,
    /// 0 for no budget.
    pub budget_usd: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichSettings {
    pub concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// A GGUF file; empty for the default model in the data folder.
    pub model: PathBuf,
    pub model_name: String,
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: i64,
    pub threads: u32,
    /// Sequences decoded side by side (each with a share of an answer's items).
    pub sequences: usize,
    pub over_ask: usize,
    pub example_token_budget: usize,
    /// The longest item name the grammar allows (characters).
    pub max_name_length: usize,
    /// The longest other text field the grammar allows (characters).
    pub max_text_length: usize,
}

/// The data of the junk rules (`draft::junk`): what counts as markup, a placeholder, an echo.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JunkSettings {
    /// Any of these characters in any text of an item is code or markup.
    pub markup_characters: String,
    /// Signs that start a variable when a letter, `{` or `(` follows (`$ref`); before a digit
    /// they are a price.
    pub variable_signs: String,
    /// Substrings of a URL.
    pub url_markers: Vec<String>,
    /// Other substrings of code or markup (HTML entities).
    pub markup_sequences: Vec<String>,
    /// A quote followed by a colon is a JSON or dict key (`'category':`).
    pub quote_characters: String,
    /// One word this many times running is a decoding loop.
    pub repeated_word_run: usize,
    /// A run of letters and digits longer than this is garbled (words glued together).
    pub longest_word: usize,
    /// A run of this many words shared with the block's definition, questions or the schema's
    /// descriptions is an echo of the prompt.
    pub echo_words: usize,
    /// A name sharing a run of this many words with any line of the prompt copies it.
    pub name_echo_words: usize,
    /// Names made only of these (and the block's own names), numbered or not, are placeholders.
    pub placeholder_words: Vec<String>,
    /// A name holding any of these words is a placeholder (`Your Business Idea`).
    pub filler_words: Vec<String>,
    /// Words a placeholder may hold besides its own (`The Venture`, `Your Name`).
    pub article_words: Vec<String>,
    /// Words of one or two letters a name may hold (any other is a fragment).
    pub short_words: Vec<String>,
    /// Words a name cannot end with: it was cut off (`Solar power for a`).
    pub dangling_words: Vec<String>,
    /// A name with this many words in capitals (of two letters or more) shouts: garbled.
    pub capital_words: usize,
    /// Descriptions with fewer words say nothing.
    pub min_description_words: usize,
}

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub base_url: String,
    /// The environment variable holding the key (the key itself never appears in settings).
    pub api_key_env: String,
    pub model: String,
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: i64,
    pub response_format: ResponseFormat,
    pub timeout_secs: u64,
    pub max_retries: u32,
    pub retry_budget_secs: u64,
    /// Requests sent per minute at most (0: no limit).
    pub requests_per_minute: u32,
    /// Tokens (prompt plus the answer's limit) sent per minute at most (0: no limit).
    pub tokens_per_minute: u32,
}

/// How an endpoint is asked for JSON, strongest first. An endpoint that refuses one is asked
/// for the next weaker one ([`ResponseFormat::weaker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// OpenAI's structured output: `{"type": "json_schema", "json_schema": {"schema": ...}}`.
    JsonSchema,
    /// JSON mode with the schema beside it, `{"type": "json_object", "schema": ...}`: what
    /// llama-cpp-python's and llama.cpp's servers turn into a grammar that constrains decoding.
    JsonObjectSchema,
    /// Bare JSON mode, `{"type": "json_object"}`: any JSON object.
    JsonObject,
    /// No `response_format` at all.
    Text,
}

impl ResponseFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFormat::JsonSchema => "json_schema",
            ResponseFormat::JsonObjectSchema => "json_object_schema",
            ResponseFormat::JsonObject => "json_object",
            ResponseFormat::Text => "text",
        }
    }

    /// The next weaker format, if any.
    pub fn weaker(self) -> Option<ResponseFormat> {
        match self {
            ResponseFormat::JsonSchema => Some(ResponseFormat::JsonObjectSchema),
            ResponseFormat::JsonObjectSchema => Some(ResponseFormat::JsonObject),
            ResponseFormat::JsonObject => Some(ResponseFormat::Text),
            ResponseFormat::Text => None,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// The file name of the default local model, in [`data_dir`]`/models`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where inncopilot keeps data of its own (the fetched model): `$XDG_DATA_HOME/inncopilot`,
/// else `~/.local/share/inncopilot`.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("inncopilot")
}

impl LocalSettings {
    /// The GGUF file to use: the configured one, else the default model in the data folder.
    pub fn model_path(&self) -> PathBuf {
        if self.model.as_os_str().is_empty() {
            data_dir().join("models").join(DEFAULT_MODEL_FILE)
        } else {
            self.model.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the compiled-in defaults are invalid: {0}")]
    Defaults(String),
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        // Said in the message, not a `source`: the error chain would say it twice.
        cause: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: unknown setting `{key}` (known settings are listed in config/default.toml)")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: `{key}` should be {expected}, found {found}")]
    WrongType {
        origin: String,
        key: String,
        expected: &'static str,
        found: String,
    },
}

impl Settings {
    /// Defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, Error> {
        Settings::load_with_env(file, env_var)
    }

    /// As [`Settings::load`], with the environment given as a lookup (tests pass their own).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, Error> {
        let mut merged: Table = DEFAULTS
            .parse()
            .map_err(|error: toml::de::Error| Error::Defaults(error.to_string()))?;
        let defaults = merged.clone();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|cause| Error::Read {
                path: path.to_path_buf(),
                cause,
            })?;
            let mut overlay: Table =
                text.parse()
                    .map_err(|error: toml::de::Error| Error::Parse {
                        path: path.to_path_buf(),
                        message: error.to_string(),
                    })?;
            let folder = path.parent().unwrap_or(Path::new("."));
            resolve_paths(&mut overlay, folder);
            let origin = format!("config file {}", path.display());
            merge(&mut merged, overlay, "", &origin)?;
        }
        apply_env(&mut merged, &defaults, "", &env)?;
        let mut settings = Settings::deserialize(Value::Table(merged.clone()))
            .map_err(|error| Error::Invalid(error.to_string()))?;
        settings.effective = merged;
        Ok(settings)
    }
}

/// A variable of the process environment; set but empty counts as unset, as in most tools.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The environment variable that sets a dotted key: `graph.path` -> `INNCOPILOT_GRAPH_PATH`.
pub fn env_name(dotted_key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    name.push_str(&dotted_key.replace(['.', '-'], "_").to_uppercase());
    name
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn resolve_paths(table: &mut Table, folder: &Path) {
    for dotted in PATH_KEYS {
        let mut parts = dotted.split('.').peekable();
        let mut cursor = &mut *table;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                if let Some(Value::String(value)) = cursor.get_mut(part)
                    && !value.is_empty()
                    && Path::new(value.as_str()).is_relative()
                {
                    *value = folder.join(value.as_str()).to_string_lossy().into_owned();
                }
                break;
            }
            match cursor.get_mut(part) {
                Some(Value::Table(inner)) => cursor = inner,
                _ => break,
            }
        }
    }
}

/// Lay `overlay` over `base`; every key must exist in `base` with a value of the same type.
fn merge(base: &mut Table, overlay: Table, prefix: &str, origin: &str) -> Result<(), Error> {
    for (key, value) in overlay {
        let dotted = join(prefix, &key);
        if !base.contains_key(&key) && OPEN_TABLES.contains(&prefix) {
            base.insert(key, value);
            continue;
        }
        let Some(existing) = base.get_mut(&key) else {
            return Err(Error::UnknownKey {
                origin: origin.to_string(),
                key: dotted,
            });
        };
        match (existing, value) {
            (Value::Table(inner), Value::Table(overlay_inner)) => {
                merge(inner, overlay_inner, &dotted, origin)?;
            }
            (existing, value) if existing.same_type(&value) => *existing = value,
            (Value::Float(existing), Value::Integer(integer)) => *existing = integer as f64,
            (existing, value) => {
                return Err(Error::WrongType {
                    origin: origin.to_string(),
                    key: dotted,
                    expected: existing.type_str(),
                    found: value.type_str().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Set every key whose `INNCOPILOT_*` variable is present, parsed as the default's type.
fn apply_env(
    merged: &mut Table,
    defaults: &Table,
    prefix: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    for (key, default) in defaults {
        let dotted = join(prefix, key);
        if let Value::Table(inner_defaults) = default {
            if let Some(Value::Table(inner)) = merged.get_mut(key) {
                apply_env(inner, inner_defaults, &dotted, env)?;
            }
            continue;
        }
        let name = env_name(&dotted);
        let Some(raw) = env(&name) else { continue };
        let wrong_type = || Error::WrongType {
            origin: format!("environment variable {name}"),
            key: dotted.clone(),
            expected: default.type_str(),
            found: format!("{raw:?}"),
        };
        let value = match default {
            Value::String(_) => Value::String(raw.clone()),
            Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| wrong_type())?),
            Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| wrong_type())?),
            Value::Boolean(_) => Value::Boolean(raw.trim().parse().map_err(|_| wrong_type())?),
            _ => {
                let parsed: Table = format!("value = {raw}").parse().map_err(|_| wrong_type())?;
                let value = parsed.get("value").cloned().ok_or_else(wrong_type)?;
                if !value.same_type(default) {
                    return Err(wrong_type());
                }
                value
            }
        };
        merged.insert(key.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Every setting's variable is documented in `.env.example`.
    #[test]
    fn env_example_lists_every_setting() -> Result<(), Box<dyn std::error::Error>> {
        fn leaves(table: &Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let dotted = join(prefix, key);
                match value {
                    Value::Table(inner) => leaves(inner, &dotted, out),
                    _ => out.push(dotted),
                }
            }
        }
        let defaults: Table = DEFAULTS.parse()?;
        let mut keys = Vec::new();
        leaves(&defaults, "", &mut keys);
        let example = include_str!("../.env.example");
        for key in keys {
            let name = env_name(&key);
            assert!(
                example.contains(&format!("{name}=")),
                "{name} ({key}) is not in .env.example"
            );
        }
        for name in ["OPENAI_API_KEY=", "OPENAI_BASE_URL=", "INNCOPILOT_CONFIG="] {
            assert!(example.contains(name), "{name}");
        }
        Ok(())
    }

    #[test]
    fn defaults_load() -> Result<(), Error> {
        let settings = Settings::load_with_env(None, no_env)?;
        assert_eq!(settings.graph.path, PathBuf::from("."));
        Ok(())
    }

    #[test]
    fn file_then_env_layer_over_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let folder = tempfile::tempdir()?;
        let file = folder.path().join("inncopilot.toml");
        std::fs::write(&file, "[graph]\npath = \"kb\"\n")?;
        let from_file = Settings::load_with_env(Some(&file), no_env)?;
        assert_eq!(from_file.graph.path, folder.path().join("kb"));
        let from_env = Settings::load_with_env(Some(&file), |name| {
            (name == "INNCOPILOT_GRAPH_PATH").then(|| "/elsewhere".to_string())
        })?;
        assert_eq!(from_env.graph.path, PathBuf::from("/elsewhere"));
        Ok(())
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_origin() -> Result<(), Box<dyn std::error::Error>> {
        let folder = tempfile::tempdir()?;
        let file = folder.path().join("bad.toml");
        std::fs::write(&file, "[graph]\npth = \"kb\"\n")?;
        let message = Settings::load_with_env(Some(&file), no_env)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("bad.toml") && message.contains("graph.pth"),
            "{message}"
        );
        std::fs::write(&file, "[graph]\npath = 3\n")?;
        let message = Settings::load_with_env(Some(&file), no_env)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("graph.path") && message.contains("string"),
            "{message}"
        );
        Ok(())
    }

    /// The names a config file uses, and the order a refusing endpoint is walked down.
    #[test]
    fn response_formats_weaken_one_step_at_a_time() -> Result<(), Box<dyn std::error::Error>> {
        let mut chain = vec![ResponseFormat::JsonSchema];
        while let Some(weaker) = chain.last().and_then(|format| format.weaker()) {
            chain.push(weaker);
        }
        let names: Vec<&str> = chain.iter().map(|format| format.as_str()).collect();
        assert_eq!(
            names,
            ["json_schema", "json_object_schema", "json_object", "text"]
        );
        for format in chain {
            let parsed: ProviderFormat =
                toml::from_str(&format!("response_format = \"{}\"", format.as_str()))?;
            assert_eq!(parsed.response_format, format);
        }
        Ok(())
    }

    #[derive(Deserialize)]
    struct ProviderFormat {
        response_format: ResponseFormat,
    }
}
