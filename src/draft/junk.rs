//! Junk: items that pass the schema but are not ideas — copied names, code or markup, text
//! echoing the prompt, placeholders, empty descriptions. Small models produce them often (the
//! few-shot examples are the main source of copies), and every provider may.
//!
//! Junk is a check failure like any other ([`super::Issue`] with a [`JunkReason`]), so the
//! attempt loop re-asks or re-samples and counts it. This module owns the rules; what they
//! compare against (the graph's names, the prompt's labels and texts) is gathered once per
//! (venture, block) into [`JunkContext`], and the patterns that are data (markup characters,
//! placeholder words, run lengths) come from the `[junk]` settings. No rule names a block.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Item;
use crate::config::JunkSettings;

/// Why an item is junk; counted per reason in a draft's provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JunkReason {
    /// Named like the venture or another venture of the graph.
    VentureName,
    /// Named like an item already in the graph.
    KnownItem,
    /// Named like an item shown in the prompt (few-shot examples, related items).
    ShownInPrompt,
    /// Some text holds code or markup.
    CodeOrMarkup,
    /// Some text repeats the prompt.
    EchoesPrompt,
    /// The name is a placeholder (the block's own title, "Idea 1").
    Placeholder,
    /// The description says (almost) nothing.
    ThinDescription,
    /// Some text is garbled: words glued together, letters mixed with digits in a name.
    Garbled,
}

impl JunkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            JunkReason::VentureName => "venture-name",
            JunkReason::KnownItem => "known-item",
            JunkReason::ShownInPrompt => "shown-in-prompt",
            JunkReason::CodeOrMarkup => "code-or-markup",
            JunkReason::EchoesPrompt => "echoes-prompt",
            JunkReason::Placeholder => "placeholder",
            JunkReason::ThinDescription => "thin-description",
            JunkReason::Garbled => "garbled",
        }
    }
}

impl std::fmt::Display for JunkReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One junk finding: the reason, the JSON pointer below the item (`/name`, `/segmentation/0/value`)
/// and what to tell the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: JunkReason,
    pub path: String,
    pub message: String,
}

/// What the rules compare an item against, for one (venture, block).
#[derive(Debug, Clone, Default)]
pub struct JunkContext {
    pub venture: String,
    /// Every venture of the graph (one list, shared by every pair).
    pub ventures: std::sync::Arc<[String]>,
    /// Every item name in the graph, shared by every pair of a run ([`KnownItems`]).
    pub known_items: Arc<KnownItems>,
    /// Names among them that are not "already in the graph" for this pair: the venture's
    /// drafts of this block, about to be replaced.
    pub replaced_items: Vec<String>,
    /// The item names the prompt shows (examples, the venture's existing and related items).
    pub shown: Vec<String>,
    /// The prompt's labels (`Building block`, `Venture`, `About the venture`).
    pub labels: Vec<String>,
    /// Texts an answer must not copy: the block's definition and questions, the schema's field
    /// descriptions.
    pub prompt_texts: Vec<String>,
    /// Names that only name the block or a block it relates to (title, item class and last id
    /// segment), or a kind of item (the schema's choices).
    pub block_names: Vec<String>,
    /// The whole rendered prompt: a name must not copy a run of its words.
    pub prompt: String,
}

/// The item names of a graph as keys ([`name_words_key`]), each with how many items have it:
/// made once and shared, where every pair in flight held its own set (1,580 names on the
/// public xBoK graph).
#[derive(Debug, Clone, Default)]
pub struct KnownItems(HashMap<String, usize>);

impl KnownItems {
    pub fn of<'n>(names: impl IntoIterator<Item = &'n str>) -> KnownItems {
        let mut counts = HashMap::new();
        for key in names.into_iter().map(name_words_key) {
            if !key.is_empty() {
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        KnownItems(counts)
    }

    /// How many items have the name of `key`.
    fn count(&self, key: &str) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }
}

/// The labels of a prompt: what a line says before its first colon (a few words, not a list
/// entry), and whole lines ending in a colon. Read from the rendered text, so a template
/// change brings its labels along.
pub fn prompt_labels<'t>(texts: impl IntoIterator<Item = &'t str>) -> Vec<String> {
    /// Longer heads are sentences that happen to hold a colon, not labels.
    const MOST_LABEL_WORDS: usize = 6;
    let mut labels = Vec::new();
    for line in texts.into_iter().flat_map(str::lines) {
        let line = line.trim();
        if line.starts_with(['-', '*']) {
            continue;
        }
        let head = match line.strip_suffix(':') {
            Some(whole) => whole,
            None => match line.split_once(':') {
                Some((head, _)) if head.split_whitespace().count() <= MOST_LABEL_WORDS => head,
                _ => continue,
            },
        };
        let head = head.trim();
        if !head.is_empty() && !labels.iter().any(|label: &String| label == head) {
            labels.push(head.to_string());
        }
    }
    labels
}

/// The junk rules of one (venture, block), compiled once.
#[derive(Debug, Clone)]
pub struct Junk {
    /// What every venture of the block shares.
    block: Arc<BlockJunk>,
    /// The venture's name as a key (`name_words_key`).
    venture_key: String,
    known_items: Arc<KnownItems>,
    /// Keys of [`JunkContext::replaced_items`], counted: a name is known when more items have
    /// it than are replaced.
    replaced: HashMap<String, usize>,
    shown: HashSet<String>,
    /// Lowercase labels.
    labels: Vec<String>,
    /// The venture's name as key words (`key_words`).
    venture_words: HashSet<String>,
    /// Word runs (`name_echo_words` long) of the whole prompt, line by line, as [`run_hash`]es:
    /// a prompt has thousands, and every pair in flight holds its own.
    name_runs: HashSet<u64>,
}

