//! One (venture, block) pair: render the prompt, ask the model (or the cache), check the answer
//! against the schema and the item rules, keep the usable items, and re-ask with the problems
//! listed until the count is met or the attempts run out.
//!
//! The local model may be over-asked (`local.over_ask`), is told which names to avoid and
//! meets the junk rules while it writes (its engine takes a refused text back: `llm::guard`),
//! and is asked again with a fresh, short request rather than the conversation. What could not
//! be filled is a [`Failure`] with its reason, next to the draft of what could.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Draft, Engine, Error, EventKind, Events, Failure, FailureKind, Provenance};
use crate::draft::{AnswerSchema, Checker, Issue, Item, Junk, JunkReason, item_schema};
use crate::graph::Block;
use crate::llm::{AvoidNames, ChatRequest, Completion, Params, Provider, TextCheck, Usage, tokens};
use crate::prompt::library::{sha256_hex, sha256_json_object};
use crate::prompt::{self, Library, Message, Role, VentureInput};

/// What a pair's answers are checked with, and the hashes its provenance records.
struct Rules {
    checker: Checker,
    prompt_hash: String,
    templates_hash: String,
    schema_hash: String,
}

/// How much hotter the local model samples on each fresh request after the first.
const RESAMPLE_HEAT: f64 = 0.2;

/// What one pair came to: the draft of the items kept (if any) and why it falls short (if it
/// does).
#[derive(Debug)]
pub struct PairOutcome {
    pub draft: Option<Draft>,
    pub failure: Option<Failure>,
    /// Every attempt was answered from the cache.
    pub cached: bool,
    pub attempts: u32,
    pub tokens: Usage,
    pub cost_usd: f64,
    /// The model's answers, for the cache: the writer stores them with the pair
    /// ([`super::schedule`]), off the path of the requests (a burst of answers each creating a
    /// file delayed the next ones).
    pub answers: Vec<(String, Completion)>,
}

impl PairOutcome {
    /// A pair that ended with `failure` before any answer.
    pub fn failed(failure: Failure) -> PairOutcome {
        PairOutcome {
            draft: None,
            failure: Some(failure),
            cached: false,
            attempts: 0,
            tokens: Usage::default(),
            cost_usd: 0.0,
            answers: Vec::new(),
        }
    }
}

/// Where a pair's answers come from besides the cache.
#[derive(Debug)]
pub struct Answers<'s> {
    /// The answer to the first request, already given (a Batch API result file).
    pub imported: Option<Completion>,
    /// Ask the model for what the imported answer (or the cache) does not give.
    pub live: bool,
    /// Attempts an earlier try of the run made before the pair failed (0: none); it is asked
    /// again with the seeds that follow on from theirs, not the same ones, which would give a
    /// seeded model's same answers (and those of a pair left short are not in the cache).
    pub earlier_attempts: u32,
    /// The pair's place among the requests out at once. The caller keeps it: after a failed
    /// request the place is still held when the pair ends, and the run decides whether to stop
    /// before it is given back.
    pub slot: &'s mut Slot,
}

/// A pair's place among the requests a run has out at once (`--concurrency`). It is held
/// while the pair's request is out and given back as soon as the answer is in, so the next
/// pair's request leaves while this one's answer is checked and written; a re-ask takes a
/// place again. A request that failed keeps its place (see [`Answers::slot`]).
#[derive(Debug)]
pub struct Slot {
    places: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// A slot holding `held`, one of `places`.
    pub fn new(places: Arc<Semaphore>, held: OwnedSemaphorePermit) -> Slot {
        Slot {
            places,
            held: Some(held),
        }
    }

    /// Hold a place, waiting for one if none is free.
    async fn take(&mut self) {
        if self.held.is_none() {
            // The run keeps its places open until every pair has ended.
            self.held = self.places.clone().acquire_owned().await.ok();
        }
    }

    fn give_back(&mut self) {
        self.held = None;
    }
}

