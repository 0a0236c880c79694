//! `rate`, `increase` and `delta` of one series at every step of a range query, in one walk
//! along its samples: only each window's edge indices are kept, counter resets are looked for
//! once, and window geometries are reused. Where the samples lie on a regular grid and the
//! steps are a multiple of its spacing, every window away from the series' ends holds the same
//! number of samples with the same geometry, so those windows are computed in a loop the
//! compiler vectorizes. Window by window, the values are those of
//! [`functions::extrapolated_rate_cached`].

use std::ops::Range;

use tripod_storage::metrics::SampleColumns;

use super::functions::{self, RateGeometry};
use super::range::with_wide_vectors;

/// How many window geometries a walk keeps.
const GEOMETRIES: usize = 32;

/// One range function (`rate`, `increase` or `delta`) over one job's steps, and what its walks
/// reuse from series to series. One per worker thread.
pub(super) struct Walk {
    /// `rate` and `increase` (not `delta`).
    is_counter: bool,
    /// `rate` (per second).
    is_rate: bool,
    /// Each step's window `(start, end]`; the ends never move back.
    ends: Vec<i64>,
    starts: Vec<i64>,
    /// Set when the ends are evenly spaced.
    grid: Option<StepGrid>,
    /// Window geometries computed so far, by sample count modulo their number: series sampled
    /// alike share them (the first windows of a range, partly filled, differ from each other
    /// but not from series to series).
    geometries: Vec<Option<RateGeometry>>,
    /// Positions `j` where a value drops below the one before (`samples[j] < samples[j - 1]`),
    /// ascending: the counter resets `rate` and `increase` add back.
    drops: Vec<usize>,
}

/// What a walk found: how many steps have a value, and a run of steps that all have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Walked {
    pub present: usize,
    pub dense: Range<usize>,
}

/// A series' samples as the walk reads them: times and values, as many of each, and what is
/// known of them.
#[derive(Clone, Copy)]
struct Samples<'a> {
    times: &'a [i64],
    values: &'a [f64],
    /// Set when the times are known to be evenly spaced, this far apart.
    spacing: Option<i64>,
    /// Whether no value is known to drop below the one before.
    non_decreasing: bool,
}

/// Evenly spaced steps: `ends[i] = ends[0] + i * step_ms`.
#[derive(Debug, Clone, Copy)]
struct StepGrid {
    step_ms: i64,
}

/// The steps whose windows lie wholly inside a series on a regular grid: each holds `width`
/// samples, the first at `first_from + (i - steps.start) * stride` for step `i`.
#[derive(Debug, Clone)]
struct Interior {
    steps: Range<usize>,
    first_from: usize,
    width: usize,
    /// Samples per step.
    stride: usize,
}

/// Where a walk stands: the window's edges, the next counter reset, and the last window's
/// geometry (its key, and the two figures every window uses, kept apart so that they stay in
/// registers).
#[derive(Clone, Copy)]
struct Cursor {
    from: usize,
    to: usize,
    drop_index: usize,
    next_drop: usize,
    key: (i64, i64, usize),
    factor: f64,
    zero_point_bound: f64,
    geometry: Option<RateGeometry>,
}

impl Walk {
    /// The walk of function `name` over windows `(end - range_ms, end]`, or `None` when it
    /// cannot be walked: another function, window ends that move back, or a window start below
    /// the smallest time.
    pub fn new(name: &str, ends: &[i64], range_ms: i64) -> Option<Walk> {
        let (is_counter, is_rate) = match name {
            "rate" => (true, true),
            "increase" => (true, false),
            "delta" => (false, false),
            _ => return None,
        };
        if !ends.is_sorted() {
            return None;
        }
        let starts = ends.iter().map(|end| end.checked_sub(range_ms)).collect::<Option<Vec<i64>>>()?;
        let grid = match ends {
            [first, second, ..] => {
                let step_ms = second - first;
                let even = ends.iter().enumerate().all(|(i, &end)| {
                    (i as i64).checked_mul(step_ms).and_then(|offset| first.checked_add(offset)) == Some(end)
                });
                (step_ms > 0 && even).then_some(StepGrid { step_ms })
            }
            _ => None,
        };
        Some(Walk {
            is_counter,
            is_rate,
            ends: ends.to_vec(),
            starts,
            grid,
            geometries: vec![None; GEOMETRIES],
            drops: Vec::new(),
        })
    }

