//! What the integration tests share: private copies of fixture graphs to write into, and draft
//! items to write.

#![allow(dead_code)] // each test file uses its own part

pub mod mock;

use std::path::Path;

use inncopilot::draft::Item;

/// A copy of `sample-graph/` in a temporary folder (pages, `logseq/`), for tests that write.
pub fn sample_graph_copy() -> std::io::Result<tempfile::TempDir> {
    fixture_copy("sample-graph")
}

/// A copy of a folder of the repository (`tests/fixtures/shapes`, say) in a temporary folder.
pub fn fixture_copy(relative: &str) -> std::io::Result<tempfile::TempDir> {
    let folder = tempfile::tempdir()?;
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(relative),
        folder.path(),
    )?;
    Ok(folder)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Two plain draft items (no schema fields), as a model would give them.
pub fn draft_items() -> Vec<Item> {
    ["Night bakery tours", "Sourdough club"]
        .iter()
        .map(|name| Item {
            name: name.to_string(),
            description: format!("{name} for the early risers of the neighbourhood."),
            fields: serde_json::Map::new(),
        })
        .collect()
}