/// Draft `count` items of `block` for `venture`.
pub async fn draft_pair(
    engine: &Engine,
    run_id: &str,
    venture: &VentureInput,
    block: &Block,
    count: usize,
    answers: Answers<'_>,
    events: &Events,
) -> Result<PairOutcome, Error> {
    let Answers {
        mut imported,
        live,
        earlier_attempts,
        slot,
    } = answers;
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let library: &Library = &engine.library;
    let budget = crate::pipeline::prompt_options(&engine.settings, &engine.provider);
    let schema = library.answer_schema(block)?;
    let ask = |missing: usize| asked_for(engine, &schema, missing);
    let first = prompt::render(library, &engine.graph, block, venture, ask(count), budget)?;
    let existing: Vec<&str> = first
        .context
        .existing
        .iter()
        .map(|item| item.name.as_str())
        .collect();
    let junk_context = first.junk_context(
        &engine.graph,
        block,
        venture.keep_drafts,
        engine.known_items(),
    );
    // Names the embedded model takes back as soon as it writes them (`llm::guard`): the
    // venture's items, every venture of the graph, every name the prompt shows, and the block's
    // own names. A remote model is only checked afterwards.
    // The graph's ventures are one list every request shares: a graph of thousands of
    // ventures made this list thousands of names long for every request out.
    let avoid = AvoidNames::default()
        .and(existing.iter().copied())
        .and([junk_context.venture.as_str()])
        .and_shared(junk_context.ventures.clone())
        .and(junk_context.shown.iter().map(String::as_str))
        .and(junk_context.block_names.iter().map(String::as_str));
    // The item validator and the block's part of the junk rules are the engine's, made for the
    // block's first pair. A schema that cannot be compiled stops the pair before anything is
    // sent. The rest is the pair's, and a remote pair makes it while its first request is out
    // (it is not needed before the answer): at high concurrency, every fraction of a
    // millisecond spent before a request leaves delays the next round of them.
    let validator = engine
        .item_validator(&item_schema(&first.schema))
        .map_err(|issue| Error::Schema {
            file: first.schema_file.clone(),
            message: issue.to_string(),
        })?;
    let make_rules = || -> Rules {
        let junk = Junk::of_block(engine.block_junk(&block.id, &junk_context), &junk_context);
        Rules {
            checker: Checker::with_validator(validator.clone(), existing.iter().copied())
                .with_junk(junk),
            prompt_hash: sha256_json_object(
                ("messages", &first.messages),
                ("schema", &first.schema),
            ),
            templates_hash: library.templates_hash(&first.templates),
            schema_hash: sha256_hex(schema.value.to_string().as_bytes()),
        }
    };
    // The embedded model needs them first: it meets the junk rules while it writes each text
    // (`llm::guard`).
    let mut rules: Option<Rules> = budget.constrained.then(&make_rules);
    let text_check = rules
        .as_ref()
        .and_then(|made| made.checker.junk())
        .map(|junk| {
            TextCheck(Arc::new(move |path: &str, text: &str, name: &str| {
                junk.check_text(path, text, name).map(JunkReason::as_str)
            }))
        });
    let mut junk: BTreeMap<JunkReason, usize> = BTreeMap::new();
    let (mut proposed, mut invalid) = (0, 0);
    let mut taken_back: BTreeMap<String, usize> = BTreeMap::new();
    let mut kept: Vec<Item> = Vec::new();
    let mut usage = Usage::default();
    let mut cost_usd = 0.0;
    let (mut attempts, mut cached_attempts, mut imported_attempts) = (0_u32, 0_u32, 0_u32);
    let mut constrained_by = String::new();
    let mut messages = first.messages.clone();
    let mut schema_sent = first.schema.clone();
    let mut asked = ask(count);
    let mut problems = Vec::new();
    let mut failure = None;
    let price = engine.settings.prices.get(engine.provider.model());
    let mut answers = Vec::new();
    for attempt in 1..=engine.settings.generate.attempts.max(1) {
        attempts = attempt;
        // A new seed each attempt; the local model's fresh requests also sample hotter, or it
        // gives the same few ideas again.
        let hotter = match budget.constrained {
            true => RESAMPLE_HEAT * f64::from(attempt - 1),
            false => 0.0,
        };
        let params = Params {
            seed: engine.params.seed + i64::from(earlier_attempts + attempt - 1),
            temperature: engine.params.temperature + hotter,
            ..engine.params.clone()
        };
        let chat = ChatRequest {
            messages: messages.clone(),
            schema: schema_sent.clone(),
            params,
            avoid_names: avoid
                .clone()
                .and(kept.iter().map(|item| item.name.as_str())),
            check: text_check.clone(),
        };
        let key = crate::cache::Cache::key(&engine.identity, &chat);
        // An imported answer is the first request's, as the batch runner got it; it is cached
        // so that a re-run reads it again.
        let imported_now = imported.take().filter(|_| attempt == 1);
        if let Some(answer) = &imported_now {
            engine.cache.put(&key, answer);
            // Batch prices are half the live ones.
            cost_usd += 0.5
                * tokens::cost_usd(
                    &engine.provider,
                    price,
                    answer.usage.prompt_tokens as usize,
                    answer.usage.completion_tokens as usize,
                );
            imported_attempts += 1;
        }
        let cached = imported_now.or_else(|| engine.cache.get(&key));
        events.send(
            &venture.name,
            &block.id,
            EventKind::Attempt {
                attempt,
                cached: cached.is_some(),
            },
        );
        let completion = match cached {
            Some(completion) => {
                cached_attempts += 1;
                completion
            }
            None if !live => {
                failure = Some(Failure::new(
                    FailureKind::Deferred,
                    format!(
                        "{} of {count} items from the batch results; the rest are left for the next --batch-export (or import without --no-live)",
                        kept.len()
                    ),
                ));
                break;
            }
            None => {
                slot.take().await;
                let estimate = tokens::estimated_cost_usd(
                    &engine.provider,
                    price,
                    &chat.messages,
                    tokens::expected_output_tokens(asked, &chat.params),
                );
                if let Err(exceeded) = engine.budget.reserve(estimate) {
                    failure = Some(exceeded);
                    break;
                }
                let model = match engine.model().await {
                    Ok(model) => model,
                    Err(connect) => {
                        engine.budget.settle(estimate, 0.0);
                        return Err(connect.into());
                    }
                };
                let piece = |text: &str| {
                    events.send(
                        &venture.name,
                        &block.id,
                        EventKind::Piece {
                            text: text.to_string(),
                        },
                    )
                };
                let answer = match rules {
                    Some(_) => model.complete(&chat, &piece).await,
                    None => {
                        // The request is written by its connection's task: let that run first.
                        let rules_meanwhile = async {
                            tokio::task::yield_now().await;
                            make_rules()
                        };
                        let (answer, made) =
                            tokio::join!(model.complete(&chat, &piece), rules_meanwhile);
                        rules = Some(made);
                        answer
                    }
                };
                let paid = answer.as_ref().map(|done| done.usage).unwrap_or_default();
                let cost = tokens::cost_usd(
                    &engine.provider,
                    price,
                    paid.prompt_tokens as usize,
                    paid.completion_tokens as usize,
                );
                engine.budget.settle(estimate, cost);
                cost_usd += cost;
                match answer {
                    Ok(completion) => {
                        // The next pair's request goes first: storing and checking this
                        // answer can wait for it (at high concurrency a burst of answers
                        // comes in at once, and each one's checks delayed the next request).
                        slot.give_back();
                        tokio::task::yield_now().await;
                        answers.push((key, completion.clone()));
                        completion
                    }
                    Err(error) => {
                        failure = Some(Failure::model(&error));
                        break;
                    }
                }
            }
        };
        // An answer from the cache or the batch results needs no place either.
        slot.give_back();
        usage += completion.usage;
        constrained_by = completion.constrained_by.clone();
        for (reason, count) in &completion.taken_back {
            *taken_back.entry(reason.clone()).or_insert(0) += count;
        }
        proposed += answer_items(&completion.text);
        let checker = &rules.get_or_insert_with(&make_rules).checker;
        problems = checker.review(&completion.text, &mut kept, count);
        for reason in problems.iter().filter_map(|issue| issue.junk) {
            *junk.entry(reason).or_insert(0) += 1;
        }
        invalid += invalid_items(&problems);
        for issue in &problems {
            tracing::info!("{} / {} attempt {attempt}: {issue}", venture.name, block.id);
        }
        if kept.len() >= count {
            break;
        }
        let missing = count - kept.len();
        asked = ask(missing);
        schema_sent = schema.bound_to(asked).map_err(prompt::Error::from)?;
        let kept_names: Vec<&str> = kept.iter().map(|item| item.name.as_str()).collect();
        messages = match budget.constrained {
            // Decoding under the schema, the local model cannot break the JSON, only repeat
            // itself: a fresh request is shorter than the conversation it would read again.
            true => {
                let again = prompt::render(library, &engine.graph, block, venture, asked, budget)?;
                fresh_messages(library, again.messages, &kept_names)?
            }
            false => reask_messages(
                library,
                &first.messages,
                &completion.text,
                &problems,
                &kept_names,
                asked,
            )?,
        };
    }
    if failure.is_none() && kept.len() < count {
        let listed: Vec<String> = problems.iter().take(5).map(ToString::to_string).collect();
        failure = Some(Failure::new(
            FailureKind::TooFewItems,
            format!(
                "{} of {count} items after {attempts} attempt(s){}; last problems: {}",
                kept.len(),
                super::junk_summary(&junk)
                    .map(|summary| format!(", junk rejected: {summary}"))
                    .unwrap_or_default(),
                listed.join("; ")
            ),
        ));
    }
    let draft = rules.filter(|_| !kept.is_empty()).map(|rules| Draft {
        venture: venture.name.clone(),
        block: block.id.clone(),
        items: kept,
        provenance: Provenance {
            run_id: run_id.to_string(),
            provider: engine.provider.name().to_string(),
            model: engine.provider.model().to_string(),
            base_url: match &engine.provider {
                Provider::Openai { base_url, .. } => Some(base_url.clone()),
                Provider::Local { .. } => None,
            },
            constrained_by,
            templates_hash: rules.templates_hash,
            schema_file: first.schema_file.clone(),
            schema_hash: rules.schema_hash,
            prompt_hash: rules.prompt_hash,
            params: engine.params.clone(),
            asked: ask(count),
            attempts,
            cached_attempts,
            proposed,
            invalid,
            junk,
            taken_back,
            tokens: usage,
            cost_usd,
            seconds: started.elapsed().as_secs_f64(),
            started_at,
            inncopilot_version: env!("CARGO_PKG_VERSION").to_string(),
        },
        written_to: None,
        pages: Vec::new(),
    });
    Ok(PairOutcome {
        draft,
        failure,
        cached: attempts > 0 && cached_attempts == attempts && imported_attempts == 0,
        attempts,
        tokens: usage,
        cost_usd,
        answers,
    })
}

