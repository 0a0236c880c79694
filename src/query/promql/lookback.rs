//! Which stored samples an instant or a range selector sees at an evaluation time.
//!
//! Prometheus 3 semantics: windows are left-open and right-closed. An instant selector at `t`
//! takes the newest sample in `(t - lookback, t]`, and takes nothing when that sample is a
//! staleness marker. A range selector `[d]` at `t` takes every sample in `(t - d, t]`, with
//! staleness markers dropped.

use tripod_storage::metrics::{Sample, is_stale_nan};

/// Prometheus's default `--query.lookback-delta`.
pub const DEFAULT_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// The sample an instant selector sees at `t_ms` in `samples` (sorted by time), if any.
pub fn instant_sample(samples: &[Sample], t_ms: i64, lookback_ms: i64) -> Option<Sample> {
    // The first sample after `t_ms`; the one before it is the newest at or before `t_ms`.
    let after = samples.partition_point(|s| s.t_ms <= t_ms);
    let newest = samples[..after].last()?;
    (newest.t_ms > t_ms.saturating_sub(lookback_ms) && !is_stale_nan(newest.value)).then_some(*newest)
}

/// The samples a range selector of `range_ms` sees at `t_ms` in `samples` (sorted by time),
/// without staleness markers.
pub fn range_samples(samples: &[Sample], t_ms: i64, range_ms: i64) -> impl Iterator<Item = Sample> + '_ {
    let start = t_ms.saturating_sub(range_ms);
    let from = samples.partition_point(|s| s.t_ms <= start);
    let to = samples.partition_point(|s| s.t_ms <= t_ms);
    samples[from..to.max(from)].iter().copied().filter(|s| !is_stale_nan(s.value))
}

#[cfg(test)]
mod tests {
    use tripod_storage::metrics::{STALE_NAN, Sample};

    use super::*;

    fn samples(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t_ms, value)| Sample { t_ms, value }).collect()
    }

    #[test]
    fn instant_selection_is_left_open_and_right_closed() {
        let s = samples(&[(10_000, 1.0), (20_000, 2.0)]);
        assert_eq!(instant_sample(&s, 9_999, 300_000), None);
        assert_eq!(instant_sample(&s, 10_000, 300_000).map(|s| s.value), Some(1.0));
        assert_eq!(instant_sample(&s, 19_999, 300_000).map(|s| s.value), Some(1.0));
        assert_eq!(instant_sample(&s, 20_000, 300_000).map(|s| s.value), Some(2.0));
        // The window (t - 5m, t] no longer holds t = 20s exactly five minutes later.
        assert_eq!(instant_sample(&s, 319_999, 300_000).map(|s| s.value), Some(2.0));
        assert_eq!(instant_sample(&s, 320_000, 300_000), None);
        assert_eq!(instant_sample(&[], 0, 300_000), None);
    }

    #[test]
    fn a_staleness_marker_ends_the_series_until_the_next_sample() {
        let s = samples(&[(10_000, 1.0), (20_000, STALE_NAN), (30_000, 3.0)]);
        assert_eq!(instant_sample(&s, 15_000, 300_000).map(|s| s.value), Some(1.0));
        assert_eq!(instant_sample(&s, 25_000, 300_000), None);
        assert_eq!(instant_sample(&s, 30_000, 300_000).map(|s| s.value), Some(3.0));
        // A real NaN is a value, not a marker.
        let s = samples(&[(10_000, f64::NAN)]);
        assert!(instant_sample(&s, 10_000, 300_000).is_some_and(|s| s.value.is_nan()));
    }

    #[test]
    fn range_selection_drops_the_left_edge_and_markers() {
        let s = samples(&[(0, 0.0), (10_000, 1.0), (20_000, STALE_NAN), (30_000, 3.0), (40_000, 4.0)]);
        let got: Vec<i64> = range_samples(&s, 30_000, 30_000).map(|s| s.t_ms).collect();
        assert_eq!(got, [10_000, 30_000]);
        let got: Vec<i64> = range_samples(&s, 5_000, 1_000).map(|s| s.t_ms).collect();
        assert!(got.is_empty());
        let got: Vec<i64> = range_samples(&s, i64::MIN, i64::MAX).map(|s| s.t_ms).collect();
        assert!(got.is_empty());
    }
}
