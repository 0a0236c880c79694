//! The logs store through its seams: appends with out-of-order entries and duplicates, selects
//! in both directions with limits, matchers, time ranges and line filters (with bloom skipping),
//! labels and stats; identical answers before and after flushes, compaction and restarts (WAL
//! replay with and without files); retention by tenant and by selector; damaged files reported,
//! unfinished ones removed, and the WAL shrinking once flushed entries are checkpointed away.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tripod_storage::labels::{Labels, MatchOp, Matcher};
use tripod_storage::logs::{
    Direction, LineFilter, LogAppendCounts, LogEntry, LogSelection, LogStats, LogsAppender, LogsClock, LogsCodec,
    LogsError, LogsOptions, LogsQueryable, NsRange, StreamEntries, StreamRetention,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;
/// The injected clock starts here (2024-01-01T00:00:00Z).
const START: i64 = 1_704_067_200 * SECOND;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(START)))
    }

    fn advance(&self, by_ns: i64) {
        self.0.fetch_add(by_ns, Ordering::SeqCst);
    }

    fn logs_clock(&self) -> LogsClock {
        let now = self.0.clone();
        LogsClock::from_fn(move || now.load(Ordering::SeqCst))
    }
}

/// Small blocks and chunks so that tests cross many of them; nothing expires.
fn small(clock: &Clock) -> LogsOptions {
    LogsOptions {
        block_target_bytes: 1024,
        chunk_target_bytes: 4096,
        head_codec: LogsCodec::Zstd { level: 1 },
        codec: LogsCodec::Zstd { level: 3 },
        retention_ns: None,
        checkpoint_after_flushed_bytes: 1,
        compaction_min_files: 3,
        clock: clock.logs_clock(),
        ..LogsOptions::default()
    }
}

fn open(dir: &Path, logs: LogsOptions) -> Storage {
    let options = StorageOptions {
        wal: WalOptions { segment_size_bytes: 64 << 10, sync: SyncPolicy::Never },
        logs,
        ..StorageOptions::default()
    };
    Storage::open(dir, options).expect("storage opens")
}

fn entry(t_ns: i64, line: &str) -> LogEntry {
    LogEntry { t_ns, line: line.to_string(), metadata: Labels::empty() }
}

fn push(storage: &Storage, tenant: &str, stream: &Labels, entries: &[LogEntry]) -> LogAppendCounts {
    storage.logs().append(tenant, &[StreamEntries { labels: stream, entries }]).expect("append")
}

type Dump = Vec<(String, Vec<(i64, String, String)>)>;

/// Every stream and entry a select answers, as comparable text.
fn select(
    storage: &Storage,
    tenant: &str,
    matchers: &[Matcher],
    range: NsRange,
    direction: Direction,
    filters: &[LineFilter],
) -> Dump {
    let selection = LogSelection { matchers, range, direction, filters };
    storage
        .logs()
        .select(tenant, &selection)
        .expect("select")
        .into_iter()
        .map(|cursor| {
            let entries = cursor
                .entries
                .map(|entry| {
                    let entry = entry.expect("entry reads");
                    (entry.t_ns, entry.line, entry.metadata.to_string())
                })
                .collect();
            (cursor.labels.to_string(), entries)
        })
        .filter(|(_, entries): &(String, Vec<_>)| !entries.is_empty())
        .collect()
}

fn all(storage: &Storage, tenant: &str) -> Dump {
    select(storage, tenant, &[], NsRange::all(), Direction::Forward, &[])
}

/// HDFS-like lines with ids, numbers and paths; `needle` goes into line `needle_at`.
fn generate(stream: usize, count: usize, needle_at: Option<usize>, needle: &str) -> Vec<LogEntry> {
    let mut out = Vec::with_capacity(count);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ stream as u64;
    for i in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut line = format!(
            "081109 {:06} {} INFO dfs.DataNode$PacketResponder: Received block blk_{} of size {} from /10.{}.{}.{}",
            i % 1_000_000,
            state % 997,
            state as i64,
            state % 67_108_864,
            state % 256,
            (state >> 8) % 256,
            (state >> 16) % 256
        );
        if Some(i) == needle_at {
            line.push(' ');
            line.push_str(needle);
        }
        out.push(entry(START + (i as i64) * 1_000_000, &line));
    }
    out
}

