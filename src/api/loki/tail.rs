//! `GET /loki/api/v1/tail`: live tailing over a WebSocket, as Grafana's Explore "Live" uses it.
//!
//! The query (a log query; its pipeline applies) is checked before the upgrade, so a bad one
//! gets a plain 400. After the upgrade the server first sends the newest `limit` (100) matching
//! entries since `start` (an hour ago), oldest first, then every matching entry the write path
//! stores from then on, in text frames `{"streams":[...],"dropped_entries":[...]}` at most four
//! a second. Entries are held `delay_for` seconds (at most 5) before they are sent.
//!
//! New entries come from the write path's broadcast of stored batches, which it sends only
//! while a tail is subscribed. They wait in a bounded queue for the socket; when the client
//! reads slower than entries arrive, the queue fills and further entries are dropped and named
//! (labels and timestamp) in the next frame's `dropped_entries`. Reading the broadcast and
//! writing the socket run side by side in the connection's task, so a slow socket never holds
//! up the write path. The socket is closed with 1001 when the server shuts down.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tripod_storage::labels::{Labels, matches_all};
use tripod_storage::logs::LogEntry;

use super::query::{
    CATEGORIZE_LABELS, categorize, limit_param, newest_entries, write_json_pairs, write_json_string, write_streams,
};
use super::{now_ns, parse_logql, query_tenant, time_param_ns};
use crate::api::error::{ApiError, LokiError};
use crate::api::prometheus::read::Params;
use crate::api::{AppState, Readiness};
use crate::ingest::logs::AppendedBatch;
use crate::query::logql::eval::{ResultEntry, ResultStream};
use crate::query::logql::pipeline::labels::Category;
use crate::query::logql::pipeline::{Outcome, Pipeline, PipelineState};
use crate::query::logql::syntax::Expr;
use crate::query::logql::syntax::ast::LogExpr;

/// The longest `delay_for` accepted, in seconds (Loki's limit).
const MAX_DELAY_FOR_SECONDS: u64 = 5;
/// How far back the first answer reaches when no `start` is given.
const DEFAULT_LOOKBACK_NS: i64 = 3600 * 1_000_000_000;
/// Shortest time between two frames: entries arriving in between go out together.
const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(250);
/// Entries waiting for the socket, at most, and their bytes (lines and labels).
const MAX_QUEUED_ENTRIES: usize = 5000;
const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Dropped entries named in one frame, at most; more are only counted in the log.
const MAX_DROPPED_NAMED: usize = 1000;
/// Largest message a client may send (it sends none but close and ping).
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

/// Close codes (RFC 6455): the server is going away; the server failed.
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_INTERNAL_ERROR: u16 = 1011;

/// What a tail was asked for, checked before the upgrade.
struct TailRequest {
    state: AppState,
    tenant: String,
    log: LogExpr,
    limit: usize,
    start_ns: i64,
    delay: Duration,
    categorized: bool,
    /// Subscribed before the upgrade is answered, so no entry stored after the client sees
    /// the upgrade can be missed.
    appended: broadcast::Receiver<Arc<AppendedBatch>>,
}

pub async fn tail(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, LokiError> {
    let params = Params::from_request(query.as_deref(), &headers, &[])?;
    let tenant = query_tenant(&state, &headers)?;
    let Expr::Log(log) = parse_logql(&params)? else {
        return Err(ApiError::bad_data("tail needs a log query, not a metric query").into());
    };
    // The pipeline compiles here so its errors (a bad regular expression) are a 400 too.
    Pipeline::new(&log.stages, false).map_err(|error| ApiError::bad_data(error.0))?;
    let limit = limit_param(&params)?;
    let max_entries = state.logs_query().max_entries_limit_per_query;
    if limit > max_entries {
        return Err(ApiError::bad_data(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max_entries})"
        ))
        .into());
    }
    let delay = match params.get("delay_for").map(str::trim) {
        None | Some("") => Duration::ZERO,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) if seconds <= MAX_DELAY_FOR_SECONDS => Duration::from_secs(seconds),
            Ok(_) => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"delay_for\": delay_for can't be greater than {MAX_DELAY_FOR_SECONDS}"
                ))
                .into());
            }
            Err(_) => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"delay_for\": {text:?} is not whole seconds"
                ))
                .into());
            }
        },
    };
    let start_ns = time_param_ns(&params, "start")?.unwrap_or_else(|| now_ns(&state) - DEFAULT_LOOKBACK_NS);
    state.storage()?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::bad_data(format!("tail is a WebSocket endpoint: {}", rejection.body_text().to_lowercase()))
    })?;
    let appended = state.logs_ingest().subscribe_appended();
    let request =
        TailRequest { state, tenant, log, limit, start_ns, delay, categorized: categorize(&headers), appended };
    Ok(upgrade.max_message_size(MAX_CLIENT_MESSAGE_BYTES).on_upgrade(move |socket| run(socket, request)))
}

