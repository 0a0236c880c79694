//! The catalog: every stream the store knows, per tenant, whether its entries are in the head,
//! in files, or both; and the label index (postings per label pair) that resolves matchers to
//! streams. Only labels are indexed. It is rebuilt at open from the files' stream tables and
//! the WAL replay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::file::FileChunkRef;
use super::head::HeadStream;
use crate::labels::{Labels, Matcher};
use crate::metrics::postings::{self, PostingsIndex};

/// One stream of a tenant.
#[derive(Debug)]
pub(crate) struct CatalogStream {
    pub labels: Labels,
    /// The stream's head state, while it has one.
    pub head: Option<Arc<HeadStream>>,
    /// Flushed chunks, in flush order.
    pub chunks: Vec<FileChunkRef>,
    /// Entries with a sequence number below this are in files (or were deleted from them).
    pub flushed_seq_end: u64,
    /// Newest entry time in files, `i64::MIN` if none.
    pub flushed_newest_t_ns: i64,
}

impl CatalogStream {
    /// Whether the stream has entries (in files or head) that may fall in `[start, end]`.
    pub fn overlaps(&self, start_ns: i64, end_ns: i64) -> bool {
        let in_files = self.chunks.iter().any(|chunk| {
            let meta = chunk.meta();
            meta.min_t_ns <= end_ns && meta.max_t_ns >= start_ns
        });
        in_files
            || self
                .head
                .as_ref()
                .and_then(|head| head.lock().bounds())
                .is_some_and(|(lo, hi)| lo <= end_ns && hi >= start_ns)
    }
}

/// The streams of one tenant and their label index.
#[derive(Debug, Default)]
pub(crate) struct TenantStreams {
    pub streams: Vec<CatalogStream>,
    by_labels: HashMap<Labels, u32>,
    /// Label name -> value -> stream IDs (indices into `streams`), ascending.
    postings: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Vec<u64>>>,
}

impl TenantStreams {
    pub fn find(&self, labels: &Labels) -> Option<u32> {
        self.by_labels.get(labels).copied()
    }

    /// The ID of the stream with `labels`, created (with no data) if new.
    pub fn get_or_insert(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.by_labels.get(labels) {
            return *id;
        }
        let id = self.streams.len() as u32;
        for label in labels {
            self.postings
                .entry(label.name.clone())
                .or_default()
                .entry(label.value.clone())
                .or_default()
                .push(u64::from(id));
        }
        self.by_labels.insert(labels.clone(), id);
        self.streams.push(CatalogStream {
            labels: labels.clone(),
            head: None,
            chunks: Vec::new(),
            flushed_seq_end: 0,
            flushed_newest_t_ns: i64::MIN,
        });
        id
    }

    /// IDs of the streams matching every matcher (all streams when there are none), ascending.
    pub fn resolve(&self, matchers: &[Matcher]) -> Vec<u32> {
        postings::resolve(self, matchers).into_iter().map(|id| id as u32).collect()
    }

    /// Drops streams that hold nothing any more (no head, no chunks) and rebuilds the index.
    /// Sequence numbers of dropped streams are forgotten: they have no WAL entries left.
    pub fn compact(&mut self) {
        if self.streams.iter().all(|stream| stream.head.is_some() || !stream.chunks.is_empty()) {
            return;
        }
        let streams = std::mem::take(&mut self.streams);
        *self = TenantStreams::default();
        for stream in streams {
            if stream.head.is_none() && stream.chunks.is_empty() {
                continue;
            }
            let id = self.get_or_insert(&stream.labels);
            self.streams[id as usize] = stream;
        }
    }
}

impl PostingsIndex for TenantStreams {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        self.postings.get(name).and_then(|values| values.get(value)).cloned().unwrap_or_default()
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.postings.get(name).map(|values| values.keys().map(|v| v.to_string()).collect()).unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        (0..self.streams.len() as u64).collect()
    }
}

/// Every tenant's streams.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub tenants: HashMap<Arc<str>, TenantStreams>,
}

impl Catalog {
    pub fn tenant(&self, tenant: &str) -> Option<&TenantStreams> {
        self.tenants.get(tenant)
    }

    pub fn tenant_mut(&mut self, tenant: &str) -> &mut TenantStreams {
        self.tenants.entry(Arc::from(tenant)).or_default()
    }
}
