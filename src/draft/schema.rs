//! Answer schemas (found per block in the prompt library, `prompt::Library::answer_schema`):
//! bound to the wanted item count, and used to validate answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use super::Issue;

/// A block's answer schema. A copy is cheap: its copies share the schema and the schema
/// bound to each count asked so far ([`bound_to`](Self::bound_to)).
#[derive(Debug, Clone)]
pub struct AnswerSchema {
    /// The schema's file in the prompt library (`schemas/generic.json`).
    pub file: String,
    pub value: Arc<Value>,
    bound: Arc<Mutex<BTreeMap<usize, Arc<Value>>>>,
}

/// A count of items the answer schema does not allow.
#[derive(Debug, thiserror::Error)]
#[error("--count {count} is not possible: the answer schema {file} allows 1 to {maximum} items")]
pub struct CountError {
    pub count: usize,
    pub maximum: u64,
    pub file: String,
}

/// An item field beyond `name` and `description`, described for the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub description: String,
    /// The allowed values of an enumerated field.
    pub choices: Vec<String>,
}

impl AnswerSchema {
    pub fn new(file: String, value: Value) -> AnswerSchema {
        AnswerSchema {
            file,
            value: Arc::new(value),
            bound: Arc::default(),
        }
    }

    /// The most items the schema allows in one answer.
    pub fn max_items(&self) -> usize {
        self.value
            .pointer("/properties/items/maxItems")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |maximum| {
                usize::try_from(maximum).unwrap_or(usize::MAX)
            })
    }

    /// The schema asking for exactly `count` items; an error when the schema allows fewer.
    /// Made once per count and shared: every pair of a run holds it while its request is out,
    /// and 128 copies of it were 3 to 4 MB of a run's peak.
    pub fn bound_to(&self, count: usize) -> Result<Arc<Value>, CountError> {
        let maximum = self.max_items() as u64;
        if count == 0 || count as u64 > maximum {
            return Err(CountError {
                count,
                maximum,
                file: self.file.clone(),
            });
        }
        let mut bound = self
            .bound
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let schema = bound.entry(count).or_insert_with(|| {
            let mut schema = Value::clone(&self.value);
            set_item_count(&mut schema, count);
            Arc::new(schema)
        });
        Ok(schema.clone())
    }

    /// The item fields besides `name` and `description`, in schema order.
    pub fn fields(&self) -> Vec<Field> {
        let Some(Value::Object(properties)) =
            self.value.pointer("/properties/items/items/properties")
        else {
            return Vec::new();
        };
        properties
            .iter()
            .filter(|(name, _)| name.as_str() != "name" && name.as_str() != "description")
            .map(|(name, property)| Field {
                name: name.clone(),
                description: property
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                choices: property
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|values| {
                        values
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The schema as a prompt shows it: its structure without its annotations (`title`,
/// `description`, `$schema`, `$comment`, `examples`). The prompt describes the fields in its own
/// words; a small model copied the schema's title and descriptions into its items
/// (`Customer Relationship Ideas`, a rationale that was the field's description).
pub fn shape(schema: &Value) -> Value {
    const ANNOTATIONS: [&str; 5] = ["title", "description", "$schema", "$comment", "examples"];
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let shaped = map
        .iter()
        .filter(|(key, _)| !ANNOTATIONS.contains(&key.as_str()))
        .map(|(key, value)| {
            let value = match (key.as_str(), value) {
                // Maps from names to subschemas: `description` there is a property's name.
                (
                    "properties" | "patternProperties" | "$defs" | "definitions",
                    Value::Object(named),
                ) => Value::Object(
                    named
                        .iter()
                        .map(|(name, subschema)| (name.clone(), shape(subschema)))
                        .collect(),
                ),
                ("prefixItems" | "anyOf" | "oneOf" | "allOf", Value::Array(subschemas)) => {
                    Value::Array(subschemas.iter().map(shape).collect())
                }
                (
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "contains"
                    | "if"
                    | "then"
                    | "else"
                    | "propertyNames"
                    | "unevaluatedItems"
                    | "unevaluatedProperties",
                    Value::Object(_),
                ) => shape(value),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(shaped)
}

/// Every string `schema` gives under `keyword`, nested subschemas too: a string
/// (`description`) or the strings of an array (`enum`). A property named like the keyword is
/// a subschema, walked into, not taken.
pub fn keyword_strings(schema: &Value, keyword: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(text) if key == keyword => out.push(text.clone()),
                    Value::Array(values) if key == keyword => {
                        out.extend(values.iter().filter_map(Value::as_str).map(str::to_string));
                    }
                    _ => keyword_strings(value, keyword, out),
                }
            }
        }
        Value::Array(values) => values
            .iter()
            .for_each(|value| keyword_strings(value, keyword, out)),
        _ => {}
    }
}

/// Every way `answer` breaks `schema`, each with the JSON pointer of the offending value.
pub fn validate(schema: &Value, answer: &Value) -> Vec<Issue> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(error) => {
            return vec![Issue {
                path: String::new(),
                message: format!("the schema itself is invalid: {error}"),
                junk: None,
            }];
        }
    };
    validator
        .iter_errors(answer)
        .map(|error| Issue {
            path: error.instance_path().to_string(),
            message: error.to_string(),
            junk: None,
        })
        .collect()
}

/// Have an answer schema ask for exactly `count` items (its `items` array's `minItems` and
/// `maxItems`), unchecked: [`AnswerSchema::bound_to`] checks the count against the block's
/// maximum; the embedded engine shares a bound count out among parallel sequences.
pub fn set_item_count(schema: &mut Value, count: usize) {
    if let Some(Value::Object(items)) = schema.pointer_mut("/properties/items") {
        items.insert("minItems".into(), Value::from(count));
        items.insert("maxItems".into(), Value::from(count));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every pair of a run holds its bound schema while its request is out: one per count,
    /// shared by every copy of the schema, not a copy per pair.
    #[test]
    fn a_schema_is_bound_once_per_count_and_shared() -> Result<(), CountError> {
        let schema = AnswerSchema::new(
            "schemas/test.json".into(),
            json!({"type": "object", "properties": {"items": {"type": "array", "maxItems": 5}}}),
        );
        let copy = schema.clone();
        let three = schema.bound_to(3)?;
        assert!(Arc::ptr_eq(&three, &copy.bound_to(3)?));
        assert_eq!(three["properties"]["items"]["minItems"], 3);
        assert_eq!(three["properties"]["items"]["maxItems"], 3);
        let four = copy.bound_to(4)?;
        assert_eq!(four["properties"]["items"]["maxItems"], 4);
        // The schema itself is left as it was.
        assert_eq!(schema.value["properties"]["items"]["maxItems"], 5);
        assert!(schema.bound_to(6).is_err());
        Ok(())
    }

    #[test]
    fn a_shape_keeps_the_structure_and_drops_the_annotations() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Customer relationship ideas",
            "description": "Relationships classified by a taxonomy.",
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 2,
                    "items": {
                        "type": "object",
                        "required": ["name", "description", "title"],
                        "properties": {
                            "name": {"type": "string", "description": "A short name.", "maxLength": 80},
                            // Properties named like annotations stay.
                            "description": {"type": "string", "title": "Text", "minLength": 10},
                            "title": {"type": "string"},
                            "kind": {"enum": ["a", "b"], "$comment": "why"},
                            "tags": {"type": "array", "items": {"type": "string", "examples": ["x"]}},
                            "either": {"anyOf": [{"type": "string", "description": "one"}, {"type": "null"}]}
                        }
                    }
                }
            }
        });
        assert_eq!(
            shape(&schema),
            json!({
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "minItems": 2,
                        "items": {
                            "type": "object",
                            "required": ["name", "description", "title"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 80},
                                "description": {"type": "string", "minLength": 10},
                                "title": {"type": "string"},
                                "kind": {"enum": ["a", "b"]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "either": {"anyOf": [{"type": "string"}, {"type": "null"}]}
                            }
                        }
                    }
                }
            })
        );
    }
}
