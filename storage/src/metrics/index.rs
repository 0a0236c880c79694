//! A block's index file: the symbol table, the series (labels and chunk references), the
//! postings per label pair, and a table of contents with a CRC32C per section. Layout in
//! `docs/format/metrics-index.md`. The file is memory-mapped; symbols and the postings table are
//! decoded at open, series entries and postings lists on demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::postings::PostingsIndex;
use crate::codec::{get_uvarint, get_varint, put_bytes, put_uvarint, put_varint};
use crate::labels::{Label, Labels};

pub(crate) const INDEX_MAGIC: [u8; 4] = *b"TIDX";
pub(crate) const INDEX_VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const SECTIONS: usize = 5;
/// Five sections of (offset u64, length u64, crc u32), the series count u64, the TOC's CRC u32.
const TOC_LEN: usize = SECTIONS * 20 + 8 + 4;

/// Where a chunk of a series is, and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    /// Offset of the chunk's entry in the chunks file.
    pub offset: u64,
}

/// Builds an index file from series given in label order.
pub(crate) fn encode_index(series: &[(Labels, Vec<ChunkMeta>)]) -> Vec<u8> {
    // Symbols: every distinct name and value, sorted.
    let mut symbol_set: BTreeMap<&str, u32> = BTreeMap::new();
    for (labels, _) in series {
        for label in labels {
            symbol_set.insert(&label.name, 0);
            symbol_set.insert(&label.value, 0);
        }
    }
    for (id, value) in symbol_set.values_mut().enumerate() {
        *value = id as u32;
    }

    let mut out = Vec::new();
    out.extend_from_slice(&INDEX_MAGIC);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    let mut toc = Vec::new();

    let start = out.len();
    put_uvarint(&mut out, symbol_set.len() as u64);
    for symbol in symbol_set.keys() {
        put_bytes(&mut out, symbol.as_bytes());
    }
    toc.push(section(&out, start));

    let start = out.len();
    let mut series_offsets = Vec::with_capacity(series.len());
    let mut postings: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for (id, (labels, chunks)) in series.iter().enumerate() {
        series_offsets.push((out.len() - start) as u64);
        put_uvarint(&mut out, labels.len() as u64);
        for label in labels {
            let name = symbol_set[label.name.as_ref()];
            let value = symbol_set[label.value.as_ref()];
            put_uvarint(&mut out, u64::from(name));
            put_uvarint(&mut out, u64::from(value));
            postings.entry((name, value)).or_default().push(id as u32);
        }
        put_uvarint(&mut out, chunks.len() as u64);
        let (mut previous_max, mut previous_offset) = (0i64, 0u64);
        for (index, chunk) in chunks.iter().enumerate() {
            if index == 0 {
                put_varint(&mut out, chunk.min_t);
                put_uvarint(&mut out, chunk.offset);
            } else {
                put_varint(&mut out, chunk.min_t.wrapping_sub(previous_max));
                put_uvarint(&mut out, chunk.offset - previous_offset);
            }
            put_uvarint(&mut out, chunk.max_t.wrapping_sub(chunk.min_t) as u64);
            previous_max = chunk.max_t;
            previous_offset = chunk.offset;
        }
    }
    toc.push(section(&out, start));

    let start = out.len();
    let mut table = Vec::with_capacity(postings.len());
    for ((name, value), ids) in &postings {
        table.push((*name, *value, (out.len() - start) as u64, ids.len() as u64));
        let mut previous = 0u32;
        for (index, id) in ids.iter().enumerate() {
            put_uvarint(&mut out, u64::from(if index == 0 { *id } else { id - previous }));
            previous = *id;
        }
    }
    toc.push(section(&out, start));

    let start = out.len();
    put_uvarint(&mut out, table.len() as u64);
    for (name, value, offset, count) in table {
        put_uvarint(&mut out, u64::from(name));
        put_uvarint(&mut out, u64::from(value));
        put_uvarint(&mut out, offset);
        put_uvarint(&mut out, count);
    }
    toc.push(section(&out, start));

    let start = out.len();
    for offset in &series_offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    toc.push(section(&out, start));

    let toc_start = out.len();
    for (offset, len, crc) in toc {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out.extend_from_slice(&(series.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&out[toc_start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn section(out: &[u8], start: usize) -> (u64, u64, u32) {
    (start as u64, (out.len() - start) as u64, crc32c::crc32c(&out[start..]))
}

/// A decoded index over a memory-mapped file.
pub(crate) struct IndexReader {
    map: Arc<memmap2::Mmap>,
    symbols: Vec<Arc<str>>,
    symbol_ids: HashMap<Arc<str>, u32>,
    /// (name, value) symbol IDs → (offset in postings section, count).
    postings_table: HashMap<(u32, u32), (u64, u64)>,
    /// Values per name, as symbol IDs.
    values: HashMap<u32, Vec<u32>>,
    series_start: usize,
    postings_start: usize,
    offsets_start: usize,
    series_count: usize,
}

impl IndexReader {
    /// Checks every section's checksum and decodes the symbols and postings table.
    pub fn open(map: Arc<memmap2::Mmap>) -> Result<IndexReader, String> {
        let bytes: &[u8] = &map;
        if bytes.len() < HEADER_LEN + TOC_LEN {
            return Err(format!("index is {} bytes, too short", bytes.len()));
        }
        if bytes[0..4] != INDEX_MAGIC {
            return Err("index has a bad magic number".into());
        }
        if bytes[4] != INDEX_VERSION {
            return Err(format!("index format version {} is not supported", bytes[4]));
        }
        let toc_start = bytes.len() - TOC_LEN;
        let toc = &bytes[toc_start..];
        let stored = u32::from_le_bytes(toc[TOC_LEN - 4..].try_into().map_err(|_| "toc")?);
        if crc32c::crc32c(&toc[..TOC_LEN - 4]) != stored {
            return Err("index table of contents checksum mismatch".into());
        }
        let mut sections = [(0usize, 0usize); SECTIONS];
        for (index, entry) in sections.iter_mut().enumerate() {
            let raw = &toc[index * 20..index * 20 + 20];
            let offset = u64::from_le_bytes(raw[0..8].try_into().map_err(|_| "toc")?) as usize;
            let len = u64::from_le_bytes(raw[8..16].try_into().map_err(|_| "toc")?) as usize;
            let crc = u32::from_le_bytes(raw[16..20].try_into().map_err(|_| "toc")?);
            let end = offset.checked_add(len).filter(|end| *end <= toc_start).ok_or("index section out of bounds")?;
            if crc32c::crc32c(&bytes[offset..end]) != crc {
                return Err(format!("index section {index} checksum mismatch"));
            }
            *entry = (offset, end);
        }
        let series_count =
            u64::from_le_bytes(toc[SECTIONS * 20..SECTIONS * 20 + 8].try_into().map_err(|_| "toc")?) as usize;
        let malformed = |what: &str| format!("index {what} section is malformed");

        let mut input = &bytes[sections[0].0..sections[0].1];
        let count = get_uvarint(&mut input).ok_or_else(|| malformed("symbols"))?;
        let mut symbols = Vec::with_capacity(count.min(1 << 24) as usize);
        for _ in 0..count {
            let len = get_uvarint(&mut input).ok_or_else(|| malformed("symbols"))? as usize;
            if input.len() < len {
                return Err(malformed("symbols"));
            }
            let text = std::str::from_utf8(&input[..len]).map_err(|_| malformed("symbols"))?;
            symbols.push(Arc::<str>::from(text));
            input = &input[len..];
        }
        // The writer stores symbols sorted and unique, so that series entries can be checked
        // for label order by comparing symbol IDs.
        if !symbols.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err("index symbols are not sorted".into());
        }
        let symbol_ids = symbols.iter().enumerate().map(|(id, s)| (s.clone(), id as u32)).collect();

        let mut input = &bytes[sections[3].0..sections[3].1];
        let pairs = get_uvarint(&mut input).ok_or_else(|| malformed("postings table"))?;
        let mut postings_table = HashMap::with_capacity(pairs.min(1 << 24) as usize);
        let mut values: HashMap<u32, Vec<u32>> = HashMap::new();
        for _ in 0..pairs {
            let mut next = || get_uvarint(&mut input).ok_or_else(|| malformed("postings table"));
            let (name, value, offset, count) = (next()? as u32, next()? as u32, next()?, next()?);
            if name as usize >= symbols.len() || value as usize >= symbols.len() {
                return Err(malformed("postings table"));
            }
            postings_table.insert((name, value), (offset, count));
            values.entry(name).or_default().push(value);
        }
        if sections[4].1 - sections[4].0 != series_count * 8 {
            return Err(malformed("series offsets"));
        }
        Ok(IndexReader {
            symbols,
            symbol_ids,
            postings_table,
            values,
            series_start: sections[1].0,
            postings_start: sections[2].0,
            offsets_start: sections[4].0,
            series_count,
            map,
        })
    }

    pub fn series_count(&self) -> usize {
        self.series_count
    }

    fn symbol(&self, id: u64) -> Result<Arc<str>, String> {
        self.symbols.get(id as usize).cloned().ok_or_else(|| format!("symbol {id} out of range"))
    }

    /// Decodes series `id`: its labels and chunks.
    pub fn series(&self, id: u64) -> Result<(Labels, Vec<ChunkMeta>), String> {
        let mut chunks = Vec::new();
        let labels = self.series_into(id, &mut chunks)?;
        Ok((labels, chunks))
    }

    /// Decodes series `id`: returns its labels, its chunks replace what `chunks` held.
    pub fn series_into(&self, id: u64, chunks: &mut Vec<ChunkMeta>) -> Result<Labels, String> {
        self.series_with_symbols_into(id, chunks, &mut Vec::new())
    }

    /// Like [`IndexReader::series_into`], the labels' symbol IDs (name, value, name, ...)
    /// replacing what `symbol_ids` held: as symbols are sorted, series compare as these do.
    pub fn series_with_symbols_into(
        &self,
        id: u64,
        chunks: &mut Vec<ChunkMeta>,
        symbol_ids: &mut Vec<u32>,
    ) -> Result<Labels, String> {
        chunks.clear();
        symbol_ids.clear();
        if id as usize >= self.series_count {
            return Err(format!("series {id} out of range"));
        }
        let at = self.offsets_start + id as usize * 8;
        let offset = u64::from_le_bytes(self.map[at..at + 8].try_into().map_err(|_| "offset")?) as usize;
        let mut input =
            self.map.get(self.series_start + offset..self.postings_start).ok_or("series offset out of bounds")?;
        let malformed = || format!("series {id} entry is malformed");
        let label_count = get_uvarint(&mut input).ok_or_else(malformed)?;
        let mut labels = Vec::with_capacity(label_count.min(1024) as usize);
        let mut previous_name = None;
        for _ in 0..label_count {
            let name_id = get_uvarint(&mut input).ok_or_else(malformed)?;
            // Symbols are sorted (checked at open): names in ID order are names in label order.
            if previous_name.is_some_and(|previous| previous >= name_id) {
                return Err(format!("series {id}: labels are not sorted by name"));
            }
            previous_name = Some(name_id);
            let name = self.symbol(name_id)?;
            let value_id = get_uvarint(&mut input).ok_or_else(malformed)?;
            let value = self.symbol(value_id)?;
            symbol_ids.extend([name_id as u32, value_id as u32]);
            if name.is_empty() || value.is_empty() {
                return Err(format!("series {id}: empty label name or value"));
            }
            labels.push(Label { name, value });
        }
        let chunk_count = get_uvarint(&mut input).ok_or_else(malformed)?;
        chunks.reserve(chunk_count.min(1 << 16) as usize);
        let (mut previous_max, mut previous_offset) = (0i64, 0u64);
        for index in 0..chunk_count {
            let min_delta = get_varint(&mut input).ok_or_else(malformed)?;
            let offset_delta = get_uvarint(&mut input).ok_or_else(malformed)?;
            let span = get_uvarint(&mut input).ok_or_else(malformed)?;
            let (min_t, offset) = if index == 0 {
                (min_delta, offset_delta)
            } else {
                (previous_max.wrapping_add(min_delta), previous_offset + offset_delta)
            };
            let max_t = min_t.wrapping_add(span as i64);
            chunks.push(ChunkMeta { min_t, max_t, offset });
            previous_max = max_t;
            previous_offset = offset;
        }
        Ok(Labels::from_sorted_unchecked(labels))
    }

    fn postings_by_ids(&self, name: u32, value: u32) -> Vec<u64> {
        let Some(&(offset, count)) = self.postings_table.get(&(name, value)) else {
            return Vec::new();
        };
        let mut input = match self.map.get(self.postings_start + offset as usize..) {
            Some(input) => input,
            None => return Vec::new(),
        };
        let mut ids = Vec::with_capacity(count.min(1 << 24) as usize);
        let mut current = 0u64;
        for index in 0..count {
            let Some(delta) = get_uvarint(&mut input) else {
                break;
            };
            current = if index == 0 { delta } else { current + delta };
            ids.push(current);
        }
        ids
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.values.keys().map(|id| self.symbols[*id as usize].to_string()).collect();
        names.sort();
        names
    }
}

impl PostingsIndex for IndexReader {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        match (self.symbol_ids.get(name), self.symbol_ids.get(value)) {
            (Some(name), Some(value)) => self.postings_by_ids(*name, *value),
            _ => Vec::new(),
        }
    }

    fn values(&self, name: &str) -> Vec<String> {
        let Some(name) = self.symbol_ids.get(name) else {
            return Vec::new();
        };
        self.values
            .get(name)
            .map(|values| values.iter().map(|id| self.symbols[*id as usize].to_string()).collect())
            .unwrap_or_default()
    }

    fn all_postings(&self) -> Vec<u64> {
        (0..self.series_count as u64).collect()
    }
}
