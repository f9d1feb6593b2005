//! The service's error answers: `{"error": {"code", "message", "field"}}`, with the status that
//! says whose fault it is. Internal errors are logged with an id and not shown.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::graph;
use crate::llm;
use crate::prompt;
use crate::run;
use crate::writeback;

/// What went wrong and what to fix.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad-request`, `unknown-field`, `unknown-venture`, `unknown-block`,
    /// `empty-selection`, `no-match`, `unauthorized`, `not-found`, `conflict`, `too-large`,
    /// `provider`, `internal`, ...
    pub code: String,
    /// For people: what happened and what to change.
    pub message: String,
    /// The request field to fix, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    /// A failure of ours: logged with an id; the answer says only the id.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        let id = format!("{:08x}", fastrand::u32(..));
        tracing::error!(error_id = %id, "internal error: {error}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (logged on the server as {id})"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<graph::Error> for ApiError {
    fn from(error: graph::Error) -> ApiError {
        let message = error.to_string();
        match error {
            graph::Error::UnknownBlock { .. } | graph::Error::AmbiguousBlock { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-block", message).field("block")
            }
            graph::Error::UnknownVenture { name, known } => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-venture",
                format!(
                    "unknown venture `{name}`: give a brief to create it (preview, generate), or use one of: {known}"
                ),
            )
            .field("venture"),
            other => ApiError::internal(other),
        }
    }
}

impl From<prompt::Error> for ApiError {
    fn from(error: prompt::Error) -> ApiError {
        match error {
            prompt::Error::Count { .. } => ApiError::bad_request(error.to_string()).field("count"),
            other => ApiError::internal(other),
        }
    }
}

impl From<llm::Error> for ApiError {
    fn from(error: llm::Error) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown-provider",
            error.to_string(),
        )
        .field("provider")
    }
}

impl From<writeback::Error> for ApiError {
    fn from(error: writeback::Error) -> ApiError {
        let message = error.to_string();
        match error {
            writeback::Error::Graph(error) => error.into(),
            writeback::Error::NoSelection => ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty-selection",
                "say which drafts: venture, block, run or items (several narrow the choice), or all: true",
            ),
            writeback::Error::NothingSelected { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no-match", message)
            }
            writeback::Error::Locked { .. } | writeback::Error::ChangedOnDisk { .. } => {
                ApiError::conflict(message)
            }
            writeback::Error::ExportPage { .. }
            | writeback::Error::NoExamplesSection { .. }
            | writeback::Error::NotReadBack { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "page", message)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<run::Error> for ApiError {
    fn from(error: run::Error) -> ApiError {
        match error {
            run::Error::Graph(error) => error.into(),
            run::Error::Prompt(error) => error.into(),
            run::Error::Provider(error) => error.into(),
            run::Error::Writeback(error) => error.into(),
            run::Error::Usage(message) => ApiError::bad_request(message),
            run::Error::Model(error) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider", error.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

/// A body that is not the JSON asked for: the field serde names, when it names one.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let message = rejection.body_text();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(status, "too-large", "the request body is too large");
        }
        let field = named_field(&message);
        let code = match message.contains("unknown field") {
            true => "unknown-field",
            false => "bad-request",
        };
        let status = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => status,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code,
            message,
            field,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let message = rejection.body_text();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: match message.contains("unknown field") {
                true => "unknown-field",
                false => "bad-request",
            },
            field: named_field(&message),
            message,
        }
    }
}

/// The field a serde message names: "unknown field `x`", "missing field `x`", or the path
/// before ": " ("count: invalid type ...").
fn named_field(message: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            return rest.find('`').map(|end| rest[..end].to_string());
        }
    }
    let detail = message.split(": ").nth(1)?;
    let path = detail.split_whitespace().next()?;
    (path
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '[' || c == ']')
        && !path.is_empty())
    .then(|| path.trim_end_matches(':').to_string())
}

#[cfg(test)]
mod tests {
    use super::named_field;

    #[test]
    fn the_field_serde_names_is_found() {
        assert_eq!(
            named_field("Failed to deserialize the JSON body into the target type: unknown field `vnture`, expected one of `venture`").as_deref(),
            Some("vnture")
        );
        assert_eq!(
            named_field("Failed to deserialize the JSON body into the target type: missing field `venture` at line 1 column 2").as_deref(),
            Some("venture")
        );
        assert_eq!(
            named_field("Failed to deserialize the JSON body into the target type: count: invalid type: string \"x\", expected usize at line 1 column 12").as_deref(),
            Some("count")
        );
    }
}
