//! [`Pipeline`]: several requests in flight on one connection, for throughput.
//!
//! Kafka answers the requests of one connection in the order they were sent, so matching is a
//! queue: [`Pipeline::send`] writes a request and queues what it expects (API, version,
//! correlation id, deadline, where to deliver the answer); a reader task reads one response frame
//! per queued entry, checks its correlation id against the head of the queue, and hands the body
//! to the [`Pending`] handle that `send` returned. [`Pending::response`] decodes it in the
//! caller's task, so decoding runs in parallel with the reader.
//!
//! Bounds: at most `inflight_max` requests are sent and not yet answered *and consumed*: a
//! request holds a semaphore permit from `send` until its response has arrived and its `Pending`
//! has been awaited or dropped, so unconsumed responses are bounded too. `send` waits for a permit when all are taken: that is
//! the back-pressure a closed-loop producer wants.
//!
//! Failure is whole-connection: a response that does not arrive by its deadline (request timeout
//! plus [`RESPONSE_GRACE`]), a frame out of bounds, a correlation id out of order, or a failed
//! write fails every request in flight with the same [`ClientError`], and every later `send`
//! returns it. Requests without responses (Produce acks=0, [`Pipeline::send_without_response`])
//! take no permit and queue nothing.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{RESPONSE_GRACE, Session, decode_body, read_frame};
use crate::error::{ClientError, api_name, io_reason};

/// What the pipeline and its reader task share.
struct Shared {
    session: Session,
    /// The first failure of the connection; once set, the connection is done.
    failure: Mutex<Option<ClientError>>,
}

impl Shared {
    /// The recorded failure, or a generic one if the reader stopped without recording any.
    fn failure(&self, api: i16) -> ClientError {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone();
        failure.unwrap_or_else(|| ClientError::Disconnected {
            broker: self.session.broker.clone(),
            api,
            reason: "the pipeline was closed".to_owned(),
        })
    }

    /// Records `error` as the connection's failure unless one is already recorded; returns the
    /// one recorded.
    fn fail(&self, error: ClientError) -> ClientError {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert(error).clone()
    }
}

/// One request awaiting its response, queued for the reader task in send order.
struct Expected {
    api: i16,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    /// When the reader gives up on the connection.
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
    /// This request's share of the in-flight bound, handed on with the reply.
    permit: OwnedSemaphorePermit,
}

/// What the reader hands to a [`Pending`].
struct Reply {
    /// The response body after its header, or the connection's failure.
    body: Result<Bytes, ClientError>,
    /// Released when the caller has consumed the response.
    _permit: OwnedSemaphorePermit,
}

/// A connection with up to `inflight_max` requests in flight; made by
/// [`crate::Client::pipeline`]. Keep it alive until the responses you want have arrived:
/// dropping it closes the write side of the connection.
pub struct Pipeline {
    writer: OwnedWriteHalf,
    shared: Arc<Shared>,
    /// Correlation id of the next request.
    correlation_id: i32,
    /// One permit per request in flight (see the module documentation).
    permits: Arc<Semaphore>,
    inflight_max: usize,
    /// To the reader task, in send order.
    expected: mpsc::Sender<Expected>,
    reader: JoinHandle<()>,
}

impl Pipeline {
    pub(crate) fn new(
        stream: TcpStream,
        session: Session,
        correlation_id: i32,
        inflight_max: usize,
    ) -> Pipeline {
        let inflight_max = inflight_max.max(1);
        let (read, writer) = stream.into_split();
        let shared = Arc::new(Shared { session, failure: Mutex::new(None) });
        let permits = Arc::new(Semaphore::new(inflight_max));
        // Every entry holds a permit, so the queue never holds more than `inflight_max`.
        let (expected, queue) = mpsc::channel(inflight_max);
        let reader =
            tokio::spawn(read_responses(read, Arc::clone(&shared), Arc::clone(&permits), queue));
        Pipeline { writer, shared, correlation_id, permits, inflight_max, expected, reader }
    }

    /// The broker's address as given.
    #[must_use]
    pub fn broker(&self) -> &str {
        &self.shared.session.broker
    }

    /// The most requests in flight at once.
    #[must_use]
    pub fn inflight_max(&self) -> usize {
        self.inflight_max
    }

    /// Requests sent whose responses have not been consumed yet.
    #[must_use]
    pub fn inflight(&self) -> usize {
        self.inflight_max.saturating_sub(self.permits.available_permits())
    }

    /// See [`crate::Client::request_timeout_ms`].
    #[must_use]
    pub fn request_timeout_ms(&self) -> i32 {
        self.shared.session.request_timeout_ms()
    }

