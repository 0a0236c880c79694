//! The protocol-neutral logs write path: a decoded push (Loki protobuf or JSON, OTLP logs) is
//! checked the way Loki's distributor checks it, then appended to the logs store.
//!
//! What is checked, with the reason each refusal is counted under (Loki's `reason` label):
//! stream labels that do not parse as a selector of `=` matchers (`invalid_labels`), none at all
//! (`missing_labels`), too many (`max_label_names_per_series`), a name or value too long
//! (`label_name_too_long`, `label_value_too_long`), a repeated name (`duplicate_label_names`);
//! per entry, a timestamp older than the allowed age (`greater_than_max_sample_age`) or too far
//! in the future (`too_far_in_future`), a line over the size limit (`line_too_long`, unless
//! lines are truncated instead) and structured metadata with an empty name
//! (`invalid_structured_metadata`). Good entries of a push are stored even when others are
//! refused; the refusals are reported so the API can answer 400 naming each. Last, the tenant's
//! ingestion rate (a token bucket of bytes) is applied to what passed: over it, nothing of the
//! push is stored (`rate_limited`, answered 429).
//!
//! Time comes from a [`Clock`], so tests decide what "now" is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tripod_storage::labels::Labels;
use tripod_storage::logs::{DEFAULT_TENANT, LogAppendCounts, LogEntry, LogsAppender, LogsError, StreamEntries};

// ---------------------------------------------------------------------------------------------
// Settings.

/// Bytes in one of the megabytes `ingestion_rate_mb` is counted in (Loki counts in MiB).
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// The limits a push is checked against, with Loki's defaults (its `limits_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogsLimits {
    /// Sustained bytes per second a tenant may push (lines plus structured metadata).
    pub ingestion_rate_mb: f64,
    /// Bytes a tenant may push at once above the sustained rate: the token bucket's size.
    pub ingestion_burst_size_mb: f64,
    /// Most labels a stream may have.
    pub max_label_names_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value, in bytes.
    pub max_label_value_length: usize,
    /// Longest line, in bytes; 0 means no limit.
    pub max_line_size_bytes: usize,
    /// Whether a longer line is cut to `max_line_size_bytes` and stored, rather than refused.
    pub max_line_size_truncate: bool,
    /// Whether entries older than `reject_old_samples_max_age` are refused.
    pub reject_old_samples: bool,
    pub reject_old_samples_max_age: Duration,
    /// How far ahead of now an entry's timestamp may be.
    pub creation_grace_period: Duration,
}

impl Default for LogsLimits {
    fn default() -> Self {
        LogsLimits {
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_line_size_bytes: 256 * 1024,
            max_line_size_truncate: false,
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(10 * 60),
        }
    }
}

/// How the logs write path is set up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogsIngestSettings {
    /// Multi-tenancy: when on, every push must name its tenant (`X-Scope-OrgID`); when off,
    /// everything belongs to [`DEFAULT_TENANT`].
    pub auth_enabled: bool,
    pub limits: LogsLimits,
}

// ---------------------------------------------------------------------------------------------
// Time.

