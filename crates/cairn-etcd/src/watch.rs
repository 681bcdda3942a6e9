//! The Watch service: many watches on one bidirectional stream, each owed every event of its
//! key range from its start revision on, in order, once (RFC 0009 §6).
//!
//! One task per stream ([`WatchStream::run`]) owns the stream's watchers and one receiver of
//! the backend's live feed. Each watcher keeps `next`, the next revision it owes the client. A
//! watcher is *synced* when `next` is past `head`, the newest revision the stream has seen:
//! the live feed's next revision is then exactly what it needs. Any other watcher (a start in
//! the past, a lagged feed) catches up from `history()` a page at a time, interleaved with the
//! feed and the client's requests, until it is synced. A slow client stops the task at its
//! bounded response buffer; the feed then lags, and the watchers fall back to history: memory
//! stays bounded and no event is dropped or repeated.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_coord::EventKind;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, interval_at};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::{Applied, CoordError, Coordination};
use crate::config::EtcdConfig;
use crate::convert;
use crate::lease::ResponseStream;
use crate::proto::etcdserverpb::{self as pb, watch_create_request, watch_request};
use crate::proto::mvccpb;
use crate::status::{self, COMPACTED};
use crate::stopping::Stopping;

/// The watch id of answers that belong to no watch (etcd's `InvalidWatchID`).
const NO_WATCH: i64 = -1;

/// etcd's Watch service.
pub struct WatchService<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
    stopping: Stopping,
}

impl<B: Coordination> WatchService<B> {
    /// The service over `backend`.
    pub fn new(backend: Arc<B>, config: Arc<EtcdConfig>, stopping: Stopping) -> Self {
        WatchService { backend, config, stopping }
    }
}

