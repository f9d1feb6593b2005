//! inncopilot reads a business-model knowledge base kept as a Logseq graph, turns each
//! metamodel block's innCoPilot questions into prompts for a venture, and (in later parts)
//! asks a model for drafts and writes them back.
//!
//! - [`graph`]: the Logseq graph, its pages, metamodel blocks, examples and ventures.
//! - [`config`]: settings, layered defaults < file < environment < flags.
//! - [`report`]: the JSON and table output of the commands.
//! - [`cli`]: the command line.

pub mod cli;
pub mod config;
pub mod graph;
pub mod report;