/// Where the write path reads the time from.
pub trait Clock: Send + Sync {
    /// Now, in nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that stands where it is told, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    pub fn new(now_ns: i64) -> ManualClock {
        ManualClock { now_ns: std::sync::atomic::AtomicI64::new(now_ns) }
    }

    pub fn set_ns(&self, now_ns: i64) {
        self.now_ns.store(now_ns, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let by_ns = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.now_ns.fetch_add(by_ns, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.now_ns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn duration_ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// `2024-05-01T12:00:00.123456789Z` from Unix nanoseconds (proleptic Gregorian, UTC).
pub fn rfc3339_ns(t_ns: i64) -> String {
    let seconds = t_ns.div_euclid(1_000_000_000);
    let nanos = t_ns.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

// ---------------------------------------------------------------------------------------------
// Tenants.

/// Why a request names no usable tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// Multi-tenancy is on and the request has no `X-Scope-OrgID` (Loki answers 401).
    #[error("no org id")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

/// Longest tenant ID accepted, as Loki and Mimir have it.
const MAX_TENANT_ID_BYTES: usize = 150;

/// The tenant a request writes to: the header's value when multi-tenancy is on, else
/// [`DEFAULT_TENANT`] whatever the header says.
pub fn resolve_tenant(org_id: Option<&str>, auth_enabled: bool) -> Result<String, TenantError> {
    if !auth_enabled {
        return Ok(DEFAULT_TENANT.to_string());
    }
    let org_id = org_id.map(str::trim).unwrap_or("");
    if org_id.is_empty() {
        return Err(TenantError::Missing);
    }
    if org_id.contains('|') {
        return Err(TenantError::Invalid(format!(
            "tenant id {org_id:?} names several tenants, but a push writes to exactly one"
        )));
    }
    if org_id.len() > MAX_TENANT_ID_BYTES {
        return Err(TenantError::Invalid(format!(
            "tenant id is {} bytes long, over the limit of {MAX_TENANT_ID_BYTES}",
            org_id.len()
        )));
    }
    if org_id == "." || org_id == ".." {
        return Err(TenantError::Invalid(format!("tenant id {org_id:?} is not allowed")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c);
    if let Some(bad) = org_id.chars().find(|c| !allowed(*c)) {
        return Err(TenantError::Invalid(format!(
            "tenant id {org_id:?} contains {bad:?}; allowed are letters, digits and !-_.*'()"
        )));
    }
    Ok(org_id.to_string())
}

// ---------------------------------------------------------------------------------------------
// The decoded push.

/// A label or metadata name/value pair as decoded, borrowed from the request where possible.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// How a stream's labels arrived.
#[derive(Debug, Clone)]
pub enum StreamLabels<'a> {
    /// A selector string, `{app="api", env="prod"}` (Loki protobuf and the older JSON form).
    Selector(Cow<'a, str>),
    /// Name/value pairs (Loki JSON `stream` objects, OTLP resource attributes).
    Pairs(Vec<Pair<'a>>),
}

/// One entry as decoded.
#[derive(Debug, Clone)]
pub struct PushEntry<'a> {
    pub t_ns: i64,
    pub line: Cow<'a, str>,
    /// Structured metadata pairs, in the order sent.
    pub metadata: Vec<Pair<'a>>,
}

/// One stream of a push.
#[derive(Debug, Clone)]
pub struct PushStream<'a> {
    pub labels: StreamLabels<'a>,
    pub entries: Vec<PushEntry<'a>>,
}

/// A decoded push: what every push protocol's decoder produces.
#[derive(Debug, Clone, Default)]
pub struct PushBatch<'a> {
    pub streams: Vec<PushStream<'a>>,
}

// ---------------------------------------------------------------------------------------------
// Refusals.

/// Why entries were not stored, under Loki's names for the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscardReason {
    InvalidLabels,
    MissingLabels,
    MaxLabelNamesPerSeries,
    LabelNameTooLong,
    LabelValueTooLong,
    DuplicateLabelNames,
    LineTooLong,
    GreaterThanMaxSampleAge,
    TooFarInFuture,
    InvalidStructuredMetadata,
    RateLimited,
}

impl DiscardReason {
    pub const ALL: [DiscardReason; 11] = [
        DiscardReason::InvalidLabels,
        DiscardReason::MissingLabels,
        DiscardReason::MaxLabelNamesPerSeries,
        DiscardReason::LabelNameTooLong,
        DiscardReason::LabelValueTooLong,
        DiscardReason::DuplicateLabelNames,
        DiscardReason::LineTooLong,
        DiscardReason::GreaterThanMaxSampleAge,
        DiscardReason::TooFarInFuture,
        DiscardReason::InvalidStructuredMetadata,
        DiscardReason::RateLimited,
    ];

    /// The value of the `reason` label of `loki_discarded_samples_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscardReason::InvalidLabels => "invalid_labels",
            DiscardReason::MissingLabels => "missing_labels",
            DiscardReason::MaxLabelNamesPerSeries => "max_label_names_per_series",
            DiscardReason::LabelNameTooLong => "label_name_too_long",
            DiscardReason::LabelValueTooLong => "label_value_too_long",
            DiscardReason::DuplicateLabelNames => "duplicate_label_names",
            DiscardReason::LineTooLong => "line_too_long",
            DiscardReason::GreaterThanMaxSampleAge => "greater_than_max_sample_age",
            DiscardReason::TooFarInFuture => "too_far_in_future",
            DiscardReason::InvalidStructuredMetadata => "invalid_structured_metadata",
            DiscardReason::RateLimited => "rate_limited",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One refused stream or entry, for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The stream's labels, as sent (selector string) or as a selector built from the pairs.
    pub stream: String,
    /// The refused entry's timestamp; `None` when the whole stream was refused.
    pub t_ns: Option<i64>,
    pub reason: DiscardReason,
    /// What exactly is wrong, naming the value and the limit.
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.t_ns {
            Some(t_ns) => write!(
                f,
                "stream {}: entry at {} refused ({}): {}",
                self.stream,
                rfc3339_ns(t_ns),
                self.reason.as_str(),
                self.detail
            ),
            None => write!(f, "stream {}: refused ({}): {}", self.stream, self.reason.as_str(), self.detail),
        }
    }
}

/// Refusals listed one by one in an answer; the rest are counted.
const MAX_REFUSALS_LISTED: usize = 20;

/// Entries and bytes refused for one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscardCount {
    pub entries: u64,
    pub bytes: u64,
}

/// What a push stored and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// The tenant written to.
    pub tenant: String,
    /// Entries in the push, stored or not.
    pub received_entries: u64,
    /// Bytes of their lines and structured metadata.
    pub received_bytes: u64,
    /// What the store did with the entries that passed.
    pub stored: LogAppendCounts,
    /// Entries whose line was cut to the size limit and stored.
    pub truncated_lines: u64,
    /// Refused entries and bytes, indexed by [`DiscardReason`].
    pub discarded: [DiscardCount; DiscardReason::ALL.len()],
    /// Every refusal, in request order.
    pub refusals: Vec<Refusal>,
    /// The answer's message when the tenant's rate was exceeded (nothing was stored).
    pub rate_limited: Option<String>,
}

impl PushOutcome {
    pub fn discarded(&self, reason: DiscardReason) -> DiscardCount {
        self.discarded[reason.index()]
    }

    pub fn discarded_entries(&self) -> u64 {
        self.discarded.iter().map(|count| count.entries).sum()
    }

    fn discard(&mut self, reason: DiscardReason, entries: u64, bytes: u64) {
        let count = &mut self.discarded[reason.index()];
        count.entries += entries;
        count.bytes += bytes;
    }

    /// The message for a push with refused entries (answered 400): one line per refusal (the
    /// first few), then how many of how many entries were refused. `None` when none were.
    pub fn refusal_message(&self) -> Option<String> {
        if self.refusals.is_empty() {
            return None;
        }
        let mut message = String::new();
        for refusal in self.refusals.iter().take(MAX_REFUSALS_LISTED) {
            let _ = writeln!(message, "{refusal}");
        }
        if self.refusals.len() > MAX_REFUSALS_LISTED {
            let _ = writeln!(message, "... and {} more refusals", self.refusals.len() - MAX_REFUSALS_LISTED);
        }
        let _ = write!(
            message,
            "{} of {} entries refused, the others stored",
            self.discarded_entries(),
            self.received_entries
        );
        Some(message)
    }
}

/// Why a push failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] LogsError),
}

// ---------------------------------------------------------------------------------------------
// Stream selectors.

/// Why a stream's label string does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Byte offset of the problem in the string.
    pub offset: usize,
    pub problem: String,
}

impl std::fmt::Display for SelectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.problem, self.offset)
    }
}