    /// The function over `columns` (sorted by time, no staleness markers) at every step:
    /// `out[i]` is step `i`'s value and `present[i]` whether it has one (its window holds two
    /// samples or more; `out[i]` is 0 when not). Both are resized to the step count. What the
    /// columns tell of their spacing and drops is taken as true.
    pub fn run(&mut self, columns: &SampleColumns, out: &mut Vec<f64>, present: &mut Vec<bool>) -> Walked {
        let steps = self.ends.len();
        out.resize(steps, 0.0);
        present.resize(steps, false);
        let count = columns.len();
        let samples = Samples {
            times: &columns.times[..count],
            values: &columns.values[..count],
            spacing: columns.spacing,
            non_decreasing: columns.non_decreasing,
        };
        if self.is_counter {
            self.walk::<true>(samples, out, present)
        } else {
            self.walk::<false>(samples, out, present)
        }
    }

    fn walk<const COUNTER: bool>(&mut self, samples: Samples<'_>, out: &mut [f64], present: &mut [bool]) -> Walked {
        let values = samples.values;
        // Counters rarely reset: first a look without stopping early (vector compares).
        self.drops.clear();
        if COUNTER && !samples.non_decreasing && any_drop(values) {
            self.drops.extend((1..values.len()).filter(|&j| values[j] < values[j - 1]));
        }
        let mut cursor = Cursor {
            from: 0,
            to: 0,
            drop_index: 0,
            next_drop: self.drops.first().copied().unwrap_or(usize::MAX),
            // No window has this key: a first sample always lies after its window's start.
            key: (i64::MIN, i64::MIN, 0),
            factor: 0.0,
            zero_point_bound: 0.0,
            geometry: None,
        };
        let steps = self.ends.len().min(out.len()).min(present.len());
        match self.grid.and_then(|grid| interior(samples, &self.starts, &self.ends, grid)) {
            Some(interior) if interior.steps.end <= steps => {
                let before = self.steps::<COUNTER>(&mut cursor, samples, 0..interior.steps.start, out, present);
                self.interior::<COUNTER>(samples, &interior, out, present);
                // The walk goes on from the interior's last window.
                let last = interior.steps.len() - 1;
                cursor.from = interior.first_from + last * interior.stride;
                cursor.to = cursor.from + interior.width;
                let after = self.steps::<COUNTER>(&mut cursor, samples, interior.steps.end..steps, out, present);
                Walked { present: before + interior.steps.len() + after, dense: interior.steps }
            }
            _ => {
                let present = self.steps::<COUNTER>(&mut cursor, samples, 0..steps, out, present);
                Walked { present, dense: 0..0 }
            }
        }
    }

    /// Steps `range`, window by window, from where `cursor` stands; returns how many have a
    /// value.
    fn steps<const COUNTER: bool>(
        &mut self,
        cursor: &mut Cursor,
        samples: Samples<'_>,
        range: Range<usize>,
        out: &mut [f64],
        present: &mut [bool],
    ) -> usize {
        let (Some(ends), Some(starts)) = (self.ends.get(range.clone()), self.starts.get(range.clone())) else {
            return 0;
        };
        let (Some(out), Some(present)) = (out.get_mut(range.clone()), present.get_mut(range)) else {
            return 0;
        };
        let mut with_value = 0;
        let steps = ends.len().min(starts.len()).min(out.len()).min(present.len());
        let (drops, is_rate) = (self.drops.as_slice(), self.is_rate);
        let Samples { times, values, .. } = samples;
        let count = times.len().min(values.len());
        // Locals, so that they stay in registers.
        let Cursor { mut from, mut to, mut drop_index, mut next_drop, mut key, mut factor, .. } = *cursor;
        let mut zero_point_bound = cursor.zero_point_bound;
        let mut geometry = cursor.geometry;
        for step in 0..steps {
            let (start, end) = (starts[step], ends[step]);
            // The window is samples[from..to].
            while from < count && times[from] <= start {
                from += 1;
            }
            to = to.max(from);
            while to < count && times[to] <= end {
                to += 1;
            }
            if to < from + 2 || to > count {
                present[step] = false;
                out[step] = 0.0;
                continue;
            }
            let (first_ms, last_ms) = (times[from], times[to - 1]);
            let (first_value, last_value) = (values[from], values[to - 1]);
            let mut result = last_value - first_value;
            if COUNTER && next_drop < to {
                (drop_index, next_drop) = next_drop_after(drops, drop_index, from);
                if next_drop < to {
                    result = functions::with_counter_resets_in(&values[from..to], result);
                }
            }
            // Both differences lie within the window, whose width does not overflow.
            let window_key = (first_ms.wrapping_sub(start), end.wrapping_sub(last_ms), to - from);
            if window_key != key {
                let known = known_geometry(&mut self.geometries, first_ms, last_ms, start, end, to - from, is_rate);
                key = known.key_parts();
                (factor, zero_point_bound) = (known.factor(), known.zero_point_bound());
                geometry = Some(known);
            }
            present[step] = true;
            with_value += 1;
            out[step] = if RateGeometry::near_zero(zero_point_bound, first_value, result, COUNTER) {
                near_zero(geometry.as_ref(), first_value, result, is_rate)
            } else {
                result * factor
            };
        }
        *cursor = Cursor { from, to, drop_index, next_drop, key, factor, zero_point_bound, geometry };
        with_value
    }

