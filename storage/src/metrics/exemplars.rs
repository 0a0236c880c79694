//! Exemplars: a bounded circular store of (series, exemplar) entries, oldest dropped first, as
//! Prometheus keeps them. Per series, exemplars must arrive in time order; one at the same
//! timestamp as the newest is a duplicate.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Exemplar, TimeRange};

pub(crate) struct ExemplarStore {
    capacity: usize,
    entries: VecDeque<(u64, Exemplar)>,
    /// Newest exemplar timestamp per series ref.
    newest: HashMap<u64, i64>,
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> ExemplarStore {
        ExemplarStore { capacity, entries: VecDeque::new(), newest: HashMap::new() }
    }

    /// Whether an exemplar would be accepted for the series.
    pub fn accepts(&self, series_ref: u64, t_ms: i64) -> bool {
        self.capacity > 0 && self.newest.get(&series_ref).is_none_or(|newest| t_ms > *newest)
    }

    /// Adds an exemplar; returns false if it was refused (out of order or duplicate).
    pub fn add(&mut self, series_ref: u64, exemplar: Exemplar) -> bool {
        if !self.accepts(series_ref, exemplar.t_ms) {
            return false;
        }
        self.newest.insert(series_ref, exemplar.t_ms);
        self.entries.push_back((series_ref, exemplar));
        while self.entries.len() > self.capacity {
            if let Some((dropped_ref, dropped)) = self.entries.pop_front()
                && self.newest.get(&dropped_ref) == Some(&dropped.t_ms)
            {
                self.newest.remove(&dropped_ref);
            }
        }
        true
    }

    /// Exemplars in `range` of the given series, per series ref, in time order.
    pub fn query(&self, refs: &HashSet<u64>, range: TimeRange) -> HashMap<u64, Vec<Exemplar>> {
        let mut out: HashMap<u64, Vec<Exemplar>> = HashMap::new();
        for (series_ref, exemplar) in &self.entries {
            if refs.contains(series_ref) && range.contains(exemplar.t_ms) {
                out.entry(*series_ref).or_default().push(exemplar.clone());
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    fn exemplar(t_ms: i64) -> Exemplar {
        Exemplar { labels: Labels::from_pairs([("trace_id", "abc")]).unwrap(), value: 1.0, t_ms }
    }

    #[test]
    fn keeps_the_newest_within_capacity_and_refuses_out_of_order() {
        let mut store = ExemplarStore::new(3);
        assert!(store.add(1, exemplar(10)));
        assert!(!store.add(1, exemplar(10)), "duplicate");
        assert!(!store.add(1, exemplar(5)), "out of order");
        assert!(store.add(2, exemplar(5)));
        assert!(store.add(1, exemplar(20)));
        assert!(store.add(1, exemplar(30)));
        assert_eq!(store.len(), 3);
        let refs: HashSet<u64> = [1].into();
        let found = store.query(&refs, TimeRange::all());
        let times: Vec<i64> = found[&1].iter().map(|e| e.t_ms).collect();
        assert_eq!(times, [20, 30]);
        let none = store.query(&refs, TimeRange::new(0, 15).unwrap());
        assert!(none.is_empty());
    }
}
