//! The write-ahead log shared by all three signals.
//!
//! A WAL is a directory of numbered segment files (`00000001`, `00000002`, ...) plus at most one
//! checkpoint directory (`checkpoint.NNNNNNNN`). Writers append batches of records; a batch is
//! acknowledged once it has been handed to the operating system (and, with [`SyncPolicy::Always`],
//! once it is on disk). Opening a WAL replays the checkpoint and every later segment through a
//! callback, repairs a torn tail, and starts a fresh segment for new appends.
//!
//! The WAL knows nothing of what its records mean: each record is a [`RecordKind`] byte and an
//! opaque payload. The byte layout is in [`format`] and `docs/format/wal.md`.

pub mod format;
mod replay;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use format::{MAX_RECORD_PAYLOAD_BYTES, RecordKind};
pub use replay::ReplayStats;

use format::{SEGMENT_HEADER_LEN, encode_record, encode_segment_header, framed_len};

/// When appended bytes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before every append returns; concurrent appenders share one fsync.
    Always,
    /// fsync at most this long after an append, driven by calls to [`Wal::sync`]. A process
    /// crash loses nothing; a machine crash loses at most one interval.
    Interval(Duration),
    /// Leave write-back to the operating system; fsync only on close.
    Never,
}

/// How a WAL is written.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and a new one started once appending would grow it past this size.
    /// A batch larger than this gets a segment of its own.
    pub segment_size_bytes: u64,
    /// When appended bytes are forced to disk.
    pub sync: SyncPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size_bytes: 128 << 20, sync: SyncPolicy::Interval(Duration::from_secs(1)) }
    }
}

/// A place in the log: the end of some appended record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPosition {
    pub segment: u32,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal io error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("wal segment {path} has format version {version}, newer than this build reads")]
    UnsupportedVersion { path: PathBuf, version: u16 },
    #[error("wal checkpoint {path} is corrupt: {problem}")]
    CorruptCheckpoint { path: PathBuf, problem: String },
    #[error("wal record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    #[error("wal is closed")]
    Closed,
    #[error("wal is unusable after a failed write: {0}")]
    Poisoned(String),
    #[error("cannot checkpoint up to segment {upto}: the active segment is {active}")]
    CheckpointOfActiveSegment { upto: u32, active: u32 },
}

impl WalError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
        let context = context.into();
        move |source| WalError::Io { context, source }
    }
}

/// Counters a WAL keeps for self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub records_appended: u64,
    pub bytes_appended: u64,
    pub fsyncs: u64,
    pub active_segment: u32,
    pub segments_created: u64,
    pub checkpoints: u64,
}

/// What [`Wal::checkpoint`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub records: u64,
    pub bytes: u64,
    pub segments_removed: u64,
}

/// An open write-ahead log. Appends from many threads are safe; each batch lands contiguously.
pub struct Wal {
    /// The WAL directory.
    dir: PathBuf,
    /// Segment size and sync policy.
    options: WalOptions,
    /// The active segment and the encoding buffer; held for the duration of one write.
    writer: Mutex<Writer>,
    /// Everything up to this position is on disk. Held while an fsync runs, so appenders that
    /// queue behind it find their bytes already synced (group commit).
    synced: Mutex<WalPosition>,
    /// Self-metrics, updated once per batch.
    counters: Counters,
}

struct Writer {
    /// Index of the segment being appended to.
    segment: u32,
    /// The active segment file; shared so an fsync can run without the writer lock.
    file: Arc<File>,
    /// Bytes in the active segment, header included.
    offset: u64,
    /// Reused buffer the batch is framed into, so one batch is one write call.
    buffer: Vec<u8>,
    /// Set when a failed write could not be rolled back: the segment's tail is unknown, so no
    /// further append may follow it.
    poisoned: Option<String>,
    /// Set by [`Wal::close`].
    closed: bool,
}