#[tonic::async_trait]
impl<B: Coordination> pb::watch_server::Watch for WatchService<B> {
    type WatchStream = ResponseStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (out, responses) = mpsc::channel(self.config.stream_responses_buffered.max(1));
        let (feed, head) = self.backend.subscribe();
        let stream = WatchStream {
            backend: Arc::clone(&self.backend),
            config: Arc::clone(&self.config),
            out,
            feed,
            head,
            lagged: false,
            watchers: BTreeMap::new(),
            next_id: 0,
            progress_pending: false,
        };
        tokio::spawn(stream.run(request.into_inner(), self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// One watch of a stream.
#[derive(Debug)]
struct Watcher {
    /// The key, or the start of the range.
    key: Vec<u8>,
    /// The end of the range as etcd names it: empty for the key alone, `[0]` for every key
    /// from `key` on.
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// The next revision this watcher owes the client.
    next: i64,
}

impl Watcher {
    fn covers(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// The events of `applied` this watcher sends, as the client wants them.
    fn events(&self, applied: &Applied) -> Vec<mvccpb::Event> {
        let wanted = |kind: EventKind| match kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        };
        let events = applied.events.iter().filter(|e| wanted(e.kind) && self.covers(&e.kv.key));
        events.map(|event| convert::event_to(event, self.prev_kv)).collect()
    }
}

/// The client went away: the stream ends.
struct Gone;

/// What woke the stream's task.
enum Step {
    Request(Result<Option<pb::WatchRequest>, Status>),
    Feed(Result<Arc<Applied>, RecvError>),
    CatchUp(i64),
    Tick,
}

/// The state of one Watch stream, owned by its task.
struct WatchStream<B> {
    backend: Arc<B>,
    config: Arc<EtcdConfig>,
    out: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    feed: broadcast::Receiver<Arc<Applied>>,
    /// The newest revision the stream has seen applied (from `subscribe` or the feed).
    head: i64,
    /// The feed skipped revisions since `head`.
    lagged: bool,
    watchers: BTreeMap<i64, Watcher>,
    /// The next id the server picks (etcd's start at 0).
    next_id: i64,
    /// A WatchProgressRequest waits until every watcher is synced.
    progress_pending: bool,
}

impl<B: Coordination> WatchStream<B> {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>, mut stopping: Stopping) {
        let interval = self.config.progress_interval;
        let mut ticker = interval_at(Instant::now() + interval, interval);
        loop {
            let behind = self.watchers.iter().find(|(_, w)| w.next <= self.head).map(|(id, _)| *id);
            let step = tokio::select! {
                request = inbound.message() => Step::Request(request),
                applied = self.feed.recv() => Step::Feed(applied),
                () = std::future::ready(()), if behind.is_some() => Step::CatchUp(behind.unwrap_or(NO_WATCH)),
                _ = ticker.tick() => Step::Tick,
                () = stopping.stopped() => return,
            };
            let done = match step {
                Step::Request(Ok(Some(request))) => self.on_request(request).await,
                Step::Request(Ok(None) | Err(_)) => Err(Gone),
                Step::Feed(applied) => self.on_feed(applied).await,
                Step::CatchUp(id) => self.catch_up(id).await,
                Step::Tick => self.notify_progress().await,
            };
            if done.is_err() || self.answer_progress().await.is_err() {
                return;
            }
        }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        convert::header(&self.backend.header(), revision)
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(response)).await.map_err(|_| Gone)
    }

    async fn fail(&self, status: Status) -> Result<(), Gone> {
        // The stream ends either way.
        let _ = self.out.send(Err(status)).await;
        Err(Gone)
    }

    async fn on_request(&mut self, request: pb::WatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_none() {
                    return Ok(());
                }
                let header = self.header(self.head);
                let canceled = pb::WatchResponse {
                    header,
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                self.send(canceled).await
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.progress_pending = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A new watcher, answered `created` (and `canceled` with a reason if it is refused).
    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), Gone> {
        let refused = |reason: &str| pb::WatchResponse {
            header: self.header(self.head),
            watch_id: NO_WATCH,
            created: true,
            canceled: true,
            cancel_reason: reason.to_owned(),
            ..Default::default()
        };
        let mut key = create.key;
        if key.is_empty() {
            key = vec![0]; // etcd: the smallest key
        }
        let range_end = create.range_end;
        let response = if create.start_revision < 0 {
            refused(COMPACTED)
        } else if !matches!(range_end.as_slice(), [] | [0]) && range_end <= key {
            refused("mvcc: watcher range is empty")
        } else if create.watch_id != 0 && self.watchers.contains_key(&create.watch_id) {
            refused("mvcc: duplicate watch ID provided on the WatchStream")
        } else if self.watchers.len() >= self.config.watches_per_stream_max {
            refused("cairn: too many watches on one stream")
        } else {
            let filters = |filter| create.filters.contains(&i32::from(filter));
            let watcher = Watcher {
                key,
                range_end,
                no_put: filters(watch_create_request::FilterType::Noput),
                no_delete: filters(watch_create_request::FilterType::Nodelete),
                prev_kv: create.prev_kv,
                fragment: create.fragment,
                progress_notify: create.progress_notify,
                next: if create.start_revision == 0 {
                    self.head + 1
                } else {
                    create.start_revision
                },
            };
            let id = self.pick_id(create.watch_id);
            self.watchers.insert(id, watcher);
            let header = self.header(self.head);
            pb::WatchResponse { header, watch_id: id, created: true, ..Default::default() }
        };
        self.send(response).await
    }

    /// The client's id, or the lowest free one from the server's counter (etcd's way).
    fn pick_id(&mut self, asked: i64) -> i64 {
        if asked != 0 {
            return asked;
        }
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        self.next_id += 1;
        self.next_id - 1
    }

    /// A revision from the live feed, for the synced watchers; a lag makes every watcher
    /// that may have missed something catch up from history.
    async fn on_feed(&mut self, applied: Result<Arc<Applied>, RecvError>) -> Result<(), Gone> {
        let applied = match applied {
            Ok(applied) => applied,
            Err(RecvError::Lagged(skipped)) => {
                tracing::debug!(
                    skipped,
                    head = self.head,
                    "watch stream lagged behind the live feed"
                );
                self.lagged = true;
                return Ok(());
            }
            Err(RecvError::Closed) => {
                return self.fail(Status::unavailable("etcdserver: server stopped")).await;
            }
        };
        let revision = applied.revision;
        if revision <= self.head {
            return Ok(());
        }
        if std::mem::take(&mut self.lagged) {
            // Revisions between head and this one were skipped: whoever needs them reads
            // history.
            self.head = revision - 1;
        }
        let head = self.head;
        self.head = revision;
        for (id, watcher) in &mut self.watchers {
            if watcher.next > head && watcher.next <= revision {
                send_events(&self.out, &self.backend, &self.config, *id, watcher, &applied).await?;
                watcher.next = revision + 1;
            }
        }
        Ok(())
    }

    /// One page of history for the watcher `id`; a compacted start cancels it.
    async fn catch_up(&mut self, id: i64) -> Result<(), Gone> {
        let Some(after) = self.watchers.get(&id).map(|w| w.next - 1) else {
            return Ok(());
        };
        let limit = self.config.history_page_revisions.max(1);
        let page = match self.backend.history(after, limit).await {
            Ok(page) => page,
            Err(CoordError::Compacted { compacted }) => {
                self.watchers.remove(&id);
                let header = self.header(self.head);
                let response = pb::WatchResponse {
                    header,
                    watch_id: id,
                    canceled: true,
                    compact_revision: compacted,
                    cancel_reason: COMPACTED.to_owned(),
                    ..Default::default()
                };
                return self.send(response).await;
            }
            Err(error) => return self.fail(status::of_coord(&error)).await,
        };
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return Ok(());
        };
        for applied in &page {
            if applied.revision >= watcher.next {
                send_events(&self.out, &self.backend, &self.config, id, watcher, applied).await?;
                watcher.next = applied.revision + 1;
            }
        }
        if page.len() < limit {
            // History held everything applied when it was read, which includes head.
            watcher.next = watcher.next.max(self.head + 1);
        }
        Ok(())
    }

    /// The periodic empty answer of every synced watcher that asked for progress.
    async fn notify_progress(&self) -> Result<(), Gone> {
        let notified =
            self.watchers.iter().filter(|(_, w)| w.progress_notify && w.next > self.head);
        for (id, _) in notified {
            let header = self.header(self.head);
            self.send(pb::WatchResponse { header, watch_id: *id, ..Default::default() }).await?;
        }
        Ok(())
    }

    /// Answers a WatchProgressRequest once every watcher has sent everything up to head.
    async fn answer_progress(&mut self) -> Result<(), Gone> {
        if !self.progress_pending || self.watchers.values().any(|w| w.next <= self.head) {
            return Ok(());
        }
        self.progress_pending = false;
        let header = self.header(self.head);
        self.send(pb::WatchResponse { header, watch_id: NO_WATCH, ..Default::default() }).await
    }
}

/// Sends the events of `applied` the watcher wants: one response, or with `fragment` as many
/// as keep each under the request size limit (all but the last marked `fragment`).
async fn send_events<B: Coordination>(
    out: &mpsc::Sender<Result<pb::WatchResponse, Status>>,
    backend: &Arc<B>,
    config: &EtcdConfig,
    id: i64,
    watcher: &Watcher,
    applied: &Applied,
) -> Result<(), Gone> {
    let events = watcher.events(applied);
    if events.is_empty() {
        return Ok(());
    }
    let header = convert::header(&backend.header(), applied.revision);
    let parts =
        if watcher.fragment { fragments(events, config.request_bytes_max) } else { vec![events] };
    let last = parts.len() - 1;
    for (i, events) in parts.into_iter().enumerate() {
        let response = pb::WatchResponse {
            header,
            watch_id: id,
            fragment: i < last,
            events,
            ..Default::default()
        };
        out.send(Ok(response)).await.map_err(|_| Gone)?;
    }
    Ok(())
}

/// `events` split in order into runs of at most `bytes_max` encoded (at least one event each).
fn fragments(events: Vec<mvccpb::Event>, bytes_max: usize) -> Vec<Vec<mvccpb::Event>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0;
    for event in events {
        let size = event.encoded_len();
        if bytes + size > bytes_max && parts.last().is_some_and(|part| !part.is_empty()) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(part) = parts.last_mut() {
            part.push(event);
        }
    }
    parts
}
