//! The labels of one entry as it moves through a pipeline: the stream's labels, its structured
//! metadata and what parsers extract, each kept in its category (Grafana's `categorize-labels`
//! form reports them apart), with the `__error__` and `__error_details__` labels failing stages
//! set.

use std::sync::Arc;

use tripod_storage::labels::{Label, Labels};

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// The stream's indexed labels.
    Stream,
    /// Structured metadata stored with the entry.
    Metadata,
    /// Extracted by a parser or set by a formatter.
    Parsed,
}

/// The label set of one entry, built up stage by stage and reused from entry to entry.
#[derive(Debug, Default, Clone)]
pub struct LabelsBuilder {
    /// Labels in insertion order; at most one per name. Few per entry, so a vector beats a map.
    labels: Vec<(Arc<str>, String, Category)>,
    /// `__error__`, when a stage failed.
    error: Option<&'static str>,
    /// `__error_details__`.
    error_details: Option<String>,
}

/// The name of the label a failing stage sets.
pub const ERROR_LABEL: &str = "__error__";
/// The name of the label holding the failure's message.
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

impl LabelsBuilder {
    /// Starts an entry: the stream's labels, then structured metadata.
    pub fn reset(&mut self, stream: &Labels, metadata: &Labels) {
        self.error = None;
        self.error_details = None;
        // Entries of one stream follow each other: keep its labels when the last entry left
        // them as they were, rather than copying them again.
        let kept = stream.len() <= self.labels.len()
            && stream.iter().zip(&self.labels).all(|(label, (name, value, category))| {
                *category == Category::Stream && Arc::ptr_eq(name, &label.name) && *value == *label.value
            });
        if kept {
            self.labels.truncate(stream.len());
        } else {
            self.labels.clear();
            for label in stream.iter() {
                self.labels.push((label.name.clone(), label.value.to_string(), Category::Stream));
            }
        }
        for label in metadata.iter() {
            self.set(label.name.clone(), label.value.to_string(), Category::Metadata);
        }
    }

    /// The value of a label; `__error__` and `__error_details__` included.
    pub fn get(&self, name: &str) -> Option<&str> {
        if name == ERROR_LABEL {
            return self.error;
        }
        if name == ERROR_DETAILS_LABEL {
            return self.error_details.as_deref();
        }
        self.labels.iter().find(|(n, _, _)| &**n == name).map(|(_, value, _)| value.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether `name` is one of the stream's own labels.
    pub fn is_stream_label(&self, name: &str) -> bool {
        self.labels.iter().any(|(n, _, category)| *category == Category::Stream && &**n == name)
    }

    /// Sets a label, replacing one of the same name.
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: String, category: Category) {
        let name = name.into();
        if &*name == ERROR_LABEL {
            return;
        }
        match self.labels.iter_mut().find(|(n, _, _)| *n == name) {
            Some(slot) => {
                slot.1 = value;
                slot.2 = slot.2.max(category);
            }
            None => self.labels.push((name, value, category)),
        }
    }

    /// Sets a label a parser extracted: a name the stream already has gets `_extracted`
    /// appended, as Loki does, so stream labels are never overwritten by a parser.
    pub fn set_parsed(&mut self, name: &str, value: String) {
        if self.is_stream_label(name) {
            self.set(format!("{name}_extracted"), value, Category::Parsed);
        } else {
            self.set(name, value, Category::Parsed);
        }
    }

    pub fn remove(&mut self, name: &str) {
        if name == ERROR_LABEL {
            self.error = None;
            return;
        }
        if name == ERROR_DETAILS_LABEL {
            self.error_details = None;
            return;
        }
        self.labels.retain(|(n, _, _)| &**n != name);
    }

    /// Keeps only the labels `keep` says yes to (the error labels follow the same rule).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.labels.retain(|(name, value, _)| keep(name, value));
        if let Some(error) = self.error
            && !keep(ERROR_LABEL, error)
        {
            self.error = None;
        }
        if let Some(details) = &self.error_details
            && !keep(ERROR_DETAILS_LABEL, details)
        {
            self.error_details = None;
        }
    }

    /// Records a stage's failure; the first error stays.
    pub fn set_error(&mut self, error: &'static str, details: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(error);
            self.error_details = Some(details.into());
        }
    }

    pub fn error(&self) -> Option<&'static str> {
        self.error
    }

    /// Every label with its value, sorted by name (error labels included).
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self.labels.iter().map(|(n, v, _)| (&**n, v.as_str())).collect();
        if let Some(error) = self.error {
            pairs.push((ERROR_LABEL, error));
        }
        if let Some(details) = &self.error_details {
            pairs.push((ERROR_DETAILS_LABEL, details.as_str()));
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        pairs
    }

    /// The whole label set (empty values dropped, as label sets do).
    pub fn labels(&self) -> Labels {
        let pairs = self.pairs();
        let labels: Vec<Label> = pairs
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| Label { name: Arc::from(name), value: Arc::from(value) })
            .collect();
        Labels::from_sorted_unchecked(labels)
    }

    /// The labels of one category, sorted (for `Parsed`, the error labels too).
    pub fn category(&self, category: Category) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .labels
            .iter()
            .filter(|(_, value, c)| *c == category && !value.is_empty())
            .map(|(n, v, _)| (&**n, v.as_str()))
            .collect();
        if category == Category::Parsed {
            if let Some(error) = self.error {
                pairs.push((ERROR_LABEL, error));
            }
            if let Some(details) = &self.error_details {
                pairs.push((ERROR_DETAILS_LABEL, details.as_str()));
            }
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        pairs
    }

    /// Whether anything but the stream's labels is set.
    pub fn has_non_stream(&self) -> bool {
        self.error.is_some() || self.labels.iter().any(|(_, value, c)| *c != Category::Stream && !value.is_empty())
    }
}
