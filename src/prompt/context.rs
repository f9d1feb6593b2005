//! The context handed to the templates for one (venture, block): typed structs, serialised into
//! minijinja. Every piece of knowledge-base or user text enters here as a value, never as
//! template source, so `{{` in a page renders literally.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::draft::schema::{AnswerSchema, Field};
use crate::graph::name::page_key;
use crate::graph::{Block, Example, Graph};

/// Everything the templates may use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    pub block: BlockContext,
    pub venture: VentureContext,
    /// Few-shot examples of this block from other ventures, bounded by a token budget.
    pub examples: Vec<VentureItems>,
    /// The venture's items for this block already in the graph (not to be repeated).
    pub existing: Vec<Item>,
    /// How many new items are wanted.
    pub count: usize,
    pub answer: AnswerContext,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockContext {
    pub id: String,
    pub title: String,
    /// What the preamble calls the block: readable, never a file name.
    pub subject: String,
    pub definition: String,
    pub item_class: Option<String>,
    pub questions: Vec<String>,
    pub keys: Vec<KeyContext>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyContext {
    pub name: String,
    /// Written as in the page (`75`, not `75.0`).
    pub weight: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VentureContext {
    pub name: String,
    pub brief: Option<String>,
    /// Not in the graph yet: created from `--brief`.
    pub is_new: bool,
    /// The venture's items in the blocks this block relates to (`relations::`).
    pub related: Vec<RelatedItems>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelatedItems {
    pub id: String,
    pub title: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VentureItems {
    pub venture: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnswerContext {
    /// The JSON schema of the answer without its annotations (`draft::schema::shape`),
    /// pretty-printed.
    pub schema: String,
    /// The model's decoding is constrained to the schema (see [`PromptOptions`]).
    pub constrained: bool,
    /// Item fields besides name and description (the block's taxonomy).
    pub fields: Vec<Field>,
}

/// The venture a prompt is for, as resolved by the caller.
#[derive(Debug, Clone, Default)]
pub struct VentureInput {
    pub name: String,
    pub brief: Option<String>,
    pub is_new: bool,
    /// Items drafted earlier in this run, by block id: related blocks show them too.
    pub drafted: BTreeMap<String, Vec<Item>>,
    /// Count the venture's unaccepted drafts of a block as existing items (`generate --append`);
    /// otherwise they are about to be replaced and are left out.
    pub keep_drafts: bool,
}

/// How a prompt is shaped for its model.
#[derive(Debug, Clone, Copy)]
pub struct PromptOptions {
    /// Estimated tokens (4 characters each) the few-shot examples may take.
    pub tokens: usize,
    /// At most this many other ventures' examples.
    pub ventures: usize,
    /// Decoding is constrained to the schema (the local model): the templates may leave the
    /// schema out, which a small model would otherwise copy into its answer.
    pub constrained: bool,
}

/// Build the context of one (venture, block) prompt.
pub fn build(
    graph: &Graph,
    block: &Block,
    venture: &VentureInput,
    count: usize,
    schema: &AnswerSchema,
    bound_schema: &serde_json::Value,
    budget: PromptOptions,
) -> PromptContext {
    let venture_key = page_key(&venture.name);
    let related = block
        .relations
        .iter()
        .filter_map(|id| graph.blocks.iter().find(|candidate| candidate.id == *id))
        .map(|related_block| {
            // Drafted in this run, the block's earlier drafts were replaced (unless kept).
            let fresh = venture.drafted.get(&related_block.id);
            let replaced = fresh.is_some() && !venture.keep_drafts;
            RelatedItems {
                id: related_block.id.clone(),
                title: related_block.title.clone(),
                items: graph
                    .examples_of(related_block, &venture.name)
                    .filter(|example| !(replaced && example.draft))
                    .map(item)
                    .chain(fresh.into_iter().flatten().cloned())
                    .collect(),
            }
        })
        .filter(|related| !related.items.is_empty())
        .collect();
    let existing = graph
        .examples_of(block, &venture.name)
        .filter(|example| venture.keep_drafts || !example.draft)
        .map(item)
        .collect();
    PromptContext {
        block: BlockContext {
            id: block.id.clone(),
            title: block.title.clone(),
            subject: block.title.clone(),
            definition: block.definition.clone(),
            item_class: block.item_class.clone(),
            questions: block.questions.clone(),
            keys: block
                .keys
                .iter()
                .map(|key| KeyContext {
                    name: key.name.clone(),
                    weight: key.weight.map(|weight| weight.to_string()),
                    value: key.value.map(|value| value.to_string()),
                })
                .collect(),
            description: block.description.clone(),
        },
        venture: VentureContext {
            name: venture.name.clone(),
            brief: venture.brief.clone(),
            is_new: venture.is_new,
            related,
        },
        examples: few_shot(&block.examples, &venture_key, budget),
        existing,
        count,
        answer: AnswerContext {
            schema: serde_json::to_string_pretty(&crate::draft::schema::shape(bound_schema))
                .unwrap_or_default(),
            constrained: budget.constrained,
            fields: schema.fields(),
        },
    }
}

fn item(example: &Example) -> Item {
    Item {
        name: example.name.clone(),
        description: example.description.clone(),
    }
}

/// Other ventures' reviewed items of this block, whole ventures in graph order, while they fit
/// the budget.
fn few_shot(examples: &[Example], venture_key: &str, budget: PromptOptions) -> Vec<VentureItems> {
    let mut groups: Vec<VentureItems> = Vec::new();
    for example in examples
        .iter()
        .filter(|example| !example.draft && page_key(&example.venture) != venture_key)
    {
        match groups
            .iter_mut()
            .find(|group| group.venture.eq_ignore_ascii_case(&example.venture))
        {
            Some(group) => group.items.push(item(example)),
            None => groups.push(VentureItems {
                venture: example.venture.clone(),
                items: vec![item(example)],
            }),
        }
    }
    let mut chosen = Vec::new();
    let mut spent = 0;
    for group in groups {
        if chosen.len() >= budget.ventures {
            break;
        }
        let characters: usize = group
            .items
            .iter()
            .map(|item| item.name.len() + item.description.len() + 6)
            .sum::<usize>()
            + group.venture.len()
            + 2;
        let tokens = characters.div_ceil(4);
        if spent + tokens > budget.tokens {
            break;
        }
        spent += tokens;
        chosen.push(group);
    }
    chosen
}
