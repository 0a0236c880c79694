//! PromQL functions over a range window and over single values, with Prometheus 3's
//! arithmetic (extrapolated rates, compensated sums, NaN handling as Go's `math` does it).

use tripod_storage::metrics::Sample;

/// Whether `name` is a function of one range vector (plus, for some, a scalar) that this
/// module computes.
pub fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "first_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "double_exponential_smoothing"
            | "changes"
            | "resets"
            | "deriv"
            | "predict_linear"
    )
}

/// Whether a function's result still measures what the metric name says.
pub fn keeps_metric_name(name: &str) -> bool {
    matches!(name, "first_over_time" | "last_over_time")
}

/// The window of a range selector at one evaluation: its samples (staleness markers removed)
/// and its bounds in milliseconds, `(start, end]`.
pub struct Window<'a> {
    pub samples: &'a [Sample],
    pub start_ms: i64,
    pub end_ms: i64,
    /// The evaluation time (for `predict_linear`).
    pub eval_ms: i64,
    /// Set when the caller knows no value in the window drops (no counter reset), so `rate`
    /// and `increase` need not look.
    pub no_counter_resets: bool,
}

/// Applies a range function; `params` are its scalar arguments at this step, in order.
pub fn range_function(name: &str, window: &Window<'_>, params: &[f64]) -> Option<f64> {
    let param = params.first().copied().unwrap_or(f64::NAN);
    let samples = window.samples;
    if samples.is_empty() {
        return None;
    }
    let values = || samples.iter().map(|s| s.value);
    Some(match name {
        "rate" => extrapolated_rate(window, true, true)?,
        "increase" => extrapolated_rate(window, true, false)?,
        "delta" => extrapolated_rate(window, false, false)?,
        "irate" => instant_delta(samples, true)?,
        "idelta" => instant_delta(samples, false)?,
        "count_over_time" => samples.len() as f64,
        "present_over_time" => 1.0,
        "last_over_time" => samples[samples.len() - 1].value,
        "first_over_time" => samples[0].value,
        "ts_of_first_over_time" => seconds(samples[0].t_ms),
        "ts_of_last_over_time" => seconds(samples[samples.len() - 1].t_ms),
        // The newest of the samples holding the extreme value; NaN loses to any number.
        "ts_of_min_over_time" => seconds(extreme_sample(samples, |v, min| v <= min).t_ms),
        "ts_of_max_over_time" => seconds(extreme_sample(samples, |v, max| v >= max).t_ms),
        "sum_over_time" => {
            let mut sum = CompensatedSum::default();
            values().for_each(|v| sum.add(v));
            sum.value()
        }
        "avg_over_time" => mean(values()),
        "min_over_time" => values().fold(f64::NAN, |min, v| if v < min || min.is_nan() { v } else { min }),
        "max_over_time" => values().fold(f64::NAN, |max, v| if v > max || max.is_nan() { v } else { max }),
        "stdvar_over_time" => variance(values()),
        "stddev_over_time" => variance(values()).sqrt(),
        "quantile_over_time" => {
            let mut sorted: Vec<f64> = values().collect();
            quantile(param, &mut sorted)
        }
        "mad_over_time" => {
            let mut values: Vec<f64> = values().collect();
            if values.iter().any(|v| v.is_nan()) {
                return Some(f64::NAN);
            }
            let median = quantile(0.5, &mut values);
            let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
            quantile(0.5, &mut deviations)
        }
        "double_exponential_smoothing" => {
            double_exponential_smoothing(samples, param, params.get(1).copied().unwrap_or(f64::NAN))?
        }
        "changes" => {
            let changed = samples.windows(2).filter(|p| {
                let (a, b) = (p[0].value, p[1].value);
                a != b && !(a.is_nan() && b.is_nan())
            });
            changed.count() as f64
        }
        "resets" => samples.windows(2).filter(|p| p[1].value < p[0].value).count() as f64,
        "deriv" => {
            if samples.len() < 2 {
                return None;
            }
            linear_regression(samples, samples[0].t_ms).0
        }
        "predict_linear" => {
            if samples.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(samples, window.eval_ms);
            slope * param + intercept
        }
        _ => return None,
    })
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated to its edges.
fn extrapolated_rate(window: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    extrapolated_rate_cached(window, is_counter, is_rate, &mut None)
}

/// What `rate`, `increase` and `delta` compute from sample times alone. Samples on a regular
/// grid give every window the same, so a caller walking windows keeps the last one.
#[derive(Debug, Clone, Copy)]
pub struct RateGeometry {
    /// What the rest is computed from.
    key: GeometryKey,
    sampled: f64,
    to_start: f64,
    to_end: f64,
    range: f64,
    /// The extrapolation factor unless a counter's zero point shortens it.
    factor: f64,
    /// `to_start / sampled`: a counter whose first value exceeds twice this times its increase
    /// reaches zero well before the window starts, which settles the zero-point test without
    /// dividing (rounding cannot move a quotient by a factor of two).
    zero_point_bound: f64,
}

/// A window's times, relative (ms): first sample to window start, window end to last sample,
/// last to first sample; its sample count and width; and whether a rate is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GeometryKey {
    first_to_start: i64,
    end_to_last: i64,
    sampled_ms: i64,
    count: usize,
    range_ms: i64,
    is_rate: bool,
}

