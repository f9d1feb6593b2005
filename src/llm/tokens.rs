//! Prompt token counts and cost estimates for `preview` (and, later, budgets).
//!
//! For the embedded model the count is exact: its own tokenizer and chat template (needs the
//! `local` feature and the model file). Otherwise it is an estimate, and says which:
//! - remote models: 4 characters per token plus 4 tokens per message and 3 for the reply's
//!   start, OpenAI's published rule of thumb for English text;
//! - the local model without its file: 1.15 tokens per run of letters, 1 per run of digits and
//!   1 per punctuation mark, plus 5 per message. Fitted to SmolLM2's tokenizer on the sample
//!   graph's prompts (within 4% on each; a test keeps it within 5%). Characters alone are not
//!   enough: the indented JSON schema has many spaces, which the tokenizer merges.

use serde::Serialize;

use super::Message;
use super::{Params, Provider};
use crate::config::Price;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenEstimate {
    pub tokens: usize,
    /// How the number was obtained.
    pub method: String,
}

/// Count (or estimate) the prompt tokens of `messages` for `provider`.
pub fn prompt_tokens(provider: &Provider, messages: &[Message]) -> TokenEstimate {
    match provider {
        Provider::Local { path, .. } => {
            #[cfg(feature = "local")]
            match super::local::count_prompt_tokens(path, messages) {
                Ok(tokens) => {
                    return TokenEstimate {
                        tokens,
                        method: "exact: the model's tokenizer and chat template".into(),
                    };
                }
                Err(error) => tracing::info!("counting tokens by estimate: {error}"),
            }
            let _ = path;
            TokenEstimate {
                tokens: by_words(messages),
                method: "estimate: 1.15 tokens per word, 1 per number or punctuation mark (the model file was not read)".into(),
            }
        }
        Provider::Openai { .. } => TokenEstimate {
            tokens: by_characters(messages, 4.0, 4, 3),
            method: "estimate: 4 characters per token plus 4 per message".into(),
        },
    }
}

/// Tokens estimated from characters.
pub fn by_characters(
    messages: &[Message],
    characters_per_token: f64,
    per_message: usize,
    reply: usize,
) -> usize {
    messages
        .iter()
        .map(|message| {
            (message.content.chars().count() as f64 / characters_per_token).ceil() as usize
                + per_message
        })
        .sum::<usize>()
        + reply
}

/// Tokens estimated from words, numbers and punctuation (the local model's fallback).
pub fn by_words(messages: &[Message]) -> usize {
    let mut total = 0.0;
    for message in messages {
        let (mut letters, mut digits, mut punctuation) = (0usize, 0usize, 0usize);
        let mut previous: Option<char> = None;
        for character in message.content.chars() {
            let continues = |test: fn(&char) -> bool| previous.as_ref().is_some_and(test);
            if character.is_alphabetic() {
                if !continues(|previous| previous.is_alphabetic()) {
                    letters += 1;
                }
            } else if character.is_ascii_digit() {
                if !continues(char::is_ascii_digit) {
                    digits += 1;
                }
            } else if !character.is_whitespace() {
                punctuation += 1;
            }
            previous = Some(character);
        }
        total += 1.15 * letters as f64 + (digits + punctuation) as f64 + 5.0;
    }
    total.round() as usize
}

/// Estimated output tokens: about 80 per item, at most the request's token limit.
pub fn expected_output_tokens(count: usize, params: &Params) -> usize {
    (count * 80).min(params.max_tokens as usize)
}

/// What a request of `messages` is estimated to cost, its prompt counted only when the
/// request has a price: the embedded model's exact count loads a second, vocabulary-only copy
/// of the model (13 MB more at the peak of a `generate`) for a cost of 0.
pub fn estimated_cost_usd(
    provider: &Provider,
    price: Option<&Price>,
    messages: &[Message],
    output_tokens: usize,
) -> f64 {
    match priced(provider, price) {
        Some(_) => cost_usd(
            provider,
            price,
            prompt_tokens(provider, messages).tokens,
            output_tokens,
        ),
        None => 0.0,
    }
}

/// Cost in USD from the price table; 0 for the local model and for models without a price.
pub fn cost_usd(
    provider: &Provider,
    price: Option<&Price>,
    prompt_tokens: usize,
    output_tokens: usize,
) -> f64 {
    match priced(provider, price) {
        Some(price) => {
            (prompt_tokens as f64 * price.input + output_tokens as f64 * price.output) / 1_000_000.0
        }
        None => 0.0,
    }
}

/// The price requests to `provider` cost, if any (the local model costs nothing).
fn priced<'p>(provider: &Provider, price: Option<&'p Price>) -> Option<&'p Price> {
    match provider {
        Provider::Openai { .. } => price,
        Provider::Local { .. } => None,
    }
}
