//! The Logseq graph: which files are pages, the metamodel blocks they hold, their examples and
//! the ventures those examples belong to.
//!
//! This module reads; writing pages back is `writeback`'s job. A page that cannot be read is
//! reported in [`Graph::warnings`] and skipped, never stopping the rest of the graph.

pub mod examples;
mod find;
pub mod metamodel;
pub mod name;
pub mod outline;
pub mod page;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use examples::Example;
pub use metamodel::{Block, Key, Tool};
pub use page::Page;

use examples::{ExampleReader, page_entries};
use find::{short_list, unknown_block_help};
use name::{page_key, page_refs};
use page::SectionKind;

/// What can stop a graph from loading at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "graph folder {path} does not exist (set --graph, INNCOPILOT_GRAPH_PATH or graph.path in the config file)"
    )]
    NotFound { path: PathBuf },
    #[error("graph path {path} is not a folder")]
    NotAFolder { path: PathBuf },
    #[error(
        "no block page in {path}: {pages} .md pages read (hidden, logseq/, journals/, target/ and node_modules/ folders skipped), none with an innCoPilot section or a Definition and Examples; set the graph folder with --graph DIR, INNCOPILOT_GRAPH_PATH or graph.path in the config file"
    )]
    NoBlocks { path: PathBuf, pages: usize },
    #[error("no block matches `{query}`; {}", unknown_block_help(.suggestions, .known))]
    UnknownBlock {
        query: String,
        /// The ids of the closest names, closest first (empty when none is close).
        suggestions: Vec<String>,
        /// Every block id.
        known: Vec<String>,
    },
    #[error("`{query}` matches several blocks ({}); give the full id", short_list(.matches))]
    AmbiguousBlock { query: String, matches: Vec<String> },
    #[error("unknown venture `{name}`: give --brief to create it, or use one of: {known}")]
    UnknownVenture { name: String, known: String },
    #[error("cannot list the graph folder {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

/// Something in the graph that was skipped or could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub kind: WarningKind,
    /// Path relative to the graph folder.
    pub path: String,
    /// 1-based line, when the problem is at one.
    pub line: Option<usize>,
    pub message: String,
}

/// What a warning is about: one kind per place the reader makes one, so that a graph with
/// hundreds of warnings can be summed up in a line per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// An entry of the graph folder could not be listed.
    Unlisted,
    /// A page file could not be read.
    Unreadable,
    /// A page file is not UTF-8 text.
    NotText,
    /// Two files give the same page name (a copied folder tree).
    DuplicatePageName,
    /// `{{embed [[page]]}}` of a page that does not exist.
    MissingEmbed,
    /// An embed leads back to a page being read.
    EmbedLoop,
    /// `relations::` names a page that is not a block page.
    UnresolvedRelation,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(formatter, "{}:{}: {}", self.path, line, self.message),
            None => write!(formatter, "{}: {}", self.path, self.message),
        }
    }
}

/// A venture: a name with examples in some block, or a page of its own (`type:: venture`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Venture {
    pub name: String,
    /// Item count per block id (sorted by id, as the blocks are); blocks without items are
    /// left out.
    pub blocks: BTreeMap<String, usize>,
    /// Blocks whose page has a place for this venture's examples (an embed or a heading) that
    /// holds no item yet.
    pub empty_canvases: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brief: Option<String>,
    /// The venture's own page, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// A whole graph, read. A clone shares its pages' texts and outlines.
#[derive(Debug, Clone)]
pub struct Graph {
    pub root: PathBuf,
    pub pages: Vec<Page>,
    /// Metamodel blocks, sorted by id.
    pub blocks: Vec<Block>,
    pub warnings: Vec<Warning>,
    pages_by_key: HashMap<String, usize>,
    /// Per block page (path), the keys of the pages its reading looked up (itself, embedded
    /// example pages whether they exist or not): what [`Graph::update_pages`] reads again.
    sources: HashMap<String, HashSet<String>>,
    /// Per block page (path), how its examples were read: what lets [`Graph::update_pages`]
    /// read one embedded page again instead of the whole block. Kept from the first time
    /// `update_pages` reads a block: most graphs are never updated.
    layouts: HashMap<String, Layout>,
    /// [`Graph::ventures`], worked out on first use (every page and example is walked) and
    /// again after [`Graph::update_pages`].
    ventures: std::sync::OnceLock<Vec<Venture>>,
    /// The names of [`Graph::ventures`], shared: every pair's junk rules need all of them.
    venture_names: std::sync::OnceLock<Arc<[String]>>,
    /// Every page file as it was on disk when [`Graph::load`] read it; `None` for a graph
    /// built from pages or changed since ([`Graph::update_pages`]).
    stamps: Option<Vec<Stamp>>,
}