#[test]
fn appends_are_selected_in_both_directions_with_limits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let api = labels(&[("app", "api"), ("env", "prod")]);
    let web = labels(&[("app", "web")]);
    let counts = push(&storage, "fake", &api, &[entry(30, "c"), entry(10, "a"), entry(20, "b"), entry(20, "a")]);
    assert_eq!(counts.appended, 4);
    assert_eq!(counts.streams_created, 1);
    assert_eq!(counts.line_bytes, 4);
    push(&storage, "fake", &web, &[entry(15, "w")]);

    let forward = all(&storage, "fake");
    assert_eq!(forward.len(), 2);
    assert_eq!(forward[0].0, r#"{app="api", env="prod"}"#);
    let times: Vec<(i64, &str)> = forward[0].1.iter().map(|(t, line, _)| (*t, line.as_str())).collect();
    assert_eq!(times, [(10, "a"), (20, "a"), (20, "b"), (30, "c")]);

    let backward =
        select(&storage, "fake", &[m(MatchOp::Equal, "app", "api")], NsRange::all(), Direction::Backward, &[]);
    let times: Vec<(i64, &str)> = backward[0].1.iter().map(|(t, line, _)| (*t, line.as_str())).collect();
    assert_eq!(times, [(30, "c"), (20, "b"), (20, "a"), (10, "a")]);

    // A limit is the caller taking fewer entries.
    let selection = LogSelection { matchers: &[], range: NsRange::all(), direction: Direction::Backward, filters: &[] };
    let cursors = storage.logs().select("fake", &selection).unwrap();
    let newest: Vec<i64> = cursors.into_iter().next().unwrap().entries.take(2).map(|e| e.unwrap().t_ns).collect();
    assert_eq!(newest, [30, 20]);

    // Tenants are isolated.
    assert!(all(&storage, "other").is_empty());
    push(&storage, "other", &api, &[entry(1, "x")]);
    assert_eq!(all(&storage, "other").len(), 1);
    assert_eq!(all(&storage, "fake")[0].1.len(), 4);
}

#[test]
fn out_of_order_entries_are_kept_and_duplicates_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let stream = labels(&[("app", "api")]);
    let first = push(&storage, "fake", &stream, &[entry(100, "x"), entry(200, "y")]);
    assert_eq!((first.appended, first.appended_out_of_order, first.duplicates), (2, 0, 0));
    // Older than the newest entry: accepted, counted as out of order.
    let older = push(&storage, "fake", &stream, &[entry(50, "early"), entry(300, "late")]);
    assert_eq!((older.appended, older.appended_out_of_order), (2, 1));
    // The same timestamp and line again (a retried push), also within one batch.
    let retry = push(&storage, "fake", &stream, &[entry(100, "x"), entry(200, "y"), entry(400, "z"), entry(400, "z")]);
    assert_eq!((retry.appended, retry.duplicates), (1, 3));
    // Same time, other line: a different entry.
    let same_time = push(&storage, "fake", &stream, &[entry(400, "z2")]);
    assert_eq!((same_time.appended, same_time.duplicates), (1, 0));

    // Duplicates are found in sealed (compressed) blocks too.
    let many = generate(0, 200, None, "");
    push(&storage, "fake", &stream, &many);
    assert!(storage.logs().store_stats().memory_chunks >= 1);
    let again = push(&storage, "fake", &stream, &many[10..20]);
    assert_eq!((again.appended, again.duplicates), (0, 10));
    assert_eq!(all(&storage, "fake")[0].1.len(), 6 + 200);
    let totals = storage.logs().store_stats().appended;
    assert_eq!(totals.duplicates, 13);
    assert_eq!(totals.appended, 206);
}

