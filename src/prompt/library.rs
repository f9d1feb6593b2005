//! The prompt library: templates and answer schemas, built in and overridable file by file.
//!
//! The files of `prompts/` are compiled into the binary, so the tool works from any folder and
//! after `cargo install`. A prompts folder (config `prompts.dir` or `--prompts DIR`) overrides
//! them one file at a time: a file present there wins, every other file stays built in.

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::Mutex;

use minijinja::{Environment, UndefinedBehavior, syntax::SyntaxConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Error;
use crate::draft::AnswerSchema;
use crate::graph::Block;
use crate::graph::name::file_name_from_page_name;

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The sha256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// [`sha256_hex`] of the compact JSON object `{first.0: first.1, second.0: second.1}`: the
/// bytes of `json!({...}).to_string()` (keys in this order), hashed as they are serialised, so
/// no JSON tree or text is built (cache keys and prompt hashes, a few per request).
pub fn sha256_json_object(
    first: (&str, &impl serde::Serialize),
    second: (&str, &impl serde::Serialize),
) -> String {
    struct Object<'o, A, B>((&'o str, &'o A), (&'o str, &'o B));
    impl<A: serde::Serialize, B: serde::Serialize> serde::Serialize for Object<'_, A, B> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(Some(2))?;
            map.serialize_entry(self.0.0, self.0.1)?;
            map.serialize_entry(self.1.0, self.1.1)?;
            map.end()
        }
    }
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    match serde_json::to_writer(&mut hashing, &Object(first, second)) {
        Ok(()) => hex(&hashing.0.finalize()),
        // Only a map with keys that are not strings fails, which requests and schemas never
        // hold (`json!` panicked there); such a value gets a hash no real one has.
        Err(error) => sha256_hex(format!("unserialisable: {error}").as_bytes()),
    }
}

/// The shipped files of `prompts/`, by their path under it.
const BUILT_IN: &[(&str, &str)] = &[
    ("system.j2", include_str!("../../prompts/system.j2")),
    ("user.j2", include_str!("../../prompts/user.j2")),
    ("reask.j2", include_str!("../../prompts/reask.j2")),
    ("resample.j2", include_str!("../../prompts/resample.j2")),
    (
        "partials/block.j2",
        include_str!("../../prompts/partials/block.j2"),
    ),
    (
        "partials/venture.j2",
        include_str!("../../prompts/partials/venture.j2"),
    ),
    (
        "partials/examples.j2",
        include_str!("../../prompts/partials/examples.j2"),
    ),
    (
        "partials/answer.j2",
        include_str!("../../prompts/partials/answer.j2"),
    ),
    (
        "schemas/generic.json",
        include_str!("../../prompts/schemas/generic.json"),
    ),
    (
        "schemas/profile-(id).json",
        include_str!("../../prompts/schemas/profile-(id).json"),
    ),
    (
        "schemas/profile-(id)___relationship.json",
        include_str!("../../prompts/schemas/profile-(id)___relationship.json"),
    ),
];

/// The names of the built-in files (a test checks this matches the `prompts/` folder).
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(name, _)| *name)
}

/// Templates and schemas, with the overrides folder if any.
pub struct Library {
    overrides: Option<PathBuf>,
    environment: Environment<'static>,
    /// Answer schemas already read and checked, by file name: rendering every prompt of a graph
    /// must not re-read and re-compile a schema per prompt.
    schemas: Mutex<HashMap<String, AnswerSchema>>,
}

