//! Drafts into the graph: written where the venture's examples for the block live, marked
//! `draft:: true`, accepted (the marker dropped) or rejected (the blocks removed), without ever
//! changing a line a person wrote.
//!
//! A [`Workspace`] holds the graph as it will be after the edits so far, and writes the pages that
//! changed with [`Workspace::commit`]: each file atomically (temporary file in the same folder,
//! fsync, rename), only if it still holds what was read (an edit made meanwhile, in Logseq say,
//! is never overwritten), in an order a re-run can finish from. [`GraphLock`] keeps two
//! processes from writing one graph at once. Where drafts go is `place`'s business; the text of
//! an item is `text`'s.

pub mod guard;
pub mod lock;
pub mod place;
pub mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::draft::Item;
use crate::fsutil::{FileWrite, write_atomic_all};
use crate::graph::examples::Example;
use crate::graph::name::page_key;
use crate::graph::page::Page;
use crate::graph::{self, Graph};

pub use lock::GraphLock;
use place::{Addition, PageText, example_block, examples_section, item_extent, page_at};
use text::{Marks, splice, without_trailing_blanks};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Graph(#[from] graph::Error),
    #[error(
        "{page} is in the site's export format: drafts are written only into Logseq pages (the JSON draft has them)"
    )]
    ExportPage { page: String },
    #[error("{page} has no Examples section to put drafts in: add a `- ## Examples` block to it")]
    NoExamplesSection { page: String },
    #[error(
        "{path} changed on disk while inncopilot was working: nothing was written to it; run the command again"
    )]
    ChangedOnDisk { path: PathBuf },
    #[error(
        "another inncopilot process is writing this graph ({holder}); wait for it to finish, then run the command again (lock file: {path})"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "say which drafts: --venture, --block, --run or --item (several narrow the choice), or --all"
    )]
    NoSelection,
    #[error(
        "no draft matches this selection, so nothing was {verb}: `inncopilot drafts list` shows the drafts of the graph"
    )]
    NothingSelected { verb: &'static str },
    #[error(
        "the drafts for {venture} would not read back from {page} as drafts (the page's text around them, an unclosed code fence say, would swallow them): nothing was written"
    )]
    NotReadBack { page: String, venture: String },
    #[error(
        "refused to write {path}: its line {line} (`{text}`) was written by a person and would be removed, changed or taken into a draft; nothing was written (this is a bug in inncopilot: please report it with the page)"
    )]
    HumanText {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The graph as it will be once the pending edits are written.
pub struct Workspace {
    graph: Graph,
    /// The text each changed page had on disk (`None`: it did not exist), by relative path;
    /// shared with the page as read, not copied.
    read: BTreeMap<String, Option<Arc<str>>>,
    /// The text each page changed since the last [`savepoint`](Self::savepoint) had then.
    staged: BTreeMap<String, Option<Arc<str>>>,
    /// The Examples section of the block page written to last, by path, until the page
    /// changes: a block page with a canvas per venture has thousands of segments, and every
    /// draft written to it needs them. One page only: a run writes block after block, and a
    /// section per block page kept to the end grew with the graph.
    section: Option<(String, Arc<place::ExamplesSection>)>,
}

/// One page's change: before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<Arc<str>>,
    pub after: Option<Arc<str>>,
}

impl Workspace {
    pub fn load(root: &Path) -> Result<Workspace, Error> {
        Ok(Workspace::of(Graph::load(root)?))
    }

    /// A workspace on a graph already read: the caller knows it is the graph on disk
    /// ([`Graph::unchanged_on_disk`]); a page changed since is still never overwritten (the
    /// commit checks every page it writes against the text it was read with).
    pub fn of(graph: Graph) -> Workspace {
        Workspace {
            graph,
            read: BTreeMap::new(),
            staged: BTreeMap::new(),
            section: None,
        }
    }

