//! Answer schemas (found per block in the prompt library, `prompt::Library::answer_schema`):
//! bound to the wanted item count, and used to validate answers.

use serde::Serialize;
use serde_json::Value;

use super::Issue;

/// A block's answer schema.
#[derive(Debug, Clone)]
pub struct AnswerSchema {
    /// The schema's file in the prompt library (`schemas/generic.json`).
    pub file: String,
    pub value: Value,
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
    pub fn bound_to(&self, count: usize) -> Result<Value, CountError> {
        let mut bound = self.value.clone();
        let maximum = self.max_items() as u64;
        if count == 0 || count as u64 > maximum {
            return Err(CountError {
                count,
                maximum,
                file: self.file.clone(),
            });
        }
        set_item_count(&mut bound, count);
        Ok(bound)
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
