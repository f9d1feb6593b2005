//! Drafts: the structured answers of a model for one (venture, block), and the schemas they
//! are checked against. Validation problems are data ([`Issue`]), fed back to the model and
//! shown to the user, not errors.

pub mod junk;
pub mod schema;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use junk::{BlockJunk, Junk, JunkContext, JunkReason};
pub use schema::AnswerSchema;

/// One problem with an answer: where (a JSON pointer into the answer) and what; for a junk
/// item, why it is junk (counted in the draft's provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub junk: Option<JunkReason>,
}

impl Issue {
    /// A problem that is not junk.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
            junk: None,
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(formatter, "{path}: {}", self.message)
    }
}

/// One drafted item: a name, a description and the block's other schema fields, in schema
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Item {
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

/// Checks answers for one (venture, block): the schema of one item, the item rules, the
/// names that exist already and the junk rules. Compiled once, used for every attempt.
pub struct Checker {
    item: Arc<jsonschema::Validator>,
    /// Normalised names of the venture's existing items.
    existing: HashSet<String>,
    /// The junk rules; `None` checks the schema and item rules only.
    junk: Option<Arc<Junk>>,
}

/// The schema of one item of an answer schema (`true`, anything, when it has none).
pub fn item_schema(schema: &Value) -> Value {
    schema
        .pointer("/properties/items/items")
        .cloned()
        .unwrap_or(Value::Bool(true))
}

/// The compiled validator of an item schema ([`item_schema`]).
pub fn item_validator(item_schema: &Value) -> Result<Arc<jsonschema::Validator>, Issue> {
    jsonschema::validator_for(item_schema)
        .map(Arc::new)
        .map_err(|error| Issue {
            path: "/items".into(),
            message: format!("the schema of an item is invalid: {error}"),
            junk: None,
        })
}

impl Checker {
    /// `schema` is the block's answer schema; `existing` the names already in the graph.
    pub fn new<'n>(
        schema: &Value,
        existing: impl IntoIterator<Item = &'n str>,
    ) -> Result<Checker, Issue> {
        Ok(Checker::with_validator(
            item_validator(&item_schema(schema))?,
            existing,
        ))
    }

    /// A checker on an item validator compiled already (pairs of one schema share it).
    pub fn with_validator<'n>(
        item: Arc<jsonschema::Validator>,
        existing: impl IntoIterator<Item = &'n str>,
    ) -> Checker {
        Checker {
            item,
            existing: existing.into_iter().map(name_key).collect(),
            junk: None,
        }
    }

    /// The checker with the junk rules of this (venture, block) applied to every item.
    pub fn with_junk(self, junk: Junk) -> Checker {
        Checker {
            junk: Some(Arc::new(junk)),
            ..self
        }
    }

    /// The junk rules given, shared (the embedded model's guard applies them while it writes).
    pub fn junk(&self) -> Option<Arc<Junk>> {
        self.junk.clone()
    }

    /// Check one answer. Items passing every rule and new to `kept` are added to it (up to
    /// `wanted`); everything wrong is returned, with JSON pointers into the answer.
    pub fn review(&self, text: &str, kept: &mut Vec<Item>, wanted: usize) -> Vec<Issue> {
        let answer = match parse_answer(text) {
            Ok(answer) => answer,
            Err(issue) => return vec![issue],
        };
        let Some(items) = answer.get("items").and_then(Value::as_array) else {
            return vec![Issue {
                path: String::new(),
                message: "the answer must be an object with an `items` array".into(),
                junk: None,
            }];
        };
        let mut issues = Vec::new();
        for (index, value) in items.iter().enumerate() {
            let path = format!("/items/{index}");
            let schema_issues: Vec<Issue> = self
                .item
                .iter_errors(value)
                .map(|error| Issue {
                    path: format!("{path}{}", error.instance_path()),
                    message: error.to_string(),
                    junk: None,
                })
                .collect();
            if !schema_issues.is_empty() {
                issues.extend(schema_issues);
                continue;
            }
            let item: Item = match serde_json::from_value(value.clone()) {
                Ok(item) => item,
                Err(error) => {
                    issues.push(Issue {
                        path,
                        message: format!("not an item with a name and a description: {error}"),
                        junk: None,
                    });
                    continue;
                }
            };
            if let Some(problem) = name_problem(&item.name) {
                issues.push(Issue {
                    path: format!("{path}/name"),
                    message: problem,
                    junk: None,
                });
                continue;
            }
            let key = name_key(&item.name);
            // Repeating an idea the venture has is copying a name of the graph: junk.
            if self.existing.contains(&key) {
                issues.push(Issue {
                    path: format!("{path}/name"),
                    message: format!("`{}` already exists for this venture", item.name.trim()),
                    junk: Some(JunkReason::KnownItem),
                });
                continue;
            }
            if let Some(finding) = self.junk.as_ref().and_then(|junk| junk.check(&item)) {
                issues.push(Issue {
                    path: format!("{path}{}", finding.path),
                    message: finding.message,
                    junk: Some(finding.reason),
                });
                continue;
            }
            if kept.iter().any(|other| name_key(&other.name) == key) {
                issues.push(Issue {
                    path: format!("{path}/name"),
                    message: format!("`{}` is named twice", item.name.trim()),
                    junk: None,
                });
                continue;
            }
            if kept.len() < wanted {
                kept.push(Item {
                    name: item.name.trim().to_string(),
                    description: item.description.trim().to_string(),
                    fields: item.fields,
                });
            }
        }
        if kept.len() < wanted {
            issues.push(Issue {
                path: "/items".into(),
                message: format!("{} usable item(s) of the {wanted} asked for", kept.len()),
                junk: None,
            });
        }
        issues
    }
}

