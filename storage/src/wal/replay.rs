//! Reading a WAL directory back: the checkpoint first, then every later segment in order, with
//! the repair rules a crash calls for.
//!
//! - A torn or corrupt record in the *last* segment is what a crash mid-write leaves: the file is
//!   truncated to the last whole record and replay ends there.
//! - Damage in an *earlier* segment cannot come from a crash of ours (a segment is synced before
//!   the next one starts): the rest of that segment is skipped, loudly, and replay goes on with
//!   the next one, so one bad sector does not throw away later acknowledged data.
//! - A segment or checkpoint written by a newer format version stops the open with an error and
//!   is never modified.
//! - A damaged checkpoint is an error: it was synced before it was renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{
    FrameProblem, HeaderProblem, MAX_RECORD_PAYLOAD_BYTES, RECORD_HEADER_LEN, RecordKind, SEGMENT_HEADER_LEN,
    decode_record, decode_segment_header, framed_len,
};
use super::{WalError, segment_name, sync_dir};

/// What a replay read, dropped and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// The checkpoint replayed first, if any (the last segment it covers).
    pub checkpoint: Option<u32>,
    /// Segments read after the checkpoint.
    pub segments: u64,
    /// Records handed to the callback, checkpoint records included.
    pub records: u64,
    /// Bytes of those records, framing included.
    pub bytes: u64,
    /// Bytes dropped because they were torn or corrupt.
    pub dropped_bytes: u64,
    /// Segments in which damage was found.
    pub damaged_segments: u64,
    /// Wall time of the replay.
    pub duration: Duration,
    /// The index the next segment must take.
    pub next_segment: u32,
}

/// How often a long replay reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub(crate) enum DirEntry {
    Segment {
        index: u32,
        path: PathBuf,
    },
    Checkpoint {
        upto: u32,
        path: PathBuf,
    },
    /// A checkpoint that was being written when the process stopped.
    Temporary {
        path: PathBuf,
    },
}

/// Lists the WAL files in `dir`, ignoring anything else.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<DirEntry>, WalError> {
    let context = || format!("listing {}", dir.display());
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(WalError::io(context()))? {
        let entry = entry.map_err(WalError::io(context()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(".tmp") {
            entries.push(DirEntry::Temporary { path });
        } else if let Some(upto) = name.strip_prefix("checkpoint.").and_then(parse_index) {
            entries.push(DirEntry::Checkpoint { upto, path });
        } else if let Some(index) = parse_index(name) {
            entries.push(DirEntry::Segment { index, path });
        }
    }
    Ok(entries)
}

fn parse_index(name: &str) -> Option<u32> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit()) { name.parse().ok() } else { None }
}

