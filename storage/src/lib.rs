//! Tripod's database: everything that touches the data directory.
//!
//! Reading order: [`wal`] (the write-ahead log shared by every signal), then [`Storage`], which
//! owns the data directory, its lock and the WAL, and replays the WAL when it opens. The metrics,
//! logs and traces engines live beside `wal` and are reached through `Storage`.
//!
//! This crate knows nothing of HTTP, gRPC, protobuf, JSON, async runtimes or query languages.

pub mod wal;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use wal::{ReplayStats, Wal, WalError, WalOptions};

/// How the storage is opened.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// Write-ahead log options.
    pub wal: WalOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another process (lock file {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// The open database. Dropping it without [`Storage::close`] is what a crash looks like: nothing
/// acknowledged is lost, but the last interval of WAL bytes may not be synced to disk.
pub struct Storage {
    /// The data directory.
    dir: PathBuf,
    /// Held (locked) for the life of the storage so two processes never share a directory.
    _lock: File,
    /// The write-ahead log every signal appends to.
    wal: Wal,
    /// What the replay at open found.
    replay: ReplayStats,
}

impl Storage {
    /// Locks `dir` (creating it if needed), opens the WAL under `dir/wal` and replays it.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<Storage, StorageError> {
        fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let (wal, replay) = Wal::open(&dir.join("wal"), options.wal, |_kind, _payload| {
            // Record kinds are dispatched to the signal engines as they are added; a record of a
            // kind nobody claims is counted by the replay and otherwise ignored.
        })?;
        Ok(Storage {
            dir: dir.to_path_buf(),
            _lock: lock,
            wal,
            replay,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// What the WAL replay at open found.
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.replay
    }

    /// Syncs everything to disk and refuses further writes. The directory lock is released when
    /// the value is dropped.
    pub fn close(&self) -> Result<(), StorageError> {
        self.wal.close()?;
        Ok(())
    }
}

fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join("LOCK");
    let lock_error = |source| StorageError::Lock {
        path: dir.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: dir.to_path_buf(),
            lock: path,
        }),
        Err(TryLockError::Error(source)) => Err(lock_error(source)),
    }
}