/// One entry waiting to be sent.
struct Queued {
    stream: ResultStreamKey,
    entry: ResultEntry,
    /// When it was queued, for `delay_for`.
    queued: Instant,
    bytes: usize,
}

/// The labels an entry is filed under in a frame.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ResultStreamKey {
    labels: Labels,
    stream_labels: Labels,
}

/// Entries between the broadcast and the socket.
#[derive(Default)]
struct TailQueue {
    entries: VecDeque<Queued>,
    bytes: usize,
    /// Entries that did not fit, named in the next frame.
    dropped: Vec<(Labels, i64)>,
    /// Dropped beyond those named, and batches the broadcast skipped, for the log.
    dropped_unnamed: u64,
}

impl TailQueue {
    fn push(&mut self, queued: Queued) {
        if self.entries.len() >= MAX_QUEUED_ENTRIES || self.bytes + queued.bytes > MAX_QUEUED_BYTES {
            if self.dropped.len() < MAX_DROPPED_NAMED {
                self.dropped.push((queued.stream.labels, queued.entry.t_ns));
            } else {
                self.dropped_unnamed += 1;
            }
            return;
        }
        self.bytes += queued.bytes;
        self.entries.push_back(queued);
    }

    /// The entries queued before `ready_before`, and the dropped ones.
    fn take(&mut self, ready_before: Instant) -> (Vec<Queued>, Vec<(Labels, i64)>) {
        let mut taken = Vec::new();
        while self.entries.front().is_some_and(|front| front.queued <= ready_before) {
            if let Some(queued) = self.entries.pop_front() {
                self.bytes -= queued.bytes;
                taken.push(queued);
            }
        }
        (taken, std::mem::take(&mut self.dropped))
    }
}