pub(crate) fn replay_dir(dir: &Path, mut on_record: impl FnMut(RecordKind, &[u8])) -> Result<ReplayStats, WalError> {
    let started = Instant::now();
    let mut stats = ReplayStats::default();
    let mut buffer = Vec::new();
    let mut segments = Vec::new();
    let mut checkpoints = Vec::new();
    for entry in list_dir(dir)? {
        match entry {
            DirEntry::Segment { index, path } => segments.push((index, path)),
            DirEntry::Checkpoint { upto, path } => checkpoints.push((upto, path)),
            DirEntry::Temporary { path } => {
                tracing::info!(path = %path.display(), "removing unfinished wal checkpoint");
                let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                removed.map_err(WalError::io(format!("removing {}", path.display())))?;
            }
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    checkpoints.sort_by_key(|(upto, _)| *upto);

    // Only the newest checkpoint counts; older ones and the segments it covers are leftovers of
    // a cleanup that a crash interrupted.
    if let Some((upto, path)) = checkpoints.pop() {
        replay_checkpoint(&path, &mut on_record, &mut stats, &mut buffer)?;
        stats.checkpoint = Some(upto);
        for (_, older) in checkpoints {
            fs::remove_dir_all(&older).map_err(WalError::io(format!("removing {}", older.display())))?;
        }
        let mut kept = Vec::with_capacity(segments.len());
        for (index, path) in segments {
            if index <= upto {
                fs::remove_file(&path).map_err(WalError::io(format!("removing {}", path.display())))?;
            } else {
                kept.push((index, path));
            }
        }
        segments = kept;
    }

    let last_position = segments.len().checked_sub(1);
    let mut previous: Option<u32> = None;
    let mut last_progress = Instant::now();
    for (position, (index, path)) in segments.iter().enumerate() {
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            tracing::info!(
                segment = position,
                of = segments.len(),
                records = stats.records,
                bytes = stats.bytes,
                "wal replay in progress"
            );
        }
        if let Some(previous) = previous
            && *index != previous + 1
        {
            tracing::warn!(after = previous, next = index, "wal segments are not contiguous");
        }
        previous = Some(*index);
        let is_last = Some(position) == last_position;
        replay_segment(*index, path, is_last, &mut on_record, &mut stats, &mut buffer)?;
        stats.segments += 1;
    }
    sync_dir(dir)?;

    stats.next_segment = 1;
    if let Some(upto) = stats.checkpoint {
        stats.next_segment = stats.next_segment.max(upto + 1);
    }
    if let Some((index, _)) = segments.last() {
        stats.next_segment = stats.next_segment.max(index + 1);
    }
    stats.duration = started.elapsed();
    let seconds = stats.duration.as_secs_f64().max(1e-9);
    tracing::info!(
        checkpoint = ?stats.checkpoint,
        segments = stats.segments,
        records = stats.records,
        bytes = stats.bytes,
        dropped_bytes = stats.dropped_bytes,
        duration_ms = stats.duration.as_millis() as u64,
        mb_per_sec = format_args!("{:.1}", stats.bytes as f64 / seconds / 1e6),
        "wal replayed"
    );
    Ok(stats)
}

/// Reads the newest checkpoint and the segments after it up to `upto`, repairing nothing.
pub(crate) fn read_upto(dir: &Path, upto: u32, mut on_record: impl FnMut(RecordKind, &[u8])) -> Result<(), WalError> {
    let mut stats = ReplayStats::default();
    let mut buffer = Vec::new();
    let mut segments = Vec::new();
    let mut checkpoint: Option<(u32, PathBuf)> = None;
    for entry in list_dir(dir)? {
        match entry {
            DirEntry::Segment { index, path } if index <= upto => segments.push((index, path)),
            DirEntry::Checkpoint { upto: covered, path }
                if covered <= upto && checkpoint.as_ref().is_none_or(|(newest, _)| covered > *newest) =>
            {
                checkpoint = Some((covered, path));
            }
            _ => {}
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    let after = match &checkpoint {
        Some((covered, path)) => {
            replay_checkpoint(path, &mut on_record, &mut stats, &mut buffer)?;
            *covered
        }
        None => 0,
    };
    for (index, path) in segments.iter().filter(|(index, _)| *index > after) {
        replay_segment(*index, path, false, &mut on_record, &mut stats, &mut buffer)?;
    }
    Ok(())
}

fn replay_checkpoint(
    dir: &Path,
    on_record: &mut impl FnMut(RecordKind, &[u8]),
    stats: &mut ReplayStats,
    buffer: &mut Vec<u8>,
) -> Result<(), WalError> {
    let mut files = Vec::new();
    for entry in list_dir(dir)? {
        if let DirEntry::Segment { index, path } = entry {
            files.push((index, path));
        }
    }
    files.sort_by_key(|(index, _)| *index);
    for (index, path) in files {
        let corrupt = |problem: String| WalError::CorruptCheckpoint { path: path.clone(), problem };
        let read_error = WalError::io(format!("reading {}", path.display()));
        let mut file = File::open(&path).map_err(WalError::io(format!("opening {}", path.display())))?;
        let header = read_header(&mut file).map_err(WalError::io(format!("reading {}", path.display())))?;
        match decode_segment_header(&header, index) {
            Ok(()) => {}
            Err(HeaderProblem::UnsupportedVersion { version }) => {
                return Err(WalError::UnsupportedVersion { path: path.clone(), version });
            }
            Err(problem) => return Err(corrupt(problem.to_string())),
        }
        match scan_records(&mut file, buffer, on_record, stats).map_err(read_error)? {
            ScanEnd::Clean => {}
            ScanEnd::Damaged { offset, problem } => {
                return Err(corrupt(format!("{problem} at offset {offset}")));
            }
        }
    }
    Ok(())
}

fn replay_segment(
    index: u32,
    path: &Path,
    is_last: bool,
    on_record: &mut impl FnMut(RecordKind, &[u8]),
    stats: &mut ReplayStats,
    buffer: &mut Vec<u8>,
) -> Result<(), WalError> {
    let read_error = || WalError::io(format!("reading {}", path.display()));
    let mut file = File::open(path).map_err(WalError::io(format!("opening {}", path.display())))?;
    let file_len = file.metadata().map_err(read_error())?.len();
    let header = read_header(&mut file).map_err(read_error())?;
    match decode_segment_header(&header, index) {
        Ok(()) => {}
        Err(HeaderProblem::UnsupportedVersion { version }) => {
            return Err(WalError::UnsupportedVersion { path: path.to_path_buf(), version });
        }
        Err(problem) => {
            stats.damaged_segments += 1;
            stats.dropped_bytes += file_len;
            if is_last {
                // Only a crash while creating the segment leaves a bad header on the last one:
                // nothing after the header was acknowledged yet.
                tracing::warn!(
                    segment = %segment_name(index),
                    dropped_bytes = file_len,
                    problem = %problem,
                    "removing wal segment with a damaged header"
                );
                drop(file);
                fs::remove_file(path).map_err(WalError::io(format!("removing {}", path.display())))?;
            } else {
                tracing::error!(
                    segment = %segment_name(index),
                    dropped_bytes = file_len,
                    problem = %problem,
                    "skipping wal segment with a damaged header"
                );
            }
            return Ok(());
        }
    }

    if let ScanEnd::Damaged { offset, problem } =
        scan_records(&mut file, buffer, on_record, stats).map_err(read_error())?
    {
        let dropped = file_len.saturating_sub(offset);
        stats.damaged_segments += 1;
        stats.dropped_bytes += dropped;
        if is_last {
            drop(file);
            truncate_tail(index, path, offset, dropped, problem)?;
        } else {
            tracing::error!(
                segment = %segment_name(index),
                offset,
                dropped_bytes = dropped,
                problem = %problem,
                "skipping damaged rest of wal segment"
            );
        }
    }
    Ok(())
}

/// Reads up to a segment header's worth of bytes (fewer if the file is shorter).
fn read_header(file: &mut File) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
    file.by_ref().take(SEGMENT_HEADER_LEN as u64).read_to_end(&mut header)?;
    Ok(header)
}

/// How a scan of a segment's records ended.
enum ScanEnd {
    /// Every byte belonged to a whole, valid record.
    Clean,
    /// The bytes from `offset` on are not a valid record.
    Damaged { offset: u64, problem: FrameProblem },
}

/// Size of the replay read buffer; grown for a record larger than this.
const SCAN_BUFFER_BYTES: usize = 4 << 20;

/// Hands every record after the header to `on_record`, reading the file through `buffer` (reused
/// across files, so replay does not fault in fresh memory for every segment).
fn scan_records(
    file: &mut File,
    buffer: &mut Vec<u8>,
    on_record: &mut impl FnMut(RecordKind, &[u8]),
    stats: &mut ReplayStats,
) -> io::Result<ScanEnd> {
    let file_len = file.metadata()?.len();
    let wanted = file_len.min(SCAN_BUFFER_BYTES as u64) as usize;
    if buffer.len() < wanted.max(RECORD_HEADER_LEN) {
        buffer.resize(wanted.max(RECORD_HEADER_LEN), 0);
    }
    let mut offset = SEGMENT_HEADER_LEN as u64; // file offset of buffer[start]
    let (mut start, mut end) = (0usize, 0usize);
    let mut at_eof = false;
    loop {
        while start < end {
            match decode_record(&buffer[start..end]) {
                Ok(record) => {
                    on_record(record.kind, record.payload);
                    stats.records += 1;
                    stats.bytes += record.framed_len as u64;
                    start += record.framed_len;
                    offset += record.framed_len as u64;
                }
                Err(FrameProblem::TornHeader | FrameProblem::TornPayload) if !at_eof => break,
                Err(problem) => return Ok(ScanEnd::Damaged { offset, problem }),
            }
        }
        if at_eof {
            return Ok(ScanEnd::Clean);
        }
        // Keep the partial record, make room for the whole of it, and read more.
        buffer.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end >= RECORD_HEADER_LEN {
            let payload_len = u32::from_le_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]) as usize;
            let needed = framed_len(payload_len.min(MAX_RECORD_PAYLOAD_BYTES));
            if needed > buffer.len() {
                buffer.resize(needed, 0);
            }
        }
        let read = file.read(&mut buffer[end..])?;
        if read == 0 {
            at_eof = true;
        } else {
            end += read;
        }
    }
}

fn truncate_tail(index: u32, path: &Path, offset: u64, dropped: u64, problem: FrameProblem) -> Result<(), WalError> {
    tracing::warn!(
        segment = %segment_name(index),
        offset,
        dropped_bytes = dropped,
        problem = %problem,
        "truncating torn wal tail"
    );
    let file =
        OpenOptions::new().write(true).open(path).map_err(WalError::io(format!("opening {}", path.display())))?;
    file.set_len(offset).and_then(|()| file.sync_all()).map_err(WalError::io(format!("truncating {}", path.display())))
}