    /// The Examples section of the page of the block with id `block`, which drafts go into
    /// ([`place::writable_page`]); read again only when the page changed since it was last
    /// read here (every change goes through [`apply`](Self::apply), which forgets it).
    fn writable_section(&mut self, block: &str) -> Result<Arc<place::ExamplesSection>, Error> {
        let block = self.graph.find_block(block)?;
        if let Some((path, section)) = &self.section
            && *path == block.page
        {
            return Ok(section.clone());
        }
        let (page, section) = place::writable_page(&self.graph, block)?;
        let section = Arc::new(section);
        self.section = Some((page.path.clone(), section.clone()));
        Ok(section)
    }

    /// Forget the kept Examples section if it is the one of the page at `path`.
    fn forget_section(&mut self, path: &str) {
        if self.section.as_ref().is_some_and(|(kept, _)| kept == path) {
            self.section = None;
        }
    }

    /// The graph's folder.
    pub fn root(&self) -> &Path {
        &self.graph.root
    }

    /// Take `edits` into the graph (not yet to disk).
    pub fn apply(&mut self, edits: Vec<PageText>) {
        if edits.is_empty() {
            return;
        }
        let root = self.graph.root.clone();
        let mut changed = Vec::with_capacity(edits.len());
        for edit in edits {
            self.forget_section(&edit.path);
            let before = page_at(&self.graph, &edit.path).map(|page| page.text.clone());
            self.read
                .entry(edit.path.clone())
                .or_insert_with(|| before.clone());
            self.staged.entry(edit.path.clone()).or_insert(before);
            let file = root.join(&edit.path);
            let page = edit
                .text
                .map(|text| Page::parse(edit.path.clone(), file, text));
            changed.push((edit.path, page));
        }
        // Only the blocks the edited pages touch are read again (a graph of 1,500 pages takes
        // ~8 ms to read whole, several times per pair written).
        self.graph.update_pages(changed);
    }

    /// Keep the edits so far: a [`rollback`](Self::rollback) goes back to here, not further.
    pub fn savepoint(&mut self) {
        self.staged.clear();
    }

    /// Drop the edits since the last [`savepoint`](Self::savepoint) (or commit): the pages
    /// are again as they were then.
    pub fn rollback(&mut self) {
        let edits = std::mem::take(&mut self.staged)
            .into_iter()
            .map(|(path, text)| PageText {
                path,
                text: text.map(|text| text.to_string()),
            })
            .collect();
        self.apply(edits);
        self.staged.clear();
    }

    /// Drop every edit not committed yet: the pages are again as they were read.
    pub fn discard(&mut self) {
        self.savepoint();
        self.staged = std::mem::take(&mut self.read);
        self.rollback();
        self.read.clear();
    }

    /// The pages that differ from what was read, in the order [`commit`](Self::commit) writes
    /// them: changed pages, then new pages, then deleted ones, each group in path order.
    ///
    /// Changed pages go first so that a run killed between two files leaves at worst an embed of
    /// a page not written yet (Logseq shows it empty; a re-run writes it), never an example page
    /// no block page embeds, whose drafts a re-run could not see and would write twice.
    ///
    /// Every change is checked by [`guard::check`]: one that would remove, alter or take over a
    /// line a person wrote is an error naming the page and the line.
    pub fn changes(&self) -> Result<Vec<Change>, Error> {
        self.changes_among(self.read.keys())
    }

    /// [`changes`](Self::changes) of the given pages only (those one draft touched, say).
    pub fn changes_of(&self, paths: &[String]) -> Result<Vec<Change>, Error> {
        self.changes_among(paths.iter().filter(|path| self.read.contains_key(*path)))
    }