impl Library {
    pub fn new(overrides: Option<&Path>) -> Result<Library, Error> {
        if let Some(folder) = overrides
            && !folder.is_dir()
        {
            return Err(Error::PromptsFolder {
                path: folder.to_path_buf(),
            });
        }
        let overrides = overrides.map(Path::to_path_buf);
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|error| Error::Template {
                template: "(syntax)".into(),
                line: None,
                message: error.to_string(),
            })?;
        environment.set_syntax(syntax);
        let loader_overrides = overrides.clone();
        environment.set_loader(move |name| {
            Ok(read_file(loader_overrides.as_deref(), name).map(|(source, _)| source))
        });
        Ok(Library {
            overrides,
            environment,
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// A file's text and where it came from, override first.
    pub fn file(&self, name: &str) -> Option<(String, String)> {
        read_file(self.overrides.as_deref(), name)
    }

    /// An answer schema file, parsed and checked to be a JSON Schema describing an `items`
    /// array; `None` when the library has no such file. Read once, then served from memory.
    pub fn schema(&self, name: &str) -> Option<Result<AnswerSchema, Error>> {
        if let Ok(cache) = self.schemas.lock()
            && let Some(schema) = cache.get(name)
        {
            return Some(Ok(schema.clone()));
        }
        let (text, origin) = self.file(name)?;
        let schema_error = |message: String| Error::Schema {
            file: origin.clone(),
            message,
        };
        let checked = serde_json::from_str::<Value>(&text)
            .map_err(|error| {
                schema_error(format!("not valid JSON at line {}: {error}", error.line()))
            })
            .and_then(|value| match jsonschema::validator_for(&value) {
                Err(error) => Err(schema_error(format!("not a valid JSON Schema: {error}"))),
                Ok(_) if value.pointer("/properties/items/items").is_none() => Err(schema_error(
                    "an answer schema must describe an object with an `items` array".into(),
                )),
                Ok(_) => Ok(AnswerSchema::new(name.to_string(), value)),
            });
        if let (Ok(schema), Ok(mut cache)) = (&checked, self.schemas.lock()) {
            cache.insert(name.to_string(), schema.clone());
        }
        Some(checked)
    }

    /// The sha256 of every template the library would use (built-in names, overrides
    /// applied, plus a block's own user template): a template version for provenance.
    pub fn templates_hash(&self, extra: &[String]) -> String {
        let mut digest = Sha256::new();
        let names = built_in_names()
            .filter(|name| name.ends_with(".j2"))
            .map(str::to_string)
            .chain(extra.iter().cloned());
        for name in names {
            if let Some((text, _)) = self.file(&name) {
                digest.update(name.as_bytes());
                digest.update([0]);
                digest.update(text.as_bytes());
                digest.update([0]);
            }
        }
        hex(&digest.finalize())
    }

    /// Where a file comes from, for messages: its path in the overrides folder, or
    /// `prompts/<name> (built in)`.
    pub fn origin(&self, name: &str) -> String {
        self.file(name)
            .map(|(_, origin)| origin)
            .unwrap_or_else(|| format!("prompts/{name}"))
    }

    /// Render a template with a serialisable context; errors name the template file and line.
    pub fn render<C: serde::Serialize>(&self, name: &str, context: &C) -> Result<String, Error> {
        let template_error = |error: minijinja::Error| {
            // An error inside an included template is the source of the include's error: report
            // the innermost one, which names the file and line at fault.
            let mut innermost = &error;
            while let Some(inner) = std::error::Error::source(innermost)
                .and_then(|source| source.downcast_ref::<minijinja::Error>())
            {
                innermost = inner;
            }
            let template = innermost.name().unwrap_or(name).to_string();
            Error::Template {
                template: self.origin(&template),
                line: innermost.line(),
                message: match innermost.detail() {
                    Some(detail) => format!("{}: {detail}", innermost.kind()),
                    None => innermost.kind().to_string(),
                },
            }
        };
        let template = self
            .environment
            .get_template(name)
            .map_err(template_error)?;
        template
            .render(minijinja::value::Serde(context))
            .map_err(template_error)
    }
    /// A block's answer schema: `schemas/<block id>.json` (a `/` in the id written `___`), else
    /// `schemas/<item class>.json`, else `schemas/generic.json` (`{items: [{name,
    /// description}]}`).
    pub fn answer_schema(&self, block: &Block) -> Result<AnswerSchema, Error> {
        let by_id = schema_file(&block.id);
        let by_class = block.item_class.as_deref().map(schema_file);
        let candidates = std::iter::once(by_id)
            .chain(by_class)
            .chain(std::iter::once("schemas/generic.json".to_string()));
        for file in candidates {
            if let Some(checked) = self.schema(&file) {
                return checked;
            }
        }
        Err(Error::Schema {
            file: "schemas/generic.json".into(),
            message: "missing from the prompt library".into(),
        })
    }
}

/// `schemas/<name as a Logseq file name>.json`.
fn schema_file(name: &str) -> String {
    let file_name = file_name_from_page_name(name);
    let stem = file_name.strip_suffix(".md").unwrap_or(&file_name);
    format!("schemas/{stem}.json")
}

fn read_file(overrides: Option<&Path>, name: &str) -> Option<(String, String)> {
    // Template names come from our own code and templates; never let one leave the folder.
    if name.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    if let Some(folder) = overrides {
        let path = folder.join(name);
        if let Ok(source) = std::fs::read_to_string(&path) {
            return Some((source, path.display().to_string()));
        }
    }
    BUILT_IN
        .iter()
        .find(|(built_in, _)| *built_in == name)
        .map(|(_, source)| (source.to_string(), format!("prompts/{name} (built in)")))
}