impl RateGeometry {
    fn new(key: GeometryKey) -> RateGeometry {
        let GeometryKey { first_to_start, end_to_last, sampled_ms, count, range_ms, is_rate } = key;
        let sampled = sampled_ms as f64 / 1000.0;
        let average_gap = sampled / (count - 1) as f64;
        let mut to_start = first_to_start as f64 / 1000.0;
        let mut to_end = end_to_last as f64 / 1000.0;
        // Extrapolate to an edge only when a sample could be expected there; otherwise by
        // half a gap.
        let threshold = average_gap * 1.1;
        if to_start >= threshold {
            to_start = average_gap / 2.0;
        }
        if to_end >= threshold {
            to_end = average_gap / 2.0;
        }
        let range = range_ms as f64 / 1000.0;
        let mut factor = (sampled + to_start + to_end) / sampled;
        if is_rate {
            factor /= range;
        }
        RateGeometry { key, sampled, to_start, to_end, range, factor, zero_point_bound: to_start / sampled }
    }
}

impl RateGeometry {
    /// The geometry of the window `(start_ms, end_ms]` whose `count` (at least 2) samples run
    /// from `first_ms` to `last_ms`: the one in `cache` when it has the same, else computed and
    /// kept there.
    #[inline]
    pub fn of_window(
        cache: &mut Option<RateGeometry>,
        first_ms: i64,
        last_ms: i64,
        start_ms: i64,
        end_ms: i64,
        count: usize,
        is_rate: bool,
    ) -> RateGeometry {
        let key = GeometryKey {
            first_to_start: first_ms.saturating_sub(start_ms),
            end_to_last: end_ms.saturating_sub(last_ms),
            sampled_ms: last_ms.saturating_sub(first_ms),
            count,
            range_ms: end_ms.saturating_sub(start_ms),
            is_rate,
        };
        match cache {
            Some(geometry) if geometry.key == key => *geometry,
            _ => *cache.insert(RateGeometry::new(key)),
        }
    }

    /// The window this geometry was computed for: first sample to window start and window end
    /// to last sample (ms), and its sample count.
    pub fn key_parts(&self) -> (i64, i64, usize) {
        (self.key.first_to_start, self.key.end_to_last, self.key.count)
    }

    /// The extrapolation factor [`RateGeometry::extrapolate`] applies unless a counter's zero
    /// point shortens it, and the bound it tests that against (see
    /// [`RateGeometry::near_zero`]).
    pub fn factor(&self) -> f64 {
        self.factor
    }

    pub fn zero_point_bound(&self) -> f64 {
        self.zero_point_bound
    }

    /// Whether [`RateGeometry::extrapolate`] looks at where a counter would reach zero: when
    /// not, it gives `result * factor()`.
    #[inline(always)]
    pub fn near_zero(zero_point_bound: f64, first_value: f64, result: f64, is_counter: bool) -> bool {
        let far_from_zero = first_value > 2.0 * zero_point_bound * result;
        is_counter && result > 0.0 && first_value >= 0.0 && !far_from_zero
    }

    /// Whether a window of the same width and function as the one this geometry was computed
    /// for, whose first sample is `first_to_start` ms after its start, whose last is
    /// `end_to_last` ms before its end and which holds `count` samples, has this geometry.
    #[inline(always)]
    pub fn fits(&self, first_to_start: i64, end_to_last: i64, count: usize) -> bool {
        self.key.first_to_start == first_to_start && self.key.end_to_last == end_to_last && self.key.count == count
    }