    /// See [`crate::Client::version_of`].
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] if the broker does not serve `R` in a version we speak.
    pub fn version_of<R: Request>(&self) -> Result<i16, ClientError> {
        self.shared.session.version_of::<R>()
    }

    /// Sends `request` once fewer than `inflight_max` requests are in flight, and returns a
    /// handle to its response without waiting for it.
    ///
    /// Not cancel-safe once the request is queued: a `send` dropped while it writes may leave
    /// part of a frame on the wire, after which the connection fails at its next deadline. Bound
    /// it with the request timeout (it has one), not with an outer `select!`.
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] or an encoding [`ClientError::Protocol`] (the connection
    /// stays usable); the connection's failure if it has failed, or if writing fails now.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
    ) -> Result<Pending<R::Response>, ClientError> {
        let session = &self.shared.session;
        let version = session.version_of::<R>()?;
        let correlation_id = self.correlation_id;
        let frame = session.encode(request, version, correlation_id)?;
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Err(self.shared.failure(R::KEY));
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let (reply, receiver) = oneshot::channel();
        let expected = Expected {
            api: R::KEY,
            version,
            header_version: <R::Response as HeaderVersion>::header_version(version),
            correlation_id,
            deadline: Instant::now() + session.request_timeout + RESPONSE_GRACE,
            reply,
            permit,
        };
        // Queued before the write, so the reader knows of the request before its answer comes.
        if self.expected.send(expected).await.is_err() {
            return Err(self.shared.failure(R::KEY));
        }
        self.write(R::KEY, &frame).await?;
        Ok(Pending {
            reply: receiver,
            shared: Arc::clone(&self.shared),
            api: R::KEY,
            version,
            correlation_id,
            response: PhantomData,
        })
    }

    /// Sends `request` and waits for its response: [`Pipeline::send`] then
    /// [`Pending::response`]. Other requests may be in flight meanwhile.
    ///
    /// # Errors
    /// As [`Pipeline::send`] and [`Pending::response`].
    pub async fn request<R: Request>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        self.send(request).await?.response().await
    }

    /// Sends `request`, for which the broker sends no response (Produce with acks=0). Takes no
    /// in-flight permit: TCP's flow control is the only back-pressure.
    ///
    /// # Errors
    /// As [`Pipeline::send`].
    pub async fn send_without_response<R: Request>(
        &mut self,
        request: &R,
    ) -> Result<(), ClientError> {
        if self.permits.is_closed() {
            return Err(self.shared.failure(R::KEY));
        }
        let version = self.shared.session.version_of::<R>()?;
        let frame = self.shared.session.encode(request, version, self.correlation_id)?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.write(R::KEY, &frame).await
    }

    /// Writes one frame; on failure fails the whole connection.
    async fn write(&mut self, api: i16, frame: &[u8]) -> Result<(), ClientError> {
        let session = &self.shared.session;
        let timeout = session.request_timeout;
        let error = match tokio::time::timeout(timeout, self.writer.write_all(frame)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => ClientError::Disconnected {
                broker: session.broker.clone(),
                api,
                reason: io_reason(&error),
            },
            Err(_) => ClientError::Timeout { broker: session.broker.clone(), api, timeout },
        };
        // A partial frame may be on the wire: nothing after it can be trusted. Stopping the
        // reader drops the queued replies, and their handles report this failure.
        let error = self.shared.fail(error);
        self.permits.close();
        self.reader.abort();
        Err(error)
    }
}

/// The reader task: one response frame per [`Expected`], in order, until the pipeline is
/// dropped (and everything queued is answered) or the connection fails.
async fn read_responses(
    mut read: OwnedReadHalf,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    mut queue: mpsc::Receiver<Expected>,
) {
    let session = &shared.session;
    while let Some(next) = queue.recv().await {
        let api = next.api;
        let read = tokio::time::timeout_at(next.deadline, read_frame(&mut read)).await;
        let outcome = match read {
            Ok(Ok(Ok(frame))) => {
                session.body(frame, api, next.version, next.header_version, next.correlation_id)
            }
            Ok(Ok(Err(length))) => Err(session.bad_length(api, length)),
            Ok(Err(error)) => Err(ClientError::Disconnected {
                broker: session.broker.clone(),
                api,
                reason: io_reason(&error),
            }),
            Err(_) => Err(ClientError::Timeout {
                broker: session.broker.clone(),
                api,
                timeout: session.request_timeout + RESPONSE_GRACE,
            }),
        };
        match outcome {
            Ok(body) => {
                // The caller may have dropped the handle: then the body is not wanted.
                let _ = next.reply.send(Reply { body: Ok(body), _permit: next.permit });
            }
            Err(error) => {
                let error = shared.fail(error);
                permits.close();
                let _ = next.reply.send(Reply { body: Err(error.clone()), _permit: next.permit });
                queue.close();
                while let Some(rest) = queue.recv().await {
                    let _ =
                        rest.reply.send(Reply { body: Err(error.clone()), _permit: rest.permit });
                }
                return;
            }
        }
    }
}