/// What the reader and the writer share.
struct Shared {
    queue: Mutex<TailQueue>,
    /// Woken when entries are queued.
    queued: Notify,
    /// Cancelled when either side stops: the other stops too.
    stop: CancellationToken,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, TailQueue> {
        self.queue.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Runs one tail until the client leaves, the socket fails or the server stops.
async fn run(socket: WebSocket, request: TailRequest) {
    let (mut sink, mut incoming) = socket.split();
    let TailRequest { state, tenant, log, limit, start_ns, delay, categorized, appended } = request;
    let shared = Arc::new(Shared { queue: Mutex::default(), queued: Notify::new(), stop: CancellationToken::new() });

    let readiness = state.watch_readiness();
    let history = history(&state, &tenant, &log, limit, start_ns).await;
    // Nothing past this point needs the storage; holding it would keep it open at shutdown.
    drop(state);
    let (history, history_end_ns) = match history {
        Ok(history) => history,
        Err(error) => {
            let frame = CloseFrame { code: CLOSE_INTERNAL_ERROR, reason: close_reason(error.message()).into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
            return;
        }
    };
    // Entries of the first answer that the broadcast may bring again.
    let mut seen: HashSet<(i64, String, Labels)> = HashSet::new();
    {
        let now = Instant::now();
        let mut queue = shared.queue();
        for stream in history {
            let key = ResultStreamKey { labels: stream.labels, stream_labels: stream.stream_labels };
            for entry in stream.entries {
                seen.insert((entry.t_ns, entry.line.clone(), key.labels.clone()));
                let bytes = entry_bytes(&entry);
                // The first answer is sent at once, whatever `delay_for` says.
                let queued = now.checked_sub(delay).unwrap_or(now);
                queue.push(Queued { stream: key.clone(), entry, queued, bytes });
            }
        }
    }
    shared.queued.notify_one();

    let reader = read_appended(appended, &shared, &tenant, &log, seen, history_end_ns);
    let writer = write_frames(&mut sink, &shared, delay, categorized, readiness);
    let client = async {
        // The client sends nothing but pings (answered by the socket) and its close.
        loop {
            tokio::select! {
                () = shared.stop.cancelled() => break,
                message = incoming.next() => match message {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        shared.stop.cancel();
    };
    tokio::join!(reader, writer, client);
    let queue = shared.queue();
    if queue.dropped_unnamed > 0 {
        tracing::warn!(tenant = %tenant, dropped = queue.dropped_unnamed, "tail dropped entries it could not name");
    }
}

/// The newest `limit` matching entries from `start_ns` to now, oldest first, and the end of
/// the range they were read from.
async fn history(
    state: &AppState,
    tenant: &str,
    log: &LogExpr,
    limit: usize,
    start_ns: i64,
) -> Result<(Vec<ResultStream>, i64), ApiError> {
    // The read covers `[start, end)`; one past now takes in entries stamped now.
    let end_ns = now_ns(state).saturating_add(1);
    if end_ns <= start_ns {
        return Ok((Vec::new(), end_ns));
    }
    let mut streams = newest_entries(state, tenant, log, start_ns, end_ns, limit).await?;
    for stream in &mut streams {
        stream.entries.reverse();
    }
    Ok((streams, end_ns))
}

fn entry_bytes(entry: &ResultEntry) -> usize {
    let pairs = |pairs: &[(String, String)]| pairs.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    entry.line.len() + pairs(&entry.metadata) + pairs(&entry.parsed) + 32
}

/// Filters stored batches through the query and queues what matches, until stopped.
async fn read_appended(
    mut appended: broadcast::Receiver<Arc<AppendedBatch>>,
    shared: &Shared,
    tenant: &str,
    log: &LogExpr,
    mut seen: HashSet<(i64, String, Labels)>,
    history_end_ns: i64,
) {
    let pipeline = match Pipeline::new(&log.stages, false) {
        Ok(pipeline) => pipeline,
        Err(_) => {
            // Compiled once already before the upgrade; it cannot fail here.
            shared.stop.cancel();
            return;
        }
    };
    let mut state = PipelineState::default();
    loop {
        let batch = tokio::select! {
            () = shared.stop.cancelled() => return,
            batch = appended.recv() => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                shared.queue().dropped_unnamed += skipped;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => {
                shared.stop.cancel();
                return;
            }
        };
        if batch.tenant != tenant {
            continue;
        }
        // The pipeline runs before the queue is locked, so the writer never waits on it.
        let now = Instant::now();
        let mut matched = Vec::new();
        for (labels, entries) in &batch.streams {
            if !matches_all(labels, &log.matchers) {
                continue;
            }
            for entry in entries {
                let Some((stream, result)) = process(&pipeline, &mut state, labels, entry) else { continue };
                if entry.t_ns < history_end_ns
                    && seen.remove(&(result.t_ns, result.line.clone(), stream.labels.clone()))
                {
                    continue;
                }
                let bytes = entry_bytes(&result);
                matched.push(Queued { stream, entry: result, queued: now, bytes });
            }
        }
        if matched.is_empty() {
            continue;
        }
        {
            let mut queue = shared.queue();
            for queued in matched {
                queue.push(queued);
            }
        }
        shared.queued.notify_one();
    }
}

/// Runs one stored entry through the query's pipeline, as a log query would.
fn process(
    pipeline: &Pipeline,
    state: &mut PipelineState,
    stream_labels: &Labels,
    entry: &LogEntry,
) -> Option<(ResultStreamKey, ResultEntry)> {
    if pipeline.process(entry.t_ns, &entry.line, stream_labels, &entry.metadata, state) == Outcome::Dropped {
        return None;
    }
    let labels = if state.labels.has_non_stream() || !pipeline.only_line_filters() {
        state.labels.labels()
    } else {
        stream_labels.clone()
    };
    let pairs = |category| -> Vec<(String, String)> {
        state.labels.category(category).into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    };
    let kept_stream_labels =
        Labels::from_pairs(state.labels.category(Category::Stream)).unwrap_or_else(|_| stream_labels.clone());
    let result = ResultEntry {
        t_ns: entry.t_ns,
        line: state.line(&entry.line).to_string(),
        metadata: pairs(Category::Metadata),
        parsed: pairs(Category::Parsed),
    };
    Some((ResultStreamKey { labels, stream_labels: kept_stream_labels }, result))
}

/// Sends queued entries as frames until stopped, and closes the socket when the server stops.
async fn write_frames(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    shared: &Shared,
    delay: Duration,
    categorized: bool,
    mut readiness: tokio::sync::watch::Receiver<Readiness>,
) {
    let stopping = |readiness: &Readiness| matches!(readiness, Readiness::Stopping | Readiness::Failed(_));
    let mut last_frame: Option<Instant> = None;
    loop {
        if stopping(&readiness.borrow()) {
            let frame = CloseFrame { code: CLOSE_GOING_AWAY, reason: "server shutting down".into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
            break;
        }
        // Wait for entries, unless some are already waiting out their delay.
        let next_ready = shared.queue().entries.front().map(|front| front.queued + delay);
        let wait_until = match next_ready {
            Some(ready) => ready,
            None => {
                tokio::select! {
                    () = shared.stop.cancelled() => break,
                    changed = readiness.changed() => if changed.is_ok() { continue } else { break },
                    () = shared.queued.notified() => continue,
                }
            }
        };
        let wait_until = last_frame.map_or(wait_until, |last| wait_until.max(last + MIN_FRAME_INTERVAL));
        tokio::select! {
            () = shared.stop.cancelled() => break,
            changed = readiness.changed() => if changed.is_ok() { continue } else { break },
            () = tokio::time::sleep_until(wait_until.into()) => {}
        }
        let (entries, dropped) = shared.queue().take(Instant::now().checked_sub(delay).unwrap_or_else(Instant::now));
        if entries.is_empty() && dropped.is_empty() {
            continue;
        }
        let frame = encode_frame(entries, &dropped, categorized);
        last_frame = Some(Instant::now());
        let sent = tokio::select! {
            () = shared.stop.cancelled() => break,
            sent = sink.send(Message::Text(frame.into())) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
    shared.stop.cancel();
}

/// `{"streams":[...],"dropped_entries":[...]}`: entries grouped by labels, oldest first.
fn encode_frame(entries: Vec<Queued>, dropped: &[(Labels, i64)], categorized: bool) -> String {
    let mut streams: BTreeMap<ResultStreamKey, Vec<ResultEntry>> = BTreeMap::new();
    for queued in entries {
        streams.entry(queued.stream).or_default().push(queued.entry);
    }
    let streams: Vec<ResultStream> = streams
        .into_iter()
        .map(|(key, mut entries)| {
            entries.sort_by_key(|entry| entry.t_ns);
            ResultStream { labels: key.labels, stream_labels: key.stream_labels, entries }
        })
        .collect();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"streams\":");
    write_streams(&mut out, &streams, categorized);
    if !dropped.is_empty() {
        out.extend_from_slice(b",\"dropped_entries\":[");
        for (i, (labels, t_ns)) in dropped.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"labels\":");
            write_json_pairs(&mut out, labels.iter().map(|label| (&*label.name, &*label.value)));
            out.extend_from_slice(b",\"timestamp\":");
            write_json_string(&mut out, &t_ns.to_string());
            out.push(b'}');
        }
        out.push(b']');
    }
    if categorized {
        out.extend_from_slice(b",\"encodingFlags\":[\"");
        out.extend_from_slice(CATEGORIZE_LABELS.as_bytes());
        out.extend_from_slice(b"\"]");
    }
    out.push(b'}');
    // Built from valid UTF-8 pieces only.
    String::from_utf8(out).unwrap_or_default()
}

/// A close frame's reason holds at most 123 bytes.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(labels: &Labels, t_ns: i64, line: &str) -> Queued {
        let entry = ResultEntry { t_ns, line: line.to_string(), metadata: vec![], parsed: vec![] };
        let bytes = entry_bytes(&entry);
        Queued {
            stream: ResultStreamKey { labels: labels.clone(), stream_labels: labels.clone() },
            entry,
            queued: Instant::now(),
            bytes,
        }
    }

    #[test]
    fn frames_group_by_stream_oldest_first() {
        let api = Labels::from_pairs([("app", "api")]).unwrap();
        let db = Labels::from_pairs([("app", "db")]).unwrap();
        let entries = vec![queued(&db, 5, "d"), queued(&api, 3, "b"), queued(&api, 1, "a")];
        let frame = encode_frame(entries, &[(api.clone(), 7)], false);
        assert_eq!(
            frame,
            r#"{"streams":[{"stream":{"app":"api"},"values":[["1","a"],["3","b"]]},{"stream":{"app":"db"},"values":[["5","d"]]}],"dropped_entries":[{"labels":{"app":"api"},"timestamp":"7"}]}"#
        );
    }

    #[test]
    fn a_full_queue_names_what_it_drops() {
        let api = Labels::from_pairs([("app", "api")]).unwrap();
        let mut queue = TailQueue::default();
        for t_ns in 0..MAX_QUEUED_ENTRIES as i64 + 3 {
            queue.push(queued(&api, t_ns, "x"));
        }
        assert_eq!(queue.entries.len(), MAX_QUEUED_ENTRIES);
        let (taken, dropped) = queue.take(Instant::now());
        assert_eq!(taken.len(), MAX_QUEUED_ENTRIES);
        let dropped: Vec<i64> = dropped.iter().map(|(_, t_ns)| *t_ns).collect();
        assert_eq!(dropped, [5000, 5001, 5002]);
        assert_eq!(queue.bytes, 0);
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        assert_eq!(close_reason(&"é".repeat(100)).len(), 122);
        assert_eq!(close_reason("short"), "short");
    }
}
