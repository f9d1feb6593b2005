//! Which (venture, block) pairs a run works on, in what order, at what estimated cost.
//!
//! Per venture, a pair comes after the pairs of the blocks it relates to (`relations::`): their
//! drafts feed its prompt. Pairs are grouped in waves (wave 1 depends on nothing in the run,
//! wave 2 on wave 1, ...); within a wave heavier blocks (`weight::`) come first across the
//! graph, then block id, then venture name.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Engine, Error};
use crate::graph::{self, Block, Graph, Venture};
use crate::llm::tokens;
use crate::prompt::{self, VentureInput};

/// One pair of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPair {
    pub venture: String,
    pub block: String,
    /// 1 for pairs that wait for nothing in the run.
    pub wave: usize,
    /// Items the venture already has in the block.
    pub existing: usize,
    /// Items to draft.
    pub count: usize,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// `None` when the model has no price in the price table.
    pub cost_usd: Option<f64>,
}

/// `enrich --plan`: the pairs, and what they would cost.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub provider: String,
    pub model: String,
    pub pairs: Vec<PlannedPair>,
    pub waves: usize,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// `None` when the model has no price in the price table.
    pub cost_usd: Option<f64>,
    /// Ventures known by their name alone (no brief, no items): their drafts stand on the name.
    pub name_only_ventures: Vec<String>,
}

/// What `enrich` is asked to cover.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Venture names (case-insensitive); empty for every venture of the graph.
    pub ventures: Vec<String>,
    /// Block ids, titles or last id segments; empty for every block.
    pub blocks: Vec<String>,
    /// Pairs with fewer items than this are planned (1: pairs with none).
    pub min_items: usize,
    /// Every selected pair, whatever it holds.
    pub force: bool,
    /// Items per pair.
    pub count: usize,
}

/// The blocks `queries` name (every block when empty), or the error naming the known ones.
pub fn select_blocks<'g>(graph: &'g Graph, queries: &[String]) -> Result<Vec<&'g Block>, Error> {
    if queries.is_empty() {
        return Ok(graph.blocks.iter().collect());
    }
    let mut blocks = queries
        .iter()
        .map(|query| graph.find_block(query))
        .collect::<Result<Vec<_>, _>>()?;
    blocks.sort_by(|a, b| a.id.cmp(&b.id));
    blocks.dedup_by(|a, b| a.id == b.id);
    Ok(blocks)
}

/// The ventures `names` name (every venture of the graph when empty), or the error naming the
/// known ones.
fn select_ventures(graph: &Graph, names: &[String]) -> Result<Vec<Venture>, Error> {
    if names.is_empty() {
        return Ok(graph.ventures().to_vec());
    }
    let mut selected: Vec<Venture> = Vec::new();
    for name in names {
        let venture = graph
            .find_venture(name)
            .ok_or_else(|| graph::Error::UnknownVenture {
                name: name.clone(),
                known: graph.venture_names(),
            })?;
        if !selected.contains(venture) {
            selected.push(venture.clone());
        }
    }
    Ok(selected)
}

/// A venture of the graph as a prompt input: its name and brief.
pub fn venture_input(venture: &Venture) -> VentureInput {
    VentureInput {
        name: venture.name.clone(),
        brief: venture.brief.clone(),
        is_new: false,
        ..Default::default()
    }
}

/// The selected blocks, each after the blocks it relates to (when both are selected), with the
/// wave it falls in; ties and cycles in id order.
pub fn dependency_order(blocks: Vec<&Block>) -> Vec<(&Block, usize)> {
    let selected: BTreeSet<&str> = blocks.iter().map(|block| block.id.as_str()).collect();
    let mut remaining: Vec<&Block> = blocks;
    remaining.sort_by(|a, b| a.id.cmp(&b.id));
    remaining.dedup_by(|a, b| a.id == b.id);
    let mut wave_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ordered = Vec::new();
    while !remaining.is_empty() {
        let waits_for = |block: &Block| -> Vec<String> {
            block
                .relations
                .iter()
                .filter(|id| *id != &block.id && selected.contains(id.as_str()))
                .cloned()
                .collect()
        };
        let ready = remaining.iter().position(|block| {
            waits_for(block)
                .iter()
                .all(|id| wave_of.contains_key(id.as_str()))
        });
        // A cycle: take the first remaining block as it is.
        let next = remaining.remove(ready.unwrap_or(0));
        let wave = 1 + waits_for(next)
            .iter()
            .filter_map(|id| wave_of.get(id.as_str()))
            .max()
            .copied()
            .unwrap_or(0);
        wave_of.insert(next.id.as_str(), wave);
        ordered.push((next, wave));
    }
    ordered
}

