//! The metrics store through its seams: appends and their per-reason outcomes, Prometheus
//! matcher semantics, recovery after a crash, and identical answers before and after block cuts,
//! compaction, retention and restarts. Damaged blocks are reported, never read.

use std::fs;
use std::path::Path;

use tripod_storage::labels::{Labels, MatchOp, Matcher};
use tripod_storage::metrics::{
    Exemplar, MetricMetadata, MetricType, MetricsAppender, MetricsError, MetricsOptions, MetricsQueryable, STALE_NAN,
    Sample, SeriesKey, SeriesRef, SeriesSamples, TimeRange, is_stale_nan,
};
use tripod_storage::wal::{SyncPolicy, WalOptions};
use tripod_storage::{Storage, StorageOptions};

const MINUTE: i64 = 60_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn options(metrics: MetricsOptions) -> StorageOptions {
    StorageOptions {
        wal: WalOptions { segment_size_bytes: 1 << 20, sync: SyncPolicy::Never },
        metrics,
        ..StorageOptions::default()
    }
}

/// Small blocks so that tests cross many block boundaries quickly.
fn small_blocks() -> MetricsOptions {
    MetricsOptions {
        block_range_ms: 10 * MINUTE,
        out_of_order_window_ms: 5 * MINUTE,
        retention_ms: None,
        ..MetricsOptions::default()
    }
}

fn open(dir: &Path, metrics: MetricsOptions) -> Storage {
    Storage::open(dir, options(metrics)).expect("storage opens")
}

fn append(storage: &Storage, series: &Labels, samples: &[Sample]) -> tripod_storage::metrics::AppendResult {
    let batch = [SeriesSamples { key: SeriesKey::Labels(series), samples, exemplars: &[] }];
    storage.metrics().append(&batch).expect("append")
}

fn sample(t_ms: i64, value: f64) -> Sample {
    Sample { t_ms, value }
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// Every series and sample the store answers for `matchers` over all time, as comparable text.
fn dump(storage: &Storage, matchers: &[Matcher]) -> Vec<(String, Vec<(i64, u64)>)> {
    storage
        .metrics()
        .select(matchers, TimeRange::all())
        .unwrap()
        .into_iter()
        .map(|series| {
            let samples = series.samples().unwrap().iter().map(|s| (s.t_ms, s.value.to_bits())).collect();
            (series.labels.to_string(), samples)
        })
        .collect()
}

/// Node-exporter-like series: counters and gauges on a 15 s grid.
fn load_grid(storage: &Storage, series_count: usize, from_ms: i64, to_ms: i64) {
    let mut t = from_ms;
    while t < to_ms {
        for i in 0..series_count {
            let series = labels(&[
                ("__name__", if i % 2 == 0 { "node_cpu_seconds_total" } else { "node_memory_bytes" }),
                ("cpu", &i.to_string()),
                ("job", "node"),
            ]);
            let value =
                if i % 2 == 0 { (t / 1000) as f64 * 0.25 + i as f64 } else { 4096.0 * ((t / 15_000) % 7) as f64 };
            append(storage, &series, &[sample(t, value)]);
        }
        t += 15_000;
    }
}

#[test]
fn appended_samples_are_queryable_at_once_with_prometheus_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions::default());
    let api = labels(&[("__name__", "up"), ("job", "api"), ("env", "prod")]);
    let web = labels(&[("__name__", "up"), ("job", "web")]);
    let result = append(&storage, &api, &[sample(1000, 1.0), sample(2000, 0.0)]);
    assert_eq!(result.counts.appended, 2);
    assert_eq!(result.counts.series_created, 1);
    append(&storage, &web, &[sample(1000, 1.0)]);

    let up = m(MatchOp::Equal, "__name__", "up");
    assert_eq!(dump(&storage, std::slice::from_ref(&up)).len(), 2);
    // A matcher that matches "" selects series without the label.
    let no_env = dump(&storage, &[up.clone(), m(MatchOp::Equal, "env", "")]);
    assert_eq!(no_env, vec![(r#"{__name__="up", job="web"}"#.to_string(), vec![(1000, 1f64.to_bits())])]);
    assert_eq!(dump(&storage, &[up.clone(), m(MatchOp::NotEqual, "env", "prod")]).len(), 1);
    // Regexes are anchored.
    assert!(dump(&storage, &[up.clone(), m(MatchOp::RegexMatch, "job", "ap")]).is_empty());
    assert_eq!(dump(&storage, &[up.clone(), m(MatchOp::RegexMatch, "job", "ap.|w.*")]).len(), 2);
    // The time range is inclusive at both ends.
    let range = TimeRange::new(2000, 2000).unwrap();
    let selected = storage.metrics().select(std::slice::from_ref(&up), range).unwrap();
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].samples().unwrap(), vec![sample(2000, 0.0)]);

    assert_eq!(storage.metrics().label_names(&[], TimeRange::all()).unwrap(), ["__name__", "env", "job"]);
    assert_eq!(storage.metrics().label_values("job", &[], TimeRange::all()).unwrap(), ["api", "web"]);
    let matched = storage.metrics().label_values("job", &[m(MatchOp::Equal, "env", "prod")], TimeRange::all()).unwrap();
    assert_eq!(matched, ["api"]);
    assert!(storage.metrics().label_names(&[], TimeRange::new(5000, 6000).unwrap()).unwrap().is_empty());
}