/// The part of the junk rules that depends on the block and the graph, not on the venture:
/// made once per block and shared by its pairs (a run asks one block for hundreds of ventures).
#[derive(Debug)]
pub struct BlockJunk {
    settings: JunkSettings,
    ventures: HashSet<String>,
    /// Word runs (`echo_words` long) of the prompt texts, as [`run_hash`]es.
    echo_runs: HashSet<u64>,
    /// Prompt texts shorter than a run, whole.
    short_texts: HashSet<String>,
    /// Placeholder words and the block's own names, as word lists.
    placeholders: HashSet<String>,
    /// The same without spaces (`buildingblock`).
    glued_placeholders: HashSet<String>,
}

impl BlockJunk {
    /// From the block's parts of `context`: the ventures of the graph, the prompt texts and the
    /// block's names.
    pub fn new(settings: &JunkSettings, context: &JunkContext) -> BlockJunk {
        let run = settings.echo_words.max(1);
        let mut echo_runs = HashSet::new();
        let mut short_texts = HashSet::new();
        for text in &context.prompt_texts {
            let words = words(text);
            if words.len() < run {
                if words.len() >= 2 {
                    short_texts.insert(words.join(" "));
                }
                continue;
            }
            echo_runs.extend(words.windows(run).map(run_hash));
        }
        // As singular words: a name is compared in the singular too.
        let placeholders: HashSet<String> = settings
            .placeholder_words
            .iter()
            .chain(&context.block_names)
            .map(|name| key_words(name).join(" "))
            .filter(|name| !name.is_empty())
            .collect();
        let glued_placeholders = placeholders
            .iter()
            .map(|name| name.replace(' ', ""))
            .collect();
        BlockJunk {
            settings: settings.clone(),
            ventures: name_keys(&context.ventures),
            echo_runs,
            short_texts,
            placeholders,
            glued_placeholders,
        }
    }
}

/// The non-empty `name_words_key` of each name.
fn name_keys(names: &[String]) -> HashSet<String> {
    names
        .iter()
        .map(|name| name_words_key(name))
        .filter(|key| !key.is_empty())
        .collect()
}

impl Junk {
    pub fn new(settings: &JunkSettings, context: &JunkContext) -> Junk {
        Junk::of_block(Arc::new(BlockJunk::new(settings, context)), context)
    }

    /// The rules of `context`'s venture, on the block's shared part (made from a context of
    /// the same block).
    pub fn of_block(block: Arc<BlockJunk>, context: &JunkContext) -> Junk {
        let name_run = block.settings.name_echo_words.max(2);
        // A prompt has thousands of words: they are hashed one at a time in one buffer (this
        // took ~14% of a pair's CPU on the runtime threads, by perf, when each word and its
        // singular were allocated).
        let (mut buffer, mut hashes) = (String::new(), Vec::new());
        let mut name_runs = HashSet::new();
        for line in context.prompt.lines() {
            key_word_hashes(line, &mut buffer, &mut hashes);
            name_runs.extend(hashes.windows(name_run).map(hashes_run));
        }
        Junk {
            block,
            venture_key: name_words_key(&context.venture),
            known_items: context.known_items.clone(),
            replaced: KnownItems::of(context.replaced_items.iter().map(String::as_str)).0,
            shown: name_keys(&context.shown),
            labels: context
                .labels
                .iter()
                .map(|label| label.to_lowercase())
                .collect(),
            venture_words: key_words(&context.venture).into_iter().collect(),
            name_runs,
        }
    }

    /// The first junk rule an item breaks, if any: its name, then every text, then the
    /// description's substance. One finding per item, so counts are counts of items.
    pub fn check(&self, item: &Item) -> Option<Finding> {
        self.name_finding(&item.name)
            .or_else(|| self.text_finding(item))
            .or_else(|| self.thin_finding(item))
    }

    /// Whether `name`, or a part of it joined by `&`, is an existing name (this venture's,
    /// another venture's, an item of the graph or one shown in the prompt), copies the prompt
    /// or is a placeholder: `Profile & Luxury Travelers` labels an idea with the block's name,
    /// `Loyalty & Exotic Pet Rental` with the venture's. A part of one word may be an item of
    /// the graph (`Sustainability & Renewable Energy`).
    fn name_finding(&self, name: &str) -> Option<Finding> {
        if let Some(finding) = self.whole_name_finding(name) {
            return Some(finding);
        }
        let parts: Vec<&str> = name
            .split('&')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        if parts.len() < 2 {
            return None;
        }
        parts.iter().find_map(|part| {
            let finding = self.whole_name_finding(part)?;
            let copied = matches!(
                finding.reason,
                JunkReason::KnownItem | JunkReason::ShownInPrompt
            );
            (!copied || words(part).len() > 1).then(|| Finding {
                message: format!("`{part}` in `{}`: {}", name.trim(), finding.message),
                ..finding
            })
        })
    }

    /// Whether `name` as a whole is an existing name, copies the prompt or is a placeholder.
    fn whole_name_finding(&self, name: &str) -> Option<Finding> {
        // A fragment after a known name (`Underwater restaurant ia`) leaves it the same name.
        let key = name_words_key(self.without_fragments(name));
        let found = |reason, message: String| Finding {
            reason,
            path: "/name".into(),
            message,
        };
        let name = name.trim();
        if key == self.venture_key {
            return Some(found(
                JunkReason::VentureName,
                format!("`{name}` is the venture's own name, not an idea"),
            ));
        }
        if self.block.ventures.contains(&key) {
            return Some(found(
                JunkReason::VentureName,
                format!("`{name}` is the name of a venture, not an idea"),
            ));
        }
        if self.shown.contains(&key) {
            return Some(found(
                JunkReason::ShownInPrompt,
                format!("`{name}` is copied from the prompt; propose a new idea"),
            ));
        }
        if self.known_items.count(&key) > self.replaced.get(&key).copied().unwrap_or(0) {
            return Some(found(
                JunkReason::KnownItem,
                format!("`{name}` already exists in the knowledge base; propose a new idea"),
            ));
        }
        let run = self.block.settings.name_echo_words.max(2);
        if let Some(window) = key_words(name)
            .windows(run)
            .find(|window| self.name_runs.contains(&run_hash(window)))
        {
            return Some(found(
                JunkReason::EchoesPrompt,
                format!(
                    "`{name}` copies the prompt (`{}`); name the idea itself",
                    window.join(" ")
                ),
            ));
        }
        if self.is_placeholder(name) {
            return Some(found(
                JunkReason::Placeholder,
                format!("`{name}` is a placeholder, not a specific name"),
            ));
        }
        None
    }

