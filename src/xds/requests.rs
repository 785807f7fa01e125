//! The requests of an ADS stream, read from the HTTP/2 request body and decoded with prost
//! ([`Messages`] reads any message type the same way: the load reports of an LRS stream
//! too).
//!
//! Hand-written rather than tonic's `Streaming` for what an ADS stream is: a few small
//! messages and then hours of nothing. It holds no buffer between messages (tonic's
//! `Streaming` keeps one per stream, sized to the largest message seen), and a malformed
//! message ends the stream with a status that says what was wrong with it. BENCHMARKS.md
//! (`3d78615`): 27.8 -> 26.4 KiB per idle stream in three A/B pairs.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use prost::{Message, Name};
use tonic::Status;

/// gRPC's message prefix: compressed flag (1 byte) and length (4 bytes, big-endian).
const PREFIX: usize = 5;

/// The refusal to send instead of reading a request whose messages are compressed: none is
/// accepted. `None` for an uncompressed one.
pub fn refuse_compressed(
    headers: &tonic::codegen::http::HeaderMap,
) -> Option<tonic::codegen::http::Response<tonic::body::Body>> {
    let encoding = headers.get("grpc-encoding")?;
    (encoding != "identity").then(|| {
        Status::unimplemented(format!(
            "request compression {encoding:?} is not supported: send uncompressed messages"
        ))
        .into_http()
    })
}

/// The request messages of one ADS stream.
pub type Requests = Messages<DiscoveryRequest>;

/// The request messages (of type `M`) of one stream.
pub struct Messages<M> {
    body: Pin<Box<UnsyncBoxBody<bytes::Bytes, Status>>>,
    /// Bytes received but not yet a whole message (empty, and unallocated, between
    /// messages).
    buf: BytesMut,
    /// The proxy has finished sending.
    done: bool,
    max_message: usize,
    /// How long a message may take to arrive once its first byte has.
    timeout: Duration,
    /// When the message now arriving must be complete (set while `buf` holds part of one).
    deadline: Option<Instant>,
    message: PhantomData<fn() -> M>,
}

impl<M: Message + Default + Name> Messages<M> {
    /// Reads messages of at most `max_message` bytes from `body`, each within `timeout` of
    /// its first byte.
    pub fn new<B>(body: B, max_message: usize, timeout: Duration) -> Messages<M>
    where
        B: Body + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = body
            .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            .map_err(|e| Status::from_error(e.into()))
            .boxed_unsync();
        Messages {
            body: Box::pin(body),
            buf: BytesMut::new(),
            done: false,
            max_message,
            timeout,
            deadline: None,
            message: PhantomData,
        }
    }

    /// The next request; `Ok(None)` once the proxy has finished sending. Cancel-safe: bytes
    /// already read stay buffered for the next call.
    pub async fn message(&mut self) -> Result<Option<M>, Status> {
        loop {
            if let Some(request) = self.decode()? {
                return Ok(Some(request));
            }
            if self.done {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Status::invalid_argument(format!(
                        "the request stream ended inside a message ({} bytes of it)",
                        self.buf.len()
                    ))),
                };
            }
            let frame = poll_fn(|cx| self.body.as_mut().poll_frame(cx));
            let frame = match self.deadline {
                // Part of a message is here: the rest has until the deadline. Boxed, so an
                // idle stream (waiting for a new message, with no deadline) does not carry
                // a timer's state inline.
                Some(deadline) => match Box::pin(tokio::time::timeout_at(deadline, frame)).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        return Err(Status::deadline_exceeded(format!(
                            "a request took more than {} ms to arrive ({} bytes of it came)",
                            self.timeout.as_millis(),
                            self.buf.len()
                        )));
                    }
                },
                None => frame.await,
            };
            match frame {
                None => self.done = true,
                Some(Err(status)) => return Err(status),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.buf.is_empty() && !data.is_empty() {
                            self.deadline = Some(Instant::now() + self.timeout);
                        }
                        self.buf.put(data);
                    }
                }
            }
        }
    }

    /// Takes one whole message off the buffer, if there is one.
    fn decode(&mut self) -> Result<Option<M>, Status> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed request messages are not supported: send them uncompressed",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max_message {
            return Err(Status::resource_exhausted(format!(
                "a request of {len} bytes is over the limit of {} bytes (--max-request-bytes)",
                self.max_message
            )));
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let request = M::decode(&self.buf[PREFIX..PREFIX + len])
            .map_err(|e| Status::invalid_argument(format!("malformed {}: {e}", M::NAME)))?;
        self.buf.advance(PREFIX + len);
        if self.buf.is_empty() {
            self.buf = BytesMut::new(); // hold nothing while the proxy is quiet
            self.deadline = None;
        } else {
            // The next message has begun: its own time starts now.
            self.deadline = Some(Instant::now() + self.timeout);
        }
        Ok(Some(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::StreamExt;
    use http_body_util::StreamBody;

    fn framed(request: &DiscoveryRequest) -> Vec<u8> {
        let body = request.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// A request body delivering `chunks` as separate DATA frames.
    fn requests(chunks: Vec<Vec<u8>>) -> Requests {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(c))));
        Requests::new(
            StreamBody::new(futures::stream::iter(frames)),
            1024,
            Duration::from_secs(10),
        )
    }

    fn request(nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            response_nonce: nonce.into(),
            type_url: "t".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_frames_are_read_whole() {
        let mut bytes = framed(&request("1"));
        bytes.extend(framed(&request("2")));
        let (a, b) = bytes.split_at(3);
        let mut r = requests(vec![a.to_vec(), b.to_vec()]);
        assert_eq!(r.message().await.unwrap().unwrap().response_nonce, "1");
        assert_eq!(r.message().await.unwrap().unwrap().response_nonce, "2");
        assert!(r.message().await.unwrap().is_none());
        assert_eq!(r.buf.capacity(), 0, "nothing held between messages");
    }

    #[tokio::test]
    async fn bad_messages_end_the_stream_with_a_status_that_says_why() {
        let mut compressed = framed(&request("1"));
        compressed[0] = 1;
        let status = requests(vec![compressed]).message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);

        let mut huge = vec![0];
        huge.extend_from_slice(&2048u32.to_be_bytes());
        let status = requests(vec![huge]).message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("2048"), "{}", status.message());

        let garbage = vec![0, 0, 0, 0, 2, 0xff, 0xff];
        let status = requests(vec![garbage]).message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);

        let truncated = framed(&request("1"))[..6].to_vec();
        let status = requests(vec![truncated]).message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_stops_halfway_ends_the_stream_after_the_timeout() {
        let first = framed(&request("1"));
        let (head, _) = first.split_at(4);
        // The head of a message, then nothing: a slow-loris client.
        let frames = futures::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            Bytes::from(head.to_vec()),
        ))])
        .chain(futures::stream::pending());
        let mut r = Requests::new(StreamBody::new(frames), 1024, Duration::from_secs(10));
        let started = Instant::now();
        let status = r.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(
            status.message().contains("4 bytes of it came"),
            "{}",
            status.message()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_between_requests_has_no_deadline() {
        let frames = futures::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            Bytes::from(framed(&request("1"))),
        ))])
        .chain(futures::stream::pending());
        let mut r = Requests::new(StreamBody::new(frames), 1024, Duration::from_secs(10));
        assert_eq!(r.message().await.unwrap().unwrap().response_nonce, "1");
        let waited = tokio::time::timeout(Duration::from_secs(3600), r.message()).await;
        assert!(waited.is_err(), "an idle proxy is not cut off");
    }
}