/// How many items to ask for when `missing` are missing: the local model may be over-asked,
/// never past the schema's maximum (asking beyond it is a usage error).
fn asked_for(engine: &Engine, schema: &AnswerSchema, missing: usize) -> usize {
    (missing + engine.over_ask())
        .min(schema.max_items())
        .max(missing)
}

/// The first request of a pair, as [`draft_pair`] sends it (for the Batch API file).
pub fn first_request(
    engine: &Engine,
    venture: &VentureInput,
    block: &Block,
    count: usize,
) -> Result<ChatRequest, Error> {
    let schema = engine.library.answer_schema(block)?;
    let budget = crate::pipeline::prompt_options(&engine.settings, &engine.provider);
    let asked = asked_for(engine, &schema, count);
    let first = prompt::render(
        &engine.library,
        &engine.graph,
        block,
        venture,
        asked,
        budget,
    )?;
    Ok(ChatRequest {
        messages: first.messages,
        schema: first.schema,
        params: engine.params.clone(),
        avoid_names: AvoidNames::default(),
        check: None,
    })
}

/// How many items an answer holds (0 when it is not an object with an `items` array).
fn answer_items(text: &str) -> usize {
    crate::draft::parse_answer(text)
        .ok()
        .and_then(|answer| answer.get("items").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0)
}

