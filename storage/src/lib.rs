//! Tripod's database: everything that touches the data directory.
//!
//! Reading order: [`codec`] (byte helpers), [`labels`] (label sets and matchers), [`wal`] (the
//! write-ahead log shared by every signal), [`metrics`] (the time-series store), [`logs`] (the
//! logs store), [`traces`] (the traces store), then
//! [`Storage`], which owns the data directory, its lock, the WAL and the stores, replays the WAL
//! into the stores when it opens, and runs their maintenance.
//!
//! This crate knows nothing of HTTP, gRPC, protobuf, JSON, async runtimes or query languages.

pub mod codec;
pub mod labels;
pub mod logs;
pub mod metrics;
mod prefetch;
pub mod traces;
pub mod wal;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use logs::{LogsError, LogsOptions, LogsStore};
use metrics::{MetricsError, MetricsOptions, MetricsStore};
use traces::{TracesError, TracesOptions, TracesStore};

use wal::{RecordKind, ReplayStats, Wal, WalError, WalOptions};

/// The WAL record kinds of every signal, in one place so that no two engines share one.
pub mod record_kinds {
    use super::RecordKind;

    const fn kind(value: u8) -> RecordKind {
        match RecordKind::new(value) {
            Some(kind) => kind,
            None => panic!("record kind 0 is reserved"),
        }
    }

    /// Metrics: new series (reference and labels).
    pub const METRICS_SERIES: RecordKind = kind(1);
    /// Metrics: float samples by series reference.
    pub const METRICS_SAMPLES: RecordKind = kind(2);
    /// Metrics: exemplars by series reference.
    pub const METRICS_EXEMPLARS: RecordKind = kind(3);
    /// Metrics: type, help and unit of metric names.
    pub const METRICS_METADATA: RecordKind = kind(4);

    /// Whether a kind belongs to the metrics store.
    pub fn is_metrics(kind: RecordKind) -> bool {
        (1..=15).contains(&kind.as_u8())
    }

    /// Logs: new streams (reference, tenant and labels).
    pub const LOGS_STREAMS: RecordKind = kind(16);
    /// Logs: runs of entries by stream reference and sequence number.
    pub const LOGS_ENTRIES: RecordKind = kind(17);

    /// Whether a kind belongs to the logs store.
    pub fn is_logs(kind: RecordKind) -> bool {
        (16..=31).contains(&kind.as_u8())
    }

    /// Traces: one append's spans (sequence number, tenant, resources, scopes, spans), every
    /// key and value inline: the layout written before string tables, still replayed.
    pub const TRACES_SPANS_INLINE: RecordKind = kind(32);
    /// Traces: one append's spans (sequence number, tenant, string table, resources, scopes,
    /// spans), the keys and repeated string values of span attributes through the table.
    pub const TRACES_SPANS: RecordKind = kind(33);

    /// Whether a kind belongs to the traces store.
    pub fn is_traces(kind: RecordKind) -> bool {
        (32..=47).contains(&kind.as_u8())
    }
}