/// The pairs `selection` covers, ordered, with (when `estimate`) their estimated tokens and
/// cost. Nothing is sent and no model is loaded. Without `estimate`, no prompt is rendered and
/// the estimates stay 0 and unknown: a run with no budget to keep has no use for them, and
/// rendering every prompt first (~12 us each) held back its first requests.
pub fn enrich(engine: &Engine, selection: &Selection, estimate: bool) -> Result<Plan, Error> {
    let graph = &engine.graph;
    let blocks = select_blocks(graph, &selection.blocks)?;
    let ventures = select_ventures(graph, &selection.ventures)?;
    let order = dependency_order(blocks);
    let options = crate::pipeline::prompt_options(&engine.settings, &engine.provider);
    let price = engine.settings.prices.get(engine.provider.model());
    let mut pairs = Vec::new();
    let mut name_only = BTreeSet::new();
    for venture in &ventures {
        let input = venture_input(venture);
        for (block, wave) in &order {
            let existing = venture.blocks.get(&block.id).copied().unwrap_or(0);
            if !selection.force && existing >= selection.min_items.max(1) {
                continue;
            }
            if venture.brief.is_none() && venture.blocks.is_empty() {
                name_only.insert(venture.name.clone());
            }
            let (prompt_tokens, output_tokens) = match estimate {
                true => {
                    let rendered = prompt::render(
                        &engine.library,
                        graph,
                        block,
                        &input,
                        selection.count,
                        options,
                    )?;
                    (
                        tokens::prompt_tokens(&engine.provider, &rendered.messages).tokens,
                        tokens::expected_output_tokens(selection.count, &engine.params),
                    )
                }
                false => (0, 0),
            };
            pairs.push(PlannedPair {
                venture: venture.name.clone(),
                block: block.id.clone(),
                wave: *wave,
                existing,
                count: selection.count,
                prompt_tokens,
                output_tokens,
                cost_usd: (estimate && engine.price_known()).then(|| {
                    tokens::cost_usd(&engine.provider, price, prompt_tokens, output_tokens)
                }),
            });
        }
    }
    let weight = |id: &str| {
        graph
            .blocks
            .iter()
            .find(|block| block.id == id)
            .and_then(|block| block.weight)
            .unwrap_or(0.0)
    };
    pairs.sort_by(|a, b| {
        a.wave
            .cmp(&b.wave)
            .then(weight(&b.block).total_cmp(&weight(&a.block)))
            .then(a.block.cmp(&b.block))
            .then(a.venture.to_lowercase().cmp(&b.venture.to_lowercase()))
    });
    Ok(Plan {
        provider: engine.provider.name().to_string(),
        model: engine.provider.model().to_string(),
        waves: pairs.iter().map(|pair| pair.wave).max().unwrap_or(0),
        prompt_tokens: pairs.iter().map(|pair| pair.prompt_tokens).sum(),
        output_tokens: pairs.iter().map(|pair| pair.output_tokens).sum(),
        cost_usd: (estimate && engine.price_known())
            .then(|| pairs.iter().filter_map(|pair| pair.cost_usd).sum()),
        pairs,
        name_only_ventures: name_only.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: &str, relations: &[&str]) -> Block {
        Block {
            id: id.into(),
            relations: relations.iter().map(ToString::to_string).collect(),
            ..Block::default()
        }
    }

    #[test]
    fn related_blocks_come_first_and_cycles_still_finish() {
        let profile = block("profile", &[]);
        let relationship = block("profile/relationship", &["profile", "channel"]);
        let channel = block("channel", &["profile/relationship"]);
        let ordered: Vec<(&str, usize)> = dependency_order(vec![&relationship, &profile])
            .iter()
            .map(|(block, wave)| (block.id.as_str(), *wave))
            .collect();
        assert_eq!(ordered, [("profile", 1), ("profile/relationship", 2)]);
        let cyclic: Vec<&str> = dependency_order(vec![&relationship, &channel, &profile])
            .iter()
            .map(|(block, _)| block.id.as_str())
            .collect();
        assert_eq!(cyclic.len(), 3);
        assert_eq!(cyclic[0], "profile");
    }
}
