//! inncopilot reads a business-model knowledge base kept as a Logseq graph, turns each
//! metamodel block's innCoPilot questions into prompts for a venture, and (in later parts)
//! asks a model for drafts and writes them back.
//!
//! - [`graph`]: the Logseq graph, its pages, metamodel blocks, examples and ventures.
//! - [`prompt`]: templates, their context, and the rendered chat messages.
//! - [`draft`]: answer schemas and validation.
//! - [`llm`]: providers, models, token counts.
//! - [`config`]: settings, layered defaults < file < environment < flags.
//! - [`report`]: the JSON and table output of the commands.
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod draft;
pub mod graph;
pub mod llm;
pub mod pipeline;
pub mod prompt;
pub mod report;