    /// The steps of `interior`: every window has the same sample count and geometry, so the
    /// change and its extrapolation are computed for all of them in one loop without branches;
    /// the rare windows whose counter resets or nears zero are then done again one by one.
    fn interior<const COUNTER: bool>(
        &mut self,
        samples: Samples<'_>,
        interior: &Interior,
        out: &mut [f64],
        present: &mut [bool],
    ) {
        let Interior { steps, first_from, width, stride } = interior.clone();
        let last_from = first_from + (steps.len() - 1) * stride;
        let (Some(out), Some(present)) = (out.get_mut(steps.clone()), present.get_mut(steps.clone())) else {
            return;
        };
        let Samples { times, values, .. } = samples;
        // The first window's samples, and the last window's, exist: `interior` checked.
        let (Some(&first_ms), Some(&last_ms), Some(_)) =
            (times.get(first_from), times.get(first_from + width - 1), values.get(last_from + width - 1))
        else {
            return;
        };
        let (start, end) = (self.starts[steps.start], self.ends[steps.start]);
        let geometry = known_geometry(&mut self.geometries, first_ms, last_ms, start, end, width, self.is_rate);
        let (factor, zero_point_bound) = (geometry.factor(), geometry.zero_point_bound());
        present.fill(true);
        let firsts = &values[first_from..=last_from];
        let lasts = &values[first_from + width - 1..=last_from + width - 1];
        let mut any_near_zero = false;
        if stride == 1 {
            any_near_zero = with_wide_vectors(
                #[inline(always)]
                || extrapolate_all::<COUNTER>(firsts, lasts, out, factor, zero_point_bound),
            );
        } else {
            let pairs = firsts.iter().step_by(stride).zip(lasts.iter().step_by(stride));
            for (out, (&first, &last)) in out.iter_mut().zip(pairs) {
                let result = last - first;
                any_near_zero |= RateGeometry::near_zero(zero_point_bound, first, result, COUNTER);
                *out = result * factor;
            }
        }
        if !any_near_zero && (!COUNTER || self.drops.is_empty()) {
            return;
        }
        // Again, one window at a time, with what the loop above left out.
        let (mut drop_index, mut next_drop) = (0, self.drops.first().copied().unwrap_or(usize::MAX));
        for (index, out) in out.iter_mut().enumerate() {
            let from = first_from + index * stride;
            let (first, last) = (values[from], values[from + width - 1]);
            let mut result = last - first;
            if COUNTER && next_drop < from + width {
                (drop_index, next_drop) = next_drop_after(&self.drops, drop_index, from);
                if next_drop < from + width {
                    result = functions::with_counter_resets_in(&values[from..from + width], result);
                }
            }
            *out = geometry.extrapolate(first, result, COUNTER, self.is_rate);
        }
    }
}

/// `out[i] = (lasts[i] - firsts[i]) * factor` for the windows of an interior, as many as there
/// are; returns whether some window's counter may reach zero near its start (those are done
/// again one by one).
#[inline(always)]
fn extrapolate_all<const COUNTER: bool>(
    firsts: &[f64],
    lasts: &[f64],
    out: &mut [f64],
    factor: f64,
    zero_point_bound: f64,
) -> bool {
    let mut any_near_zero = false;
    for (out, (&first, &last)) in out.iter_mut().zip(firsts.iter().zip(lasts)) {
        let result = last - first;
        any_near_zero |= RateGeometry::near_zero(zero_point_bound, first, result, COUNTER);
        *out = result * factor;
    }
    any_near_zero
}

