//! Prompts: the template library and the context handed to it, turned into the exact chat
//! messages for one (venture, block). No prompt text lives in Rust; it is all in `prompts/`.

pub mod context;
pub mod library;

use std::path::PathBuf;

use serde_json::Value;

pub use context::{PromptContext, PromptOptions, VentureInput};
pub use library::Library;

/// Chat messages belong to the models' side (`llm`); prompts produce them.
pub use crate::llm::{Message, Role};

use crate::draft::AnswerSchema;
use crate::graph::name::file_name_from_page_name;
use crate::graph::{Block, Graph};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("template {template}{}: {message}", line.map(|line| format!(" line {line}")).unwrap_or_default())]
    Template {
        template: String,
        line: Option<usize>,
        message: String,
    },
    #[error("answer schema {file}: {message}")]
    Schema { file: String, message: String },
    #[error("prompts folder {path} does not exist (set --prompts or prompts.dir)")]
    PromptsFolder { path: PathBuf },
    #[error(
        "--count {count} is not possible: the answer schema {file} allows 1 to {maximum} items"
    )]
    Count {
        count: usize,
        maximum: u64,
        file: String,
    },
}

/// The rendered prompt of one (venture, block): messages, the schema bound to the count, and
/// the files that made them.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub messages: Vec<Message>,
    /// The answer schema, asking for exactly `count` items.
    pub schema: Value,
    pub schema_file: String,
    /// The template files used (system, user).
    pub templates: Vec<String>,
    pub context: PromptContext,
}

/// The user template of a block: `blocks/<block id>.j2` when the library has one, else
/// `user.j2`.
pub fn user_template(library: &Library, block: &Block) -> String {
    let file_name = file_name_from_page_name(&block.id);
    let stem = file_name.strip_suffix(".md").unwrap_or(&file_name);
    let override_name = format!("blocks/{stem}.j2");
    if library.file(&override_name).is_some() {
        override_name
    } else {
        "user.j2".to_string()
    }
}

/// Render the prompt of one (venture, block).
pub fn render(
    library: &Library,
    graph: &Graph,
    block: &Block,
    venture: &VentureInput,
    count: usize,
    budget: PromptOptions,
) -> Result<Prompt, Error> {
    let schema = AnswerSchema::for_block(library, block)?;
    let bound = schema.bound_to(count)?;
    let context = context::build(graph, block, venture, count, &schema, &bound, budget);
    let user = user_template(library, block);
    let system_text = library.render("system.j2", &context)?;
    let user_text = library.render(&user, &context)?;
    Ok(Prompt {
        messages: vec![
            Message {
                role: Role::System,
                content: system_text.trim().to_string(),
            },
            Message {
                role: Role::User,
                content: user_text.trim().to_string(),
            },
        ],
        schema: bound,
        schema_file: schema.file,
        templates: vec!["system.j2".to_string(), user],
        context,
    })
}