#[test]
fn appends_by_reference_and_stale_references() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions::default());
    let series = labels(&[("__name__", "x")]);
    let first = append(&storage, &series, &[sample(1, 1.0)]);
    let series_ref = first.refs[0].expect("a reference");
    let batch = [
        SeriesSamples { key: SeriesKey::Ref(series_ref), samples: &[sample(2, 2.0)], exemplars: &[] },
        SeriesSamples { key: SeriesKey::Ref(SeriesRef(999_999)), samples: &[sample(2, 2.0)], exemplars: &[] },
    ];
    let result = storage.metrics().append(&batch).unwrap();
    assert_eq!(result.refs, vec![Some(series_ref), None]);
    assert_eq!(result.counts.appended, 1);
    assert_eq!(result.counts.unknown_series_ref, 1);
    assert_eq!(dump(&storage, &[]).len(), 1);
}

#[test]
fn rejections_are_counted_per_reason_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions { out_of_order_window_ms: 10 * MINUTE, ..MetricsOptions::default() });
    let series = labels(&[("__name__", "x")]);
    append(&storage, &series, &[sample(60 * MINUTE, 1.0)]);
    let result = append(
        &storage,
        &series,
        &[
            sample(61 * MINUTE, 2.0), // in order
            sample(55 * MINUTE, 3.0), // out of order, inside the window
            sample(55 * MINUTE, 3.0), // the same again: a duplicate
            sample(40 * MINUTE, 4.0), // older than the window
            sample(60 * MINUTE, 9.0), // a stored timestamp with another value
            sample(60 * MINUTE, 1.0), // a stored sample again
        ],
    );
    let counts = result.counts;
    assert_eq!(counts.appended, 1, "{counts:?}");
    assert_eq!(counts.appended_out_of_order, 1, "{counts:?}");
    assert_eq!(counts.duplicates, 2, "{counts:?}");
    assert_eq!(counts.rejected_too_old, 1, "{counts:?}");
    assert_eq!(counts.rejected_duplicate_timestamp, 1, "{counts:?}");
    let stored: Vec<(i64, u64)> = dump(&storage, &[])[0].1.clone();
    assert_eq!(
        stored,
        vec![(55 * MINUTE, 3f64.to_bits()), (60 * MINUTE, 1f64.to_bits()), (61 * MINUTE, 2f64.to_bits())]
    );

    // With the window off, an older sample is out of order.
    let strict_dir = tempfile::tempdir().unwrap();
    let strict = open(strict_dir.path(), MetricsOptions { out_of_order_window_ms: 0, ..MetricsOptions::default() });
    append(&strict, &series, &[sample(10, 1.0)]);
    let counts = append(&strict, &series, &[sample(5, 1.0)]).counts;
    assert_eq!(counts.rejected_out_of_order, 1);
}

#[test]
fn staleness_markers_and_special_values_are_stored_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), small_blocks());
    let series = labels(&[("__name__", "x")]);
    let values = [1.0, STALE_NAN, f64::NAN, f64::INFINITY, -0.0, f64::NEG_INFINITY];
    let samples: Vec<Sample> = values.iter().enumerate().map(|(i, v)| sample(i as i64 * 15_000, *v)).collect();
    append(&storage, &series, &samples);
    let check = |storage: &Storage| {
        let got = storage.metrics().select(&[], TimeRange::all()).unwrap()[0].samples().unwrap();
        assert!(is_stale_nan(got[1].value));
        assert!(got[2].value.is_nan() && !is_stale_nan(got[2].value));
        let bits: Vec<u64> = got[..values.len()].iter().map(|s| s.value.to_bits()).collect();
        assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    };
    check(&storage);
    // Through a block too.
    append(&storage, &series, &[sample(60 * MINUTE, 1.0)]);
    storage.maintenance().unwrap();
    assert!(storage.metrics().stats().blocks >= 1);
    check(&storage);
}