/// A page file's size and modification time: what tells that a page read earlier is still
/// the page on disk without reading it again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    file: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// Taken before the file is read: a change while it is read then shows as a different
    /// stamp later, never as the same one.
    fn of(file: &Path) -> Stamp {
        let meta = std::fs::metadata(file).ok();
        Stamp {
            file: file.to_path_buf(),
            len: meta.as_ref().map_or(0, std::fs::Metadata::len),
            modified: meta.and_then(|meta| meta.modified().ok()),
        }
    }
}

impl Graph {
    /// Read every page under `root`. A folder without a single block page is an error: it is
    /// not the graph the user meant (the repository root, an empty folder, a typo), and empty
    /// tables would hide that.
    pub fn load(root: &Path) -> Result<Graph, Error> {
        if !root.exists() {
            return Err(Error::NotFound {
                path: root.to_path_buf(),
            });
        }
        if !root.is_dir() {
            return Err(Error::NotAFolder {
                path: root.to_path_buf(),
            });
        }
        let mut warnings = Vec::new();
        let mut pages = Vec::new();
        let (files, listing_warnings) = page_files(root)?;
        warnings.extend(listing_warnings);
        let stamps: Vec<Stamp> = files.iter().map(|file| Stamp::of(file)).collect();
        for file in files {
            let relative = relative_path(root, &file);
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => pages.push(Page::parse(relative, file, text)),
                    Err(error) => warnings.push(Warning {
                        kind: WarningKind::NotText,
                        path: relative,
                        line: None,
                        message: format!(
                            "skipped: not UTF-8 text (invalid byte at offset {})",
                            error.utf8_error().valid_up_to()
                        ),
                    }),
                },
                Err(error) => warnings.push(Warning {
                    kind: WarningKind::Unreadable,
                    path: relative,
                    line: None,
                    message: format!("skipped: cannot read: {error}"),
                }),
            }
        }
        let mut graph = Graph::from_pages(root.to_path_buf(), pages, warnings);
        graph.stamps = Some(stamps);
        if graph.blocks.is_empty() {
            return Err(Error::NoBlocks {
                path: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
                pages: graph.pages.len(),
            });
        }
        Ok(graph)
    }

    /// Build a graph from pages already read (used by `load` and by tests).
    pub fn from_pages(root: PathBuf, pages: Vec<Page>, mut warnings: Vec<Warning>) -> Graph {
        let mut pages_by_key = HashMap::with_capacity(pages.len());
        for (index, page) in pages.iter().enumerate() {
            if let Some(previous) = pages_by_key.insert(page_key(&page.name), index) {
                warnings.push(Warning {
                    kind: WarningKind::DuplicatePageName,
                    path: page.path.clone(),
                    line: None,
                    message: format!(
                        "page name \"{}\" is also used by {}; references go to this one",
                        page.name, pages[previous].path
                    ),
                });
            }
        }
        let mut blocks = Vec::new();
        let mut sources = HashMap::new();
        for page in &pages {
            if let Some(reading) = read_block_page(page, &pages, &pages_by_key, false) {
                warnings.extend(reading.warnings);
                sources.insert(reading.block.page.clone(), reading.read);
                blocks.push(reading.block);
            }
        }
        blocks.sort_by(|left, right| left.id.cmp(&right.id));
        resolve_relations(&mut blocks, &mut warnings);
        Graph {
            root,
            pages,
            blocks,
            warnings,
            pages_by_key,
            sources,
            layouts: HashMap::new(),
            ventures: std::sync::OnceLock::new(),
            venture_names: std::sync::OnceLock::new(),
            stamps: None,
        }
    }

    /// Whether the graph's folder still holds exactly the page files this graph read, each
    /// with the size and modification time it had then (every file is listed and looked at,
    /// none is read). `false` for a graph not read by [`Graph::load`] or changed since, and
    /// where the file system keeps no modification times.
    pub fn unchanged_on_disk(&self) -> bool {
        let Some(stamps) = &self.stamps else {
            return false;
        };
        let Ok((files, _)) = page_files(&self.root) else {
            return false;
        };
        files.len() == stamps.len()
            && files.iter().zip(stamps).all(|(file, stamp)| {
                let now = Stamp::of(file);
                now.modified.is_some() && now == *stamp
            })
    }

    /// Replace, add (`Some`) or remove (`None`) pages by path, and read again only the blocks
    /// they touch: block pages among them, and blocks whose examples were looked up on them
    /// (embedded example pages, existing or not yet). The same graph as [`from_pages`] on the
    /// new pages, at the cost of the pages changed rather than of the whole graph; warnings of
    /// blocks read again are dropped (a writer has no use for them).
    ///
    /// [`from_pages`]: Graph::from_pages
    pub fn update_pages(&mut self, edits: Vec<(String, Option<Page>)>) {
        self.stamps = None;
        self.ventures = std::sync::OnceLock::new();
        self.venture_names = std::sync::OnceLock::new();
        let mut touched: HashSet<String> = HashSet::new();
        let mut block_pages: HashSet<String> = HashSet::new();
        // The key index is built again only when pages go or change their name: a page
        // replaced in place (most edits) keeps its key and position, and a new page takes the
        // next position (its key is the last page's with it, as in `from_pages`). Building it
        // again for every new page made a run that creates thousands of pages quadratic.
        let mut reindex = false;
        for (path, page) in edits {
            let position = self.pages.iter().position(|old| old.path == path);
            let old_key = position.map(|index| page_key(&self.pages[index].name));
            let new_key = page.as_ref().map(|page| page_key(&page.name));
            touched.extend(old_key.clone());
            touched.extend(new_key.clone());
            block_pages.insert(path.clone());
            match (position, page) {
                (Some(index), Some(page)) => {
                    reindex |= old_key != new_key;
                    self.pages[index] = page;
                }
                (None, Some(page)) => {
                    if let Some(key) = new_key {
                        self.pages_by_key.insert(key, self.pages.len());
                    }
                    self.pages.push(page);
                }
                (Some(index), None) => {
                    reindex = true;
                    self.pages.remove(index);
                }
                (None, None) => {}
            }
        }
        if reindex {
            self.pages_by_key.clear();
            for (index, page) in self.pages.iter().enumerate() {
                self.pages_by_key.insert(page_key(&page.name), index);
            }
        }
        // Blocks that read a touched page are read again: only the embeds of the pages touched
        // where those are the block page's own embeds of pages that embed nothing and the block
        // was read here before (a block page with a canvas per venture has thousands, read
        // again for every draft written); else the whole block, from its own page.
        for block in &mut self.blocks {
            if block_pages.contains(&block.page) {
                continue;
            }
            let Some(read) = self.sources.get(&block.page) else {
                continue;
            };
            let keys: Vec<&String> = touched.iter().filter(|key| read.contains(*key)).collect();
            if keys.is_empty() {
                continue;
            }
            let again = self.layouts.get_mut(&block.page).is_some_and(|layout| {
                layout.read_again(block, &keys, &self.pages, &self.pages_by_key)
            });
            if !again {
                block_pages.insert(block.page.clone());
            }
        }
        self.blocks
            .retain(|block| !block_pages.contains(&block.page));
        for path in &block_pages {
            self.sources.remove(path);
            self.layouts.remove(path);
            let Some(page) = self.pages.iter().find(|page| &page.path == path) else {
                continue;
            };
            if let Some(reading) = read_block_page(page, &self.pages, &self.pages_by_key, true) {
                self.sources
                    .insert(reading.block.page.clone(), reading.read);
                if let Some(layout) = reading.layout {
                    self.layouts.insert(reading.block.page.clone(), layout);
                }
                self.blocks.push(reading.block);
            }
        }
        self.blocks.sort_by(|left, right| left.id.cmp(&right.id));
        resolve_relations(&mut self.blocks, &mut Vec::new());
    }

    /// A page by name, case-insensitively.
    pub fn page(&self, name: &str) -> Option<&Page> {
        self.pages_by_key
            .get(&page_key(name))
            .map(|&index| &self.pages[index])
    }

    /// The ventures: every name with examples in some block (first spelling wins, compared
    /// case-insensitively) and every venture page; sorted by name.
    pub fn ventures(&self) -> &[Venture] {
        self.ventures.get_or_init(|| self.read_ventures())
    }

    /// The names of [`ventures`](Self::ventures), in order, as one list every caller shares.
    pub fn shared_venture_names(&self) -> Arc<[String]> {
        self.venture_names
            .get_or_init(|| {
                self.ventures()
                    .iter()
                    .map(|venture| venture.name.clone())
                    .collect()
            })
            .clone()
    }

    fn read_ventures(&self) -> Vec<Venture> {
        let mut ventures: Vec<Venture> = Vec::new();
        let mut index_by_key: HashMap<String, usize> = HashMap::new();
        let mut entry = |name: &str, ventures: &mut Vec<Venture>| -> usize {
            *index_by_key.entry(page_key(name)).or_insert_with(|| {
                ventures.push(Venture {
                    name: name.to_string(),
                    blocks: BTreeMap::new(),
                    empty_canvases: 0,
                    brief: None,
                    page: None,
                });
                ventures.len() - 1
            })
        };
        for page in &self.pages {
            let is_venture = page.property("type").is_some_and(|value| {
                page_refs(value)
                    .iter()
                    .any(|kind| kind.eq_ignore_ascii_case("venture"))
            });
            if !is_venture {
                continue;
            }
            let index = entry(&page.name, &mut ventures);
            ventures[index].page = Some(page.path.clone());
            ventures[index].brief = page
                .property("brief")
                .map(str::to_string)
                .or_else(|| page_body(page));
        }
        for block in &self.blocks {
            for example in &block.examples {
                let index = entry(&example.venture, &mut ventures);
                *ventures[index].blocks.entry(block.id.clone()).or_insert(0) += 1;
            }
        }
        // Ventures embedded on block pages whose example pages hold nothing yet are ventures of
        // the graph too, with empty canvases.
        for block in &self.blocks {
            for canvas in &block.canvases {
                let index = entry(canvas, &mut ventures);
                if !ventures[index].blocks.contains_key(&block.id) {
                    ventures[index].empty_canvases += 1;
                }
            }
        }
        ventures.sort_by_key(|venture| venture.name.to_lowercase());
        ventures
    }

    /// A venture of the graph by name, case-insensitively.
    pub fn find_venture(&self, name: &str) -> Option<&Venture> {
        let key = page_key(name);
        self.ventures()
            .iter()
            .find(|venture| page_key(&venture.name) == key)
    }

    /// The names of all ventures, for messages.
    pub fn venture_names(&self) -> String {
        self.ventures()
            .iter()
            .map(|venture| venture.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The examples of one venture for one block.
    pub fn examples_of<'g>(
        &'g self,
        block: &'g Block,
        venture: &str,
    ) -> impl Iterator<Item = &'g Example> {
        let key = page_key(venture);
        block
            .examples
            .iter()
            .filter(move |example| page_key(&example.venture) == key)
    }
}

