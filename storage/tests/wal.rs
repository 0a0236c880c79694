//! Crash and recovery tests of the write-ahead log: every cut and every flipped byte of the tail
//! must leave exactly the valid prefix, repairs must leave a log that accepts appends, and
//! checkpoints must survive a crash at any step.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tripod_storage::wal::{RecordKind, SyncPolicy, Wal, WalError, WalOptions};
use tripod_storage::{Storage, StorageError, StorageOptions};

type Record = (u8, Vec<u8>);

fn kind(k: u8) -> RecordKind {
    RecordKind::new(k).expect("test kinds are nonzero")
}

fn options() -> WalOptions {
    WalOptions { segment_size_bytes: 1 << 20, sync: SyncPolicy::Never }
}

/// Opens the WAL in `dir` and returns it with every record it replayed.
fn open(dir: &Path, options: WalOptions) -> (Wal, Vec<Record>) {
    let mut seen = Vec::new();
    let (wal, _) = Wal::open(dir, options, |k, payload| seen.push((k.as_u8(), payload.to_vec()))).expect("wal opens");
    (wal, seen)
}

fn replay(dir: &Path) -> Vec<Record> {
    let (wal, seen) = open(dir, options());
    wal.close().unwrap();
    seen
}

/// Records of varied kinds and sizes (0 to a few hundred bytes) with recognisable contents.
fn sample_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let len = (i * 37) % 300;
            let payload = (0..len).map(|j| (i * 7 + j) as u8).collect();
            ((i % 5 + 1) as u8, payload)
        })
        .collect()
}

fn append_all(wal: &Wal, records: &[Record]) {
    for chunk in records.chunks(3) {
        let batch: Vec<(RecordKind, &[u8])> = chunk.iter().map(|(k, payload)| (kind(*k), payload.as_slice())).collect();
        wal.append(&batch).unwrap();
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    paths.sort();
    paths
}

/// Writes `records` into a fresh WAL and returns its directory, the segment holding them and
/// the end offset of every record in that segment.
fn written_wal(records: &[Record]) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = open(dir.path(), options());
    assert!(seen.is_empty());
    let mut ends = Vec::new();
    for (k, payload) in records {
        ends.push(wal.append_one(kind(*k), payload).unwrap().offset);
    }
    wal.close().unwrap();
    let segment = segments(dir.path()).pop().unwrap();
    (dir, segment, ends)
}

/// Copies a WAL directory so one damaged variant can be tried without touching the original.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

#[test]
fn records_round_trip_in_order_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(200);
    let (wal, _) = open(dir.path(), options());
    append_all(&wal, &records[..120]);
    wal.close().unwrap();
    let (wal, seen) = open(dir.path(), options());
    assert_eq!(seen, records[..120]);
    append_all(&wal, &records[120..]);
    wal.close().unwrap();
    assert_eq!(replay(dir.path()), records);
}

#[test]
fn records_larger_than_the_replay_buffer_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let big = |seed: u8| (0..5 << 20).map(|i: usize| (i as u8).wrapping_mul(seed)).collect::<Vec<u8>>();
    let records = vec![(1, b"small".to_vec()), (2, big(3)), (3, b"between".to_vec()), (4, big(7)), (5, big(11))];
    let (wal, _) = open(dir.path(), WalOptions { segment_size_bytes: 64 << 20, sync: SyncPolicy::Never });
    append_all(&wal, &records);
    wal.close().unwrap();
    assert!(replay(dir.path()) == records, "large records did not round-trip");
}

#[test]
fn every_cut_of_the_tail_replays_exactly_the_valid_prefix() {
    let records = sample_records(40);
    let (dir, segment, ends) = written_wal(&records);
    let full = fs::read(&segment).unwrap();
    let name = segment.file_name().unwrap().to_owned();
    // Cut at every byte from the start of the sixth-to-last record to the end.
    let first_cut = ends[ends.len() - 6] as usize;
    for cut in first_cut..=full.len() {
        let trial = copy_dir(dir.path());
        let path = trial.path().join(&name);
        fs::write(&path, &full[..cut]).unwrap();
        let surviving = ends.iter().filter(|end| **end as usize <= cut).count();
        let (wal, seen) = open(trial.path(), options());
        assert_eq!(seen, records[..surviving], "cut at byte {cut}");
        // The repaired log accepts appends, and they replay after the prefix.
        wal.append_one(kind(9), b"after repair").unwrap();
        wal.close().unwrap();
        let mut expected = records[..surviving].to_vec();
        expected.push((9, b"after repair".to_vec()));
        assert_eq!(replay(trial.path()), expected, "reopen after cut at byte {cut}");
        // The torn bytes are gone from the file itself.
        let ends_at = if surviving == 0 { 16 } else { ends[surviving - 1] };
        assert_eq!(fs::metadata(&path).unwrap().len(), ends_at, "cut at byte {cut}");
    }
}