    /// The change `result` over a window whose first value is `first_value`, extrapolated to
    /// the window's edges (per second for `rate`); a counter is not extrapolated below zero.
    #[inline(always)]
    pub fn extrapolate(&self, first_value: f64, result: f64, is_counter: bool, is_rate: bool) -> f64 {
        if RateGeometry::near_zero(self.zero_point_bound, first_value, result, is_counter) {
            let to_zero = self.sampled * (first_value / result);
            if to_zero < self.to_start {
                let mut factor = (self.sampled + to_zero + self.to_end) / self.sampled;
                if is_rate {
                    factor /= self.range;
                }
                return result * factor;
            }
        }
        result * self.factor
    }
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated to its edges.
/// `cache` holds the geometry of an earlier window, reused when this one has the same.
pub fn extrapolated_rate_cached(
    window: &Window<'_>,
    is_counter: bool,
    is_rate: bool,
    cache: &mut Option<RateGeometry>,
) -> Option<f64> {
    let samples = window.samples;
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut result = last.value - first.value;
    if is_counter && !window.no_counter_resets {
        result = with_counter_resets(samples, result);
    }
    let geometry =
        RateGeometry::of_window(cache, first.t_ms, last.t_ms, window.start_ms, window.end_ms, samples.len(), is_rate);
    Some(geometry.extrapolate(first.value, result, is_counter, is_rate))
}

/// `result` plus, for every drop between consecutive samples (a counter reset), the value
/// before the drop, which the difference of first and last lost; added in sample order.
#[inline]
pub fn with_counter_resets(samples: &[Sample], mut result: f64) -> f64 {
    for pair in samples.windows(2) {
        if pair[1].value < pair[0].value {
            result += pair[0].value;
        }
    }
    result
}

/// [`with_counter_resets`] over a window's values alone.
#[inline]
pub fn with_counter_resets_in(values: &[f64], mut result: f64) -> f64 {
    for pair in values.windows(2) {
        if pair[1] < pair[0] {
            result += pair[0];
        }
    }
    result
}

fn seconds(t_ms: i64) -> f64 {
    t_ms as f64 / 1000.0
}

/// The newest sample that `wins` (value, best so far) against every earlier one; a NaN best is
/// replaced by any value.
fn extreme_sample(samples: &[Sample], wins: impl Fn(f64, f64) -> bool) -> Sample {
    let mut best = samples[0];
    for &sample in &samples[1..] {
        if best.value.is_nan() || wins(sample.value, best.value) {
            best = sample;
        }
    }
    best
}

/// Whether a smoothing or trend factor of `double_exponential_smoothing` is usable: strictly
/// between 0 and 1.
pub fn is_smoothing_factor(factor: f64) -> bool {
    factor > 0.0 && factor < 1.0
}

/// Holt's linear smoothing: the level after the last sample, with smoothing factor `sf` and
/// trend factor `tf` (both checked with [`is_smoothing_factor`] by the caller). Needs two
/// samples.
fn double_exponential_smoothing(samples: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    // The level after the newest sample so far and after the one before it, and the trend.
    let (mut level, mut previous_level) = (samples[0].value, 0.0);
    let mut trend = samples[1].value - samples[0].value;
    for (i, sample) in samples.iter().enumerate().skip(1) {
        if i > 1 {
            trend = tf * (level - previous_level) + (1.0 - tf) * trend;
        }
        previous_level = level;
        level = sf * sample.value + (1.0 - sf) * (level + trend);
    }
    Some(level)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_delta(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (previous, last) = (samples[samples.len() - 2], samples[samples.len() - 1]);
    let mut result = last.value - previous.value;
    if is_rate && last.value < previous.value {
        // A counter reset: the new value is the increase since it.
        result = last.value;
    }
    let interval_ms = last.t_ms - previous.t_ms;
    if interval_ms == 0 {
        return None;
    }
    if is_rate {
        result /= interval_ms as f64 / 1000.0;
    }
    Some(result)
}

/// Neumaier's compensated sum.
#[derive(Debug, Default, Clone, Copy)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    pub fn add(&mut self, value: f64) {
        let total = self.sum + value;
        if total.is_infinite() {
            self.compensation = 0.0;
        } else if self.sum.abs() >= value.abs() {
            self.compensation += (self.sum - total) + value;
        } else {
            self.compensation += (value - total) + self.sum;
        }
        self.sum = total;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The mean: a compensated sum divided by the count, or, where that sum would overflow, a
/// compensated incremental mean.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let mut sum = CompensatedSum::default();
    let mut incremental: Option<CompensatedSum> = None;
    let mut count = 0.0;
    for value in values {
        count += 1.0;
        if count == 1.0 {
            sum.add(value);
            continue;
        }
        if incremental.is_none() {
            let mut next = sum;
            next.add(value);
            if !next.sum.is_infinite() {
                sum = next;
                continue;
            }
        }
        // From here on (the sum would overflow) the mean continues from what came so far.
        let mean = incremental.get_or_insert(CompensatedSum {
            sum: sum.sum / (count - 1.0),
            compensation: sum.compensation / (count - 1.0),
        });
        if mean.sum.is_infinite() && (value.is_finite() || (value.is_infinite() && (mean.sum > 0.0) == (value > 0.0))) {
            continue;
        }
        let current = mean.value();
        mean.add(value / count - current / count);
    }
    match incremental {
        Some(mean) => mean.value(),
        None => sum.value() / count,
    }
}

/// The population variance (Welford's method).
fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for value in values {
        count += 1.0;
        let delta = value - mean;
        mean += delta / count;
        m2 += delta * (value - mean);
    }
    m2 / count
}