    /// `name` without the fragments it ends with: words of one or two lowercase letters that
    /// are not `junk.short_words` (`ia` in `Venture ia`), which a small model appends.
    fn without_fragments<'n>(&self, name: &'n str) -> &'n str {
        let mut name = name.trim();
        while let Some((rest, last)) = name.rsplit_once(' ')
            && self.is_fragment(last)
        {
            name = rest.trim_end();
        }
        name
    }

    fn is_fragment(&self, word: &str) -> bool {
        (1..=2).contains(&word.chars().count())
            && word.chars().all(|character| character.is_ascii_lowercase())
            && !self
                .block
                .settings
                .short_words
                .iter()
                .any(|short| short == word)
    }

    /// A name that is only placeholder words or the block's own names, numbered or not
    /// (`Idea 1`, `Option A`, `Relationship idea 2`).
    fn is_placeholder(&self, name: &str) -> bool {
        // The venture's own words name nothing new (`Profile & Exotic Pet Rental`), nor do
        // articles (`The Venture`).
        let articles = &self.block.settings.article_words;
        let mut words: Vec<String> = words(name)
            .into_iter()
            .filter(|word| {
                !self.venture_words.contains(&singular(word))
                    && !articles.iter().any(|article| article == word)
            })
            .collect();
        // A number, or a word of one or two letters after the others (`Idea 2`, `Option A`,
        // `Venture ia`): numbering or filler, not a name of its own.
        let numbering = |word: &str| {
            word.chars().all(|character| character.is_ascii_digit())
                || (word.chars().count() <= 2
                    && word.chars().all(|character| character.is_alphabetic()))
        };
        while words.len() > 1 && words.last().is_some_and(|word| numbering(word)) {
            words.pop();
        }
        if words.is_empty() {
            return true;
        }
        // Plurals name the same placeholder (`Building Blocks`, `Relationships`).
        let words: Vec<String> = words.iter().map(|word| singular(word)).collect();
        if self
            .block
            .settings
            .filler_words
            .iter()
            .any(|filler| words.contains(&singular(filler)))
        {
            return true;
        }
        let known = |words: &[String]| self.block.placeholders.contains(&words.join(" "));
        if known(&words)
            || (1..words.len()).any(|split| known(&words[..split]) && known(&words[split..]))
        {
            return true;
        }
        // Written together or numbered without a space (`BuildingBlock`, `relationship1`,
        // `Idea_2`): the same words with spaces and a trailing number left out.
        let joined = words.concat();
        let joined = joined.trim_end_matches(|character: char| character.is_ascii_digit());
        let glued = |part: &str| self.block.glued_placeholders.contains(part);
        !joined.is_empty()
            && (glued(joined)
                || joined
                    .char_indices()
                    .skip(1)
                    .any(|(split, _)| glued(&joined[..split]) && glued(&joined[split..])))
    }

    /// Code, markup or an echo of the prompt in any text of the item, nested ones too.
    fn text_finding(&self, item: &Item) -> Option<Finding> {
        let mut texts = vec![
            ("/name".to_string(), item.name.as_str()),
            ("/description".to_string(), item.description.as_str()),
        ];
        for (key, value) in &item.fields {
            strings(value, &format!("/{key}"), &mut texts);
        }
        self.texts_finding(&texts)
    }

    /// The first junk rule one text breaks as the embedded model writes it (`llm::TextCheck`):
    /// `path` is its pointer inside the item and `name` the item's name. The rules of
    /// [`Junk::check`] that a single text can break: a name's, code or markup, garbled words,
    /// an echo of the prompt, and a description's substance.
    pub fn check_text(&self, path: &str, text: &str, name: &str) -> Option<JunkReason> {
        let finding = match path {
            "/name" => self.name_finding(text),
            _ => None,
        };
        finding
            .or_else(|| self.texts_finding(&[(path.to_string(), text)]))
            .or_else(|| match path {
                "/description" => self.thin_finding(&Item {
                    name: name.to_string(),
                    description: text.to_string(),
                    fields: serde_json::Map::new(),
                }),
                _ => None,
            })
            .map(|finding| finding.reason)
    }

    /// The first rule a text of `texts` breaks: code or markup in any, then garbled words, then
    /// an echo of the prompt.
    fn texts_finding(&self, texts: &[(String, &str)]) -> Option<Finding> {
        for (path, text) in texts {
            if let Some(what) = self.markup(text) {
                return Some(Finding {
                    reason: JunkReason::CodeOrMarkup,
                    path: path.clone(),
                    message: format!("{what}; write plain text"),
                });
            }
        }
        for (path, text) in texts {
            if let Some(what) = self.garbled(text, path == "/name") {
                return Some(Finding {
                    reason: JunkReason::Garbled,
                    path: path.clone(),
                    message: format!("{what}; write plain words"),
                });
            }
        }
        for (path, text) in texts {
            if let Some(what) = self.echo(text) {
                return Some(Finding {
                    reason: JunkReason::EchoesPrompt,
                    path: path.clone(),
                    message: format!("{what}; write about this venture in your own words"),
                });
            }
        }
        texts
            .iter()
            .filter(|(path, _)| path != "/name" && path != "/description")
            .find_map(|(path, text)| self.copied_name(path, text))
    }

    /// A text inside a field (`decision_makers`, a segment's value) that is a venture's name
    /// or the name of an item the prompt shows, numbered or not (`1. Government Space
    /// Agencies`). Names of one word are let be (`Tourists` may well decide).
    fn copied_name(&self, path: &str, text: &str) -> Option<Finding> {
        let bare = text.trim_start_matches(|character: char| {
            character.is_ascii_digit() || character == '.' || character == ')' || character == ' '
        });
        let key = name_words_key(bare);
        let (reason, what) = if key.is_empty() {
            return None;
        } else if key == self.venture_key || self.block.ventures.contains(&key) {
            (JunkReason::VentureName, "a venture's name")
        } else if self.shown.contains(&key) && words(bare).len() > 1 {
            (JunkReason::ShownInPrompt, "copied from the prompt")
        } else {
            return None;
        };
        Some(Finding {
            reason,
            path: path.to_string(),
            message: format!(
                "`{}` is {what}; write about this venture in your own words",
                text.trim()
            ),
        })
    }

    /// What marks `text` as code or markup, if anything.
    fn markup(&self, text: &str) -> Option<String> {
        let settings = &self.block.settings;
        if let Some(character) = text
            .chars()
            .find(|character| settings.markup_characters.contains(*character))
        {
            return Some(format!("the text holds `{character}`"));
        }
        let characters: Vec<char> = text.chars().collect();
        for pair in characters.windows(2) {
            // `$5` is a price; `$ref`, `${x}`, `$(x)` are variables.
            if settings.variable_signs.contains(pair[0])
                && (pair[1].is_alphabetic() || "{(".contains(pair[1]))
            {
                return Some(format!(
                    "the text holds a variable `{}{}`",
                    pair[0], pair[1]
                ));
            }
        }
        let lower = text.to_lowercase();
        if let Some(sequence) = settings
            .markup_sequences
            .iter()
            .find(|sequence| !sequence.is_empty() && lower.contains(&sequence.to_lowercase()))
        {
            return Some(format!("the text holds `{sequence}`"));
        }
        if let Some(marker) = settings
            .url_markers
            .iter()
            .find(|marker| !marker.is_empty() && lower.contains(&marker.to_lowercase()))
        {
            return Some(format!("the text holds a URL (`{marker}`)"));
        }
        for (index, character) in characters.iter().enumerate() {
            let next = characters[index + 1..]
                .iter()
                .find(|next| !next.is_whitespace());
            if settings.quote_characters.contains(*character) && next == Some(&':') {
                return Some("the text holds a quoted key (a quote followed by `:`)".into());
            }
        }
        let repeats = settings.repeated_word_run.max(2);
        let words = words(text);
        if let Some(window) = words
            .windows(repeats)
            .find(|window| window.iter().all(|word| word == &window[0]))
        {
            return Some(format!(
                "the text repeats `{}` {repeats} times running",
                window[0]
            ));
        }
        None
    }

    /// What marks `text` as garbled, if anything: a run of letters and digits longer than any
    /// word, or (in a name) a word mixing letters with a number.
    fn garbled(&self, text: &str, name: bool) -> Option<String> {
        if name {
            let words: Vec<&str> = text.split_whitespace().collect();
            if let Some(fragment) = words.iter().skip(1).find(|word| self.is_fragment(word)) {
                return Some(format!("`{fragment}` in the name is not a word"));
            }
            if let [_, .., last] = words.as_slice()
                && self
                    .block
                    .settings
                    .dangling_words
                    .iter()
                    .any(|dangling| dangling.eq_ignore_ascii_case(last))
            {
                return Some(format!("the name ends in `{last}`: it was cut off"));
            }
            let capitals = words
                .iter()
                .filter(|word| {
                    let letters = word.chars().filter(|c| c.is_alphabetic());
                    letters.clone().count() >= 2 && letters.clone().all(char::is_uppercase)
                })
                .count();
            let most = self.block.settings.capital_words;
            if most > 0 && capitals >= most {
                return Some("the name is written in capitals".into());
            }
        }
        let longest = self.block.settings.longest_word.max(1);
        let runs = text.split(|character: char| !character.is_alphanumeric());
        for run in runs.filter(|run| !run.is_empty()) {
            if run.chars().count() > longest {
                return Some(format!("`{run}` is not a word"));
            }
            let digits = run.chars().filter(char::is_ascii_digit).count();
            if name && digits >= 3 && run.chars().any(char::is_alphabetic) {
                return Some(format!("`{run}` mixes letters and digits"));
            }
        }
        None
    }

    /// What marks `text` as a copy of the prompt, if anything.
    fn echo(&self, text: &str) -> Option<String> {
        let trimmed = text
            .trim_start_matches(|character: char| {
                character.is_whitespace() || "-*\"'".contains(character)
            })
            .to_lowercase();
        for label in &self.labels {
            if let Some(rest) = trimmed.strip_prefix(label.as_str())
                && rest.trim_start().starts_with(':')
            {
                return Some(format!(
                    "the text starts with the prompt's label `{label}:`"
                ));
            }
        }
        let words = words(text);
        if self.block.short_texts.contains(&words.join(" ")) {
            return Some("the text is copied from the prompt".into());
        }
        let run = self.block.settings.echo_words.max(1);
        if let Some(window) = words
            .windows(run)
            .find(|window| self.block.echo_runs.contains(&run_hash(window)))
        {
            return Some(format!(
                "the text copies the prompt (`{}`)",
                window.join(" ")
            ));
        }
        None
    }

    /// A description too short to say anything, or only the name again.
    fn thin_finding(&self, item: &Item) -> Option<Finding> {
        let described = words(&item.description);
        let count = described.len();
        // Words that say something: not the item's or the venture's name, not a number.
        let named: HashSet<String> = key_words(&item.name).into_iter().collect();
        let saying = described
            .iter()
            .map(|word| singular(word))
            .filter(|word| {
                !named.contains(word)
                    && !self.venture_words.contains(word)
                    && !word.chars().all(|c| c.is_ascii_digit())
            })
            .count();
        let message = if count < self.block.settings.min_description_words {
            format!(
                "the description has {count} word(s); say what the idea is in at least {}",
                self.block.settings.min_description_words
            )
        } else if described == words(&item.name) {
            "the description only repeats the name".into()
        } else if saying < self.block.settings.min_description_words
            || self.block.ventures.contains(&described.concat())
        {
            "the description only names the idea or the venture; say what the idea is".into()
        } else {
            return None;
        };
        Some(Finding {
            reason: JunkReason::ThinDescription,
            path: "/description".into(),
            message,
        })
    }
}