/// The text of a page without its properties, or `None` when it has none.
fn page_body(page: &Page) -> Option<String> {
    let lines: Vec<&str> = page_entries(page)
        .into_iter()
        .map(|entry| entry.text)
        .filter(|text| !text.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn most_common_class(examples: &[Example]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for class in examples
        .iter()
        .filter_map(|example| example.class.as_deref())
    {
        match counts
            .iter_mut()
            .find(|(seen, _)| seen.eq_ignore_ascii_case(class))
        {
            Some((_, count)) => *count += 1,
            None => counts.push((class, 1)),
        }
    }
    // The first of the most common, so ties go to the class written first.
    let best = counts.iter().map(|(_, count)| *count).max()?;
    counts
        .into_iter()
        .find(|(_, count)| *count == best)
        .map(|(class, _)| class.to_string())
}

/// A block read from its page.
struct BlockReading {
    block: Block,
    /// The keys of the pages the reading looked up: itself, and every embedded page.
    read: HashSet<String>,
    /// Kept when asked for.
    layout: Option<Layout>,
    warnings: Vec<Warning>,
}

/// How a block's examples were read: where each of the block page's own embeds put its
/// examples, so that a change of one embedded page is read again alone.
#[derive(Debug, Clone)]
struct Layout {
    /// The key of the block page.
    key: String,
    /// The block page gives the item class; else it is the examples' most common one.
    declared_class: bool,
    spans: Vec<examples::EmbedSpan>,
}

impl Layout {
    /// Read again the embeds of the pages of `keys` (changed, added or gone) into `block`'s
    /// examples, as reading the whole block would; false, with `block` unchanged, when the
    /// block must be read whole: a key it read that is not one of its own embeds, or an
    /// embedded page that embeds others (before or now).
    fn read_again(
        &mut self,
        block: &mut Block,
        keys: &[&String],
        pages: &[Page],
        pages_by_key: &HashMap<String, usize>,
    ) -> bool {
        let find_page = |name: &str| {
            pages_by_key
                .get(&page_key(name))
                .map(|&index| &pages[index])
        };
        let mut again: Vec<(usize, Vec<Example>)> = Vec::new();
        for key in keys {
            let mut found = false;
            for (index, span) in self.spans.iter().enumerate() {
                if &span.key != *key {
                    continue;
                }
                found = true;
                if span.nested {
                    return false;
                }
                let examples = match pages_by_key.get(key.as_str()).map(|&index| &pages[index]) {
                    Some(page) => match ExampleReader::read_embedded_alone(
                        &find_page,
                        &self.key,
                        page,
                        &span.venture,
                    ) {
                        Some(examples) => examples,
                        None => return false,
                    },
                    None => Vec::new(),
                };
                again.push((index, examples));
            }
            if !found {
                return false;
            }
        }
        again.sort_by_key(|(index, _)| *index);
        let mut again = again.into_iter().peekable();
        let mut shift: isize = 0;
        for (index, span) in self.spans.iter_mut().enumerate() {
            span.start = span.start.saturating_add_signed(shift);
            if let Some((_, examples)) = again.next_if(|(at, _)| *at == index) {
                let old = span.start..span.start + span.len;
                shift += examples.len() as isize - span.len as isize;
                span.len = examples.len();
                block.examples.splice(old, examples);
            }
        }
        if !self.declared_class {
            block.item_class = most_common_class(&block.examples);
        }
        true
    }
}

/// A block page read: the block with its examples, the keys of the pages looked up, with
/// `keep_layout` where each of its own embeds put its examples, and the warnings of its
/// examples; `None` when the page is not a block page.
fn read_block_page(
    page: &Page,
    pages: &[Page],
    pages_by_key: &HashMap<String, usize>,
    keep_layout: bool,
) -> Option<BlockReading> {
    let sections = page.sections();
    if !metamodel::is_block_page(&sections) {
        return None;
    }
    let read = std::cell::RefCell::new(HashSet::from([page_key(&page.name)]));
    let find_page = |name: &str| {
        let key = page_key(name);
        let found = pages_by_key.get(&key).map(|&index| &pages[index]);
        read.borrow_mut().insert(key);
        found
    };
    let mut block = metamodel::read_block(page, &sections);
    let mut reader = match keep_layout {
        true => ExampleReader::new(&find_page).keeping_spans(),
        false => ExampleReader::new(&find_page),
    };
    for section in sections
        .iter()
        .filter(|section| section.kind == SectionKind::Examples)
    {
        reader.read_entries(page, &section.entries, section.qualifier.clone());
    }
    let layout = reader.take_spans().map(|spans| Layout {
        key: page_key(&page.name),
        declared_class: block.item_class.is_some(),
        spans,
    });
    let (examples, canvases, example_warnings) = reader.finish();
    block.examples = examples;
    block.canvases = canvases;
    if block.item_class.is_none() {
        block.item_class = most_common_class(&block.examples);
    }
    let warnings = example_warnings
        .into_iter()
        .map(|warning| Warning {
            kind: warning.kind,
            path: warning.page,
            line: Some(warning.line),
            message: warning.message,
        })
        .collect();
    Some(BlockReading {
        block,
        read: read.into_inner(),
        layout,
        warnings,
    })
}

/// Turn `relations::` page names into block ids: the exact page name or id first (compared as
/// Logseq does, ignoring case), then [`loose_key`]; an unknown or ambiguous name is warned about
/// and dropped.
fn resolve_relations(blocks: &mut [Block], warnings: &mut Vec<Warning>) {
    let mut id_by_key: HashMap<String, String> = HashMap::new();
    let mut ids_by_loose_key: HashMap<String, Vec<String>> = HashMap::new();
    for block in blocks.iter() {
        for name in [&block.page_name, &block.id] {
            id_by_key.insert(page_key(name), block.id.clone());
            let ids = ids_by_loose_key.entry(loose_key(name)).or_default();
            if !ids.contains(&block.id) {
                ids.push(block.id.clone());
            }
        }
    }
    for block in blocks.iter_mut() {
        let mut relations = Vec::new();
        for name in &block.relation_pages {
            let id = match id_by_key.get(&page_key(name)) {
                Some(id) => id,
                None => match ids_by_loose_key.get(&loose_key(name)).map(Vec::as_slice) {
                    Some([id]) => id,
                    Some(several) => {
                        warnings.push(Warning {
                            kind: WarningKind::UnresolvedRelation,
                            path: block.page.clone(),
                            line: None,
                            message: format!(
                                "relations:: names [[{name}]], which could be any of the blocks {}; write its id",
                                several.join(", ")
                            ),
                        });
                        continue;
                    }
                    None => {
                        warnings.push(Warning {
                            kind: WarningKind::UnresolvedRelation,
                            path: block.page.clone(),
                            line: None,
                            message: format!(
                                "relations:: names [[{name}]], which is not a block page"
                            ),
                        });
                        continue;
                    }
                },
            };
            if *id != block.id && !relations.contains(id) {
                relations.push(id.clone());
            }
        }
        block.relations = relations;
    }
}

/// A page name compared loosely, the way people write references to block pages: case,
/// `___` versus `/`, spaces, hyphens, underscores and parentheses ignored
/// (`profile id___segmentation` and `[[profile (id)/segmentation]]` are `profile-(id)/segmentation`).
pub fn loose_key(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .replace("___", "/")
        .chars()
        .filter(|character| {
            !matches!(character, ' ' | '-' | '_' | '(' | ')') && !character.is_whitespace()
        })
        .collect()
}

/// Every page file under the graph folder, sorted: `*.md`, except under `logseq/`,
/// `journals/`, hidden folders and build or tool folders. An entry that cannot be listed is a
/// warning, not an error, unless it is the graph folder itself.
fn page_files(root: &Path) -> Result<(Vec<PathBuf>, Vec<Warning>), Error> {
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() == 0 {
                return true;
            }
            let name = entry.file_name().to_string_lossy();
            let is_dir = entry.file_type().is_dir();
            // Hidden entries are Logseq's (and git's, and our own `.inncopilot/`), not pages.
            let hidden = name.starts_with('.');
            let reserved = entry.depth() == 1 && is_dir && (name == "logseq" || name == "journals");
            // Build and package folders hold copies of pages (test fixtures under `target/`)
            // that would be read as the graph's own, at any depth.
            let tool = is_dir && (name == "target" || name == "node_modules");
            !hidden && !reserved && !tool
        });
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) if source.depth() == 0 => {
                return Err(Error::List {
                    path: root.to_path_buf(),
                    source,
                });
            }
            Err(source) => {
                let path = source
                    .path()
                    .map_or_else(String::new, |path| relative_path(root, path));
                warnings.push(Warning {
                    kind: WarningKind::Unlisted,
                    path,
                    line: None,
                    message: format!("skipped: {source}"),
                });
                continue;
            }
        };
        let is_markdown = entry
            .path()
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("md"));
        if entry.file_type().is_file() && is_markdown {
            files.push(entry.into_path());
        }
    }
    Ok((files, warnings))
}