/// How the storage is opened.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// Write-ahead log options.
    pub wal: WalOptions,
    /// Metrics store options.
    pub metrics: MetricsOptions,
    /// Logs store options.
    pub logs: LogsOptions,
    /// Traces store options.
    pub traces: TracesOptions,
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
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Logs(#[from] LogsError),
    #[error(transparent)]
    Traces(#[from] TracesError),
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub metrics_blocks_cut: u64,
    pub metrics_compactions: u64,
    pub metrics_blocks_deleted: u64,
    /// Log chunks flushed to files.
    pub logs_chunks_flushed: u64,
    pub logs_files_written: u64,
    pub logs_compactions: u64,
    /// Log files deleted or rewritten by retention.
    pub logs_files_deleted: u64,
    pub logs_files_rewritten: u64,
    /// Trace heads cut into blocks, trace blocks merged by compaction, deleted by retention.
    pub traces_blocks_cut: u64,
    pub traces_compactions: u64,
    pub traces_blocks_deleted: u64,
    /// WAL segments replaced by a checkpoint.
    pub wal_segments_removed: u64,
}

/// The open database. Dropping it without [`Storage::close`] is what a crash looks like: nothing
/// acknowledged is lost, but the last interval of WAL bytes may not be synced to disk.
pub struct Storage {
    /// The data directory.
    dir: PathBuf,
    /// Held (locked) for the life of the storage so two processes never share a directory.
    _lock: File,
    /// The write-ahead log every signal appends to.
    wal: Arc<Wal>,
    /// What the replay at open found.
    replay: ReplayStats,
    /// The metrics store (`dir/metrics`).
    metrics: MetricsStore,
    /// The logs store (`dir/logs`).
    logs: LogsStore,
    /// The traces store (`dir/traces`).
    traces: TracesStore,
    /// Serialises maintenance passes (block cuts and WAL checkpoints).
    maintenance: Mutex<()>,
}

impl Storage {
    /// Locks `dir` (creating it if needed), opens every store, then opens the WAL under
    /// `dir/wal` and replays it into them.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<Storage, StorageError> {
        fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir { path: dir.to_path_buf(), source })?;
        let lock = lock_dir(dir)?;
        let metrics = MetricsStore::open(&dir.join("metrics"), options.metrics)?;
        let logs = LogsStore::open(&dir.join("logs"), options.logs)?;
        let traces = TracesStore::open(&dir.join("traces"), options.traces)?;
        let (wal, replay) = Wal::open(&dir.join("wal"), options.wal, |kind, payload| {
            if record_kinds::is_metrics(kind) {
                metrics.replay_record(kind, payload);
            } else if record_kinds::is_logs(kind) {
                logs.replay_record(kind, payload);
            } else if record_kinds::is_traces(kind) {
                traces.replay_record(kind, payload);
            }
            // A record of a kind no store claims is counted by the replay and otherwise ignored.
        })?;
        let wal = Arc::new(wal);
        metrics.attach_wal(wal.clone());
        logs.attach_wal(wal.clone());
        traces.attach_wal(wal.clone());
        Ok(Storage {
            dir: dir.to_path_buf(),
            _lock: lock,
            wal,
            replay,
            metrics,
            logs,
            traces,
            maintenance: Mutex::new(()),
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

    /// The metrics store.
    pub fn metrics(&self) -> &MetricsStore {
        &self.metrics
    }

    /// The logs store.
    pub fn logs(&self) -> &LogsStore {
        &self.logs
    }

    /// The traces store.
    pub fn traces(&self) -> &TracesStore {
        &self.traces
    }

    /// What the WAL replay at open found.
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.replay
    }

    /// Cuts blocks and flushes log chunks, compacts, applies retention, and checkpoints the WAL
    /// when a block cut or enough flushed logs made part of it obsolete. Blocking: run it off
    /// the async runtime, periodically.
    pub fn maintenance(&self) -> Result<MaintenanceReport, StorageError> {
        let _serial = self.maintenance.lock().unwrap_or_else(|poison| poison.into_inner());
        let outcome = self.metrics.maintenance()?;
        let logs = self.logs.maintenance()?;
        let traces = self.traces.maintenance()?;
        let mut report = MaintenanceReport {
            metrics_blocks_cut: outcome.blocks_cut,
            metrics_compactions: outcome.compactions,
            metrics_blocks_deleted: outcome.blocks_deleted,
            logs_chunks_flushed: logs.chunks_flushed,
            logs_files_written: logs.files_written,
            logs_compactions: logs.compactions,
            logs_files_deleted: logs.files_deleted,
            logs_files_rewritten: logs.files_rewritten,
            traces_blocks_cut: traces.blocks_cut,
            traces_compactions: traces.compactions,
            traces_blocks_deleted: traces.blocks_deleted,
            wal_segments_removed: 0,
        };
        if outcome.checkpoint_below.is_some() || logs.checkpoint_wanted || traces.checkpoint_wanted {
            // Without a block cut, no metrics sample is obsolete: i64::MIN keeps them all.
            report.wal_segments_removed = self.checkpoint_wal(outcome.checkpoint_below.unwrap_or(i64::MIN))?;
        }
        Ok(report)
    }

    /// Replaces the closed WAL segments by a checkpoint of what they hold that is still needed:
    /// metrics records are filtered by the metrics store, logs records by the logs store,
    /// traces records by the traces store; other kinds are kept as they are.
    ///
    /// Trace heads hold the bulk of what is kept, so the checkpoint ends before the oldest
    /// segment a trace head still needs when that still replaces a segment: the heads' records
    /// stay in their segments instead of being copied. Otherwise (a head that has pinned the
    /// oldest segment since the last checkpoint) it covers every closed segment.
    fn checkpoint_wal(&self, metrics_below: i64) -> Result<u64, StorageError> {
        let closed = self.wal.cut()?;
        let closed = match (self.traces.oldest_needed_wal_segment(), self.wal.oldest_segment()?) {
            (Some(needed), Some(oldest)) if needed > oldest && needed <= closed => needed - 1,
            _ => closed,
        };
        let mut kept: Vec<(RecordKind, Vec<u8>)> = Vec::new();
        self.wal.read_upto(closed, |kind, payload| {
            if record_kinds::is_metrics(kind) {
                if let Some(bytes) = self.metrics.checkpoint_record(kind, payload, metrics_below) {
                    kept.push((kind, bytes));
                }
            } else if record_kinds::is_logs(kind) {
                if let Some(bytes) = self.logs.checkpoint_record(kind, payload) {
                    kept.push((kind, bytes));
                }
            } else if record_kinds::is_traces(kind) {
                if let Some(bytes) = self.traces.checkpoint_record(kind, payload) {
                    kept.push((kind, bytes));
                }
            } else {
                kept.push((kind, payload.to_vec()));
            }
        })?;
        let stats = self.wal.checkpoint(closed, kept.iter().map(|(kind, bytes)| (*kind, bytes.as_slice())))?;
        self.logs.note_checkpoint();
        self.traces.note_checkpoint();
        Ok(stats.segments_removed)
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
    let lock_error = |source| StorageError::Lock { path: dir.to_path_buf(), source };
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path: dir.to_path_buf(), lock: path }),
        Err(TryLockError::Error(source)) => Err(lock_error(source)),
    }
}
