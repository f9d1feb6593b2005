//! inncopilot reads a business-model knowledge base kept as a Logseq graph, turns each
//! metamodel block's innCoPilot questions into prompts for a venture, asks a model (an
//! OpenAI-compatible endpoint or an embedded GGUF model) for structured drafts, and checks them.
//!
//! - [`graph`]: the Logseq graph, its pages, metamodel blocks, examples and ventures.
//! - [`prompt`]: templates, their context, and the rendered chat messages.
//! - [`draft`]: answer schemas and validation.
//! - [`llm`]: providers, models, token counts.
//! - [`run`]: the run engine: (venture, block) pairs planned, drafted, checked, re-asked,
//!   cached, written and journaled; [`generate`] runs it for one venture.
//! - [`config`]: settings, layered defaults < file < environment < flags.
//! - [`writeback`]: drafts into the graph (placed, marked, accepted, rejected), atomically, locked.
//! - [`report`]: the JSON and table output of the commands.
//! - [`serve`]: the HTTP service over the same engine, lock and journal.
//! - [`cli`]: the command line.
//! - [`text`]: words of plain text, where a text is cut short.

pub mod cache;
pub mod cli;
pub mod config;
pub mod draft;
pub mod enrich;
pub mod fsutil;
pub mod generate;
pub mod graph;
pub mod llm;
pub mod pipeline;
pub mod prompt;
pub mod report;
pub mod run;
pub mod serve;
pub mod text;
pub mod writeback;