/// Names compared by their letters and digits only, plurals as singulars (`Space-X`,
/// `space x.` and `SpaceX` are one; so are `Families with Young Children` and `Family with
/// young children`).
pub fn name_words_key(name: &str) -> String {
    key_words(name).concat()
}

/// A lowercase English word without its plural ending (`families` and `family` -> `family`,
/// `clubs` -> `club`, `cookies` and `cookie` -> `cooky`: a key, not a spelling); short words
/// and `-ss` words are left as they are.
fn singular(word: &str) -> String {
    let mut word = word.to_string();
    make_singular(&mut word);
    word
}

/// [`singular`] in place.
fn make_singular(word: &mut String) {
    if word.len() <= 3 || !word.is_ascii() {
        return;
    }
    if word.ends_with('s') && !word[..word.len() - 1].ends_with('s') {
        word.pop();
    }
    if word.ends_with("ie") {
        word.truncate(word.len() - 2);
        word.push('y');
    }
}

/// A run of words as a number: each word's [`word_hash`] in order, hashed with fixed keys (the
/// same run gives the same number in every pair and run).
fn run_hash(words: &[String]) -> u64 {
    run_of(words.iter().map(|word| word_hash(word)))
}

/// [`run_hash`] of words given as their [`word_hash`]es.
fn hashes_run(hashes: &[u64]) -> u64 {
    run_of(hashes.iter().copied())
}

