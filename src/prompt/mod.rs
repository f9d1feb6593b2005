//! Prompts: the template library and the context handed to it, turned into the exact chat
//! messages for one (venture, block). No prompt text lives in Rust; it is all in `prompts/`.

pub mod context;
pub mod library;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

pub use context::{PromptContext, PromptOptions, VentureInput};
pub use library::Library;

/// Chat messages belong to the models' side (`llm`); prompts produce them.
pub use crate::llm::{Message, Role};

use crate::draft::junk::{JunkContext, KnownItems, name_words_key, prompt_labels};
use crate::draft::schema::{CountError, keyword_strings};
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
    #[error(transparent)]
    Count(#[from] CountError),
}

/// The rendered prompt of one (venture, block): messages, the schema bound to the count, and
/// the files that made them.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub messages: Vec<Message>,
    /// The answer schema, asking for exactly `count` items (shared: [`crate::draft::AnswerSchema::bound_to`]).
    pub schema: Arc<Value>,
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
    let schema = library.answer_schema(block)?;
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

impl Prompt {
    /// What the junk rules compare an answer's items against: the graph, the block and this
    /// prompt (what it shows, its labels and texts).
    /// `keep_drafts` is `generate --append`: without it the venture's unaccepted drafts of this
    /// block are about to be replaced, so a name drafted before is not "already in the graph".
    ///
    /// `known_items` are the item names of `graph` ([`KnownItems::of`]), made once per run.
    pub fn junk_context(
        &self,
        graph: &Graph,
        block: &Block,
        keep_drafts: bool,
        known_items: Arc<KnownItems>,
    ) -> JunkContext {
        let context = &self.context;
        let venture = context.venture.name.clone();
        let venture_key = name_words_key(&venture);
        let replaced_items = match keep_drafts {
            true => Vec::new(),
            false => block
                .examples
                .iter()
                .filter(|example| example.draft && name_words_key(&example.venture) == venture_key)
                .map(|example| example.name.clone())
                .collect(),
        };
        let shown = context
            .examples
            .iter()
            .flat_map(|group| &group.items)
            .chain(&context.existing)
            .chain(
                context
                    .venture
                    .related
                    .iter()
                    .flat_map(|related| &related.items),
            )
            .map(|item| item.name.clone())
            .collect();
        let mut prompt_texts = vec![context.block.definition.clone()];
        prompt_texts.extend(context.block.questions.iter().cloned());
        keyword_strings(&self.schema, "description", &mut prompt_texts);
        // The block's names, and those of the blocks it relates to (their drafts are shown
        // under their titles): `Profile` is no name for a relationship either.
        let mut block_names = Vec::new();
        let related = block
            .relations
            .iter()
            .filter_map(|id| graph.blocks.iter().find(|each| &each.id == id));
        for named in std::iter::once(block).chain(related) {
            block_names.push(named.title.clone());
            block_names.extend(named.item_class.clone());
            block_names.extend(named.id.rsplit('/').next().map(str::to_string));
        }
        // The schema's choices: `Self-Service` or `Personal Assistance` is the kind of an idea,
        // not an idea.
        keyword_strings(&self.schema, "enum", &mut block_names);
        JunkContext {
            venture,
            ventures: graph.shared_venture_names(),
            known_items,
            replaced_items,
            shown,
            labels: prompt_labels(self.messages.iter().map(|message| message.content.as_str())),
            prompt_texts,
            block_names,
            prompt: self
                .messages
                .iter()
                .map(|message| message.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}