    fn changes_among<'p>(
        &self,
        paths: impl Iterator<Item = &'p String>,
    ) -> Result<Vec<Change>, Error> {
        let mut changes: Vec<Change> = paths
            .map(|path| Change {
                before: self.read.get(path).cloned().flatten(),
                after: page_at(&self.graph, path).map(|page| page.text.clone()),
                path: path.clone(),
            })
            .filter(|change| change.before != change.after)
            .collect();
        changes.sort_by_key(|change| match (&change.before, &change.after) {
            (Some(_), Some(_)) => 0,
            (None, _) => 1,
            (Some(_), None) => 2,
        });
        for change in &changes {
            guard::check(
                &change.path,
                change.before.as_deref(),
                change.after.as_deref(),
            )
            .map_err(|violation| Error::HumanText {
                path: self.graph.root.join(&change.path),
                line: violation.line,
                text: violation.text,
            })?;
        }
        Ok(changes)
    }

    /// Let go of the given pages where they are example pages with nothing but drafts (the
    /// pages a run makes for its drafts): a long run that keeps every page it wrote grows with the pages,
    /// ~10 KB each. Such a page is never edited again in the run; if it were, it would read
    /// as new here while the file exists, and the commit would refuse to overwrite it
    /// ([`Error::ChangedOnDisk`]). Call only after a commit.
    pub fn forget_draft_pages(&mut self, paths: &[String]) {
        let forget: Vec<(String, Option<Page>)> = paths
            .iter()
            .filter(|path| !self.read.contains_key(*path) && self.holds_only_drafts(path))
            .map(|path| (path.clone(), None))
            .collect();
        if !forget.is_empty() {
            for (path, _) in &forget {
                self.forget_section(path);
            }
            self.graph.update_pages(forget);
        }
    }

    /// An example page (a block reads examples on it, it is not a block page) with nothing
    /// but drafts on it. A new venture's page holds only a draft too, its brief, but the
    /// venture's next pairs write it again: it is kept.
    fn holds_only_drafts(&self, path: &str) -> bool {
        let blocks = &self.graph.blocks;
        page_at(&self.graph, path).is_some_and(guard::only_drafts)
            && !blocks.iter().any(|block| block.page == path)
            && blocks
                .iter()
                .flat_map(|block| &block.examples)
                .any(|example| example.page == path)
    }

    /// The pending changes as a unified diff (paths relative to the graph), checked like a
    /// commit.
    pub fn diff(&self) -> Result<String, Error> {
        Ok(self
            .changes()?
            .iter()
            .map(|change| {
                let before = change.before.as_deref().unwrap_or("");
                let after = change.after.as_deref().unwrap_or("");
                similar::TextDiff::from_lines(before, after)
                    .unified_diff()
                    .context_radius(2)
                    .header(&format!("a/{}", change.path), &format!("b/{}", change.path))
                    .to_string()
            })
            .collect())
    }

    /// Write every changed page, each atomically, in the order of [`changes`](Self::changes),
    /// after checking that none changed on disk since it was read. Returns the paths written.
    ///
    /// Pages of one group (changed, new, deleted) are flushed to disk together and then renamed
    /// in order ([`write_atomic_all`]), and a group is in place before the next one starts.
    pub fn commit(&mut self) -> Result<Vec<String>, Error> {
        self.commit_with(&[])
    }

    /// [`commit`](Self::commit), and `also` (files outside the graph's pages: the JSON drafts
    /// of the same pairs) flushed with the last group and renamed after it: one wait for the
    /// disk where a second write took two more. Nothing of `also` is written when a page
    /// cannot be.
    pub fn commit_with(&mut self, also: &[FileWrite<'_>]) -> Result<Vec<String>, Error> {
        let changes = self.changes()?;
        let root = self.graph.root.clone();
        for change in &changes {
            let file = root.join(&change.path);
            let on_disk = match std::fs::read(&file) {
                Ok(bytes) => Some(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(Error::Io { path: file, source }),
            };
            if on_disk.as_deref() != change.before.as_deref().map(str::as_bytes) {
                return Err(Error::ChangedOnDisk { path: file });
            }
        }
        let files: Vec<PathBuf> = changes
            .iter()
            .map(|change| root.join(&change.path))
            .collect();
        let group = |change: &Change| (change.before.is_none(), change.after.is_none());
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        while start < changes.len() {
            let end = start
                + changes[start..]
                    .iter()
                    .take_while(|change| group(change) == group(&changes[start]))
                    .count();
            groups.push(start..end);
            start = end;
        }
        if groups.is_empty() && !also.is_empty() {
            groups.push(0..0);
        }
        let last = groups.len().saturating_sub(1);
        for (at, range) in groups.into_iter().enumerate() {
            let mut writes: Vec<FileWrite<'_>> = range
                .map(|index| FileWrite {
                    path: &files[index],
                    bytes: changes[index].after.as_deref().map(str::as_bytes),
                })
                .collect();
            if at == last {
                writes.extend_from_slice(also);
            }
            write_atomic_all(&writes).map_err(|(path, source)| Error::Io { path, source })?;
        }
        self.read.clear();
        self.staged.clear();
        Ok(changes.into_iter().map(|change| change.path).collect())
    }
}

/// The drafts of one (venture, block) to write.
pub struct DraftSet<'a> {
    pub venture: &'a str,
    /// A new venture's brief, stored on a page of its own.
    pub brief: Option<&'a str>,
    pub block_id: &'a str,
    /// Items made safe with [`text::safe_item`].
    pub items: &'a [Item],
    pub generated_by: &'a str,
    pub run: &'a str,
}

