//! What the integration tests share: a private copy of the sample graph to write into.

use std::path::Path;

/// A copy of `sample-graph/` in a temporary folder (pages, `logseq/`), for tests that write.
pub fn sample_graph_copy() -> std::io::Result<tempfile::TempDir> {
    let folder = tempfile::tempdir()?;
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-graph"),
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