#[test]
fn every_flipped_byte_of_the_tail_is_caught() {
    let records = sample_records(30);
    let (dir, segment, ends) = written_wal(&records);
    let full = fs::read(&segment).unwrap();
    let name = segment.file_name().unwrap().to_owned();
    let first_flip = ends[ends.len() - 4] as usize;
    for position in first_flip..full.len() {
        let trial = copy_dir(dir.path());
        let mut damaged = full.clone();
        damaged[position] ^= 0x40;
        fs::write(trial.path().join(&name), &damaged).unwrap();
        // The record containing the flipped byte and everything after it are dropped.
        let intact = ends.iter().filter(|end| (**end as usize) <= position).count();
        assert_eq!(replay(trial.path()), records[..intact], "flip at byte {position}");
    }
}

#[test]
fn damage_in_an_earlier_segment_skips_only_that_segment_rest() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(20);
    let (wal, _) = open(dir.path(), options());
    let mut first_segment_ends = Vec::new();
    for (k, payload) in &records[..10] {
        first_segment_ends.push(wal.append_one(kind(*k), payload).unwrap().offset);
    }
    wal.cut().unwrap();
    append_all(&wal, &records[10..]);
    wal.close().unwrap();

    let first = &segments(dir.path())[0];
    let mut bytes = fs::read(first).unwrap();
    let damaged_at = first_segment_ends[5] as usize + 12; // inside the seventh record
    bytes[damaged_at] ^= 0xff;
    fs::write(first, &bytes).unwrap();

    let mut expected = records[..6].to_vec();
    expected.extend_from_slice(&records[10..]);
    assert_eq!(replay(dir.path()), expected);
    // An earlier segment is not truncated: its bytes are left for inspection.
    assert_eq!(fs::read(first).unwrap(), bytes);
}

#[test]
fn a_segment_cut_inside_its_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(5);
    let (wal, _) = open(dir.path(), options());
    append_all(&wal, &records);
    wal.close().unwrap();
    // A crash right after creating the next segment's file: only part of its header exists.
    let next = dir.path().join("00000099");
    fs::write(&next, b"TWA").unwrap();
    assert_eq!(replay(dir.path()), records);
    assert!(!next.exists());
}

#[test]
fn a_newer_format_version_is_refused_and_left_untouched() {
    let records = sample_records(5);
    let (dir, segment, _) = written_wal(&records);
    let mut bytes = fs::read(&segment).unwrap();
    bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32c(&bytes[0..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segment, &bytes).unwrap();
    let error = Wal::open(dir.path(), options(), |_, _| {}).err().expect("open must fail");
    assert!(matches!(error, WalError::UnsupportedVersion { version: 2, .. }), "{error}");
    assert_eq!(fs::read(&segment).unwrap(), bytes);
}

/// Castagnoli CRC, computed bitwise so the test does not share the code under test.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn segment_header_uses_the_documented_layout() {
    let (_dir, segment, _) = written_wal(&[(3, b"abc".to_vec())]);
    let bytes = fs::read(&segment).unwrap();
    let index: u32 = segment.file_name().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(&bytes[0..4], b"TWAL");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 1);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), index);
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), crc32c(&bytes[0..12]));
    // Record: crc32c(len, kind, payload), len, kind, payload.
    let record = &bytes[16..];
    assert_eq!(u32::from_le_bytes(record[4..8].try_into().unwrap()), 3);
    assert_eq!(record[8], 3);
    assert_eq!(&record[9..12], b"abc");
    assert_eq!(u32::from_le_bytes(record[0..4].try_into().unwrap()), crc32c(&record[4..12]));
}

#[test]
fn segments_rotate_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let small = WalOptions { segment_size_bytes: 4096, sync: SyncPolicy::Never };
    let (wal, _) = open(dir.path(), small.clone());
    let records = sample_records(300);
    append_all(&wal, &records);
    wal.close().unwrap();
    let paths = segments(dir.path());
    assert!(paths.len() > 5, "expected several segments, got {}", paths.len());
    for path in &paths {
        // A segment may exceed the size only by holding a single batch.
        assert!(fs::metadata(path).unwrap().len() <= 4096, "{}", path.display());
    }
    assert_eq!(replay(dir.path()), records);
}

#[test]
fn a_record_over_the_limit_is_an_error_and_leaves_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), options());
    let huge = vec![0u8; tripod_storage::wal::MAX_RECORD_PAYLOAD_BYTES + 1];
    let error = wal.append(&[(kind(1), b"ok"), (kind(1), &huge)]).unwrap_err();
    assert!(matches!(error, WalError::RecordTooLarge { .. }), "{error}");
    wal.append_one(kind(2), b"fine").unwrap();
    wal.close().unwrap();
    assert!(matches!(wal.append_one(kind(2), b"late"), Err(WalError::Closed)));
    assert_eq!(replay(dir.path()), vec![(2, b"fine".to_vec())]);
}