/// How many items of an answer have a problem that is not junk (the schema, the name rules, a
/// duplicate).
fn invalid_items(problems: &[Issue]) -> usize {
    let items: BTreeSet<&str> = problems
        .iter()
        .filter(|issue| issue.junk.is_none())
        .filter_map(|issue| issue.path.strip_prefix("/items/"))
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .collect();
    items.len()
}

/// A fresh request for the missing items (`again`, rendered for their count), with the items
/// kept so far listed as taken (`resample.j2`) at the end of its user message.
fn fresh_messages(
    library: &Library,
    mut again: Vec<Message>,
    kept: &[&str],
) -> Result<Vec<Message>, Error> {
    let taken = library.render("resample.j2", &json!({ "kept": kept }))?;
    if let Some(last) = again.last_mut().filter(|_| !taken.trim().is_empty()) {
        last.content = format!("{}\n\n{}", last.content.trim_end(), taken.trim());
    }
    Ok(again)
}

/// The conversation of a re-ask: the first request, the model's answer, and what was wrong with
/// it (`reask.j2`), asking for `asked` new items.
fn reask_messages(
    library: &Library,
    first: &[Message],
    answer: &str,
    problems: &[Issue],
    kept: &[&str],
    asked: usize,
) -> Result<Vec<Message>, Error> {
    let reask = library.render(
        "reask.j2",
        &json!({
            "issues": problems.iter().take(12).map(ToString::to_string).collect::<Vec<_>>(),
            "kept": kept,
            "count": asked,
        }),
    )?;
    let mut messages = first.to_vec();
    messages.push(Message {
        role: Role::Assistant,
        content: answer.to_string(),
    });
    messages.push(Message {
        role: Role::User,
        content: reask.trim().to_string(),
    });
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::graph::Graph;

    #[tokio::test]
    async fn a_slot_is_given_back_with_the_answer_and_taken_again_for_a_reask()
    -> Result<(), Box<dyn std::error::Error>> {
        let places = Arc::new(Semaphore::new(1));
        let mut slot = Slot::new(places.clone(), places.clone().try_acquire_owned()?);
        assert_eq!(
            places.available_permits(),
            0,
            "held while the request is out"
        );
        slot.give_back();
        assert_eq!(
            places.available_permits(),
            1,
            "free while the answer is checked"
        );
        slot.take().await;
        slot.take().await;
        assert_eq!(
            places.available_permits(),
            0,
            "one place, however often taken"
        );
        // A re-ask waits for a free place: here until the other pair's answer is in.
        slot.give_back();
        let mut other = Slot::new(places.clone(), places.clone().try_acquire_owned()?);
        let wait = std::time::Duration::from_millis(100);
        assert!(
            tokio::time::timeout(wait, slot.take()).await.is_err(),
            "no place is free"
        );
        other.give_back();
        assert!(tokio::time::timeout(wait * 50, slot.take()).await.is_ok());
        assert_eq!(places.available_permits(), 0);
        Ok(())
    }

    #[test]
    fn a_fresh_request_lists_the_kept_items_and_a_reask_carries_the_conversation()
    -> Result<(), Box<dyn std::error::Error>> {
        let library = Library::new(None)?;
        let graph = Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"))?;
        let block = graph.find_block("relationship")?;
        let venture = crate::pipeline::resolve_venture(&graph, "Space X", None)?;
        let options = prompt::PromptOptions {
            tokens: 150,
            ventures: 4,
            constrained: true,
        };
        let again = prompt::render(&library, &graph, block, &venture, 2, options)?;
        let roles = |messages: &[Message]| messages.iter().map(|m| m.role).collect::<Vec<_>>();
        let user = |messages: &[Message]| {
            messages
                .last()
                .map(|message| message.content.clone())
                .unwrap_or_default()
        };

        // Fresh: the request for the missing count, not a conversation, the kept items last.
        let fresh = fresh_messages(
            &library,
            again.messages.clone(),
            &["Keeper Hotline", "Pet Club"],
        )?;
        assert_eq!(roles(&fresh), [Role::System, Role::User]);
        let text = user(&fresh);
        assert!(text.starts_with(user(&again.messages).trim_end()));
        assert!(text.contains("Propose 2 new Relationship ideas for Space X."));
        assert!(
            text.ends_with("do not repeat them:\n- Keeper Hotline\n- Pet Club"),
            "{text}"
        );
        assert_eq!(
            fresh_messages(&library, again.messages.clone(), &[])?,
            again.messages
        );

        // Re-ask: the first request, the answer, and its problems.
        let problems = [Issue {
            path: "/items/1/name".into(),
            message: "`Pet Club` is named twice".into(),
            junk: None,
        }];
        let answer = r#"{"items":[]}"#;
        let reask = reask_messages(
            &library,
            &again.messages,
            answer,
            &problems,
            &["Keeper Hotline"],
            1,
        )?;
        assert_eq!(
            roles(&reask),
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(reask[..2], again.messages[..]);
        assert_eq!(reask[2].content, answer);
        let text = user(&reask);
        assert!(
            text.contains("/items/1/name: `Pet Club` is named twice"),
            "{text}"
        );
        assert!(text.contains("- Keeper Hotline"));
        assert!(text.contains("with 1 new ideas"));
        Ok(())
    }
}