/// Put a draft into the workspace: the venture's earlier unaccepted drafts of the block are
/// replaced unless `append`; a new venture's brief gets a page. Returns the pages changed.
pub fn write_drafts(
    workspace: &mut Workspace,
    set: &DraftSet<'_>,
    append: bool,
) -> Result<Vec<String>, Error> {
    let mut touched = Vec::new();
    if set.items.is_empty() {
        // Nothing to write: earlier drafts stay rather than being replaced by nothing.
        return Ok(touched);
    }
    // The page is checked before anything changes, so a draft that cannot be placed leaves the
    // earlier ones in place.
    workspace.writable_section(set.block_id)?;
    // What the pair needs of the block as it is now, taken before the pages change: the block
    // is borrowed, not copied (a copy held every venture's examples, hundreds per pair).
    let block = workspace.graph.find_block(set.block_id)?;
    let class = place::item_tag(block).map(str::to_string);
    let earlier: Vec<Example> = match append {
        true => Vec::new(),
        false => {
            let key = page_key(set.venture);
            block
                .examples
                .iter()
                .filter(|example| example.draft && page_key(&example.venture) == key)
                .cloned()
                .collect()
        }
    };
    let block_page = place::block_page(&workspace.graph, block)?;
    let brief_page = set.brief.and_then(|brief| {
        place::brief_page(
            &workspace.graph,
            block_page,
            set.venture,
            brief,
            set.generated_by,
        )
    });
    let addition = Addition {
        venture: set.venture,
        items: set.items,
        marks: Marks {
            class: class.as_deref(),
            generated_by: set.generated_by,
            run: set.run,
        },
    };
    if let Some(page) = brief_page {
        touched.push(page.path.clone());
        workspace.apply(vec![page]);
    }
    if !earlier.is_empty() {
        let edits = remove_blocks(&workspace.graph, &earlier, Removal::Items);
        touched.extend(edits.iter().map(|edit| edit.path.clone()));
        workspace.apply(edits);
    }
    let section = workspace.writable_section(set.block_id)?;
    let block = workspace.graph.find_block(set.block_id)?;
    let edits = place::add(&workspace.graph, block, &section, &addition)?;
    let first_page = edits
        .first()
        .map(|edit| edit.path.clone())
        .unwrap_or_default();
    touched.extend(edits.iter().map(|edit| edit.path.clone()));
    workspace.apply(edits);
    // The drafts must read back as this venture's drafts of this block, or a later run could
    // neither replace nor reject them.
    let block = workspace.graph.find_block(set.block_id)?;
    let read_back: Vec<String> = workspace
        .graph
        .examples_of(block, set.venture)
        .filter(|example| example.draft)
        .map(|example| page_key(&example.name))
        .collect();
    if set
        .items
        .iter()
        .any(|item| !read_back.contains(&page_key(&item.name)))
    {
        return Err(Error::NotReadBack {
            page: first_page,
            venture: set.venture.to_string(),
        });
    }
    touched.sort();
    touched.dedup();
    Ok(touched)
}