/// Parses a stream's labels in selector form, `{name="value", other="x"}`: `=` matchers only,
/// names `[a-zA-Z_][a-zA-Z0-9_]*`, values double-quoted with Go escapes or back-quoted raw,
/// an optional trailing comma. Pairs come back in the order written (duplicates are left for
/// the caller to judge).
pub fn parse_stream_selector(text: &str) -> Result<Vec<Pair<'_>>, SelectorError> {
    let bytes = text.as_bytes();
    let mut position = 0;
    let error = |offset: usize, problem: &str| SelectorError { offset, problem: problem.to_string() };
    let skip_spaces = |position: &mut usize| {
        while *position < bytes.len() && matches!(bytes[*position], b' ' | b'\t' | b'\n' | b'\r') {
            *position += 1;
        }
    };
    skip_spaces(&mut position);
    if bytes.get(position) != Some(&b'{') {
        return Err(error(position, "expected '{'"));
    }
    position += 1;
    let mut pairs = Vec::new();
    loop {
        skip_spaces(&mut position);
        match bytes.get(position) {
            Some(b'}') => {
                position += 1;
                break;
            }
            None => return Err(error(position, "expected '}'")),
            _ => {}
        }
        let name_start = position;
        if !bytes.get(position).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
            return Err(error(position, "expected a label name"));
        }
        while bytes.get(position).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            position += 1;
        }
        let name = &text[name_start..position];
        skip_spaces(&mut position);
        match (bytes.get(position), bytes.get(position + 1)) {
            (Some(b'='), Some(b'~')) | (Some(b'!'), Some(b'=' | b'~')) => {
                return Err(error(position, "only = matchers may name a stream's labels"));
            }
            (Some(b'='), _) => position += 1,
            _ => return Err(error(position, "expected '=' after the label name")),
        }
        skip_spaces(&mut position);
        let value = parse_quoted(text, &mut position)?;
        pairs.push((Cow::Borrowed(name), value));
        skip_spaces(&mut position);
        match bytes.get(position) {
            Some(b',') => position += 1,
            Some(b'}') => {}
            _ => return Err(error(position, "expected ',' or '}'")),
        }
    }
    skip_spaces(&mut position);
    if position != bytes.len() {
        return Err(error(position, "unexpected text after '}'"));
    }
    Ok(pairs)
}

/// A double-quoted string with Go escapes, or a back-quoted raw string, starting at `position`.
fn parse_quoted<'a>(text: &'a str, position: &mut usize) -> Result<Cow<'a, str>, SelectorError> {
    let bytes = text.as_bytes();
    let start = *position;
    let error = |offset: usize, problem: &str| SelectorError { offset, problem: problem.to_string() };
    match bytes.get(start) {
        Some(b'`') => {
            let Some(length) = text[start + 1..].find('`') else {
                return Err(error(start, "unterminated raw string"));
            };
            *position = start + 1 + length + 1;
            Ok(Cow::Borrowed(&text[start + 1..start + 1 + length]))
        }
        Some(b'"') => {
            let body_start = start + 1;
            let mut index = body_start;
            // Fast path: no escapes, the value borrows from the input.
            while index < bytes.len() && bytes[index] != b'"' && bytes[index] != b'\\' {
                if bytes[index] == b'\n' {
                    return Err(error(index, "newline in a quoted value"));
                }
                index += 1;
            }
            if bytes.get(index) == Some(&b'"') {
                *position = index + 1;
                return Ok(Cow::Borrowed(&text[body_start..index]));
            }
            let mut value = String::from(&text[body_start..index]);
            loop {
                let Some(&byte) = bytes.get(index) else {
                    return Err(error(start, "unterminated quoted value"));
                };
                match byte {
                    b'"' => {
                        *position = index + 1;
                        return Ok(Cow::Owned(value));
                    }
                    b'\n' => return Err(error(index, "newline in a quoted value")),
                    b'\\' => index = unescape(text, index, &mut value)?,
                    _ => {
                        // Copy the whole UTF-8 character.
                        let character_length = text[index..].chars().next().map_or(1, char::len_utf8);
                        value.push_str(&text[index..index + character_length]);
                        index += character_length;
                    }
                }
            }
        }
        _ => Err(error(start, "expected a quoted label value")),
    }
}

/// Decodes the Go escape at `index` (a backslash) into `out`; returns the index after it.
fn unescape(text: &str, index: usize, out: &mut String) -> Result<usize, SelectorError> {
    let bytes = text.as_bytes();
    let error = |problem: &str| SelectorError { offset: index, problem: problem.to_string() };
    let Some(&kind) = bytes.get(index + 1) else {
        return Err(error("unterminated escape"));
    };
    let simple = match kind {
        b'a' => Some('\u{07}'),
        b'b' => Some('\u{08}'),
        b'f' => Some('\u{0c}'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'v' => Some('\u{0b}'),
        b'\\' => Some('\\'),
        b'"' => Some('"'),
        b'\'' => Some('\''),
        _ => None,
    };
    if let Some(character) = simple {
        out.push(character);
        return Ok(index + 2);
    }
    let digits = |count: usize, radix: u32| -> Result<u32, SelectorError> {
        let digits = text.get(index + 2..index + 2 + count).ok_or_else(|| error("truncated escape"))?;
        u32::from_str_radix(digits, radix).map_err(|_| error("invalid digits in escape"))
    };
    match kind {
        b'x' => {
            let byte = digits(2, 16)?;
            // A string of label values is UTF-8; a lone byte escape is accepted only for ASCII.
            let character =
                char::from_u32(byte).filter(char::is_ascii).ok_or_else(|| error("\\x escape is not ASCII"))?;
            out.push(character);
            Ok(index + 4)
        }
        b'0'..=b'7' => {
            let digits = text.get(index + 1..index + 4).ok_or_else(|| error("truncated octal escape"))?;
            let byte = u32::from_str_radix(digits, 8).map_err(|_| error("invalid octal escape"))?;
            let character =
                char::from_u32(byte).filter(char::is_ascii).ok_or_else(|| error("octal escape is not ASCII"))?;
            out.push(character);
            Ok(index + 4)
        }
        b'u' => {
            let code = digits(4, 16)?;
            out.push(char::from_u32(code).ok_or_else(|| error("\\u escape is not a character"))?);
            Ok(index + 6)
        }
        b'U' => {
            let code = digits(8, 16)?;
            out.push(char::from_u32(code).ok_or_else(|| error("\\U escape is not a character"))?);
            Ok(index + 10)
        }
        _ => Err(error("unknown escape")),
    }
}

/// `{a="1", b="x\"y"}` from pairs, for messages about streams that arrived as pairs.
pub fn selector_of(pairs: &[Pair<'_>]) -> String {
    let mut text = String::from("{");
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{name}={value:?}");
    }
    text.push('}');
    text
}

fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// ---------------------------------------------------------------------------------------------
// The rate limiter.

/// A token bucket of bytes: `capacity` at most, refilled at `rate` per second.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: f64,
    updated_ns: i64,
}

