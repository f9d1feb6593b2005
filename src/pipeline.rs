//! The path from the graph to a model request, shared by the command line and (later) the
//! HTTP service: resolve the venture and block, render the prompt, choose the provider, count
//! tokens and cost. Sending, validating and writing back join here with `generate`.

use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::graph::{self, Graph};
use crate::llm::tokens::{self, TokenEstimate};
use crate::llm::{self, Params, Provider};
use crate::prompt::{self, Library, Message, Prompt, PromptOptions, VentureInput};
/// A preview fails the way a run's first step would.
pub use crate::run::Error;

/// What is asked of the graph and a model, by `preview` (one block) and `generate` (its blocks
/// in dependency order): the one request type of the command line and the service.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// A venture of the graph, or a new one with `brief`.
    pub venture: String,
    pub brief: Option<String>,
    /// Block ids, titles or last id segments; for `generate`, none means every block.
    pub blocks: Vec<String>,
    pub count: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
}

/// Everything that would be sent, without sending it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub block_id: String,
    pub venture: VentureInput,
    pub provider: Provider,
    pub params: Params,
    pub prompt: Prompt,
    pub tokens: TokenEstimate,
    pub expected_output_tokens: usize,
    pub cost_usd: f64,
}

/// `preview --json`: the shape of PRODUCT.md section 9, plus where the numbers come from.
#[derive(Debug, Serialize)]
pub struct PreviewReport<'p> {
    pub block: &'p str,
    pub venture: &'p str,
    pub provider: &'p str,
    pub model: &'p str,
    pub messages: &'p [Message],
    pub schema: &'p Value,
    pub params: &'p Params,
    pub estimated_prompt_tokens: usize,
    pub estimated_cost_usd: f64,
    pub token_estimate: &'p str,
    pub new_venture: bool,
    pub schema_file: &'p str,
    pub templates: &'p [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<&'p str>,
}

impl Preview {
    pub fn report(&self) -> PreviewReport<'_> {
        PreviewReport {
            block: &self.block_id,
            venture: &self.venture.name,
            provider: self.provider.name(),
            model: self.provider.model(),
            messages: &self.prompt.messages,
            schema: &self.prompt.schema,
            params: &self.params,
            estimated_prompt_tokens: self.tokens.tokens,
            estimated_cost_usd: self.cost_usd,
            token_estimate: &self.tokens.method,
            new_venture: self.venture.is_new,
            schema_file: &self.prompt.schema_file,
            templates: &self.prompt.templates,
            base_url: match &self.provider {
                Provider::Openai { base_url, .. } => Some(base_url),
                Provider::Local { .. } => None,
            },
        }
    }
}

/// The venture a request names: a known one (its brief, unless `brief` replaces it), or a new
/// one when a brief is given.
pub fn resolve_venture(
    graph: &Graph,
    name: &str,
    brief: Option<String>,
) -> Result<VentureInput, graph::Error> {
    let brief = brief
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    match graph.find_venture(name) {
        Some(venture) => {
            if brief.is_none() && venture.brief.is_none() && venture.blocks.is_empty() {
                tracing::warn!(
                    "only the name of venture `{}` is known (its {} example canvases are empty): drafts stand on the name alone; a brief (--brief or --brief-file) improves them",
                    venture.name,
                    venture.empty_canvases
                );
            }
            Ok(VentureInput {
                name: venture.name.clone(),
                brief: brief.or_else(|| venture.brief.clone()),
                is_new: false,
                ..Default::default()
            })
        }
        None if brief.is_some() => Ok(VentureInput {
            name: name.trim().to_string(),
            brief,
            is_new: true,
            ..Default::default()
        }),
        None => Err(graph::Error::UnknownVenture {
            name: name.to_string(),
            known: graph.venture_names(),
        }),
    }
}

/// The prompt shape for a provider: the local model gets a smaller few-shot budget (it reads
/// ~350 tokens/s on two cores) and no schema text (its decoding is constrained to it).
pub fn prompt_options(settings: &Settings, provider: &Provider) -> PromptOptions {
    match provider {
        Provider::Local { .. } => PromptOptions {
            tokens: settings.local.example_token_budget,
            ventures: settings.generate.max_example_ventures,
            constrained: true,
        },
        Provider::Openai { .. } => PromptOptions {
            tokens: settings.generate.example_token_budget,
            ventures: settings.generate.max_example_ventures,
            constrained: false,
        },
    }
}

/// Render the request for one (venture, block) and say where it would go and what it costs.
pub fn preview(
    graph: &Graph,
    settings: &Settings,
    library: &Library,
    request: &Request,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Preview, Error> {
    let [block] = request.blocks.as_slice() else {
        return Err(Error::Usage(format!(
            "a preview renders one block, not {}",
            request.blocks.len()
        )));
    };
    let block = graph.find_block(block)?;
    let venture = resolve_venture(graph, &request.venture, request.brief.clone())?;
    let count = request.count.unwrap_or(settings.generate.count);
    let (provider, params) = llm::choose(
        settings,
        request.provider.as_deref(),
        request.model.as_deref(),
        env,
    )?;
    let prompt = prompt::render(
        library,
        graph,
        block,
        &venture,
        count,
        prompt_options(settings, &provider),
    )?;
    let tokens = tokens::prompt_tokens(&provider, &prompt.messages);
    let expected_output_tokens = tokens::expected_output_tokens(count, &params);
    let cost_usd = tokens::cost_usd(
        &provider,
        settings.prices.get(provider.model()),
        tokens.tokens,
        expected_output_tokens,
    );
    Ok(Preview {
        block_id: block.id.clone(),
        venture,
        provider,
        params,
        prompt,
        tokens,
        expected_output_tokens,
        cost_usd,
    })
}