/// The steps of `grid` whose windows lie wholly inside `samples`, if the samples are evenly
/// spaced and the steps a whole number of spacings apart, and the windows hold two samples or
/// more. A window `(start, end]` then holds the samples from `floor((start - t0) / spacing) +
/// 1` to `floor((end - t0) / spacing)`, both moving by the same number of samples per step.
fn interior(samples: Samples<'_>, starts: &[i64], ends: &[i64], grid: StepGrid) -> Option<Interior> {
    let times = samples.times;
    let (&first_ms, &second_ms) = (times.first()?, times.get(1)?);
    let spacing = match samples.spacing {
        Some(spacing) => spacing,
        None => {
            let spacing = second_ms.checked_sub(first_ms).filter(|&spacing| spacing > 0)?;
            let mut even = true;
            for pair in times.windows(2) {
                even &= pair[1].wrapping_sub(pair[0]) == spacing;
            }
            if !even {
                return None;
            }
            spacing
        }
    };
    if spacing <= 0 || grid.step_ms % spacing != 0 {
        return None;
    }
    let stride = grid.step_ms / spacing;
    // Samples at or before the first window's start and end (unclamped: may be below 0 or
    // beyond the series).
    let before_start = starts.first()?.checked_sub(first_ms)?.div_euclid(spacing) + 1;
    let before_end = ends.first()?.checked_sub(first_ms)?.div_euclid(spacing) + 1;
    let width = before_end - before_start;
    if width < 2 {
        return None;
    }
    let count = times.len() as i64;
    if before_end > count {
        return None;
    }
    // Steps from the first whose window starts inside the series to the last that ends there
    // (in 128 bits: the first window may lie far from the series).
    let (before_start, stride) = (i128::from(before_start), i128::from(stride));
    let first_step = if before_start >= 0 { 0 } else { (-before_start + stride - 1) / stride };
    let end_step = (i128::from(count - before_end) / stride + 1).min(ends.len() as i128);
    if first_step >= end_step {
        return None;
    }
    Some(Interior {
        steps: first_step as usize..end_step as usize,
        first_from: (before_start + first_step * stride) as usize,
        width: width as usize,
        stride: stride as usize,
    })
}

/// Whether some value is below the one before it. Without stopping early, so that the
/// compiler compares several at once.
fn any_drop(values: &[f64]) -> bool {
    let mut any = false;
    for pair in values.windows(2) {
        any |= pair[1] < pair[0];
    }
    any
}

/// The first drop position after `from`, looked for from `drops[index]` on: (its index, the
/// position; `usize::MAX` when there is none).
#[cold]
fn next_drop_after(drops: &[usize], mut index: usize, from: usize) -> (usize, usize) {
    while drops.get(index).is_some_and(|&position| position <= from) {
        index += 1;
    }
    (index, drops.get(index).copied().unwrap_or(usize::MAX))
}

/// A counter's extrapolated change when its zero point may shorten the extrapolation: the rare
/// case, out of the walk's loop.
#[cold]
#[inline(never)]
fn near_zero(geometry: Option<&RateGeometry>, first_value: f64, result: f64, is_rate: bool) -> f64 {
    // Always set: the walk computes a geometry for the first window with a value.
    geometry.map_or(f64::NAN, |geometry| geometry.extrapolate(first_value, result, true, is_rate))
}

/// The geometry of a window of `count` samples: the one kept in `geometries` for that count if
/// it fits, else computed and kept. Out of the walk's loop: consecutive windows mostly share a
/// geometry.
#[cold]
#[inline(never)]
fn known_geometry(
    geometries: &mut [Option<RateGeometry>],
    first_ms: i64,
    last_ms: i64,
    start_ms: i64,
    end_ms: i64,
    count: usize,
    is_rate: bool,
) -> RateGeometry {
    let slots = geometries.len().max(1);
    let mut spare = None;
    let slot = geometries.get_mut(count % slots).unwrap_or(&mut spare);
    RateGeometry::of_window(slot, first_ms, last_ms, start_ms, end_ms, count, is_rate)
}