#[derive(Default)]
struct Counters {
    records_appended: AtomicU64,
    bytes_appended: AtomicU64,
    fsyncs: AtomicU64,
    segments_created: AtomicU64,
    checkpoints: AtomicU64,
}

/// Buffers bigger than this are released after a batch instead of kept for reuse.
const MAX_RETAINED_BUFFER_BYTES: usize = 8 << 20;

impl Wal {
    /// Opens (or creates) the WAL in `dir`, replays every record through `on_record` in append
    /// order, repairs a torn tail, and starts a new segment for appends.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        on_record: impl FnMut(RecordKind, &[u8]),
    ) -> Result<(Wal, ReplayStats), WalError> {
        fs::create_dir_all(dir).map_err(WalError::io(format!("creating {}", dir.display())))?;
        let stats = replay::replay_dir(dir, on_record)?;
        let segment = stats.next_segment;
        let file = create_segment(dir, segment)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            options,
            writer: Mutex::new(Writer {
                segment,
                file: Arc::new(file),
                offset: SEGMENT_HEADER_LEN as u64,
                buffer: Vec::new(),
                poisoned: None,
                closed: false,
            }),
            synced: Mutex::new(WalPosition { segment, offset: SEGMENT_HEADER_LEN as u64 }),
            counters: Counters::default(),
        };
        wal.counters.segments_created.fetch_add(1, Ordering::Relaxed);
        Ok((wal, stats))
    }

    /// The directory this WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options this WAL was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Appends one record. See [`Wal::append`].
    pub fn append_one(&self, kind: RecordKind, payload: &[u8]) -> Result<WalPosition, WalError> {
        self.append(&[(kind, payload)])
    }

    /// Appends a batch of records contiguously and returns the position after the last one.
    ///
    /// When this returns `Ok`, the bytes are in the operating system's hands (a process crash
    /// cannot lose them) and, under [`SyncPolicy::Always`], on disk. On `Err` nothing of the
    /// batch is in the log.
    pub fn append(&self, records: &[(RecordKind, &[u8])]) -> Result<WalPosition, WalError> {
        let mut batch_len = 0usize;
        for (_, payload) in records {
            if payload.len() > MAX_RECORD_PAYLOAD_BYTES {
                return Err(WalError::RecordTooLarge { len: payload.len(), max: MAX_RECORD_PAYLOAD_BYTES });
            }
            batch_len += framed_len(payload.len());
        }
        if records.is_empty() {
            return self.position();
        }

        let position = {
            let mut writer = self.lock_writer();
            writer.check_usable()?;
            let batch_end = writer.offset + batch_len as u64;
            if writer.offset > SEGMENT_HEADER_LEN as u64 && batch_end > self.options.segment_size_bytes {
                self.rotate(&mut writer)?;
            }
            self.write_batch(&mut writer, records, batch_len)?
        };
        self.counters.records_appended.fetch_add(records.len() as u64, Ordering::Relaxed);
        self.counters.bytes_appended.fetch_add(batch_len as u64, Ordering::Relaxed);

        if self.options.sync == SyncPolicy::Always {
            self.sync_to(position)?;
        }
        Ok(position)
    }

    fn write_batch(
        &self,
        writer: &mut Writer,
        records: &[(RecordKind, &[u8])],
        batch_len: usize,
    ) -> Result<WalPosition, WalError> {
        let mut buffer = std::mem::take(&mut writer.buffer);
        buffer.clear();
        buffer.reserve(batch_len);
        for (kind, payload) in records {
            encode_record(&mut buffer, *kind, payload);
        }
        let written = (&*writer.file).write_all(&buffer);
        if buffer.capacity() <= MAX_RETAINED_BUFFER_BYTES {
            writer.buffer = buffer;
        }
        if let Err(error) = written {
            // Take the partial batch back out so the next append does not follow garbage.
            if let Err(rollback) = writer.file.set_len(writer.offset) {
                writer.poisoned = Some(format!("write failed ({error}) and could not be rolled back ({rollback})"));
            }
            return Err(WalError::Io { context: format!("appending to segment {}", writer.segment), source: error });
        }
        writer.offset += batch_len as u64;
        Ok(WalPosition { segment: writer.segment, offset: writer.offset })
    }

    /// The position after the last appended record.
    pub fn position(&self) -> Result<WalPosition, WalError> {
        let writer = self.lock_writer();
        writer.check_usable()?;
        Ok(WalPosition { segment: writer.segment, offset: writer.offset })
    }

    /// Forces everything appended so far to disk. Cheap when nothing was appended since the last
    /// sync. Called by the owner's timer under [`SyncPolicy::Interval`].
    pub fn sync(&self) -> Result<(), WalError> {
        let position = {
            let writer = self.lock_writer();
            WalPosition { segment: writer.segment, offset: writer.offset }
        };
        self.sync_to(position)
    }

    fn sync_to(&self, position: WalPosition) -> Result<(), WalError> {
        let mut synced = self.synced.lock().unwrap_or_else(|poison| poison.into_inner());
        if *synced >= position {
            return Ok(());
        }
        // Segments before the active one were synced when they were closed, so syncing the
        // active file covers everything up to its current end.
        let (file, end) = {
            let writer = self.lock_writer();
            (writer.file.clone(), WalPosition { segment: writer.segment, offset: writer.offset })
        };
        file.sync_data().map_err(WalError::io(format!("syncing segment {}", end.segment)))?;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        *synced = end;
        Ok(())
    }

    /// Closes the active segment and starts a new one. Returns the index of the closed segment,
    /// which a checkpoint may then cover.
    pub fn cut(&self) -> Result<u32, WalError> {
        let mut writer = self.lock_writer();
        writer.check_usable()?;
        let closed = writer.segment;
        self.rotate(&mut writer)?;
        Ok(closed)
    }

    fn rotate(&self, writer: &mut Writer) -> Result<(), WalError> {
        if self.options.sync != SyncPolicy::Never {
            writer.file.sync_data().map_err(WalError::io(format!("syncing segment {}", writer.segment)))?;
            self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let next = writer.segment + 1;
        let file = create_segment(&self.dir, next)?;
        writer.file = Arc::new(file);
        writer.segment = next;
        writer.offset = SEGMENT_HEADER_LEN as u64;
        self.counters.segments_created.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces segments `..=upto` by a checkpoint holding `records`: the records of those
    /// segments that are still needed, as decided by the caller. The checkpoint is written to a
    /// temporary directory, synced and renamed into place before any segment is deleted, so a
    /// crash at any point leaves either the old segments or the complete checkpoint.
    pub fn checkpoint<'a>(
        &self,
        upto: u32,
        records: impl IntoIterator<Item = (RecordKind, &'a [u8])>,
    ) -> Result<CheckpointStats, WalError> {
        let active = self.position()?.segment;
        if upto >= active {
            return Err(WalError::CheckpointOfActiveSegment { upto, active });
        }
        let final_dir = self.dir.join(checkpoint_name(upto));
        let temp_dir = self.dir.join(format!("{}.tmp", checkpoint_name(upto)));
        if temp_dir.exists() {
            fs::remove_dir_all(&temp_dir).map_err(WalError::io(format!("removing {}", temp_dir.display())))?;
        }
        fs::create_dir(&temp_dir).map_err(WalError::io(format!("creating {}", temp_dir.display())))?;

        let mut stats = CheckpointStats::default();
        let segment_path = temp_dir.join(segment_name(0));
        let write_err = WalError::io(format!("writing {}", segment_path.display()));
        let file = File::create(&segment_path).map_err(WalError::io(format!("creating {}", segment_path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut frame = Vec::new();
        let written: io::Result<()> = (|| {
            out.write_all(&encode_segment_header(0))?;
            for (kind, payload) in records {
                if payload.len() > MAX_RECORD_PAYLOAD_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("checkpoint record of {} bytes is too large", payload.len()),
                    ));
                }
                frame.clear();
                encode_record(&mut frame, kind, payload);
                out.write_all(&frame)?;
                stats.records += 1;
                stats.bytes += frame.len() as u64;
            }
            let file = out.into_inner().map_err(|error| error.into_error())?;
            file.sync_all()
        })();
        written.map_err(write_err)?;
        sync_dir(&temp_dir)?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(WalError::io(format!("removing {}", final_dir.display())))?;
        }
        fs::rename(&temp_dir, &final_dir).map_err(WalError::io(format!("renaming {}", temp_dir.display())))?;
        sync_dir(&self.dir)?;

        // The checkpoint is durable; what it replaces can go.
        for entry in replay::list_dir(&self.dir)? {
            match entry {
                replay::DirEntry::Segment { index, path } if index <= upto => {
                    fs::remove_file(&path).map_err(WalError::io(format!("removing {}", path.display())))?;
                    stats.segments_removed += 1;
                }
                replay::DirEntry::Checkpoint { upto: older, path } if older < upto => {
                    fs::remove_dir_all(&path).map_err(WalError::io(format!("removing {}", path.display())))?;
                }
                _ => {}
            }
        }
        sync_dir(&self.dir)?;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            upto,
            records = stats.records,
            bytes = stats.bytes,
            segments_removed = stats.segments_removed,
            "wal checkpoint written"
        );
        Ok(stats)
    }

    /// The lowest segment still in the log (not replaced by a checkpoint yet), if any.
    pub fn oldest_segment(&self) -> Result<Option<u32>, WalError> {
        Ok(replay::list_dir(&self.dir)?
            .into_iter()
            .filter_map(|entry| match entry {
                replay::DirEntry::Segment { index, .. } => Some(index),
                _ => None,
            })
            .min())
    }

    /// Reads, without repairing anything, the records of the checkpoint and of every segment up
    /// to and including `upto`, in order: the input of a new checkpoint. Those segments are
    /// closed, so this runs beside appends.
    pub fn read_upto(&self, upto: u32, on_record: impl FnMut(RecordKind, &[u8])) -> Result<(), WalError> {
        replay::read_upto(&self.dir, upto, on_record)
    }

    /// Syncs everything and refuses further appends. Idempotent.
    pub fn close(&self) -> Result<(), WalError> {
        let position = {
            let mut writer = self.lock_writer();
            if writer.closed {
                return Ok(());
            }
            writer.closed = true;
            WalPosition { segment: writer.segment, offset: writer.offset }
        };
        self.sync_to(position)
    }

    /// Counters for self-metrics.
    pub fn stats(&self) -> WalStats {
        let active_segment = self.lock_writer().segment;
        WalStats {
            records_appended: self.counters.records_appended.load(Ordering::Relaxed),
            bytes_appended: self.counters.bytes_appended.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
            active_segment,
            segments_created: self.counters.segments_created.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave a half-written batch behind (the offset is
        // only advanced after a complete write), so the state is still consistent.
        self.writer.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Writer {
    fn check_usable(&self) -> Result<(), WalError> {
        if self.closed {
            return Err(WalError::Closed);
        }
        if let Some(reason) = &self.poisoned {
            return Err(WalError::Poisoned(reason.clone()));
        }
        Ok(())
    }
}

pub(crate) fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

pub(crate) fn checkpoint_name(upto: u32) -> String {
    format!("checkpoint.{upto:08}")
}

/// Creates segment `index` with its header, durable (file and directory entry) before return.
fn create_segment(dir: &Path, index: u32) -> Result<File, WalError> {
    let path = dir.join(segment_name(index));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(WalError::io(format!("creating {}", path.display())))?;
    file.write_all(&encode_segment_header(index))
        .and_then(|()| file.sync_all())
        .map_err(WalError::io(format!("writing header of {}", path.display())))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Makes directory entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(WalError::io(format!("syncing directory {}", dir.display())))
}
