//! Drafts: the structured answers of a model for one (venture, block), and the schemas they
//! are checked against. Validation problems are data ([`Issue`]), fed back to the model and
//! shown to the user, not errors.

pub mod schema;

use serde::Serialize;

pub use schema::AnswerSchema;

/// One problem with an answer: where (a JSON pointer into the answer) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub path: String,
    pub message: String,
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