#[test]
fn a_crash_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let storage = open(dir.path(), small_blocks());
        load_grid(&storage, 6, 0, 8 * MINUTE);
        // Out of order, exemplars and metadata must survive too.
        let series = labels(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("job", "node")]);
        let exemplar = Exemplar { labels: labels(&[("trace_id", "abc123")]), value: 7.0, t_ms: 8 * MINUTE };
        let batch = [SeriesSamples {
            key: SeriesKey::Labels(&series),
            samples: &[sample(7 * MINUTE + 1, 42.0)],
            exemplars: std::slice::from_ref(&exemplar),
        }];
        let result = storage.metrics().append(&batch).unwrap();
        assert_eq!(result.counts.appended_out_of_order, 1);
        storage
            .metrics()
            .set_metadata(
                "node_cpu_seconds_total",
                MetricMetadata { metric_type: MetricType::Counter, help: "cpu".into(), unit: "seconds".into() },
            )
            .unwrap();
        before = dump(&storage, &[]);
        // Dropped without close, as kill -9 leaves it: no sync, no shutdown.
    }
    let storage = open(dir.path(), small_blocks());
    assert_eq!(dump(&storage, &[]), before);
    let exemplars = storage.metrics().exemplars(&[vec![m(MatchOp::Equal, "cpu", "0")]], TimeRange::all()).unwrap();
    assert_eq!(exemplars.len(), 1);
    assert_eq!(exemplars[0].exemplars[0].labels.get("trace_id"), Some("abc123"));
    let metadata = storage.metrics().metadata(Some("node_cpu_seconds_total")).unwrap();
    assert_eq!(metadata[0].1[0].metric_type, MetricType::Counter);
    // Appending continues where it left off.
    let result = append(
        &storage,
        &labels(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("job", "node")]),
        &[sample(9 * MINUTE, 1.0)],
    );
    assert_eq!(result.counts.appended, 1);
    assert_eq!(result.counts.series_created, 0);
}

#[test]
fn block_cuts_compaction_retention_and_restarts_keep_answers_identical() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_blocks();
    let storage = open(dir.path(), options.clone());
    load_grid(&storage, 4, 0, 95 * MINUTE);
    let before = dump(&storage, &[]);
    assert_eq!(before.len(), 4);
    assert_eq!(before[0].1.len(), 95 * 4);

    let report = storage.maintenance().unwrap();
    assert!(report.metrics_blocks_cut >= 7, "{report:?}");
    assert!(report.metrics_compactions >= 1, "{report:?}");
    assert!(report.wal_segments_removed >= 1, "{report:?}");
    assert_eq!(dump(&storage, &[]), before, "answers changed after block cut and compaction");
    let ranges = storage.metrics().block_ranges();
    assert!(ranges.iter().any(|(lo, hi)| hi - lo >= 20 * MINUTE), "no compacted block in {ranges:?}");
    // Blocks never overlap, and the head starts where they end.
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "overlap in {ranges:?}");
    }
    let subset = [m(MatchOp::Equal, "cpu", "2")];
    let part = storage.metrics().select(&subset, TimeRange::new(20 * MINUTE, 40 * MINUTE).unwrap()).unwrap();
    assert_eq!(part.len(), 1);
    assert_eq!(part[0].samples().unwrap().len(), 81);
    assert_eq!(
        storage.metrics().label_values("cpu", &[], TimeRange::new(0, MINUTE).unwrap()).unwrap(),
        ["0", "1", "2", "3"]
    );
    storage.close().unwrap();
    drop(storage);

    // A restart replays the WAL checkpoint into the head and reopens the blocks.
    let storage = open(dir.path(), options.clone());
    assert_eq!(dump(&storage, &[]), before, "answers changed after restart");
    load_grid(&storage, 4, 95 * MINUTE, 100 * MINUTE);
    let with_more = dump(&storage, &[]);
    drop(storage);
    let storage = open(dir.path(), options);
    assert_eq!(dump(&storage, &[]), with_more, "answers changed after a second restart");
    drop(storage);

    // Retention deletes whole blocks that end before the window behind the newest sample.
    let retained = MetricsOptions { retention_ms: Some(5 * MINUTE), ..small_blocks() };
    let storage = open(dir.path(), retained);
    let report = storage.maintenance().unwrap();
    assert!(report.metrics_blocks_deleted >= 1, "{report:?}");
    assert!(storage.metrics().block_ranges().is_empty(), "{:?}", storage.metrics().block_ranges());
    // What is left is the head, which starts at the last block boundary.
    let after: Vec<(String, Vec<(i64, u64)>)> = with_more
        .iter()
        .map(|(labels, samples)| (labels.clone(), samples.iter().copied().filter(|(t, _)| *t >= 90 * MINUTE).collect()))
        .collect();
    assert_eq!(dump(&storage, &[]), after);
}

