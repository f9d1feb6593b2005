//! The response cache: a model's answer on disk, keyed by everything that shapes it (provider,
//! endpoint or model file, model, messages, schema, parameters, asked format), so a re-run is
//! free and repeatable. Only answers are stored; errors never are, nor the answers of a pair
//! they left short of items (the run's writer leaves those out: a re-run would fail the pair
//! with them again).
//!
//! One JSON file per key (`<sha256>.json`), written atomically; an unreadable entry is a miss.
//! Entries are not flushed to disk before the answer is used: a power cut can lose the newest
//! (a miss later), and waiting for the disk on every request held up concurrent runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsutil::write_replacing;
use crate::llm::{ChatRequest, Completion};
use crate::prompt::library::sha256_json_object;

#[derive(Clone)]
pub struct Cache {
    dir: PathBuf,
    /// `--no-cache`: answers are not read from the cache (fresh ones are still stored).
    read: bool,
    /// `--dry-run`: nothing is written, the cache included.
    write: bool,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    completion: Completion,
    created: String,
}

impl Cache {
    pub fn new(dir: PathBuf, read: bool) -> Cache {
        Cache {
            dir,
            read,
            write: true,
        }
    }

    /// The same cache, read but never written.
    pub fn read_only(self) -> Cache {
        Cache {
            write: false,
            ..self
        }
    }

    /// The key of a request to a model identified by `identity`: the sha256 of
    /// `{"identity": ..., "request": ...}` as compact JSON, hashed as it is serialised.
    pub fn key(identity: &Value, request: &ChatRequest) -> String {
        sha256_json_object(("identity", identity), ("request", request))
    }

    pub fn get(&self, key: &str) -> Option<Completion> {
        if !self.read {
            return None;
        }
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        match serde_json::from_str::<Entry>(&text) {
            Ok(entry) if entry.key == key => Some(entry.completion),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    "ignoring the unreadable cache entry {}",
                    self.path(key).display()
                );
                None
            }
        }
    }

    /// Store an answer; a failure to write is a warning (the answer is still used).
    pub fn put(&self, key: &str, completion: &Completion) {
        if !self.write {
            return;
        }
        let entry = Entry {
            key: key.to_string(),
            completion: completion.clone(),
            created: chrono::Utc::now().to_rfc3339(),
        };
        let written = serde_json::to_vec_pretty(&entry)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_replacing(&self.path(key), &bytes));
        if let Err(error) = written {
            tracing::warn!(
                "cannot write the cache entry {}: {error}",
                self.path(key).display()
            );
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::llm::{Message, Params, Role};
    use crate::prompt::library::sha256_hex;

    #[test]
    fn a_key_is_the_hash_of_the_request_as_compact_json() {
        // Keys written before hashing moved off the JSON text stay valid: the same bytes.
        let request = ChatRequest {
            messages: vec![
                Message {
                    role: Role::System,
                    content: "You draft \"ideas\" — ünïcode\nand lines.".into(),
                },
                Message {
                    role: Role::User,
                    content: "Propose 3 ideas.".into(),
                },
            ],
            schema: std::sync::Arc::new(
                json!({"type": "object", "properties": {"items": {"maxItems": 3}}, "a": 0.5}),
            ),
            params: Params {
                temperature: 0.7,
                max_tokens: 1500,
                seed: 42,
            },
            avoid_names: vec!["Space X".to_string()].into(),
            check: None,
        };
        let identity =
            json!({"provider": "openai", "model": "gpt-4o-mini", "format": "json_schema"});
        let text = json!({ "identity": identity, "request": request }).to_string();
        assert_eq!(Cache::key(&identity, &request), sha256_hex(text.as_bytes()));
    }
}