fn run_of(hashes: impl Iterator<Item = u64>) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    for hash in hashes {
        hasher.write_u64(hash);
    }
    hasher.finish()
}

/// A word as a number, with fixed keys.
fn word_hash(word: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    word.hash(&mut hasher);
    hasher.finish()
}

/// The [`word_hash`]es of the [`key_words`] of `text`, into `hashes`; `buffer` holds each word
/// in turn, so that no word is allocated.
fn key_word_hashes(text: &str, buffer: &mut String, hashes: &mut Vec<u64>) {
    hashes.clear();
    for word in raw_words(text) {
        key_word_into(word, buffer);
        hashes.push(word_hash(buffer));
    }
}

/// The words of a text as keys: lowercase, plurals as singulars.
fn key_words(text: &str) -> Vec<String> {
    raw_words(text)
        .map(|word| {
            let mut key = String::with_capacity(word.len());
            key_word_into(word, &mut key);
            key
        })
        .collect()
}

/// `word` as a key, into `key` (emptied first): lowercase, the plural as a singular.
fn key_word_into(word: &str, key: &mut String) {
    key.clear();
    match word.is_ascii() {
        true => key.extend(word.chars().map(|character| character.to_ascii_lowercase())),
        // `to_lowercase` of the whole word: a final sigma lowers unlike one inside.
        false => key.push_str(&word.to_lowercase()),
    }
    make_singular(key);
}

/// The lowercase words of a text: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    raw_words(text).map(str::to_lowercase).collect()
}

/// The runs of letters and digits of a text, as written.
fn raw_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
}