/// The response to one pipelined request, to be awaited with [`Pending::response`]. The request
/// holds its in-flight permit until its response has arrived and this handle is awaited or
/// dropped.
#[must_use = "a pending response holds an in-flight permit until it is awaited or dropped"]
pub struct Pending<T> {
    reply: oneshot::Receiver<Reply>,
    shared: Arc<Shared>,
    api: i16,
    version: i16,
    correlation_id: i32,
    response: PhantomData<fn() -> T>,
}

impl<T: Decodable> Pending<T> {
    /// The request's correlation id.
    #[must_use]
    pub fn correlation_id(&self) -> i32 {
        self.correlation_id
    }

    /// Waits for the response and decodes it.
    ///
    /// # Errors
    /// The connection's failure (timeout, disconnection, a protocol error on the connection), or
    /// [`ClientError::Protocol`] if this response does not decode.
    pub async fn response(self) -> Result<T, ClientError> {
        let Ok(reply) = self.reply.await else {
            return Err(self.shared.failure(self.api));
        };
        let body = reply.body?;
        decode_body::<T>(body, self.version).map_err(|reason| {
            self.shared.session.protocol(format!("{} response: {reason}", api_name(self.api)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    use super::*;
    use crate::Client;
    use crate::client::tests::{fake_broker, frame, options, versions};

    /// The ApiVersions answer, then Metadata answers whose `throttle_time_ms` is the request's
    /// correlation id (so each handle can check it got its own), unless `answer` says otherwise.
    async fn broker(mut answer: impl FnMut(i32) -> Option<Vec<u8>> + Send + 'static) -> Client {
        let address = fake_broker(move |header| {
            let id = header.correlation_id;
            if header.request_api_key == 18 {
                return Some(frame(id, &versions(&[(18, 0, 3), (3, 0, 4)]), 0));
            }
            answer(id)
        })
        .await;
        Client::connect(&options(address)).await.unwrap()
    }

    fn metadata(id: i32) -> Vec<u8> {
        frame(id, &MetadataResponse::default().with_throttle_time_ms(id), 4)
    }

    #[tokio::test]
    async fn responses_reach_their_own_handles_in_order() {
        let client = broker(|id| Some(metadata(id))).await;
        let mut pipeline = client.pipeline(4).unwrap();
        assert_eq!(pipeline.version_of::<MetadataRequest>().unwrap(), 4);
        let mut handles = std::collections::VecDeque::new();
        let mut seen = Vec::new();
        for _ in 0..100 {
            if handles.len() == 4 {
                let pending: Pending<MetadataResponse> = handles.pop_front().unwrap();
                let id = pending.correlation_id();
                seen.push((id, pending.response().await.unwrap().throttle_time_ms));
            }
            assert!(pipeline.inflight() <= 4);
            handles.push_back(pipeline.send(&MetadataRequest::default()).await.unwrap());
        }
        for pending in handles {
            let id = pending.correlation_id();
            seen.push((id, pending.response().await.unwrap().throttle_time_ms));
        }
        // ApiVersions took correlation id 0.
        let expected: Vec<(i32, i32)> = (1..=100).map(|id| (id, id)).collect();
        assert_eq!(seen, expected);
        assert_eq!(
            pipeline.request(&MetadataRequest::default()).await.unwrap().throttle_time_ms,
            101
        );
    }

    #[tokio::test]
    async fn sends_wait_while_the_inflight_bound_is_reached() {
        // A broker that never answers Metadata.
        let client = broker(|_| None).await;
        let mut pipeline = client.pipeline(2).unwrap();
        let first = pipeline.send(&MetadataRequest::default()).await.unwrap();
        let _second = pipeline.send(&MetadataRequest::default()).await.unwrap();
        assert_eq!(pipeline.inflight(), 2);
        {
            let request = MetadataRequest::default();
            let mut third = pin!(pipeline.send(&request));
            let mut context = Context::from_waker(Waker::noop());
            assert!(third.as_mut().poll(&mut context).is_pending(), "no permit is free");
        }
        // A dropped handle's request is still on the wire: its permit stays taken.
        drop(first);
        assert_eq!(pipeline.inflight(), 2);
    }

    #[tokio::test]
    async fn a_stray_correlation_id_fails_every_request_in_flight() {
        // Answers the third Metadata request (correlation id 3) with a wrong id.
        let client = broker(|id| Some(if id == 3 { metadata(99) } else { metadata(id) })).await;
        let mut pipeline = client.pipeline(8).unwrap();
        let mut handles = Vec::new();
        for _ in 0..5 {
            handles.push(pipeline.send(&MetadataRequest::default()).await.unwrap());
        }
        let mut results = Vec::new();
        for pending in handles {
            results.push(pending.response().await.map(|r| r.throttle_time_ms));
        }
        assert_eq!(results[0], Ok(1));
        assert_eq!(results[1], Ok(2));
        let expected = "response to Metadata carries correlation id 99, expected 3";
        for result in &results[2..] {
            let error = result.as_ref().unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        let later = pipeline.send(&MetadataRequest::default()).await.err().unwrap();
        assert!(later.to_string().contains(expected), "{later}");
    }
}