#[test]
fn out_of_order_data_after_a_cut_is_merged_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = MetricsOptions { out_of_order_window_ms: 30 * MINUTE, ..small_blocks() };
    let storage = open(dir.path(), options);
    let series = labels(&[("__name__", "x")]);
    for t in (0..40).map(|i| i * MINUTE) {
        append(&storage, &series, &[sample(t, t as f64)]);
    }
    storage.maintenance().unwrap();
    // Inside the window but below the last block boundary: refused.
    let last_block_max = storage.metrics().block_ranges().last().unwrap().1;
    let boundary = (last_block_max / (10 * MINUTE) + 1) * (10 * MINUTE);
    let counts = append(&storage, &series, &[sample(boundary - 30_000, 1.5)]).counts;
    assert_eq!(counts.rejected_too_old, 1, "{counts:?}");
    // Inside the window and above the boundary: accepted, and survives the next cut.
    let counts = append(&storage, &series, &[sample(boundary + 30_000, 2.5)]).counts;
    assert_eq!(counts.appended_out_of_order, 1, "{counts:?}");
    for t in (40..60).map(|i| i * MINUTE) {
        append(&storage, &series, &[sample(t, t as f64)]);
    }
    let before = dump(&storage, &[]);
    storage.maintenance().unwrap();
    assert_eq!(dump(&storage, &[]), before);
    assert!(before[0].1.contains(&(boundary + 30_000, 2.5f64.to_bits())));
}

#[test]
fn damaged_blocks_are_reported_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), small_blocks());
    load_grid(&storage, 2, 0, 40 * MINUTE);
    storage.maintenance().unwrap();
    storage.metrics().verify_blocks().unwrap();
    let blocks_dir = dir.path().join("metrics").join("blocks");
    let first_block = fs::read_dir(&blocks_dir).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    drop(storage);

    // A flipped byte in a chunk: the read fails with the block named, it does not return garbage.
    let chunks = first_block.join("chunks");
    let mut bytes = fs::read(&chunks).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&chunks, &bytes).unwrap();
    let storage = open(dir.path(), small_blocks());
    let error = storage.metrics().select(&[], TimeRange::all()).unwrap_err();
    assert!(matches!(error, MetricsError::CorruptBlock { .. }), "{error}");
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    drop(storage);

    // A damaged index: the block is moved aside at open and reported; the rest is served.
    bytes[middle] ^= 0x55;
    fs::write(&chunks, &bytes).unwrap();
    let index = first_block.join("index");
    let mut index_bytes = fs::read(&index).unwrap();
    index_bytes[10] ^= 0x01;
    fs::write(&index, &index_bytes).unwrap();
    let storage = open(dir.path(), small_blocks());
    let name = first_block.file_name().unwrap().to_string_lossy().to_string();
    assert!(blocks_dir.join(format!("{name}.corrupt")).is_dir());
    assert!(storage.metrics().select(&[], TimeRange::all()).is_ok());
}

#[test]
fn exemplars_and_metadata_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions::default());
    let series = labels(&[("__name__", "http_request_duration_seconds_bucket"), ("le", "0.5")]);
    let exemplars = [
        Exemplar { labels: labels(&[("trace_id", "a1")]), value: 0.3, t_ms: 1000 },
        Exemplar { labels: labels(&[("trace_id", "b2")]), value: 0.4, t_ms: 2000 },
    ];
    let batch =
        [SeriesSamples { key: SeriesKey::Labels(&series), samples: &[sample(2000, 5.0)], exemplars: &exemplars }];
    let counts = storage.metrics().append(&batch).unwrap().counts;
    assert_eq!(counts.exemplars_appended, 2);
    let found = storage
        .metrics()
        .exemplars(
            &[vec![m(MatchOp::Equal, "__name__", "http_request_duration_seconds_bucket")]],
            TimeRange::new(1500, 3000).unwrap(),
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].exemplars, vec![exemplars[1].clone()]);
    // An exemplar older than the newest for its series is refused.
    let late = [Exemplar { labels: labels(&[("trace_id", "c3")]), value: 0.1, t_ms: 1500 }];
    let batch = [SeriesSamples { key: SeriesKey::Labels(&series), samples: &[], exemplars: &late }];
    assert_eq!(storage.metrics().append(&batch).unwrap().counts.exemplars_rejected, 1);

    let metadata =
        MetricMetadata { metric_type: MetricType::Histogram, help: "request latency".into(), unit: "seconds".into() };
    storage.metrics().set_metadata("http_request_duration_seconds", metadata.clone()).unwrap();
    assert_eq!(
        storage.metrics().metadata(None).unwrap(),
        vec![("http_request_duration_seconds".to_string(), vec![metadata])]
    );
    assert!(storage.metrics().metadata(Some("other")).unwrap().is_empty());
}