fn relative_path(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap_or(file);
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(path: &str, text: &str) -> Page {
        Page::parse(path.to_string(), PathBuf::from(path), text.to_string())
    }

    #[test]
    fn updating_pages_reads_the_same_blocks_as_reading_them_all_again() {
        let thing = "relations:: [[other]]\n\n- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n- ## Examples\n  - ### Acme\n    {{embed [[thing/examples/Acme]]}}\n  - ### Beta\n    {{embed [[thing/examples/Beta]]}}\n";
        let other = "- ## Definition\n  - Another.\n- ## innCoPilot\n  - How?\n- ## Examples\n  - ### Beta\n    - #idea [[Beta Other Idea]]\n      - An idea.\n";
        let mut pages = vec![
            page("pages/thing.md", thing),
            page("pages/other.md", other),
            page(
                "pages/thing___examples___Beta.md",
                "- #idea [[Beta Idea]]\n  - One.\n",
            ),
            page("pages/notes.md", "- x\n"),
        ];
        let mut graph = Graph::from_pages(PathBuf::from("graph"), pages.clone(), Vec::new());
        let renamed = other.replace("Beta Other Idea", "Beta Renamed");
        let twice = format!("{thing}  - ### Gamma\n    {{{{embed [[thing/examples/Acme]]}}}}\n");
        let edits: Vec<(&str, Option<&str>)> = vec![
            // A canvas that was empty gets its page.
            (
                "pages/thing___examples___Acme.md",
                Some("- #idea [[Acme Idea]]\n  - Two.\n"),
            ),
            // An embedded page changes, then goes.
            (
                "pages/thing___examples___Beta.md",
                Some("- #idea [[Beta Idea]]\n  - One.\n- #idea [[Beta Again]]\n  - Three.\n"),
            ),
            ("pages/thing___examples___Beta.md", None),
            // A block page changes; a page nobody reads changes.
            ("pages/other.md", Some(&renamed)),
            ("pages/notes.md", Some("- y\n")),
            // A page becomes a block page.
            ("pages/notes.md", Some(other)),
            // A new page with the name of another (in a subfolder): references go to it.
            (
                "pages/copy/thing___examples___Acme.md",
                Some("- #idea [[Acme Copy]]\n  - Four.\n"),
            ),
            // The block page embeds one page twice, under two ventures.
            ("pages/thing.md", Some(&twice)),
            (
                "pages/copy/thing___examples___Acme.md",
                Some("- #idea [[Acme Copy]]\n  - Four.\n- #idea [[Acme More]]\n  - Five.\n"),
            ),
            // The examples' most common class (the block declares none) changes with one page.
            (
                "pages/thing___examples___Beta.md",
                Some(
                    "- #tool [[T1]]\n  - x y z.\n- #tool [[T2]]\n  - x y z.\n- #tool [[T3]]\n  - x y z.\n- #tool [[T4]]\n  - x y z.\n- #tool [[T5]]\n  - x y z.\n",
                ),
            ),
            (
                "pages/thing___examples___Beta.md",
                Some("- #idea [[B1]]\n  - One.\n"),
            ),
            // An embedded page embeds another page, then loops back to the block, then not.
            (
                "pages/thing___examples___Beta.md",
                Some("- #idea [[B1]]\n  - One.\n- {{embed [[misc]]}}\n"),
            ),
            ("pages/misc.md", Some("- #idea [[Noted]]\n  - In misc.\n")),
            (
                "pages/thing___examples___Beta.md",
                Some("- {{embed [[thing]]}}\n"),
            ),
            (
                "pages/thing___examples___Beta.md",
                Some("- #idea [[B2]]\n  - Two.\n"),
            ),
            ("pages/copy/thing___examples___Acme.md", None),
        ];
        for (path, text) in edits {
            let edited = text.map(|text| page(path, text));
            match (pages.iter().position(|page| page.path == path), &edited) {
                (Some(index), Some(edited)) => pages[index] = edited.clone(),
                (None, Some(edited)) => pages.push(edited.clone()),
                (Some(index), None) => {
                    pages.remove(index);
                }
                (None, None) => {}
            }
            graph.update_pages(vec![(path.to_string(), edited)]);
            let whole = Graph::from_pages(PathBuf::from("graph"), pages.clone(), Vec::new());
            assert_eq!(
                format!("{:?}", graph.blocks),
                format!("{:?}", whole.blocks),
                "after editing {path}"
            );
            assert_eq!(
                graph.pages_by_key, whole.pages_by_key,
                "after editing {path}"
            );
        }
        assert_eq!(graph.blocks.len(), 3);
    }

    #[test]
    fn an_embedded_page_alone_is_read_again_alone() {
        let thing = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n- ## Examples\n  - ### Acme\n    {{embed [[thing/examples/Acme]]}}\n  - ### Beta\n    {{embed [[thing/examples/Beta]]}}\n";
        let pages = vec![
            page("pages/thing.md", thing),
            page(
                "pages/thing___examples___Beta.md",
                "- {{embed [[notes]]}}\n",
            ),
            page("pages/notes.md", "- x\n"),
        ];
        let mut graph = Graph::from_pages(PathBuf::from("graph"), pages, Vec::new());
        let spans = |graph: &Graph| {
            graph.layouts["pages/thing.md"]
                .spans
                .iter()
                .map(|span| (span.key.clone(), span.start, span.len, span.nested))
                .collect::<Vec<_>>()
        };
        // Nothing is kept for a graph never updated.
        assert!(graph.layouts.is_empty());
        let acme_page = |text: &str| {
            let acme = page("pages/thing___examples___Acme.md", text);
            vec![(acme.path.clone(), Some(acme))]
        };
        // The first update reads the block whole and keeps where each embed's examples went.
        graph.update_pages(acme_page("- #idea [[One]]\n  - First.\n"));
        let acme = ("thing/examples/acme".to_string(), 0, 1, false);
        assert_eq!(
            spans(&graph),
            vec![acme, ("thing/examples/beta".into(), 1, 1, true)]
        );
        // Acme's page is read again alone, and the spans after it move.
        graph.update_pages(acme_page(
            "- #idea [[One]]\n  - First.\n- #idea [[Two]]\n  - Second.\n",
        ));
        assert_eq!(
            spans(&graph)[0],
            ("thing/examples/acme".into(), 0, 2, false)
        );
        assert_eq!(spans(&graph)[1].1, 2);
        // A page read through Beta's nested embed changes: the block is read whole.
        graph.update_pages(vec![(
            "pages/notes.md".into(),
            Some(page("pages/notes.md", "- #idea [[Three]]\n  - Third.\n")),
        )]);
        let names: Vec<&str> = graph.blocks[0]
            .examples
            .iter()
            .map(|example| example.name.as_str())
            .collect();
        assert_eq!(names, ["One", "Two", "Three"]);
        assert_eq!(spans(&graph)[1], ("thing/examples/beta".into(), 2, 1, true));
        // Acme alone is read again alone; Beta, with its nested embed, is not.
        let mut layout = graph.layouts["pages/thing.md"].clone();
        let mut block = graph.blocks[0].clone();
        let (acme, beta) = (
            "thing/examples/acme".to_string(),
            "thing/examples/beta".to_string(),
        );
        assert!(layout.read_again(&mut block, &[&acme], &graph.pages, &graph.pages_by_key));
        assert_eq!(format!("{block:?}"), format!("{:?}", graph.blocks[0]));
        assert!(!layout.read_again(&mut block, &[&beta], &graph.pages, &graph.pages_by_key));
    }

    #[test]
    fn every_warning_has_the_kind_of_the_place_that_made_it() {
        let block = "relations:: [[nowhere]]\n\n- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n- ## Examples\n  - ### Acme\n    {{embed [[thing/notes/Missing]]}}\n  - ### Beta\n    {{embed [[thing/examples/Beta]]}}\n";
        let pages = vec![
            page("pages/thing.md", block),
            page(
                "pages/thing___examples___Beta.md",
                "- {{embed [[thing]]}}\n",
            ),
            page("pages/notes.md", "- x\n"),
            page("pages/copy/notes.md", "- x\n"),
        ];
        let graph = Graph::from_pages(PathBuf::from("graph"), pages, Vec::new());
        let mut kinds: Vec<(WarningKind, &str)> = graph
            .warnings
            .iter()
            .map(|warning| (warning.kind, warning.path.as_str()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                (WarningKind::DuplicatePageName, "pages/copy/notes.md"),
                (WarningKind::MissingEmbed, "pages/thing.md"),
                (WarningKind::EmbedLoop, "pages/thing___examples___Beta.md"),
                (WarningKind::UnresolvedRelation, "pages/thing.md"),
            ],
            "{:?}",
            graph.warnings
        );
    }

    #[test]
    fn a_graph_read_from_disk_knows_whether_it_still_is_the_graph_there()
    -> Result<(), Box<dyn std::error::Error>> {
        let folder = tempfile::tempdir()?;
        let pages = folder.path().join("pages");
        std::fs::create_dir_all(&pages)?;
        let block = "- ## Definition\n  - A thing.\n- ## innCoPilot\n  - Why?\n- ## Examples\n  - ### Acme\n    {{embed [[thing/examples/Acme]]}}\n";
        std::fs::write(pages.join("thing.md"), block)?;
        std::fs::write(pages.join("notes.md"), "- x\n")?;
        let graph = Graph::load(folder.path())?;
        assert!(graph.unchanged_on_disk());
        // A copy shares every page's text and outline.
        let copy = graph.clone();
        assert!(copy.unchanged_on_disk());
        assert!(Arc::ptr_eq(&copy.pages[0].text, &graph.pages[0].text));
        assert!(Arc::ptr_eq(&copy.pages[0].outline, &graph.pages[0].outline));
        // A page written again with other text of the same length, a page added, a page
        // removed: each is a graph that must be read again.
        let modified = std::fs::metadata(pages.join("notes.md"))?.modified()?;
        std::fs::write(pages.join("notes.md"), "- y\n")?;
        let file = std::fs::File::options()
            .write(true)
            .open(pages.join("notes.md"))?;
        file.set_modified(modified + std::time::Duration::from_millis(1))?;
        assert!(!graph.unchanged_on_disk());
        std::fs::write(pages.join("notes.md"), "- x\n")?;
        let graph = Graph::load(folder.path())?;
        std::fs::write(pages.join("new.md"), "- z\n")?;
        assert!(!graph.unchanged_on_disk());
        std::fs::remove_file(pages.join("new.md"))?;
        assert!(graph.unchanged_on_disk());
        std::fs::remove_file(pages.join("notes.md"))?;
        assert!(!graph.unchanged_on_disk());
        // A graph not read from disk, or changed since, never is.
        let built = Graph::from_pages(folder.path().to_path_buf(), Vec::new(), Vec::new());
        assert!(!built.unchanged_on_disk());
        let mut changed = Graph::load(folder.path())?;
        assert!(changed.unchanged_on_disk());
        changed.update_pages(vec![("pages/other.md".to_string(), None)]);
        assert!(!changed.unchanged_on_disk());
        Ok(())
    }
}