#[test]
fn checkpoint_replaces_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(30);
    let (wal, _) = open(dir.path(), options());
    append_all(&wal, &records[..20]);
    let closed = wal.cut().unwrap();
    append_all(&wal, &records[20..]);
    // Keep only the even records of the covered segments.
    let kept: Vec<&Record> = records[..20].iter().step_by(2).collect();
    let stats = wal.checkpoint(closed, kept.iter().map(|(k, payload)| (kind(*k), payload.as_slice()))).unwrap();
    assert_eq!(stats.records, 10);
    assert!(stats.segments_removed >= 1);
    assert!(matches!(wal.checkpoint(closed + 1, std::iter::empty()), Err(WalError::CheckpointOfActiveSegment { .. })));
    wal.close().unwrap();

    let mut expected: Vec<Record> = kept.into_iter().cloned().collect();
    expected.extend_from_slice(&records[20..]);
    assert_eq!(replay(dir.path()), expected);
    assert!(
        segments(dir.path())
            .iter()
            .all(|path| { path.file_name().unwrap().to_str().unwrap().parse::<u32>().unwrap() > closed })
    );
    // A later checkpoint supersedes the first one.
    let (wal, _) = open(dir.path(), options());
    let closed_again = wal.cut().unwrap();
    wal.checkpoint(closed_again, [(kind(4), &b"only"[..])]).unwrap();
    wal.close().unwrap();
    assert_eq!(replay(dir.path()), vec![(4, b"only".to_vec())]);
    let checkpoints = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().starts_with("checkpoint."))
        .count();
    assert_eq!(checkpoints, 1);
}

#[test]
fn a_crash_during_checkpoint_leaves_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(10);
    let (wal, _) = open(dir.path(), options());
    append_all(&wal, &records);
    let closed = wal.cut().unwrap();
    wal.close().unwrap();
    // The temporary directory of an unfinished checkpoint, half written.
    let temp = dir.path().join(format!("checkpoint.{closed:08}.tmp"));
    fs::create_dir(&temp).unwrap();
    fs::write(temp.join("00000000"), b"TWAL\x01").unwrap();
    assert_eq!(replay(dir.path()), records);
    assert!(!temp.exists());
}

#[test]
fn a_crash_after_checkpoint_rename_replays_the_checkpoint_once() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(10);
    let (wal, _) = open(dir.path(), options());
    append_all(&wal, &records);
    let closed = wal.cut().unwrap();
    wal.close().unwrap();
    // Keep a copy of the covered segment, checkpoint, then put it back: the state a crash
    // between the rename and the deletion of old segments leaves.
    let covered = segments(dir.path()).into_iter().next().unwrap();
    let saved = fs::read(&covered).unwrap();
    let (wal, _) = open(dir.path(), options());
    wal.checkpoint(closed, [(kind(1), &b"summary"[..])]).unwrap();
    wal.close().unwrap();
    fs::write(&covered, saved).unwrap();
    assert_eq!(replay(dir.path()), vec![(1, b"summary".to_vec())]);
    assert!(!covered.exists());
}

#[test]
fn a_damaged_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), options());
    wal.append_one(kind(1), b"x").unwrap();
    let closed = wal.cut().unwrap();
    wal.checkpoint(closed, [(kind(1), &b"kept record"[..])]).unwrap();
    wal.close().unwrap();
    let file = dir.path().join(format!("checkpoint.{closed:08}")).join("00000000");
    let mut bytes = fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&file, &bytes).unwrap();
    let error = Wal::open(dir.path(), options(), |_, _| {}).err().expect("open must fail");
    assert!(matches!(error, WalError::CorruptCheckpoint { .. }), "{error}");
}

#[test]
fn concurrent_appenders_with_fsync_always_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let always = WalOptions { segment_size_bytes: 64 << 10, sync: SyncPolicy::Always };
    let (wal, _) = open(dir.path(), always);
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..4u8)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let payload = [&[thread][..], &i.to_le_bytes()].concat();
                    wal.append_one(kind(thread + 1), &payload).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = wal.stats();
    assert_eq!(stats.records_appended, 800);
    assert!(stats.fsyncs >= 1);
    wal.close().unwrap();
    let seen = replay(dir.path());
    assert_eq!(seen.len(), 800);
    // Each thread's records replay in the order that thread appended them.
    for thread in 0..4u8 {
        let order: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| *k == thread + 1)
            .map(|(_, payload)| u32::from_le_bytes(payload[1..5].try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..200).collect::<Vec<_>>());
    }
}

#[test]
fn storage_drop_without_close_keeps_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let storage_options = StorageOptions { wal: options(), ..StorageOptions::default() };
    {
        let storage = Storage::open(dir.path(), storage_options.clone()).unwrap();
        storage.wal().append_one(kind(1), b"acknowledged").unwrap();
        // Dropped without close: the bytes were handed to the OS, which is what survives kill -9.
    }
    let storage = Storage::open(dir.path(), storage_options).unwrap();
    assert_eq!(storage.replay_stats().records, 1);
    storage.close().unwrap();
}

#[test]
fn a_data_directory_is_locked_by_one_storage_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = Storage::open(dir.path(), StorageOptions::default()).unwrap();
    let second = Storage::open(dir.path(), StorageOptions::default()).err().expect("must be locked");
    assert!(matches!(second, StorageError::Locked { .. }), "{second}");
    first.close().unwrap();
    drop(first);
    Storage::open(dir.path(), StorageOptions::default()).unwrap().close().unwrap();
}