#[test]
fn structured_metadata_round_trips_from_head_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let stream = labels(&[("service_name", "checkout")]);
    let metadata = labels(&[("trace_id", "0af7651916cd43dd8448eb211c80319c"), ("span_id", "b7ad6b7169203331")]);
    let entries = [LogEntry { t_ns: 5, line: "paid".into(), metadata: metadata.clone() }, entry(6, "shipped")];
    push(&storage, "fake", &stream, &entries);
    let expected = vec![(
        r#"{service_name="checkout"}"#.to_string(),
        vec![(5, "paid".to_string(), metadata.to_string()), (6, "shipped".to_string(), "{}".to_string())],
    )];
    assert_eq!(all(&storage, "fake"), expected);
    storage.logs().flush_all().unwrap();
    assert_eq!(storage.logs().store_stats().head_entries, 0);
    assert_eq!(all(&storage, "fake"), expected);
}

#[test]
fn matchers_time_ranges_labels_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let api = labels(&[("app", "api"), ("env", "prod")]);
    let web = labels(&[("app", "web")]);
    let db = labels(&[("app", "db"), ("env", "dev")]);
    push(&storage, "fake", &api, &[entry(1000, "a1"), entry(2000, "a2")]);
    push(&storage, "fake", &web, &[entry(1500, "w1")]);
    push(&storage, "fake", &db, &[entry(3000, "d1")]);

    let names = |matchers: &[Matcher]| -> Vec<String> {
        select(&storage, "fake", matchers, NsRange::all(), Direction::Forward, &[])
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    };
    assert_eq!(names(&[m(MatchOp::Equal, "app", "api")]), [r#"{app="api", env="prod"}"#]);
    assert_eq!(names(&[m(MatchOp::NotEqual, "app", "api")]).len(), 2);
    assert_eq!(names(&[m(MatchOp::RegexMatch, "app", "a.*|w.*")]).len(), 2);
    assert!(names(&[m(MatchOp::RegexMatch, "app", "ap")]).is_empty(), "regexes are anchored");
    assert_eq!(names(&[m(MatchOp::RegexNoMatch, "app", "d.*")]).len(), 2);
    // Matchers that match "" select streams without the label.
    assert_eq!(names(&[m(MatchOp::Equal, "env", "")]), [r#"{app="web"}"#]);
    assert_eq!(names(&[m(MatchOp::RegexMatch, "app", ".+"), m(MatchOp::NotEqual, "env", "prod")]).len(), 2);

    // The range is inclusive at both ends.
    let range = NsRange::new(1500, 2000).unwrap();
    let selected = select(&storage, "fake", &[], range, Direction::Forward, &[]);
    let lines: Vec<&str> = selected.iter().flat_map(|(_, e)| e.iter().map(|(_, l, _)| l.as_str())).collect();
    assert_eq!(lines, ["a2", "w1"]);
    assert!(select(&storage, "fake", &[], NsRange::new(2001, 2999).unwrap(), Direction::Forward, &[]).is_empty());

    let logs = storage.logs();
    assert_eq!(logs.label_names("fake", &[], NsRange::all()).unwrap(), ["app", "env"]);
    assert_eq!(logs.label_values("fake", "app", &[], NsRange::all()).unwrap(), ["api", "db", "web"]);
    let prod = [m(MatchOp::Equal, "env", "prod")];
    assert_eq!(logs.label_values("fake", "app", &prod, NsRange::all()).unwrap(), ["api"]);
    assert_eq!(logs.label_values("fake", "app", &[], NsRange::new(2500, 4000).unwrap()).unwrap(), ["db"]);
    assert_eq!(logs.series("fake", &[], NsRange::new(0, 1200).unwrap()).unwrap(), [api]);
    assert!(logs.label_names("fake", &[], NsRange::new(5000, 6000).unwrap()).unwrap().is_empty());
    assert!(logs.label_names("nobody", &[], NsRange::all()).unwrap().is_empty());

    let expected = LogStats { streams: 3, chunks: 3, entries: 4, bytes: 8 };
    assert_eq!(logs.stats("fake", &[], NsRange::all()).unwrap(), expected);
    let only_api = logs.stats("fake", &[m(MatchOp::Equal, "app", "api")], NsRange::new(0, 1000).unwrap()).unwrap();
    assert_eq!(only_api, LogStats { streams: 1, chunks: 1, entries: 1, bytes: 2 });
    logs.flush_all().unwrap();
    // From files, entries are counted per block.
    let flushed = logs.stats("fake", &[], NsRange::all()).unwrap();
    assert_eq!(flushed, expected);
}

#[test]
fn line_filters_skip_blocks_by_bloom_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let storage = open(dir.path(), small(&clock));
    let stream = labels(&[("job", "hdfs")]);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let entries = generate(1, 2000, Some(1234), &format!("trace_id={trace_id} needle"));
    push(&storage, "fake", &stream, &entries);
    storage.logs().flush_all().unwrap();
    let stats = storage.logs().store_stats();
    assert!(stats.file_chunks > 10, "{stats:?}");

    let find = |needle: &str| {
        let filters = [LineFilter::Contains(needle.to_string())];
        select(&storage, "fake", &[], NsRange::all(), Direction::Backward, &filters)
    };
    let before = storage.logs().store_stats();
    let found = find(trace_id);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.len(), 1);
    assert_eq!(found[0].1[0].0, entries[1234].t_ns);
    let after = storage.logs().store_stats();
    let skipped = after.blocks_skipped_by_bloom - before.blocks_skipped_by_bloom;
    let read = after.blocks_read - before.blocks_read;
    // Blooms are per chunk: the chunk holding the id is read whole (4096-byte chunks of
    // 1024-byte blocks: at most 5 blocks), every other chunk is skipped.
    assert!(read <= 5, "read {read} blocks for a trace id");
    assert!(skipped > 20, "skipped only {skipped}");

    // Absent: the right (empty) answer, and most blocks skipped.
    let before = storage.logs().store_stats();
    assert!(find("4bf92f3577b34da6a3ce929d0e0e4736").is_empty());
    let after = storage.logs().store_stats();
    assert!(after.blocks_skipped_by_bloom - before.blocks_skipped_by_bloom > 20);
    assert!(after.blocks_read - before.blocks_read <= 5);

    // A word: still exact.
    assert_eq!(find("needle")[0].1.len(), 1);
    // Short needles and negative filters cannot use the bloom; the answer is the same.
    let brute: usize = entries.iter().filter(|e| e.line.contains("/10.1.")).count();
    assert_eq!(find("/10.1.").first().map_or(0, |(_, e)| e.len()), brute);
    let not = [LineFilter::NotContains("needle".into()), LineFilter::Contains("INFO".into())];
    assert_eq!(select(&storage, "fake", &[], NsRange::all(), Direction::Forward, &not)[0].1.len(), 1999);
}

#[test]
fn answers_are_identical_across_flush_compaction_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let streams: Vec<Labels> = (0..4).map(|i| labels(&[("app", "api"), ("pod", &format!("pod-{i}"))])).collect();
    let mut expected: (Dump, Dump);
    let check = |storage: &Storage, expected: &(Dump, Dump), when: &str| {
        assert_eq!(all(storage, "fake"), expected.0, "forward {when}");
        let backward = select(storage, "fake", &[], NsRange::all(), Direction::Backward, &[]);
        assert_eq!(backward, expected.1, "backward {when}");
    };
    let answers = |storage: &Storage| -> (Dump, Dump) {
        (all(storage, "fake"), select(storage, "fake", &[], NsRange::all(), Direction::Backward, &[]))
    };
    {
        let storage = open(dir.path(), small(&clock));
        for round in 0..3 {
            for (i, stream) in streams.iter().enumerate() {
                let mut entries = generate(i * 10 + round, 120, None, "");
                // Out-of-order entries across rounds.
                for entry in &mut entries {
                    entry.t_ns += (round as i64) * 50_000_000 - (i as i64) * 7;
                }
                push(&storage, "fake", stream, &entries);
            }
        }
        expected = answers(&storage);
        assert_eq!(expected.0.len(), 4);
        // Restart with everything in the WAL.
    }

    {
        let storage = open(dir.path(), small(&clock));
        check(&storage, &expected, "after a restart from the WAL");
        for (i, stream) in streams.iter().enumerate().take(2) {
            push(&storage, "fake", stream, &[entry(START + 10 * HOUR + i as i64, "late entry")]);
        }
        expected = answers(&storage);
        // An hour later every chunk is idle and flushed.
        clock.advance(HOUR);
        let report = storage.maintenance().unwrap();
        assert!(report.logs_chunks_flushed > 0);
        check(&storage, &expected, "after a flush by idle time");
        assert!(storage.logs().store_stats().files >= 1);
    }
    {
        // Restart with files: no entry is counted twice.
        let storage = open(dir.path(), small(&clock));
        check(&storage, &expected, "after a restart with files");
        let stats = storage.logs().store_stats();
        assert_eq!(stats.head_entries, 0, "{stats:?}");
        for i in 0..3 {
            push(&storage, "fake", &streams[0], &[entry(START + 20 * HOUR + i, "more")]);
            storage.logs().flush_all().unwrap();
        }
        expected = answers(&storage);
        let files_before = storage.logs().store_stats().files;
        let report = storage.maintenance().unwrap();
        assert_eq!(report.logs_compactions, 1, "{files_before} files");
        assert_eq!(storage.logs().store_stats().files, 1);
        check(&storage, &expected, "after compaction");
        storage.logs().verify_files().unwrap();
    }
    let storage = open(dir.path(), small(&clock));
    check(&storage, &expected, "after a restart with a compacted file");
}