/// Every string in `value`, with its JSON pointer below `path`.
fn strings<'v>(value: &'v Value, path: &str, out: &mut Vec<(String, &'v str)>) {
    match value {
        Value::String(text) => out.push((path.to_string(), text)),
        Value::Array(values) => {
            for (index, value) in values.iter().enumerate() {
                strings(value, &format!("{path}/{index}"), out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                strings(value, &format!("{path}/{key}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::config::Settings;
    use crate::graph::Graph;
    use crate::prompt::{self, Library, PromptOptions};

    fn settings() -> JunkSettings {
        Settings::load_with_env(None, |_| None)
            .map(|settings| settings.junk)
            .unwrap_or_else(|error| unreachable!("{error}"))
    }

    fn known_items(graph: &Graph) -> Arc<KnownItems> {
        Arc::new(KnownItems::of(
            graph
                .blocks
                .iter()
                .flat_map(|block| &block.examples)
                .map(|example| example.name.as_str()),
        ))
    }

    fn context() -> JunkContext {
        JunkContext {
            venture: "Solar Bikes".into(),
            ventures: ["Space X".to_string(), "Exotic Pet Rental".to_string()].into(),
            known_items: Arc::new(KnownItems::of([
                "VIP Membership Program",
                "Night Rides",
                "Night Rides",
                "Bike Pool",
            ])),
            replaced_items: vec!["Night Rides".into(), "Bike Pool".into()],
            shown: vec!["Government Space Agencies".into()],
            labels: prompt_labels([
                "Building block: Relationship (items tagged #relationship)\nVenture: Solar Bikes\nConsider these questions:\n- rationale: Why this fits.",
            ]),
            prompt_texts: vec![
                "The type of relationship a company establishes with a specific customer segment"
                    .into(),
                "Why this relationship suits this venture's customers, in one sentence.".into(),
                "Roles deciding".into(),
            ],
            block_names: vec![
                "Relationship".into(),
                "relationship".into(),
                "Profile (id)".into(),
                "profile".into(),
            ],
            prompt: "What is already known about the venture in related building blocks:\nAbout the venture: Rents solar-assisted electric bikes to commuters."
                .into(),
        }
    }

    fn junk() -> Junk {
        Junk::new(&settings(), &context())
    }

    fn item(name: &str, description: &str, fields: Value) -> Item {
        Item {
            name: name.into(),
            description: description.into(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    const GOOD: &str = "Riders earn a free hour for every ten hours they ride.";

    fn reason(name: &str, description: &str, fields: Value) -> Option<JunkReason> {
        junk()
            .check(&item(name, description, fields))
            .map(|finding| finding.reason)
    }

    #[test]
    fn a_good_item_is_not_junk() {
        assert_eq!(reason("Ride Streak Rewards", GOOD, json!({})), None);
        assert_eq!(
            reason(
                "Station Hosts",
                "Staff at busy stations help riders pick a bike; a day pass costs $5.",
                json!({"decision_makers": ["commuter", "fleet manager"], "rationale": "Riders trust people they meet."})
            ),
            None
        );
    }

    #[test]
    fn names_of_ventures_items_and_the_prompt_are_junk() {
        assert_eq!(
            reason("Solar Bikes", GOOD, json!({})),
            Some(JunkReason::VentureName)
        );
        assert_eq!(
            reason("solar-bikes.", GOOD, json!({})),
            Some(JunkReason::VentureName)
        );
        assert_eq!(
            reason("SpaceX", GOOD, json!({})),
            Some(JunkReason::VentureName)
        );
        assert_eq!(
            reason("Government space agencies", GOOD, json!({})),
            Some(JunkReason::ShownInPrompt)
        );
        assert_eq!(
            reason("VIP membership program", GOOD, json!({})),
            Some(JunkReason::KnownItem)
        );
        // A name only the venture's drafts being replaced have is free again; one that another
        // item has too is not.
        assert_eq!(reason("Bike Pool", GOOD, json!({})), None);
        assert_eq!(
            reason("Night rides", GOOD, json!({})),
            Some(JunkReason::KnownItem)
        );
        // Containing a known name is not copying it.
        assert_eq!(reason("Solar Bikes Night Club", GOOD, json!({})), None);
        // A name copying a run of 4 words of any line of the prompt echoes it.
        for name in ["What Is Already Known", "Solar Assisted Electric Bikes"] {
            assert_eq!(
                reason(name, GOOD, json!({})),
                Some(JunkReason::EchoesPrompt),
                "{name}"
            );
        }
        assert_eq!(reason("Electric Bikes Club", GOOD, json!({})), None);
        // Plurals are singulars: a copied name stays copied.
        assert_eq!(
            reason("Government Space Agency", GOOD, json!({})),
            Some(JunkReason::ShownInPrompt)
        );
        assert_eq!(
            reason("Solar Bike", GOOD, json!({})),
            Some(JunkReason::VentureName)
        );
    }

    #[test]
    fn code_and_markup_in_any_text_are_junk() {
        let markup = |fields: Value| {
            junk()
                .check(&item("Ride Club", GOOD, fields))
                .map(|finding| (finding.reason, finding.path))
        };
        assert_eq!(
            markup(json!({"decision_makers": ["owner", "{ {$ref} }"]})),
            Some((JunkReason::CodeOrMarkup, "/decision_makers/1".into()))
        );
        assert_eq!(
            markup(json!({"segmentation": [{"criterion": "age", "value": "category':'Venture'"}]})),
            Some((JunkReason::CodeOrMarkup, "/segmentation/0/value".into()))
        );
        for text in [
            "See <b>this</b> offer for riders.",
            "Costs $price per hour for riders.",
            "Read more at https://example.com today.",
            "Read more at www.example.com today.",
            "A `code` span for riders here.",
            "Riders ride ride ride all day long.",
            "The \"type\" : value pair here.",
            "Fleece &amp sassafras for every rider.",
            "This [brand name] offer for riders.",
            "Pros of the club | 1 for riders.",
        ] {
            assert_eq!(
                reason("Ride Club", text, json!({})),
                Some(JunkReason::CodeOrMarkup),
                "{text}"
            );
        }
        // Glued words and numbered names are garbled.
        assert_eq!(
            reason("petscanada3210568794", GOOD, json!({})),
            Some(JunkReason::Garbled)
        );
        assert_eq!(
            markup(
                json!({"segmentation": [{"criterion": "environmentismepeopelagosisamellenaiwoiw", "value": "x"}]})
            ),
            Some((JunkReason::Garbled, "/segmentation/0/criterion".into()))
        );
        assert_eq!(reason("Route 66 Club", GOOD, json!({})), None);
        // A price, apostrophes and words repeated twice are plain text.
        assert_eq!(
            reason(
                "Ride Club",
                "Riders' club: ride, ride again for $5 an hour.",
                json!({})
            ),
            None
        );
    }

    #[test]
    fn prompt_words_hash_as_their_key_words_do() {
        let text =
            "Stories of the bikes' PARTIES: ΟΔΥΣΣΕΥΣ sails; cookies, bus, Ünïcode, A1 and x.";
        let (mut buffer, mut hashes) = (String::new(), Vec::new());
        key_word_hashes(text, &mut buffer, &mut hashes);
        let expected: Vec<u64> = key_words(text).iter().map(|word| word_hash(word)).collect();
        assert_eq!(hashes, expected);
        assert_eq!(
            key_words(text),
            [
                "story",
                "of",
                "the",
                "bike",
                "party",
                "οδυσσευς",
                "sail",
                "cooky",
                "bus",
                "ünïcode",
                "a1",
                "and",
                "x"
            ]
        );
        assert_eq!(hashes_run(&hashes[..2]), run_hash(&key_words("stories of")));
    }

    #[test]
    fn a_run_of_words_hashes_with_its_word_boundaries() {
        let run = |words: &[&str]| {
            run_hash(
                &words
                    .iter()
                    .map(|word| word.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(run(&["solar", "bike"]), run(&["solar", "bike"]));
        assert_ne!(run(&["solar", "bike"]), run(&["solarb", "ike"]));
        assert_ne!(run(&["solar", "bike"]), run(&["bike", "solar"]));
        assert_ne!(run(&["solar bike"]), run(&["solar", "bike"]));
    }

    #[test]
    fn text_repeating_the_prompt_is_junk() {
        for text in [
            "Building block: Relationship (items tagged #relationship) #1.",
            "venture : Solar Bikes rents bikes.",
            "Consider these questions: who rides?",
            "Bikes for the type of relationship a company establishes with a specific customer.",
        ] {
            assert_eq!(
                reason("Ride Club", text, json!({})),
                Some(JunkReason::EchoesPrompt),
                "{text}"
            );
        }
        assert_eq!(
            reason(
                "Ride Club",
                GOOD,
                json!({"rationale": "Why this relationship suits this venture's customers, in one sentence."})
            ),
            Some(JunkReason::EchoesPrompt)
        );
        assert_eq!(
            reason(
                "Ride Club",
                GOOD,
                json!({"decision_makers": ["Roles deciding"]})
            ),
            Some(JunkReason::EchoesPrompt)
        );
        // Labels that are list entries of the prompt (`- rationale:`) are not labels; a label
        // inside a sentence is not a start; five shared words are not a run.
        assert_eq!(
            reason("Ride Club", "Rationale: riders like it a lot.", json!({})),
            None
        );
        assert_eq!(
            reason("Ride Club", "Each venture: a club for riders.", json!({})),
            None
        );
        assert_eq!(
            reason(
                "Ride Club",
                "The type of relationship a club keeps with riders.",
                json!({})
            ),
            None
        );
    }

    #[test]
    fn placeholder_names_are_junk() {
        for name in [
            "Idea 1",
            "Option A",
            "relationship",
            "Relationship 2",
            "Relationship idea 3",
            "Idea",
            "relationship1",
            "Relationship & Solar Bikes",
            "BuildingBlock",
            "Building Blocks",
            "Relationships",
            "Idea_2",
            "ideaOption",
            "Venture ia",
            "Profile ia",
            "Relationship IV",
            // A part joined by `&` labels the idea with the block's name.
            "Profile & Luxury Travelers",
            "Luxury Travelers & Relationship",
            // A filler word anywhere.
            "Your Business Idea",
            "Unique Examples",
            // Articles add nothing.
            "The Venture",
            "Your Name",
        ] {
            assert_eq!(
                reason(name, GOOD, json!({})),
                Some(JunkReason::Placeholder),
                "{name}"
            );
        }
        for name in [
            "Personal Relationship Desk",
            "Option Pass",
            "Plan B Rentals",
            "Ideaworks",
            "Relationship42 Lounge",
            "Pay As You Go",
            "Profile Studio",
            "Pets & Parents",
            "Ideal Rides",
        ] {
            assert_eq!(reason(name, GOOD, json!({})), None, "{name}");
        }
    }

    /// A small model appends a fragment to a name (`ia`): the name is garbled, and a known
    /// name with a fragment is still that name. Real English short words end names freely.
    #[test]
    fn names_ending_in_a_fragment_are_junk() {
        for (name, expected) in [
            ("Solar Bikes ia", JunkReason::VentureName),
            ("Space X ia", JunkReason::VentureName),
            ("Government Space Agencies ia", JunkReason::ShownInPrompt),
            ("Rebuilding Our Business ia", JunkReason::Garbled),
            ("Bike Club xq", JunkReason::Garbled),
            // Anywhere in the name, and a name cut off after a small word.
            ("Cars ia Rental Club", JunkReason::Garbled),
            ("Solar power for a", JunkReason::Garbled),
            ("Premise &", JunkReason::Garbled),
            // Shouting.
            ("HARMEN KYANKS", JunkReason::Garbled),
            ("THE BEST Salad Bar", JunkReason::Garbled),
            // A part joined by `&` that copies a name.
            (
                "Loyalty & Government Space Agencies",
                JunkReason::ShownInPrompt,
            ),
            ("Rides & Space X", JunkReason::VentureName),
        ] {
            assert_eq!(reason(name, GOOD, json!({})), Some(expected), "{name}");
        }
        for name in [
            "Pay as you go",
            "Charge Points on the go",
            "Sign me up",
            "Plan B Rentals",
            "Bikes at a Glance",
            "VIP Lounge",
            "Ride with a DJ",
        ] {
            assert_eq!(reason(name, GOOD, json!({})), None, "{name}");
        }
    }

    #[test]
    fn thin_descriptions_are_junk() {
        assert_eq!(
            reason("Ride Club", "Riders club.", json!({})),
            Some(JunkReason::ThinDescription)
        );
        assert_eq!(
            reason("Night Ride Club", "Night ride club.", json!({})),
            Some(JunkReason::ThinDescription)
        );
        assert_eq!(reason("Ride Club", "A club for riders.", json!({})), None);
        // Only names and a number say nothing either.
        for description in [
            "Solar Bikes 2.",
            "Exotic Pet Rental.",
            "Ride Club of Solar Bikes.",
        ] {
            assert_eq!(
                reason("Ride Club", description, json!({})),
                Some(JunkReason::ThinDescription),
                "{description}"
            );
        }
        assert_eq!(
            reason("Ride Club", "Solar Bikes riders meet weekly.", json!({})),
            None
        );
    }

    #[test]
    fn names_copied_into_fields_are_junk() {
        for (fields, expected) in [
            (
                json!({"decision_makers": ["1. Government Space Agencies"]}),
                Some(JunkReason::ShownInPrompt),
            ),
            (
                json!({"segmentation": [{"criterion": "brand", "value": "SolarBikes"}]}),
                Some(JunkReason::VentureName),
            ),
            (
                json!({"decision_makers": ["Space X"]}),
                Some(JunkReason::VentureName),
            ),
            (
                json!({"decision_makers": ["Fleet manager", "Agencies"]}),
                None,
            ),
        ] {
            assert_eq!(
                reason("Ride Club", GOOD, fields.clone()),
                expected,
                "{fields}"
            );
        }
    }

    #[test]
    fn each_text_is_judged_alone_as_it_is_written() {
        let junk = junk();
        let text = |path: &str, text: &str| junk.check_text(path, text, "Ride Club");
        assert_eq!(text("/name", "Solar Bikes"), Some(JunkReason::VentureName));
        assert_eq!(
            text("/name", "Relationship 2"),
            Some(JunkReason::Placeholder)
        );
        assert_eq!(text("/name", "Ride Club"), None);
        // A description against the item's name; the same words elsewhere are fine.
        assert_eq!(
            text("/description", "Riders club."),
            Some(JunkReason::ThinDescription)
        );
        assert_eq!(text("/rationale", "Riders club."), None);
        assert_eq!(text("/description", GOOD), None);
        assert_eq!(
            text("/decision_makers/0", "{ {$ref} }"),
            Some(JunkReason::CodeOrMarkup)
        );
        assert_eq!(
            text(
                "/rationale",
                "Why this relationship suits this venture's customers, in one sentence."
            ),
            Some(JunkReason::EchoesPrompt)
        );
        // The same verdicts as for the whole item.
        for (name, description) in [("Solar Bikes", GOOD), ("Ride Club", "Riders club.")] {
            let whole = junk
                .check(&item(name, description, json!({})))
                .map(|found| found.reason);
            let alone = junk
                .check_text("/name", name, name)
                .or_else(|| junk.check_text("/description", description, name));
            assert_eq!(alone, whole, "{name}: {description}");
        }
    }

    #[test]
    fn labels_are_read_from_the_rendered_prompt() {
        let labels = prompt_labels([
            "Building block: X\nIf X is defined as: y, what could it be?\nExamples of X ideas for other ventures:\nSpace X:\n- Keeper: a keeper\nThis is a long sentence that happens to have: a colon",
        ]);
        assert_eq!(
            labels,
            [
                "Building block",
                "If X is defined as",
                "Examples of X ideas for other ventures",
                "Space X"
            ]
        );
    }

    /// The kinds an answer schema classifies items by name no item: `Self-Service` is the type
    /// of a relationship, not one (SmolLM2 behind llama-cpp-python's server named its items so).
    #[test]
    fn a_choice_of_the_schema_is_no_name() -> Result<(), Box<dyn std::error::Error>> {
        let library = Library::new(None)?;
        let graph = Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"))?;
        let block = graph.find_block("relationship")?;
        let venture = prompt::VentureInput {
            name: "Solar Bikes".into(),
            ..Default::default()
        };
        let options = PromptOptions {
            tokens: 800,
            ventures: 4,
            constrained: false,
        };
        let rendered = prompt::render(&library, &graph, block, &venture, 2, options)?;
        let junk = Junk::new(
            &settings(),
            &rendered.junk_context(&graph, block, false, known_items(&graph)),
        );
        let check = |name: &str| {
            junk.check(&item(name, GOOD, json!({})))
                .map(|finding| finding.reason)
        };
        for name in [
            "Self-Service",
            "personal assistance",
            "Co-Creation",
            "Hybrid",
            "Long-term",
        ] {
            assert_eq!(check(name), Some(JunkReason::Placeholder), "{name}");
        }
        // A choice among words of the idea's own is kept.
        assert_eq!(check("Self-Service Charging Kiosks"), None);
        Ok(())
    }

    /// The human examples of the sample graph are what good items look like: none may be
    /// junk when the other ventures are the graph and the venture's own prompt is the prompt.
    #[test]
    fn the_sample_graphs_examples_pass_the_junk_rules() -> Result<(), Box<dyn std::error::Error>> {
        let library = Library::new(None)?;
        let graph = Graph::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"))?;
        let settings = settings();
        let options = PromptOptions {
            tokens: 800,
            ventures: 4,
            constrained: false,
        };
        let mut checked = 0;
        let mut failures = Vec::new();
        for block in &graph.blocks {
            let ventures: Vec<String> = graph
                .ventures()
                .iter()
                .map(|venture| venture.name.clone())
                .collect();
            for venture_name in &ventures {
                let own: Vec<&crate::graph::Example> = graph
                    .examples_of(block, venture_name)
                    .filter(|example| !example.draft)
                    .collect();
                if own.is_empty() {
                    continue;
                }
                // A new venture of that name: its own items are what is being judged.
                let venture = prompt::VentureInput {
                    name: venture_name.clone(),
                    ..Default::default()
                };
                let rendered = prompt::render(&library, &graph, block, &venture, 1, options)?;
                let mut context = rendered.junk_context(&graph, block, false, known_items(&graph));
                let key = name_words_key(venture_name);
                context.ventures = context
                    .ventures
                    .iter()
                    .filter(|name| name_words_key(name) != key)
                    .cloned()
                    .collect();
                context.known_items = Arc::new(KnownItems::of(
                    graph
                        .blocks
                        .iter()
                        .flat_map(|each| &each.examples)
                        .filter(|example| name_words_key(&example.venture) != key)
                        .map(|example| example.name.as_str()),
                ));
                let own_names: HashSet<String> = own
                    .iter()
                    .map(|example| name_words_key(&example.name))
                    .collect();
                context
                    .shown
                    .retain(|name| !own_names.contains(&name_words_key(name)));
                // Nor are the lines of the prompt that show them (the venture's existing items).
                context.prompt = context
                    .prompt
                    .lines()
                    .filter(|line| {
                        let line = name_words_key(line);
                        !own_names.iter().any(|own| line.contains(own.as_str()))
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let junk = Junk::new(&settings, &context);
                for example in own {
                    checked += 1;
                    let item = Item {
                        name: example.name.clone(),
                        description: example.description.clone(),
                        fields: serde_json::Map::new(),
                    };
                    if let Some(finding) = junk.check(&item) {
                        failures.push(format!(
                            "{} / {} / {}: {} {}",
                            block.id, venture_name, example.name, finding.reason, finding.message
                        ));
                    }
                }
            }
        }
        assert!(checked > 20, "only {checked} examples checked");
        assert!(
            failures.is_empty(),
            "{checked} checked:\n{}",
            failures.join("\n")
        );
        Ok(())
    }
}
