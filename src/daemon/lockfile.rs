//! The SQLite single-daemon lock: an exclusive advisory lock on `<database file>.lock`, held
//! for the daemon's life (the kernel drops it if the process dies), holding its pid.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another flagsync daemon{holder} is already running on the database {database} (lock {lock} is held): \
         stop it first, or share a PostgreSQL database to run several"
    )]
    Held { database: String, lock: String, holder: String },
    #[error("cannot lock {lock}: {source}")]
    Io { lock: String, source: std::io::Error },
}

/// Held while the daemon runs; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The database file of a `sqlite:` URL, if it names one (not `:memory:`).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && !file.starts_with(":memory:")).then(|| PathBuf::from(file))
}

/// Locks the database of a `sqlite:` URL; `Ok(None)` for other databases.
pub fn lock_database(url: &str) -> Result<Option<FileLock>, LockError> {
    let Some(database) = sqlite_file(url) else { return Ok(None) };
    let mut name = database.clone().into_os_string();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |source| LockError::Io { lock: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(LockError::Held {
                database: database.display().to_string(),
                lock: path.display().to_string(),
                holder,
            });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(Some(FileLock { _file: file, path }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("f.db").display());
        let first = lock_database(&url).unwrap().unwrap();
        let error = lock_database(&url).unwrap_err().to_string();
        assert!(error.contains("f.db"), "{error}");
        assert!(error.contains(&format!("pid {}", std::process::id())), "{error}");
        drop(first);
        assert!(lock_database(&url).unwrap().is_some());
        assert!(lock_database("postgres://x@localhost/db").unwrap().is_none());
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