/// The φ-quantile of `values` by linear interpolation between closest ranks, as Prometheus
/// computes it (NaN sorts first); φ outside [0, 1] gives ∓Inf.
pub fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    // NaN counts as the smallest value, as Go's float sort orders it.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The φ-quantile of a classic histogram's `(upper bound, cumulative count)` buckets,
/// interpolated linearly inside the bucket it falls in. Counts that fall are raised to keep
/// the buckets monotonic; NaN when there is no `+Inf` bucket or no observation.
pub fn bucket_quantile(phi: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound (from differently spelled `le` values) add up.
    buckets.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
    let mut previous = buckets[0].1;
    for bucket in buckets.iter_mut().skip(1) {
        let current = bucket.1;
        if current == previous {
            continue;
        }
        let tiny = (current - previous).abs() <= 1e-12 * current.abs().max(previous.abs());
        if tiny || current < previous {
            bucket.1 = previous;
            continue;
        }
        previous = current;
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = phi * observations;
    let last = buckets.len() - 1;
    let b = buckets[..last].partition_point(|bucket| bucket.1 < rank);
    if b == last {
        return buckets[last - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Least-squares slope and intercept, with x in seconds relative to `intercept_ms`.
fn linear_regression(samples: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let first = samples[0].value;
    if samples.iter().all(|s| s.value == first) {
        return if first.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, first) };
    }
    let (mut sx, mut sy, mut sxy, mut sx2) =
        (CompensatedSum::default(), CompensatedSum::default(), CompensatedSum::default(), CompensatedSum::default());
    let n = samples.len() as f64;
    for sample in samples {
        let x = (sample.t_ms - intercept_ms) as f64 / 1000.0;
        sx.add(x);
        sy.add(sample.value);
        sxy.add(x * sample.value);
        sx2.add(x * x);
    }
    let (sum_x, sum_y) = (sx.value(), sy.value());
    let covariance = sxy.value() - sum_x * sum_y / n;
    let variance = sx2.value() - sum_x * sum_x / n;
    let slope = covariance / variance;
    (slope, sum_y / n - slope * sum_x / n)
}

/// A function of one value, if `name` is one.
pub fn value_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins, and +0 beats -0.
pub fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins, and -0 beats +0.
pub fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// A calendar field of the UTC time `seconds` after the epoch, for the date functions
/// (`minute`, `hour`, `day_of_week` with Sunday 0, `day_of_month`, `day_of_year`,
/// `days_in_month`, `month`, `year`). Fractions of a second are cut off; a time that is not a
/// number gives NaN.
pub fn date_part(name: &str, seconds: f64) -> f64 {
    if !seconds.is_finite() {
        return f64::NAN;
    }
    // `as` saturates: times beyond ±292 billion years clamp to the ends of i64.
    let seconds = seconds as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let value = match name {
        "minute" => second_of_day / 60 % 60,
        "hour" => second_of_day / 3600,
        // 1970-01-01 was a Thursday.
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_month" => day,
        "day_of_year" => month_lengths[..(month - 1) as usize].iter().sum::<i64>() + day,
        "days_in_month" => month_lengths[(month - 1) as usize],
        "month" => month,
        "year" => year,
        _ => return f64::NAN,
    };
    value as f64
}

/// The proleptic Gregorian (year, month 1-12, day 1-31) of a day count from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Days from 0000-03-01, in 400-year eras of 146 097 days; years start in March, so the
    // leap day is the last day of a year.
    let from_march_zero = days.saturating_add(719_468);
    let era = from_march_zero.div_euclid(146_097);
    let day_of_era = from_march_zero.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era.saturating_mul(400).saturating_add(year_of_era) + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, f64)], start_ms: i64, end_ms: i64) -> (Vec<Sample>, i64, i64) {
        (points.iter().map(|&(t_ms, value)| Sample { t_ms, value }).collect(), start_ms, end_ms)
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter rising 1 per 15 s, seen from 15 s to 60 s in a (0, 60 s] window.
        let (samples, start_ms, end_ms) =
            window(&[(15_000, 1.0), (30_000, 2.0), (45_000, 3.0), (60_000, 4.0)], 0, 60_000);
        let w = Window { samples: &samples, start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        // 3 over 45 s, extrapolated 15 s back to zero at the start: 4 over 60 s.
        assert_eq!(range_function("increase", &w, &[]), Some(4.0));
        assert!((range_function("rate", &w, &[]).unwrap() - 4.0 / 60.0).abs() < 1e-12);
        // A reset adds the value before it.
        let (samples, ..) = window(&[(15_000, 5.0), (30_000, 6.0), (45_000, 1.0), (60_000, 2.0)], 0, 60_000);
        let w = Window { samples: &samples, start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        assert_eq!(range_function("resets", &w, &[]), Some(1.0));
        assert_eq!(range_function("irate", &w, &[]), Some(1.0 / 15.0));
        let one = [Sample { t_ms: 1, value: 1.0 }];
        let w = Window { samples: &one, start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        assert_eq!(range_function("rate", &w, &[]), None);
    }

    #[test]
    fn quantiles_interpolate_and_clamp() {
        assert_eq!(quantile(0.5, &mut [1.0, 3.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(1.5, &mut [1.0]), f64::INFINITY);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
    }

    #[test]
    fn date_parts_follow_the_utc_calendar() {
        // 2006-01-02 22:04:05 UTC, a Monday.
        let t = 1_136_239_445.0;
        let parts = ["year", "month", "day_of_month", "day_of_year", "day_of_week", "hour", "minute", "days_in_month"];
        let got: Vec<f64> = parts.iter().map(|part| date_part(part, t)).collect();
        assert_eq!(got, [2006.0, 1.0, 2.0, 2.0, 1.0, 22.0, 4.0, 31.0]);
        // Leap years: 2016-02-29 23:59:59, then the last day of 2016, and 1900 (not leap).
        assert_eq!((date_part("month", 1_456_790_399.0), date_part("day_of_month", 1_456_790_399.0)), (2.0, 29.0));
        assert_eq!(date_part("days_in_month", 1_456_790_399.0), 29.0);
        assert_eq!(date_part("day_of_year", 1_483_191_420.0), 366.0);
        assert_eq!(date_part("days_in_month", -2_206_310_400.0), 28.0);
        // Before the epoch: 1969-12-31 23:59:59, a Wednesday.
        assert_eq!(date_part("year", -1.0), 1969.0);
        assert_eq!(date_part("day_of_week", -1.0), 3.0);
        assert_eq!(date_part("hour", -1.0), 23.0);
        assert!(date_part("year", f64::NAN).is_nan());
        assert!(date_part("year", f64::INFINITY).is_nan());
        assert!(date_part("year", 1e300).is_finite());
    }

    #[test]
    fn smoothing_and_extremes() {
        let (samples, start_ms, end_ms) =
            window(&[(10_000, 1.0), (20_000, 3.0), (30_000, 5.0), (40_000, 7.0)], 0, 40_000);
        let w = Window { samples: &samples, start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        // A straight line is followed exactly whatever the factors.
        assert_eq!(range_function("double_exponential_smoothing", &w, &[0.5, 0.5]), Some(7.0));
        let one = Window { samples: &samples[..1], start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        assert_eq!(range_function("double_exponential_smoothing", &one, &[0.5, 0.5]), None);
        assert_eq!(range_function("first_over_time", &w, &[]), Some(1.0));
        assert_eq!(range_function("ts_of_first_over_time", &w, &[]), Some(10.0));
        assert_eq!(range_function("ts_of_max_over_time", &w, &[]), Some(40.0));
        assert_eq!(range_function("ts_of_min_over_time", &w, &[]), Some(10.0));
        // Median 4, absolute deviations 3, 1, 1, 3: their median is 2.
        assert_eq!(range_function("mad_over_time", &w, &[]), Some(2.0));
        // Ties go to the newest sample; NaN loses to any number.
        let (samples, ..) = window(&[(1_000, f64::NAN), (2_000, 2.0), (3_000, 1.0), (4_000, 2.0)], 0, 5_000);
        let w = Window { samples: &samples, start_ms, end_ms, eval_ms: end_ms, no_counter_resets: false };
        assert_eq!(range_function("ts_of_max_over_time", &w, &[]), Some(4.0));
        assert_eq!(range_function("ts_of_min_over_time", &w, &[]), Some(3.0));
    }

    #[test]
    fn go_min_max_semantics() {
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert!(go_min(1.0, f64::NAN).is_nan());
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert_eq!(go_max(1.0, 2.0), 2.0);
        assert_eq!(go_min(1.0, 2.0), 1.0);
    }
}
