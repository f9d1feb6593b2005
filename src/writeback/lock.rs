//! One writer per graph: an advisory lock on `<graph>/.inncopilot/lock`.
//!
//! The lock is the operating system's file lock (`flock`), not the file's existence: it goes away
//! with the process however it ends (a `kill -9` included), so a crashed run never leaves a graph
//! locked. The file's text says who holds it, for the message the next process shows.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::Error;

/// Held while a process writes a graph; released when dropped.
#[derive(Debug)]
pub struct GraphLock {
    // Kept open: closing the file releases the lock.
    _file: File,
}

impl GraphLock {
    /// Take the graph's lock, or fail at once with who holds it.
    pub fn acquire(graph_root: &Path) -> Result<GraphLock, Error> {
        let folder = graph_root.join(".inncopilot");
        let path = folder.join("lock");
        let io_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&folder).map_err(io_error)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked {
                    path,
                    holder: holder.trim().replace('\n', ", "),
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error(source)),
        }
        let holder = format!(
            "pid {}\nstarted {}\ncommand {}\n",
            std::process::id(),
            chrono::Utc::now().to_rfc3339(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(io_error)?;
        Ok(GraphLock { _file: file })
    }
}

/// Whether a writer holds the graph's lock now (a shared lock cannot be had while it does; the
/// probe lets go of it at once).
pub fn is_held(graph_root: &Path) -> bool {
    let path = graph_root.join(".inncopilot").join("lock");
    match OpenOptions::new().read(true).open(&path) {
        Ok(file) => match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_done() -> Result<(), Box<dyn std::error::Error>>
    {
        let graph = tempfile::tempdir()?;
        let first = GraphLock::acquire(graph.path())?;
        let second = GraphLock::acquire(graph.path());
        assert!(
            matches!(&second, Err(Error::Locked { holder, .. })
                if holder.contains(&format!("pid {}", std::process::id()))),
            "expected Locked, got {second:?}"
        );
        assert!(is_held(graph.path()));
        drop(first);
        assert!(!is_held(graph.path()));
        GraphLock::acquire(graph.path())?;
        Ok(())
    }
}
