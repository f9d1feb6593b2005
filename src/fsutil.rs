//! Writing files so that a reader (or a crash) never sees half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Write `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over the target. Creates the folder when needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_holding(path, bytes, true)?;
    temporary.persist(path).map_err(|error| error.error)?;
    sync_folder(folder_of(path));
    Ok(())
}

/// Write `bytes` to `path` atomically but without waiting for the disk: a reader never sees
/// half of it, but a power cut may lose it. For files whose loss costs nothing (a cache entry
/// is then a miss), written where waiting for the disk would hold up a request.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_holding(path, bytes, false)?;
    temporary.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// One file of [`write_atomic_all`]: its new bytes, or `None` to remove it.
#[derive(Clone, Copy)]
pub struct FileWrite<'a> {
    pub path: &'a Path,
    pub bytes: Option<&'a [u8]>,
}

/// Up to this many files are written and flushed at once: a flush mostly waits for the disk,
/// and waits overlap (on the 2-core machine of the benchmarks, 8 at once took a third of the
/// time per file of one at a time; 16 took longer again).
const PARALLEL_FLUSHES: usize = 8;

/// Write several files as [`write_atomic`] writes one, waiting for the disk less: every new
/// file is written to a temporary file and flushed first, several at once; then, only when all
/// of them are on disk, each is renamed over its target (or removed) in the given order, and
/// each folder is synced once. A failure before the renames leaves every target as it was.
/// Returns the path that failed with the error.
pub fn write_atomic_all(files: &[FileWrite<'_>]) -> Result<(), (PathBuf, std::io::Error)> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |error| (path, error)
    };
    let written: Vec<&FileWrite<'_>> = files.iter().filter(|file| file.bytes.is_some()).collect();
    let flush = |file: &&FileWrite<'_>| {
        temporary_holding(file.path, file.bytes.unwrap_or_default(), true).map_err(fail(file.path))
    };
    let panicked = |_| {
        let error = std::io::Error::other("a file writer panicked");
        (folder_of(files[0].path).to_path_buf(), error)
    };
    let mut temporaries = in_parallel(&written, flush)
        .map_err(panicked)?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let mut folders: Vec<&Path> = Vec::new();
    for file in files {
        match file.bytes {
            Some(_) => {
                let Some(temporary) = temporaries.next() else {
                    let error = std::io::Error::other("a temporary file went missing");
                    return Err((file.path.to_path_buf(), error));
                };
                temporary
                    .persist(file.path)
                    .map_err(|error| error.error)
                    .map_err(fail(file.path))?;
            }
            None => std::fs::remove_file(file.path).map_err(fail(file.path))?,
        }
        let folder = folder_of(file.path);
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    // A batch of drafts touches a folder per venture: their syncs overlap too.
    in_parallel(&folders, |folder| sync_folder(folder)).map_err(panicked)?;
    Ok(())
}

/// `work` on every item, up to [`PARALLEL_FLUSHES`] threads at once (the disk answers several
/// flushes about as fast as one); the results in the items' order, or `Err` when a thread
/// panicked.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> R + Sync,
) -> std::thread::Result<Vec<R>> {
    if items.len() < 2 {
        return Ok(items.iter().map(&work).collect());
    }
    let chunk = items.len().div_ceil(PARALLEL_FLUSHES.min(items.len()));
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|chunk| scope.spawn(move || chunk.iter().map(work).collect::<Vec<R>>()))
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for worker in workers {
            results.extend(worker.join()?);
        }
        Ok(results)
    })
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `bytes` in a temporary file next to `path` (the folder is made when needed), on disk when
/// `flush`.
fn temporary_holding(path: &Path, bytes: &[u8], flush: bool) -> std::io::Result<NamedTempFile> {
    let folder = folder_of(path);
    std::fs::create_dir_all(folder)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".inncopilot-")
        .suffix(".tmp")
        .tempfile_in(folder)?;
    temporary.write_all(bytes)?;
    if flush {
        temporary.as_file().sync_all()?;
    }
    Ok(temporary)
}

/// A rename is durable once its folder is synced (best effort: not every system can).
fn sync_folder(folder: &Path) {
    if let Ok(directory) = std::fs::File::open(folder) {
        let _ = directory.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_files_are_written_replaced_and_removed_in_one_go() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("old.md"), "old")?;
        std::fs::write(path("gone.md"), "gone")?;
        let names: Vec<String> = (0..20).map(|n| format!("deep/new-{n}.md")).collect();
        let paths: Vec<PathBuf> = names.iter().map(|name| path(name)).collect();
        let (old, gone) = (path("old.md"), path("gone.md"));
        let mut files: Vec<FileWrite<'_>> = vec![
            FileWrite {
                path: &old,
                bytes: Some(b"replaced"),
            },
            FileWrite {
                path: &gone,
                bytes: None,
            },
        ];
        files.extend(paths.iter().map(|path| FileWrite {
            path,
            bytes: Some(path.as_os_str().as_encoded_bytes()),
        }));
        write_atomic_all(&files).map_err(|(_, error)| error)?;
        assert_eq!(std::fs::read_to_string(&old)?, "replaced");
        assert!(!gone.exists());
        for path in &paths {
            assert_eq!(std::fs::read(path)?, path.as_os_str().as_encoded_bytes());
        }
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("deep"))?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }

    #[test]
    fn a_file_that_cannot_be_written_leaves_every_target_as_it_was() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = dir.path().join("first.md");
        std::fs::write(&first, "before")?;
        // A folder cannot be made where a file is.
        std::fs::write(dir.path().join("blocked"), "a file")?;
        let blocked = dir.path().join("blocked/second.md");
        let files = [
            FileWrite {
                path: &first,
                bytes: Some(b"after"),
            },
            FileWrite {
                path: &blocked,
                bytes: Some(b"never"),
            },
        ];
        let failed = write_atomic_all(&files).err().map(|(path, _)| path);
        assert_eq!(failed, Some(blocked), "the second file cannot be written");
        assert_eq!(std::fs::read_to_string(&first)?, "before");
        Ok(())
    }
}