// ---------------------------------------------------------------------------------------------
// The write path.

/// Most stream label strings remembered as already parsed and checked.
const MAX_CACHED_SELECTORS: usize = 100_000;

/// Entries just stored, as the write path hands them to live tails (`/loki/api/v1/tail`).
#[derive(Debug)]
pub struct AppendedBatch {
    pub tenant: String,
    /// Each stream's labels and the entries of this push that passed the checks.
    pub streams: Vec<(Labels, Vec<LogEntry>)>,
}

/// Appended batches a subscriber may fall behind by before it loses some (and is told how many).
const APPENDED_CHANNEL_CAPACITY: usize = 1024;

/// The logs write path: limits, per-tenant rate buckets, and a cache of parsed stream labels.
pub struct LogsIngest {
    settings: LogsIngestSettings,
    /// Where "now" comes from for the timestamp checks and the rate buckets.
    clock: Arc<dyn Clock>,
    /// Per-tenant token buckets.
    buckets: Mutex<HashMap<String, TokenBucket>>,
    /// Label strings already parsed and found valid, so a sender that sends the same streams
    /// again and again (every agent) does not have them parsed again. Cleared when full.
    selectors: Mutex<HashMap<Box<str>, Labels>>,
    /// Stored batches for live tails. Sent to only while someone subscribes, so a push pays
    /// nothing when nobody tails.
    appended: tokio::sync::broadcast::Sender<Arc<AppendedBatch>>,
}