#[test]
fn memory_implementation_answers_like_the_store() {
    use tripod_storage::metrics::memory::MemoryMetrics;
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions::default());
    let memory = MemoryMetrics::new();
    let fixtures = [
        (labels(&[("__name__", "a"), ("job", "x")]), vec![sample(1, 1.0), sample(2, 2.0)]),
        (labels(&[("__name__", "a"), ("job", "y"), ("env", "p")]), vec![sample(1, 3.0)]),
        (labels(&[("__name__", "b")]), vec![sample(5, STALE_NAN)]),
    ];
    for (series, samples) in &fixtures {
        append(&storage, series, samples);
        memory.add(series, samples);
    }
    let queries: Vec<Vec<Matcher>> = vec![
        vec![],
        vec![m(MatchOp::Equal, "__name__", "a")],
        vec![m(MatchOp::Equal, "env", "")],
        vec![m(MatchOp::RegexMatch, "job", "x|y"), m(MatchOp::NotEqual, "env", "p")],
    ];
    for matchers in &queries {
        for range in [TimeRange::all(), TimeRange::new(2, 5).unwrap()] {
            let from_store: Vec<_> = storage
                .metrics()
                .select(matchers, range)
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.samples().unwrap().iter().map(|x| (x.t_ms, x.value.to_bits())).collect::<Vec<_>>(),
                    )
                })
                .collect();
            let from_memory: Vec<_> = memory
                .select(matchers, range)
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.samples().unwrap().iter().map(|x| (x.t_ms, x.value.to_bits())).collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(from_store, from_memory, "{matchers:?} {range:?}");
            assert_eq!(
                storage.metrics().label_names(matchers, range).unwrap(),
                memory.label_names(matchers, range).unwrap()
            );
        }
    }
}

#[test]
fn size_retention_deletes_the_oldest_blocks_first() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path(), MetricsOptions { retention_ms: Some(60 * MINUTE), ..small_blocks() });
    // A retention of an hour keeps compaction at 10 minute blocks (a tenth of the retention).
    load_grid(&storage, 4, 0, 60 * MINUTE);
    storage.maintenance().unwrap();
    let ranges = storage.metrics().block_ranges();
    assert!(ranges.len() >= 3, "{ranges:?}");
    let total = storage.metrics().stats().block_bytes;
    drop(storage);

    let limit = total / 2;
    let storage = open(
        dir.path(),
        MetricsOptions { retention_ms: Some(60 * MINUTE), retention_bytes: Some(limit), ..small_blocks() },
    );
    let report = storage.maintenance().unwrap();
    assert!(report.metrics_blocks_deleted >= 1);
    let stats = storage.metrics().stats();
    assert!(stats.block_bytes <= limit, "{} > {limit}", stats.block_bytes);
    let kept = storage.metrics().block_ranges();
    assert_eq!(kept, ranges[ranges.len() - kept.len()..], "the newest blocks are kept");
}

/// Copies a directory tree (the WAL), for simulating a crash at a chosen point.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_crash_between_block_cut_and_wal_checkpoint_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let saved_wal = tempfile::tempdir().unwrap();
    let before;
    {
        let storage = open(dir.path(), small_blocks());
        load_grid(&storage, 3, 0, 50 * MINUTE);
        before = dump(&storage, &[]);
        copy_tree(&dir.path().join("wal"), saved_wal.path());
        let report = storage.maintenance().unwrap();
        assert!(report.metrics_blocks_cut >= 1);
    }
    // The blocks are in place, but the WAL is as it was before the cut and checkpoint.
    fs::remove_dir_all(dir.path().join("wal")).unwrap();
    copy_tree(saved_wal.path(), &dir.path().join("wal"));
    let storage = open(dir.path(), small_blocks());
    assert_eq!(dump(&storage, &[]), before, "head and blocks hold the same samples; answers merge them");
    storage.maintenance().unwrap();
    assert_eq!(dump(&storage, &[]), before, "after the overlapping blocks are compacted");
    let ranges = storage.metrics().block_ranges();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "overlapping blocks left: {ranges:?}");
    }
}