/// Which drafts a command means; every given part must match.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub venture: Option<String>,
    /// A block id, title, or last part of an id.
    pub block: Option<String>,
    pub run: Option<String>,
    /// Item names (any of them), case-insensitively.
    pub items: Vec<String>,
    /// Every draft (needed by accept and reject when nothing else is given).
    pub all: bool,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.venture.is_none()
            && self.block.is_none()
            && self.run.is_none()
            && self.items.is_empty()
    }
}

/// A draft item found in the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedDraft {
    pub venture: String,
    pub block: String,
    pub name: String,
    pub description: String,
    pub page: String,
    pub line: usize,
    pub run: Option<String>,
}

/// The draft items of the graph that `selection` picks, in block order then page order.
pub fn list(graph: &Graph, selection: &Selection) -> Result<Vec<ListedDraft>, Error> {
    Ok(selected(graph, selection)?
        .into_iter()
        .map(|(block, example)| ListedDraft::new(block, example))
        .collect())
}

impl ListedDraft {
    fn new(block: &str, example: &Example) -> ListedDraft {
        ListedDraft {
            venture: example.venture.clone(),
            block: block.to_string(),
            name: example.name.clone(),
            description: example.description.clone(),
            page: example.page.clone(),
            line: example.line,
            run: example.run.clone(),
        }
    }
}

fn selected<'g>(
    graph: &'g Graph,
    selection: &Selection,
) -> Result<Vec<(&'g str, &'g Example)>, Error> {
    let block_id = match &selection.block {
        Some(query) => Some(graph.find_block(query)?.id.clone()),
        None => None,
    };
    let venture = selection.venture.as_deref().map(page_key);
    let names: Vec<String> = selection.items.iter().map(|name| page_key(name)).collect();
    Ok(graph
        .blocks
        .iter()
        .filter(|block| block_id.as_ref().is_none_or(|id| *id == block.id))
        .flat_map(|block| {
            block
                .examples
                .iter()
                .map(move |example| (block.id.as_str(), example))
        })
        .filter(|(_, example)| example.draft)
        .filter(|(_, example)| {
            venture
                .as_ref()
                .is_none_or(|key| *key == page_key(&example.venture))
        })
        .filter(|(_, example)| {
            selection
                .run
                .as_ref()
                .is_none_or(|run| example.run.as_deref() == Some(run.as_str()))
        })
        .filter(|(_, example)| names.is_empty() || names.contains(&page_key(&example.name)))
        .collect())
}

/// Accept the selected drafts: their `draft:: true` lines go, the items stay as ordinary
/// content; a heading or embed this tool made for their venture is accepted with them.
pub fn accept(workspace: &mut Workspace, selection: &Selection) -> Result<Vec<ListedDraft>, Error> {
    decide(workspace, selection, Removal::DraftMarks)
}

/// Reject the selected drafts: their blocks go; a heading or embed this tool made for their
/// venture goes with the last of them, and an example page it created goes once empty.
pub fn reject(workspace: &mut Workspace, selection: &Selection) -> Result<Vec<ListedDraft>, Error> {
    decide(workspace, selection, Removal::Items)
}

/// `drafts accept` or `drafts reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
}

impl Decision {
    /// The past tense, or the conditional of a dry run.
    pub fn verb(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Decision::Accept, false) => "accepted",
            (Decision::Accept, true) => "would accept",
            (Decision::Reject, false) => "rejected",
            (Decision::Reject, true) => "would reject",
        }
    }
}