impl Default for LogsIngest {
    fn default() -> Self {
        LogsIngest::new(LogsIngestSettings::default(), Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for LogsIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsIngest").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// A stream whose labels were refused.
struct StreamRefusal {
    reason: DiscardReason,
    detail: String,
}

impl LogsIngest {
    pub fn new(settings: LogsIngestSettings, clock: Arc<dyn Clock>) -> LogsIngest {
        LogsIngest {
            settings,
            clock,
            buckets: Mutex::new(HashMap::new()),
            selectors: Mutex::new(HashMap::new()),
            appended: tokio::sync::broadcast::channel(APPENDED_CHANNEL_CAPACITY).0,
        }
    }

    /// Every batch stored from now on, for a live tail. A receiver that falls more than
    /// `APPENDED_CHANNEL_CAPACITY` batches behind is told how many it missed.
    pub fn subscribe_appended(&self) -> tokio::sync::broadcast::Receiver<Arc<AppendedBatch>> {
        self.appended.subscribe()
    }

    pub fn settings(&self) -> &LogsIngestSettings {
        &self.settings
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The tenant of a request carrying `org_id` (the `X-Scope-OrgID` header) under the
    /// tenancy setting.
    pub fn tenant(&self, org_id: Option<&str>) -> Result<String, TenantError> {
        resolve_tenant(org_id, self.settings.auth_enabled)
    }

    /// Checks a stream's labels against the limits and builds them.
    fn stream_labels(&self, labels: &StreamLabels<'_>) -> Result<Labels, StreamRefusal> {
        match labels {
            StreamLabels::Selector(text) => {
                {
                    let cache = self.selectors.lock().unwrap_or_else(|poison| poison.into_inner());
                    if let Some(labels) = cache.get(text.as_ref()) {
                        return Ok(labels.clone());
                    }
                }
                let pairs = parse_stream_selector(text).map_err(|error| StreamRefusal {
                    reason: DiscardReason::InvalidLabels,
                    detail: format!("labels do not parse: {error}"),
                })?;
                let labels = self.check_labels(&pairs)?;
                let mut cache = self.selectors.lock().unwrap_or_else(|poison| poison.into_inner());
                if cache.len() >= MAX_CACHED_SELECTORS {
                    cache.clear();
                }
                cache.insert(Box::from(text.as_ref()), labels.clone());
                Ok(labels)
            }
            StreamLabels::Pairs(pairs) => {
                if let Some((name, _)) = pairs.iter().find(|(name, _)| !is_valid_label_name(name)) {
                    return Err(StreamRefusal {
                        reason: DiscardReason::InvalidLabels,
                        detail: format!("label name {name:?} is not valid (expected [a-zA-Z_][a-zA-Z0-9_]*)"),
                    });
                }
                self.check_labels(pairs)
            }
        }
    }

    /// The label limits, in the order Loki applies them.
    fn check_labels(&self, pairs: &[Pair<'_>]) -> Result<Labels, StreamRefusal> {
        let limits = &self.settings.limits;
        let non_empty = pairs.iter().filter(|(_, value)| !value.is_empty()).count();
        if non_empty == 0 {
            return Err(StreamRefusal {
                reason: DiscardReason::MissingLabels,
                detail: "a stream needs at least one label with a value".to_string(),
            });
        }
        if pairs.len() > limits.max_label_names_per_series {
            return Err(StreamRefusal {
                reason: DiscardReason::MaxLabelNamesPerSeries,
                detail: format!("{} labels, over the limit of {}", pairs.len(), limits.max_label_names_per_series),
            });
        }
        for (name, value) in pairs {
            if name.len() > limits.max_label_name_length {
                return Err(StreamRefusal {
                    reason: DiscardReason::LabelNameTooLong,
                    detail: format!(
                        "label name {:?} is {} bytes long, over the limit of {}",
                        shorten(name),
                        name.len(),
                        limits.max_label_name_length
                    ),
                });
            }
            if value.len() > limits.max_label_value_length {
                return Err(StreamRefusal {
                    reason: DiscardReason::LabelValueTooLong,
                    detail: format!(
                        "value of label {name:?} is {} bytes long, over the limit of {}",
                        value.len(),
                        limits.max_label_value_length
                    ),
                });
            }
        }
        let mut names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_ref()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(StreamRefusal {
                reason: DiscardReason::DuplicateLabelNames,
                detail: format!("label name {:?} appears more than once", pair[0]),
            });
        }
        Labels::from_pairs(pairs.iter().map(|(name, value)| (name.as_ref(), value.as_ref())))
            .map_err(|error| StreamRefusal { reason: DiscardReason::InvalidLabels, detail: error.to_string() })
    }

    /// Takes `bytes` from the tenant's bucket; false (and nothing taken) if it holds fewer.
    fn take_tokens(&self, tenant: &str, bytes: u64, now_ns: i64) -> bool {
        let limits = &self.settings.limits;
        let rate = limits.ingestion_rate_mb * BYTES_PER_MB;
        let capacity = limits.ingestion_burst_size_mb * BYTES_PER_MB;
        let mut buckets = self.buckets.lock().unwrap_or_else(|poison| poison.into_inner());
        let bucket = match buckets.get_mut(tenant) {
            Some(bucket) => bucket,
            None => buckets.entry(tenant.to_string()).or_insert(TokenBucket { tokens: capacity, updated_ns: now_ns }),
        };
        let elapsed_seconds = now_ns.saturating_sub(bucket.updated_ns).max(0) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed_seconds * rate).min(capacity);
        bucket.updated_ns = bucket.updated_ns.max(now_ns);
        let wanted = bytes as f64;
        if wanted > bucket.tokens {
            return false;
        }
        bucket.tokens -= wanted;
        true
    }

    /// Checks `batch` and appends what passes to `store` for `tenant`. Blocking: call it off
    /// the async runtime. An error means the store failed (nothing is known to be stored); a
    /// refused or rate-limited push is an `Ok` outcome that says so.
    pub fn push(
        &self,
        store: &dyn LogsAppender,
        tenant: &str,
        batch: &PushBatch<'_>,
    ) -> Result<PushOutcome, PushError> {
        let limits = &self.settings.limits;
        let now_ns = self.clock.now_ns();
        let oldest_ns = if limits.reject_old_samples {
            now_ns.saturating_sub(duration_ns(limits.reject_old_samples_max_age))
        } else {
            i64::MIN
        };
        let newest_ns = now_ns.saturating_add(duration_ns(limits.creation_grace_period));
        let max_line = limits.max_line_size_bytes;

        let mut outcome = PushOutcome { tenant: tenant.to_string(), ..PushOutcome::default() };
        let mut accepted: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(batch.streams.len());
        let mut accepted_bytes = 0u64;
        let mut accepted_entries = 0u64;

        for stream in &batch.streams {
            let stream_bytes: u64 = stream.entries.iter().map(entry_bytes).sum();
            outcome.received_entries += stream.entries.len() as u64;
            outcome.received_bytes += stream_bytes;
            if stream.entries.is_empty() {
                continue;
            }
            let labels = match self.stream_labels(&stream.labels) {
                Ok(labels) => labels,
                Err(refusal) => {
                    outcome.discard(refusal.reason, stream.entries.len() as u64, stream_bytes);
                    outcome.refusals.push(Refusal {
                        stream: stream_display(&stream.labels),
                        t_ns: None,
                        reason: refusal.reason,
                        detail: refusal.detail,
                    });
                    continue;
                }
            };
            let mut entries = Vec::with_capacity(stream.entries.len());
            for entry in &stream.entries {
                let refused = |reason: DiscardReason, detail: String| Refusal {
                    stream: labels.to_string(),
                    t_ns: Some(entry.t_ns),
                    reason,
                    detail,
                };
                let bytes = entry_bytes(entry);
                let refusal = if entry.t_ns < oldest_ns {
                    Some(refused(
                        DiscardReason::GreaterThanMaxSampleAge,
                        format!(
                            "timestamp too old, the oldest accepted is {} (limits.reject_old_samples_max_age)",
                            rfc3339_ns(oldest_ns)
                        ),
                    ))
                } else if entry.t_ns > newest_ns {
                    Some(refused(
                        DiscardReason::TooFarInFuture,
                        format!(
                            "timestamp too far in the future, the newest accepted is {} (limits.creation_grace_period)",
                            rfc3339_ns(newest_ns)
                        ),
                    ))
                } else if max_line > 0 && entry.line.len() > max_line && !limits.max_line_size_truncate {
                    Some(refused(
                        DiscardReason::LineTooLong,
                        format!("line is {} bytes long, over the limit of {max_line} bytes", entry.line.len()),
                    ))
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    outcome.discard(refusal.reason, 1, bytes);
                    outcome.refusals.push(refusal);
                    continue;
                }
                let metadata = match metadata_labels(&entry.metadata) {
                    Ok(metadata) => metadata,
                    Err(detail) => {
                        let refusal = refused(DiscardReason::InvalidStructuredMetadata, detail);
                        outcome.discard(refusal.reason, 1, bytes);
                        outcome.refusals.push(refusal);
                        continue;
                    }
                };
                let line = if max_line > 0 && entry.line.len() > max_line {
                    outcome.truncated_lines += 1;
                    truncate_at_char(&entry.line, max_line).to_string()
                } else {
                    entry.line.as_ref().to_string()
                };
                accepted_bytes += (line.len() + metadata_bytes(&entry.metadata)) as u64;
                entries.push(LogEntry { t_ns: entry.t_ns, line, metadata });
            }
            if !entries.is_empty() {
                accepted_entries += entries.len() as u64;
                accepted.push((labels, entries));
            }
        }

        if accepted_entries == 0 {
            return Ok(outcome);
        }
        if !self.take_tokens(tenant, accepted_bytes, now_ns) {
            outcome.discard(DiscardReason::RateLimited, accepted_entries, accepted_bytes);
            outcome.rate_limited = Some(format!(
                "ingestion rate limit exceeded for tenant {tenant:?} (limit {} bytes/sec, burst {} bytes): refused {accepted_entries} lines totaling {accepted_bytes} bytes; send less or raise limits.ingestion_rate_mb and limits.ingestion_burst_size_mb",
                (limits.ingestion_rate_mb * BYTES_PER_MB) as u64,
                (limits.ingestion_burst_size_mb * BYTES_PER_MB) as u64,
            ));
            return Ok(outcome);
        }
        let streams: Vec<StreamEntries<'_>> =
            accepted.iter().map(|(labels, entries)| StreamEntries { labels, entries }).collect();
        outcome.stored = store.append(tenant, &streams)?;
        drop(streams);
        if self.appended.receiver_count() > 0 {
            // No receiver between the check and the send only means nobody gets the batch.
            let _ = self.appended.send(Arc::new(AppendedBatch { tenant: tenant.to_string(), streams: accepted }));
        }
        Ok(outcome)
    }
}

/// Bytes an entry counts for in rates and discard counters: its line and metadata.
fn entry_bytes(entry: &PushEntry<'_>) -> u64 {
    (entry.line.len() + metadata_bytes(&entry.metadata)) as u64
}

fn metadata_bytes(metadata: &[Pair<'_>]) -> usize {
    metadata.iter().map(|(name, value)| name.len() + value.len()).sum()
}

/// Structured metadata as a label set: a later pair with the same name replaces an earlier
/// one, pairs with an empty value are dropped; an empty name is refused.
fn metadata_labels(pairs: &[Pair<'_>]) -> Result<Labels, String> {
    if pairs.is_empty() {
        return Ok(Labels::empty());
    }
    if pairs.iter().any(|(name, _)| name.is_empty()) {
        return Err("structured metadata has an empty name".to_string());
    }
    let mut last: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match last.iter_mut().find(|(existing, _)| *existing == name.as_ref()) {
            Some(slot) => slot.1 = value.as_ref(),
            None => last.push((name.as_ref(), value.as_ref())),
        }
    }
    Labels::from_pairs(last).map_err(|error| format!("structured metadata: {error}"))
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character boundary.
fn truncate_at_char(text: &str, max_bytes: usize) -> &str {
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn shorten(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.len() <= SHOWN { text.to_string() } else { format!("{}...", truncate_at_char(text, SHOWN)) }
}

fn stream_display(labels: &StreamLabels<'_>) -> String {
    match labels {
        StreamLabels::Selector(text) => shorten_long(text),
        StreamLabels::Pairs(pairs) => shorten_long(&selector_of(pairs)),
    }
}

/// Streams in messages are cut at 1 KiB, so a huge label cannot blow up the answer.
fn shorten_long(text: &str) -> String {
    const SHOWN: usize = 1024;
    if text.len() <= SHOWN { text.to_string() } else { format!("{}...", truncate_at_char(text, SHOWN)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripod_storage::logs::LogAppendCounts;

    /// A store that keeps what it is given.
    #[derive(Default)]
    struct Recorder {
        appended: Mutex<Vec<(String, Labels, Vec<LogEntry>)>>,
    }

    impl LogsAppender for Recorder {
        fn append(&self, tenant: &str, batch: &[StreamEntries<'_>]) -> Result<LogAppendCounts, LogsError> {
            let mut counts = LogAppendCounts::default();
            let mut appended = self.appended.lock().unwrap();
            for stream in batch {
                counts.appended += stream.entries.len() as u64;
                counts.line_bytes += stream.entries.iter().map(|e| e.line.len() as u64).sum::<u64>();
                appended.push((tenant.to_string(), stream.labels.clone(), stream.entries.to_vec()));
            }
            Ok(counts)
        }
    }

    const NOW_NS: i64 = 1_700_000_000_000_000_000;
    const SECOND_NS: i64 = 1_000_000_000;

    fn entry(t_ns: i64, line: &str) -> PushEntry<'_> {
        PushEntry { t_ns, line: Cow::Borrowed(line), metadata: Vec::new() }
    }

    fn stream<'a>(selector: &'a str, entries: Vec<PushEntry<'a>>) -> PushStream<'a> {
        PushStream { labels: StreamLabels::Selector(Cow::Borrowed(selector)), entries }
    }

    fn ingest(limits: LogsLimits) -> (LogsIngest, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(NOW_NS));
        (LogsIngest::new(LogsIngestSettings { auth_enabled: false, limits }, clock.clone()), clock)
    }

    fn pairs(selector: &str) -> Vec<(String, String)> {
        parse_stream_selector(selector).unwrap().into_iter().map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
    }

    #[test]
    fn selectors_parse_with_go_escapes() {
        assert_eq!(pairs(r#"{app="api"}"#), [("app".into(), "api".into())]);
        assert_eq!(
            pairs(" { a = \"1\" ,b=`raw\\n`, c=\"q\\\"\\\\\\n\\t\\x41\\101\\u00e9\\U0001F600\", } "),
            [("a".into(), "1".into()), ("b".into(), "raw\\n".into()), ("c".into(), "q\"\\\n\tAAé😀".into())]
        );
        assert_eq!(pairs("{}"), Vec::<(String, String)>::new());
        assert_eq!(pairs(r#"{a="é ü"}"#), [("a".into(), "é ü".into())]);
        let borrowed = parse_stream_selector(r#"{a="plain"}"#).unwrap();
        assert!(matches!(borrowed[0].1, Cow::Borrowed(_)), "values without escapes borrow");
    }

    #[test]
    fn bad_selectors_say_where() {
        let cases = [
            ("", "expected '{' at byte 0"),
            ("app=\"x\"", "expected '{' at byte 0"),
            ("{app=\"x\"", "expected ',' or '}' at byte 8"),
            ("{app=x}", "expected a quoted label value at byte 5"),
            ("{app!=\"x\"}", "only = matchers may name a stream's labels at byte 4"),
            ("{app=~\"x\"}", "only = matchers may name a stream's labels at byte 4"),
            ("{1app=\"x\"}", "expected a label name at byte 1"),
            ("{app.name=\"x\"}", "expected '=' after the label name at byte 4"),
            ("{a=\"x\" b=\"y\"}", "expected ',' or '}' at byte 7"),
            ("{a=\"x\"} extra", "unexpected text after '}' at byte 8"),
            ("{a=\"x}", "unterminated quoted value at byte 3"),
            ("{a=\"\\q\"}", "unknown escape at byte 4"),
            ("{a=\"\\xff\"}", "\\x escape is not ASCII at byte 4"),
            ("{a=\"\\u12\"}", "invalid digits in escape at byte 4"),
            ("{a=\"\\ud800\"}", "\\u escape is not a character at byte 4"),
            ("{a=`x}", "unterminated raw string at byte 3"),
            ("{a=\"x\ny\"}", "newline in a quoted value at byte 5"),
        ];
        for (input, expected) in cases {
            let error = parse_stream_selector(input).unwrap_err().to_string();
            assert_eq!(error, expected, "{input:?}");
        }
    }

    #[test]
    fn good_entries_are_stored_and_bad_ones_named() {
        let (ingest, _) = ingest(LogsLimits { max_line_size_bytes: 10, ..LogsLimits::default() });
        let store = Recorder::default();
        let old = NOW_NS - 8 * 24 * 3600 * SECOND_NS;
        let future = NOW_NS + 11 * 60 * SECOND_NS;
        let batch = PushBatch {
            streams: vec![
                stream(
                    r#"{app="api"}"#,
                    vec![
                        entry(NOW_NS, "ok"),
                        entry(old, "old"),
                        entry(future, "future"),
                        entry(NOW_NS + 1, "far too long line"),
                    ],
                ),
                stream(r#"{app="web", app="x"}"#, vec![entry(NOW_NS, "dup")]),
                stream("{app=web}", vec![entry(NOW_NS, "bad")]),
                stream("{}", vec![entry(NOW_NS, "none")]),
            ],
        };
        let outcome = ingest.push(&store, "fake", &batch).unwrap();
        let appended = store.appended.lock().unwrap();
        assert_eq!(appended.len(), 1);
        assert_eq!(appended[0].1.to_string(), r#"{app="api"}"#);
        assert_eq!(appended[0].2.iter().map(|e| e.line.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(outcome.received_entries, 7);
        assert_eq!(outcome.stored.appended, 1);
        for (reason, entries) in [
            (DiscardReason::GreaterThanMaxSampleAge, 1),
            (DiscardReason::TooFarInFuture, 1),
            (DiscardReason::LineTooLong, 1),
            (DiscardReason::DuplicateLabelNames, 1),
            (DiscardReason::InvalidLabels, 1),
            (DiscardReason::MissingLabels, 1),
        ] {
            assert_eq!(outcome.discarded(reason).entries, entries, "{reason:?}");
        }
        assert_eq!(outcome.discarded(DiscardReason::LineTooLong).bytes, 17);
        let message = outcome.refusal_message().unwrap();
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(
            lines,
            [
                "stream {app=\"api\"}: entry at 2023-11-06T22:13:20Z refused (greater_than_max_sample_age): timestamp too old, the oldest accepted is 2023-11-07T22:13:20Z (limits.reject_old_samples_max_age)",
                "stream {app=\"api\"}: entry at 2023-11-14T22:24:20Z refused (too_far_in_future): timestamp too far in the future, the newest accepted is 2023-11-14T22:23:20Z (limits.creation_grace_period)",
                "stream {app=\"api\"}: entry at 2023-11-14T22:13:20.000000001Z refused (line_too_long): line is 17 bytes long, over the limit of 10 bytes",
                "stream {app=\"web\", app=\"x\"}: refused (duplicate_label_names): label name \"app\" appears more than once",
                "stream {app=web}: refused (invalid_labels): labels do not parse: expected a quoted label value at byte 5",
                "stream {}: refused (missing_labels): a stream needs at least one label with a value",
                "6 of 7 entries refused, the others stored",
            ]
        );
    }

    #[test]
    fn label_limits() {
        let (ingest, _) = ingest(LogsLimits {
            max_label_names_per_series: 2,
            max_label_name_length: 5,
            max_label_value_length: 3,
            ..LogsLimits::default()
        });
        let store = Recorder::default();
        let cases = [
            (r#"{a="1", b="2", c="3"}"#, DiscardReason::MaxLabelNamesPerSeries, "3 labels, over the limit of 2"),
            (
                r#"{abcdef="1"}"#,
                DiscardReason::LabelNameTooLong,
                "label name \"abcdef\" is 6 bytes long, over the limit of 5",
            ),
            (
                r#"{a="1234"}"#,
                DiscardReason::LabelValueTooLong,
                "value of label \"a\" is 4 bytes long, over the limit of 3",
            ),
            (r#"{a=""}"#, DiscardReason::MissingLabels, "a stream needs at least one label with a value"),
        ];
        for (selector, reason, detail) in cases {
            let batch = PushBatch { streams: vec![stream(selector, vec![entry(NOW_NS, "x")])] };
            let outcome = ingest.push(&store, "fake", &batch).unwrap();
            assert_eq!(outcome.refusals.len(), 1, "{selector}");
            assert_eq!((outcome.refusals[0].reason, outcome.refusals[0].detail.as_str()), (reason, detail));
        }
        let batch = PushBatch {
            streams: vec![PushStream {
                labels: StreamLabels::Pairs(vec![(Cow::Borrowed("service.name"), Cow::Borrowed("x"))]),
                entries: vec![entry(NOW_NS, "x")],
            }],
        };
        let outcome = ingest.push(&store, "fake", &batch).unwrap();
        assert_eq!(outcome.refusals[0].reason, DiscardReason::InvalidLabels);
        assert_eq!(outcome.refusals[0].stream, r#"{service.name="x"}"#);
        assert!(store.appended.lock().unwrap().is_empty());
    }

    #[test]
    fn long_lines_are_truncated_when_asked() {
        let (ingest, _) =
            ingest(LogsLimits { max_line_size_bytes: 4, max_line_size_truncate: true, ..LogsLimits::default() });
        let store = Recorder::default();
        let batch =
            PushBatch { streams: vec![stream(r#"{a="b"}"#, vec![entry(NOW_NS, "abcdef"), entry(NOW_NS, "aéé")])] };
        let outcome = ingest.push(&store, "fake", &batch).unwrap();
        assert_eq!(outcome.truncated_lines, 2);
        assert!(outcome.refusals.is_empty());
        let lines: Vec<String> = store.appended.lock().unwrap()[0].2.iter().map(|e| e.line.clone()).collect();
        assert_eq!(lines, ["abcd", "aé"]);
    }

    #[test]
    fn old_entries_pass_when_not_rejected() {
        let (ingest, _) = ingest(LogsLimits { reject_old_samples: false, ..LogsLimits::default() });
        let store = Recorder::default();
        let batch = PushBatch { streams: vec![stream(r#"{a="b"}"#, vec![entry(0, "epoch")])] };
        let outcome = ingest.push(&store, "fake", &batch).unwrap();
        assert_eq!(outcome.stored.appended, 1);
    }

    #[test]
    fn the_rate_limit_refuses_the_whole_push_and_refills() {
        // 1 KiB/s sustained, 2 KiB burst.
        let (ingest, clock) = ingest(LogsLimits {
            ingestion_rate_mb: 1.0 / 1024.0,
            ingestion_burst_size_mb: 2.0 / 1024.0,
            ..LogsLimits::default()
        });
        let store = Recorder::default();
        let line = "x".repeat(1000);
        let push = |count: usize| {
            let entries = (0..count).map(|i| entry(NOW_NS + i as i64, &line)).collect();
            ingest.push(&store, "team-a", &PushBatch { streams: vec![stream(r#"{a="b"}"#, entries)] }).unwrap()
        };
        assert!(push(2).rate_limited.is_none(), "the burst allows 2000 bytes");
        let refused = push(1);
        let message = refused.rate_limited.clone().unwrap();
        assert!(message.starts_with("ingestion rate limit exceeded for tenant \"team-a\" (limit 1024 bytes/sec, burst 2048 bytes): refused 1 lines totaling 1000 bytes"), "{message}");
        assert_eq!(refused.discarded(DiscardReason::RateLimited), DiscardCount { entries: 1, bytes: 1000 });
        assert_eq!(store.appended.lock().unwrap().len(), 1);
        clock.advance(Duration::from_secs(1));
        assert!(push(1).rate_limited.is_none(), "a second refills 1024 bytes");
        // Another tenant has its own bucket.
        let other = ingest
            .push(&store, "team-b", &PushBatch { streams: vec![stream(r#"{a="b"}"#, vec![entry(NOW_NS, &line)])] })
            .unwrap();
        assert!(other.rate_limited.is_none());
        // More than the burst never passes.
        clock.advance(Duration::from_secs(3600));
        assert!(push(3).rate_limited.is_some());
    }

    #[test]
    fn structured_metadata_becomes_labels() {
        let (ingest, _) = ingest(LogsLimits::default());
        let store = Recorder::default();
        let metadata = vec![
            (Cow::Borrowed("trace_id"), Cow::Borrowed("abc")),
            (Cow::Borrowed("user"), Cow::Borrowed("1")),
            (Cow::Borrowed("user"), Cow::Borrowed("2")),
            (Cow::Borrowed("empty"), Cow::Borrowed("")),
        ];
        let bad = vec![(Cow::Borrowed(""), Cow::Borrowed("x"))];
        let batch = PushBatch {
            streams: vec![stream(
                r#"{a="b"}"#,
                vec![
                    PushEntry { t_ns: NOW_NS, line: Cow::Borrowed("x"), metadata },
                    PushEntry { t_ns: NOW_NS, line: Cow::Borrowed("y"), metadata: bad },
                ],
            )],
        };
        let outcome = ingest.push(&store, "fake", &batch).unwrap();
        let appended = store.appended.lock().unwrap();
        assert_eq!(appended[0].2[0].metadata.to_string(), r#"{trace_id="abc", user="2"}"#);
        assert_eq!(outcome.discarded(DiscardReason::InvalidStructuredMetadata).entries, 1);
    }

    #[test]
    fn tenants() {
        assert_eq!(resolve_tenant(None, false).unwrap(), "fake");
        assert_eq!(resolve_tenant(Some("team-a"), false).unwrap(), "fake");
        assert_eq!(resolve_tenant(Some("team-a"), true).unwrap(), "team-a");
        assert_eq!(resolve_tenant(None, true), Err(TenantError::Missing));
        assert_eq!(resolve_tenant(Some(" "), true), Err(TenantError::Missing));
        assert_eq!(TenantError::Missing.to_string(), "no org id");
        for bad in ["a|b", "..", "a/b", &"x".repeat(151)] {
            assert!(matches!(resolve_tenant(Some(bad), true), Err(TenantError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn timestamps_format_with_nanoseconds() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ns(1_700_000_000_123_000_000), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
