//! The HTTP/2 response body of an ADS stream, written by hand instead of by tonic's
//! encoder.
//!
//! tonic encodes every message of a stream into one buffer that it keeps for the life of
//! the stream, grown to the largest response it ever sent (the initial clusters, typically).
//! A proxy's stream lives for hours and sends a few responses, so at 10,000 proxies that
//! buffer is most of the memory an idle stream holds. Here each response goes out as its
//! gRPC prefix and the stream's nonce (a few bytes of their own) followed by the response's
//! shared encoding itself, not copied per stream; the stream keeps nothing between
//! responses. BENCHMARKS.md (`ba7866e`): 46.8 -> 37.4 KiB per
//! idle stream at 10,000 streams, and a lower switch p99 in three A/B pairs.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use http_body::Frame;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

use super::encode::EncodedResponse;

/// The responses of one stream, as the state machine produces them.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<EncodedResponse, Status>> + Send>>;

/// Response body: two DATA frames per response (its gRPC prefix and nonce, then the shared
/// bytes, not copied: [`EncodedResponse::grpc_frames`]), then the gRPC status in trailers.
pub struct AdsBody {
    responses: ResponseStream,
    /// The second part of the response whose first part went out last.
    rest: Option<Bytes>,
    done: bool,
}

impl AdsBody {
    pub fn new(responses: ResponseStream) -> AdsBody {
        AdsBody {
            responses,
            rest: None,
            done: false,
        }
    }
}

impl http_body::Body for AdsBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(rest) = this.rest.take() {
            return Poll::Ready(Some(Ok(Frame::data(rest))));
        }
        let status = match ready!(this.responses.as_mut().poll_next(cx)) {
            Some(Ok(response)) => {
                let [head, rest] = response.grpc_frames();
                this.rest = Some(rest);
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        this.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// `grpc-status` (and message) trailers for `status`.
pub fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only a message that cannot be a header value gets here: send the code alone.
        headers.clear();
        let _ = Status::new(status.code(), "").add_header(&mut headers);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::ResourceType;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use prost::Message;

    fn response(nonce: &str) -> EncodedResponse {
        let shared = DiscoveryResponse {
            version_info: "v1".into(),
            type_url: ResourceType::Route.type_url().into(),
            ..Default::default()
        }
        .encode_to_vec();
        EncodedResponse::new(
            ResourceType::Route,
            "v1".into(),
            nonce.into(),
            0,
            shared.into(),
        )
    }

    #[tokio::test]
    async fn each_response_is_one_grpc_message_in_two_frames_then_an_ok_status() {
        let stream = futures::stream::iter([Ok(response("1")), Ok(response("2"))]);
        let mut body = AdsBody::new(Box::pin(stream));
        for nonce in ["1", "2"] {
            let mut data = Vec::new();
            for _ in 0..2 {
                let frame = body.frame().await.unwrap().unwrap();
                data.extend_from_slice(&frame.into_data().unwrap());
            }
            assert_eq!(data[0], 0, "not compressed");
            let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, data.len() - 5);
            let decoded = DiscoveryResponse::decode(&data[5..]).unwrap();
            assert_eq!(decoded.nonce, nonce);
            assert_eq!(decoded.version_info, "v1");
        }
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn streams_sending_one_response_send_its_shared_bytes_not_copies() {
        let (a, b) = (response("1"), response("2"));
        let shared = |r: &EncodedResponse| r.grpc_frames()[1].clone();
        let other =
            EncodedResponse::new(ResourceType::Route, "v1".into(), "3".into(), 0, shared(&a));
        assert_eq!(shared(&a).as_ptr(), shared(&other).as_ptr(), "not copied");
        assert_ne!(
            shared(&a).as_ptr(),
            shared(&b).as_ptr(),
            "separate encodings"
        );
    }

    #[tokio::test]
    async fn an_error_ends_the_body_with_its_status() {
        let stream = futures::stream::iter([Err(Status::unavailable("shutting down"))]);
        let mut body = AdsBody::new(Box::pin(stream));
        let trailers = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(
            trailers["grpc-message"], "shutting%20down",
            "percent-encoded"
        );
        assert!(body.frame().await.is_none());
    }
}