#[test]
fn the_wal_shrinks_after_flush_and_checkpoint_and_replay_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let stream = labels(&[("job", "varlog")]);
    let expected;
    let wal_size = |dir: &Path| -> u64 {
        let mut total = 0;
        for entry in walk(&dir.join("wal")) {
            total += fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
        }
        total
    };
    {
        let storage = open(dir.path(), small(&clock));
        for round in 0..10 {
            push(&storage, "fake", &stream, &generate(round, 300, None, ""));
        }
        expected = all(&storage, "fake");
        let before = wal_size(dir.path());
        clock.advance(3 * HOUR);
        let report = storage.maintenance().unwrap();
        assert!(report.logs_chunks_flushed > 0);
        assert!(report.wal_segments_removed > 0, "{report:?}");
        let after = wal_size(dir.path());
        assert!(after * 4 < before, "wal {before} -> {after} bytes");
        // Appends after the checkpoint are replayed as well.
        push(&storage, "fake", &stream, &[entry(START + 5 * HOUR, "after checkpoint")]);
    }
    let storage = open(dir.path(), small(&clock));
    let mut again = all(&storage, "fake");
    let last = again[0].1.pop().unwrap();
    assert_eq!(last.1, "after checkpoint");
    assert_eq!(again, expected);
    assert_eq!(storage.logs().store_stats().replay_entries_already_flushed, 0);
}