/// What a decision did (or, in a dry run, would do).
#[derive(Debug, Serialize)]
pub struct Decided {
    pub drafts: Vec<ListedDraft>,
    /// The pages written (none in a dry run).
    pub pages: Vec<String>,
    /// The change as a unified diff, for a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Accept or reject the selected drafts of the graph at `root` as it is on disk now, under the
/// graph's lock (a dry run takes no lock and writes nothing). A selection matching no draft is
/// an error: nothing was decided.
pub fn decide_on_disk(
    root: &Path,
    selection: &Selection,
    decision: Decision,
    dry_run: bool,
) -> Result<Decided, Error> {
    let _lock = match dry_run {
        true => None,
        false => Some(GraphLock::acquire(root)?),
    };
    let mut workspace = Workspace::load(root)?;
    let drafts = match decision {
        Decision::Accept => accept(&mut workspace, selection)?,
        Decision::Reject => reject(&mut workspace, selection)?,
    };
    if drafts.is_empty() {
        return Err(Error::NothingSelected {
            verb: decision.verb(false),
        });
    }
    let diff = workspace.diff()?;
    Ok(match dry_run {
        true => Decided {
            drafts,
            pages: Vec::new(),
            diff: Some(diff),
        },
        false => Decided {
            drafts,
            pages: workspace.commit()?,
            diff: None,
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// The item blocks.
    Items,
    /// Only their `draft:: true` lines.
    DraftMarks,
}

fn decide(
    workspace: &mut Workspace,
    selection: &Selection,
    removal: Removal,
) -> Result<Vec<ListedDraft>, Error> {
    if selection.is_empty() && !selection.all {
        return Err(Error::NoSelection);
    }
    let (listed, chosen): (Vec<ListedDraft>, Vec<Example>) = selected(&workspace.graph, selection)?
        .into_iter()
        .map(|(block, example)| (ListedDraft::new(block, example), example.clone()))
        .unzip();
    let edits = remove_blocks(&workspace.graph, &chosen, removal);
    workspace.apply(edits);
    let mut pairs: Vec<(String, String)> = listed
        .iter()
        .map(|draft| (draft.block.clone(), draft.venture.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut ventures: Vec<String> = Vec::new();
    for (block, venture) in pairs {
        let edits = settle_scaffolding(&workspace.graph, &block, &venture, removal);
        workspace.apply(edits);
        if !ventures.contains(&venture) {
            ventures.push(venture);
        }
    }
    for venture in ventures {
        let edits = settle_venture_page(&workspace.graph, &venture, removal);
        workspace.apply(edits);
    }
    Ok(listed)
}

/// A venture page this tool made (a draft, see [`place::brief_page`]): accepting the venture's
/// drafts makes it the person's (its `draft:: true` goes); rejecting the last of them removes
/// it.
fn settle_venture_page(graph: &Graph, venture: &str, removal: Removal) -> Vec<PageText> {
    let Some(page) = graph.page(venture).filter(|page| is_draft_page(page)) else {
        return Vec::new();
    };
    match removal {
        Removal::DraftMarks => {
            let outline = &page.outline;
            let Some(mark) = outline
                .page_properties
                .iter()
                .find(|property| property.key.eq_ignore_ascii_case("draft"))
            else {
                return Vec::new();
            };
            vec![PageText {
                path: page.path.clone(),
                text: Some(splice(&page.text, outline, mark.line..mark.line + 1, &[])),
            }]
        }
        Removal::Items => {
            let key = page_key(venture);
            let left = graph.blocks.iter().any(|block| {
                block
                    .examples
                    .iter()
                    .any(|example| page_key(&example.venture) == key)
            });
            match left {
                true => Vec::new(),
                false => vec![PageText {
                    path: page.path.clone(),
                    text: None,
                }],
            }
        }
    }
}

/// A page this tool made as a whole (`draft:: true` and `generated-by:: inncopilot ...` among
/// its page properties): all its lines are ours until a person accepts it.
pub fn is_draft_page(page: &Page) -> bool {
    page.property("draft")
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
        && page
            .property("generated-by")
            .is_some_and(|value| value.trim_start().starts_with("inncopilot"))
}

/// Remove the blocks of `examples` (or only their draft marks), page by page, bottom up.
fn remove_blocks(graph: &Graph, examples: &[Example], removal: Removal) -> Vec<PageText> {
    let mut by_page: BTreeMap<&str, Vec<&Example>> = BTreeMap::new();
    for example in examples {
        by_page.entry(&example.page).or_default().push(example);
    }
    let mut edits = Vec::new();
    for (path, examples) in by_page {
        let Some(page) = page_at(graph, path) else {
            continue;
        };
        let mut ranges: Vec<std::ops::Range<usize>> = examples
            .iter()
            .filter_map(|example| example_block(page, example))
            .filter_map(|block| match removal {
                Removal::Items => Some(item_extent(page, block, page.outline.lines.len())),
                Removal::DraftMarks => page.outline.blocks[block]
                    .properties
                    .iter()
                    .find(|property| property.key.eq_ignore_ascii_case("draft"))
                    .map(|property| property.line..property.line + 1),
            })
            .collect();
        edits.push(PageText {
            path: path.to_string(),
            text: Some(remove_lines(page, &mut ranges)),
        });
    }
    edits
}

/// The page's text without the lines of `ranges` (merged where they touch).
fn remove_lines(page: &Page, ranges: &mut Vec<std::ops::Range<usize>>) -> String {
    ranges.sort_by_key(|range| range.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
    for range in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    let mut text = page.text.to_string();
    // Bottom up, so the line numbers of the ranges still to remove stay valid.
    for range in merged.into_iter().rev() {
        text = splice(&text, &page.outline, range, &[]);
    }
    text
}

/// After accept or reject of a venture's drafts in a block: the heading or embed block this
/// tool made for the venture is accepted with its first accepted item, or removed (with an
/// example page it leaves empty) once no item of the venture is left.
fn settle_scaffolding(
    graph: &Graph,
    block_id: &str,
    venture: &str,
    removal: Removal,
) -> Vec<PageText> {
    let Ok(block) = graph.find_block(block_id) else {
        return Vec::new();
    };
    let Some(page) = page_at(graph, &block.page) else {
        return Vec::new();
    };
    let Some(section) = examples_section(page) else {
        return Vec::new();
    };
    let key = page_key(venture);
    let Some(segment) = section
        .segments
        .iter()
        .find(|segment| page_key(&segment.venture) == key)
    else {
        return Vec::new();
    };
    let remaining: Vec<&Example> = graph.examples_of(block, venture).collect();
    let outline = &page.outline;
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut edits = Vec::new();
    match (removal, segment.draft_block) {
        (Removal::DraftMarks, Some(opener)) if remaining.iter().any(|example| !example.draft) => {
            ranges.extend(
                outline.blocks[opener]
                    .properties
                    .iter()
                    .filter(|property| property.key.eq_ignore_ascii_case("draft"))
                    .map(|property| property.line..property.line + 1),
            );
        }
        (Removal::Items, opener) if remaining.is_empty() => {
            if let Some(opener) = opener {
                let own = outline.blocks[opener].first_line
                    ..outline.blocks[opener].subtree_end.min(segment.end);
                ranges.push(without_trailing_blanks(outline, own));
            }
            // An example page left with nothing at all on it was made for the drafts; one that
            // holds anything else (a person's blank lines too) stays.
            if let Some(example_page) = segment.embed.as_deref().and_then(|name| graph.page(name))
                && example_page.text.is_empty()
            {
                edits.push(PageText {
                    path: example_page.path.clone(),
                    text: None,
                });
            }
        }
        _ => {}
    }
    if !ranges.is_empty() {
        edits.push(PageText {
            path: page.path.clone(),
            text: Some(remove_lines(page, &mut ranges)),
        });
    }
    edits
}

/// The `generated-by::` value of a draft: tool, provider and model.
pub fn generated_by(provider: &str, model: &str) -> String {
    let model = Path::new(model)
        .file_name()
        .map_or(model.to_string(), |name| {
            name.to_string_lossy().into_owned()
        });
    format!(
        "inncopilot {} via {provider} {model}",
        env!("CARGO_PKG_VERSION")
    )
}