/// Names are compared case-insensitively, with runs of whitespace as one space and without
/// punctuation around them (`Loyalty Club,` is `loyalty club`).
pub fn name_key(name: &str) -> String {
    name.trim_matches(|c: char| c.is_whitespace() || ",.;:".contains(c))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// What makes a name unusable as a Logseq page reference, if anything.
fn name_problem(name: &str) -> Option<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Some("the name is empty".into())
    } else if trimmed.contains(['\n', '\r']) {
        Some("the name must be one line".into())
    } else if trimmed.contains("[[") || trimmed.contains("]]") {
        Some("the name must not contain `[[` or `]]`".into())
    } else {
        None
    }
}

/// The JSON value of an answer: the text itself, or the JSON inside a Markdown code fence or
/// around prose (remote models wrap their answers).
pub fn parse_answer(text: &str) -> Result<Value, Issue> {
    let trimmed = text.trim();
    let unfenced = trimmed
        .strip_prefix("```")
        .map(|rest| {
            let body = rest.split_once('\n').map_or("", |(_, body)| body);
            body.trim_end().strip_suffix("```").unwrap_or(body).trim()
        })
        .unwrap_or(trimmed);
    let candidate = match (unfenced.find('{'), unfenced.rfind('}')) {
        (Some(start), Some(end)) if start < end => &unfenced[start..=end],
        _ => unfenced,
    };
    serde_json::from_str(candidate).map_err(|error| Issue {
        path: String::new(),
        message: format!("the answer is not valid JSON ({error})"),
        junk: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_inside_fences_and_prose() {
        let fenced = "Sure!\n```json\n{\"items\": []}\n```\nHope it helps.";
        assert_eq!(parse_answer(fenced), Ok(serde_json::json!({"items": []})));
        assert_eq!(
            parse_answer("```\n{\"a\": 1}\n```"),
            Ok(serde_json::json!({"a": 1}))
        );
        let broken = parse_answer("{\"items\": [")
            .err()
            .map(|issue| issue.message);
        assert!(broken.unwrap_or_default().contains("not valid JSON"));
    }

    #[test]
    fn names_compare_without_case_spacing_or_surrounding_punctuation() {
        assert_eq!(name_key("  Loyalty   CLUB, "), name_key("loyalty club"));
        assert_eq!(name_key("Loyalty Club."), "loyalty club");
        assert_ne!(name_key("Loyalty Club Plus"), name_key("Loyalty Club"));
    }

    #[test]
    fn names_must_be_usable_page_references() {
        assert!(name_problem("Keeper Hotline").is_none());
        assert!(name_problem("  ").is_some());
        assert!(name_problem("two\nlines").is_some());
        assert!(name_problem("a [[link]]").is_some());
        assert_eq!(name_key("  Keeper   HOTLINE "), "keeper hotline");
    }

    #[test]
    fn review_keeps_new_unique_valid_items_up_to_the_count() {
        let schema = serde_json::json!({"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["name", "description"],
            "properties": {"name": {"type": "string", "maxLength": 20}, "description": {"type": "string"}}}}}});
        let checker =
            Checker::new(&schema, ["Old One"]).unwrap_or_else(|issue| unreachable!("{issue}"));
        let answer = serde_json::json!({"items": [
            {"name": "old one", "description": "exists"},
            {"name": "Fresh", "description": "new"},
            {"name": "FRESH", "description": "again"},
            {"name": "A name far too long for the schema", "description": "x"},
            {"name": "Second", "description": "new too"},
            {"name": "Third", "description": "beyond the count"},
        ]});
        let mut kept = Vec::new();
        let issues = checker.review(&answer.to_string(), &mut kept, 2);
        let names: Vec<&str> = kept.iter().map(|item| item.name.as_str()).collect();
        assert_eq!(names, ["Fresh", "Second"]);
        let paths: Vec<&str> = issues.iter().map(|issue| issue.path.as_str()).collect();
        assert_eq!(paths, ["/items/0/name", "/items/2/name", "/items/3/name"]);
    }

    #[test]
    fn review_rejects_junk_with_its_reason_and_keeps_the_rest()
    -> Result<(), Box<dyn std::error::Error>> {
        let schema = serde_json::json!({"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["name", "description"]}}}});
        let settings = crate::config::Settings::load_with_env(None, |_| None)?;
        let context = JunkContext {
            venture: "Solar Bikes".into(),
            ..JunkContext::default()
        };
        let checker = Checker::new(&schema, ["Old One"])
            .map_err(|issue| issue.to_string())?
            .with_junk(Junk::new(&settings.junk, &context));
        let answer = serde_json::json!({"items": [
            {"name": "Old One", "description": "the venture has it already"},
            {"name": "Solar Bikes", "description": "the venture's own name again"},
            {"name": "Ride Club", "description": "members ride <b>free</b> on Sundays", "tags": ["a"]},
            {"name": "Sunday Club", "description": "members ride free on Sundays"},
        ]});
        let mut kept = Vec::new();
        let issues = checker.review(&answer.to_string(), &mut kept, 1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "Sunday Club");
        let found: Vec<(&str, Option<JunkReason>)> = issues
            .iter()
            .map(|issue| (issue.path.as_str(), issue.junk))
            .collect();
        assert_eq!(
            found,
            [
                ("/items/0/name", Some(JunkReason::KnownItem)),
                ("/items/1/name", Some(JunkReason::VentureName)),
                ("/items/2/description", Some(JunkReason::CodeOrMarkup)),
            ]
        );
        Ok(())
    }
}