#[test]
fn replay_skips_entries_already_in_files_without_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let stream = labels(&[("job", "x")]);
    let expected;
    {
        let storage = open(dir.path(), small(&clock));
        push(&storage, "fake", &stream, &generate(3, 100, None, ""));
        storage.logs().flush_all().unwrap();
        push(&storage, "fake", &stream, &[entry(START + HOUR, "in the head")]);
        expected = all(&storage, "fake");
        // A crash: no checkpoint, the WAL holds the flushed entries as well.
    }
    let storage = open(dir.path(), small(&clock));
    assert_eq!(all(&storage, "fake"), expected);
    let stats = storage.logs().store_stats();
    assert_eq!(stats.replay_entries_already_flushed, 100);
    assert_eq!(stats.head_entries, 1);
    assert_eq!(storage.logs().stats("fake", &[], NsRange::all()).unwrap().entries, 101);
}

#[test]
fn retention_by_tenant_and_by_selector() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let mut options = small(&clock);
    options.retention_ns = Some(30 * 24 * HOUR);
    options.tenant_retention_ns.insert("short".into(), 24 * HOUR);
    options.stream_retention = vec![
        StreamRetention { tenant: None, matchers: vec![m(MatchOp::Equal, "level", "debug")], period_ns: 2 * HOUR },
        StreamRetention {
            tenant: Some("short".into()),
            matchers: vec![m(MatchOp::Equal, "app", "audit")],
            period_ns: 90 * 24 * HOUR,
        },
    ];
    let storage = open(dir.path(), options);
    let debug = labels(&[("app", "api"), ("level", "debug")]);
    let info = labels(&[("app", "api"), ("level", "info")]);
    let audit = labels(&[("app", "audit")]);
    let old = START - 3 * HOUR;
    for tenant in ["fake", "short"] {
        for stream in [&debug, &info, &audit] {
            push(&storage, tenant, stream, &[entry(old, "old"), entry(old + 1, "old too")]);
        }
    }
    storage.logs().flush_all().unwrap();
    let files = storage.logs().store_stats().files;
    assert_eq!(files, 1);

    // Three hours later: only debug streams are past their two hours.
    storage.maintenance().unwrap();
    let streams = |tenant: &str| -> Vec<String> { all(&storage, tenant).into_iter().map(|(l, _)| l).collect() };
    assert_eq!(streams("fake"), [r#"{app="api", level="info"}"#, r#"{app="audit"}"#]);
    assert_eq!(streams("short"), [r#"{app="api", level="info"}"#, r#"{app="audit"}"#]);
    assert_eq!(storage.logs().store_stats().files_rewritten_by_retention, 1);

    // Two days later: the tenant "short" keeps its audit stream (a longer rule), loses the rest.
    clock.advance(48 * HOUR);
    storage.maintenance().unwrap();
    assert_eq!(streams("fake").len(), 2);
    assert_eq!(streams("short"), [r#"{app="audit"}"#]);
    assert!(storage.logs().label_values("short", "level", &[], NsRange::all()).unwrap().is_empty());

    // Past every period: the file is deleted.
    clock.advance(100 * 24 * HOUR);
    storage.maintenance().unwrap();
    assert!(all(&storage, "fake").is_empty() && all(&storage, "short").is_empty());
    assert_eq!(storage.logs().store_stats().files, 0);
    assert!(storage.logs().store_stats().files_deleted_by_retention >= 1);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A store with one flushed file; returns its path.
fn one_file(dir: &Path, clock: &Clock) -> std::path::PathBuf {
    let storage = open(dir, small(clock));
    push(&storage, "fake", &labels(&[("job", "x")]), &generate(4, 100, None, ""));
    storage.logs().flush_all().unwrap();
    // A checkpoint, so that the WAL no longer holds the entries and only the file does.
    clock.advance(HOUR);
    storage.maintenance().unwrap();
    let paths = storage.logs().file_paths();
    assert_eq!(paths.len(), 1);
    paths[0].clone()
}

#[test]
fn damaged_files_are_reported_never_used() {
    // A flipped byte in the stream table or footer, or a truncation: moved aside at open.
    for damage in ["table", "footer", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let path = one_file(dir.path(), &clock);
        let mut bytes = fs::read(&path).unwrap();
        let len = bytes.len();
        match damage {
            "table" => bytes[len - 40] ^= 0x01,
            "footer" => bytes[len - 10] ^= 0x01,
            _ => bytes.truncate(len - 7),
        }
        fs::write(&path, &bytes).unwrap();
        let storage = open(dir.path(), small(&clock));
        assert_eq!(storage.logs().store_stats().corrupt_files, 1, "{damage}");
        assert!(all(&storage, "fake").is_empty(), "{damage}");
        assert!(path.with_extension("tlog.corrupt").exists(), "{damage}");
    }

    // A flipped byte in a block: the read fails with an error naming the file.
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let path = one_file(dir.path(), &clock);
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let storage = open(dir.path(), small(&clock));
    assert_eq!(storage.logs().store_stats().corrupt_files, 0);
    let selection = LogSelection { matchers: &[], range: NsRange::all(), direction: Direction::Forward, filters: &[] };
    let cursors = storage.logs().select("fake", &selection).unwrap();
    let results: Vec<Result<LogEntry, LogsError>> = cursors.into_iter().flat_map(|cursor| cursor.entries).collect();
    let error = results.into_iter().find_map(Result::err).expect("the damaged block is reported");
    assert!(matches!(&error, LogsError::Corrupt { file, .. } if file.ends_with(".tlog")), "{error}");
    assert!(storage.logs().verify_files().is_err());
}

#[test]
fn an_unfinished_flush_is_cleaned_up_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let path = one_file(dir.path(), &clock);
    // A crash while writing a file leaves a temporary file behind.
    let temp = path.with_file_name("0000000000000ffffffffffffffff.tlog.tmp");
    fs::write(&temp, b"TLOG\x01\0\0\0partial").unwrap();
    let storage = open(dir.path(), small(&clock));
    assert!(!temp.exists());
    assert_eq!(storage.logs().store_stats().corrupt_files, 0);
    assert_eq!(all(&storage, "fake")[0].1.len(), 100);
}

#[test]
fn multi_line_entries_and_metadata_survive_head_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let stream = labels(&[("app", "java")]);
    let trace = labels(&[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]);
    let mut entries = Vec::new();
    for i in 0..300i64 {
        // Some blocks hold stack traces (lines with newlines), others only one-line entries;
        // timestamps at microsecond steps, some out of order.
        let line = if (i / 40) % 2 == 1 && i % 5 == 0 {
            format!("exception in worker {i}\n\tat com.example.Worker.run(Worker.java:{i})\n\tat java.lang.Thread.run")
        } else {
            format!("worker {i} finished job {} in {}ms é", i * 7, i % 13)
        };
        let t_ns = START + if i % 17 == 3 { (i - 2) * 1000 } else { i * 1000 };
        let metadata = if i % 4 == 0 { trace.clone() } else { Labels::empty() };
        entries.push(LogEntry { t_ns, line, metadata });
    }
    let options = || LogsOptions { head_codec: LogsCodec::None, ..small(&clock) };
    let storage = open(dir.path(), options());
    for batch in entries.chunks(25) {
        push(&storage, "fake", &stream, batch);
    }
    let mut expected: Vec<(i64, String, String)> =
        entries.iter().map(|e| (e.t_ns, e.line.clone(), e.metadata.to_string())).collect();
    expected.sort();
    let check = |storage: &Storage, when: &str| {
        let dump = all(storage, "fake");
        assert_eq!(dump.len(), 1, "{when}");
        assert_eq!(dump[0].1, expected, "{when}");
        let filters = [LineFilter::Contains("\n\tat com.example.Worker.run(Worker.java:125)".into())];
        let found = select(storage, "fake", &[], NsRange::all(), Direction::Backward, &filters);
        assert_eq!(found[0].1.len(), 1, "{when}");
        assert!(found[0].1[0].1.starts_with("exception in worker 125\n"), "{when}");
    };
    check(&storage, "in the head, raw");
    let raw_memory = storage.logs().store_stats().head_memory_bytes;
    // A maintenance pass compresses the sealed head blocks that were left raw.
    storage.maintenance().unwrap();
    check(&storage, "in the head, compressed by maintenance");
    assert!(storage.logs().store_stats().head_memory_bytes < raw_memory, "head memory did not shrink");
    storage.logs().flush_all().unwrap();
    check(&storage, "in files");
    storage.logs().verify_files().unwrap();
    drop(storage);
    let storage = open(dir.path(), options());
    check(&storage, "after a restart");
}

#[test]
fn blooms_skip_chunks_with_raw_and_compressed_head_blocks() {
    // Head blocks raw (compressed at flush) or compressed at seal: same files, same answers.
    for head_codec in [LogsCodec::None, LogsCodec::Zstd { level: 1 }] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let storage = open(dir.path(), LogsOptions { head_codec, ..small(&clock) });
        let stream = labels(&[("job", "hdfs")]);
        let entries = generate(3, 3000, Some(2500), "request_id=c0ffee00deadbeef");
        push(&storage, "fake", &stream, &entries);
        storage.logs().flush_all().unwrap();
        let filters = [LineFilter::Contains("request_id=c0ffee00deadbeef".into())];
        let before = storage.logs().store_stats();
        let found = select(&storage, "fake", &[], NsRange::all(), Direction::Forward, &filters);
        assert_eq!(found[0].1.len(), 1, "{head_codec:?}");
        assert_eq!(found[0].1[0].0, entries[2500].t_ns);
        let after = storage.logs().store_stats();
        // These lines are nearly all random digits, so the filters of these tiny chunks are
        // held to their cap (256 bits per KiB of lines) and a few chunks pass by chance.
        assert!(after.blocks_read - before.blocks_read < 30, "{head_codec:?}: {after:?}");
        assert!(after.blocks_skipped_by_bloom - before.blocks_skipped_by_bloom > 300, "{head_codec:?}: {after:?}");
        // Without blooms every block is read, and the answer is the same.
        let dir = tempfile::tempdir().unwrap();
        let storage = open(dir.path(), LogsOptions { head_codec, bloom_bits_per_kib: 0, ..small(&clock) });
        push(&storage, "fake", &stream, &entries);
        storage.logs().flush_all().unwrap();
        let again = select(&storage, "fake", &[], NsRange::all(), Direction::Forward, &filters);
        assert_eq!(again, found);
        assert_eq!(storage.logs().store_stats().blocks_skipped_by_bloom, 0);
    }
}

#[test]
fn raw_head_blocks_are_compressed_in_the_background_past_the_limit() {
    // Blocks sealed raw are compressed by a background thread once the head took
    // `head_raw_bytes_limit` line bytes, without waiting for maintenance; answers stay the same.
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::new();
    let options = LogsOptions { head_codec: LogsCodec::None, head_raw_bytes_limit: 16 << 10, ..small(&clock) };
    let storage = open(dir.path(), options);
    let stream = labels(&[("job", "hdfs")]);
    let entries = generate(1, 2000, Some(1500), "request_id=c0ffee00deadbeef");
    push(&storage, "fake", &stream, &entries[..1000]);
    push(&storage, "fake", &stream, &entries[1000..]);
    let line_bytes: u64 = entries.iter().map(|entry| entry.line.len() as u64).sum();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stats = loop {
        let stats = storage.logs().store_stats();
        if stats.head_memory_bytes < line_bytes / 2 || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(stats.head_blocks_compressed > 0, "{stats:?}");
    assert_eq!(stats.chunks_flushed, 0, "nothing was flushed: {stats:?}");
    assert!(stats.head_memory_bytes < line_bytes / 2, "{line_bytes} line bytes, {stats:?}");
    let all_lines = select(&storage, "fake", &[], NsRange::all(), Direction::Forward, &[]);
    assert_eq!(all_lines[0].1.len(), entries.len());
    let filters = [LineFilter::Contains("request_id=c0ffee00deadbeef".into())];
    let found = select(&storage, "fake", &[], NsRange::all(), Direction::Forward, &filters);
    assert_eq!(found[0].1.len(), 1);
    assert_eq!(found[0].1[0].0, entries[1500].t_ns);
}
