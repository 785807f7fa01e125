//! A minimal HTTP/1.1 client: one `GET`, `Connection: close`, an overall deadline. Enough to
//! read switchyard's own admin server without an HTTP client dependency; it understands
//! `Content-Length`, chunked and close-delimited bodies, and nothing fancier (no TLS, no
//! redirects, no keep-alive).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest response read. `/status` of a control plane serving thousands of proxies is a
/// few megabytes; anything far bigger is not switchyard.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A response's status code and (de-chunked) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a `GET` failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing answered: the name did not resolve, the connection was refused or reset.
    #[error("{0}")]
    Connect(io::Error),
    /// The deadline passed before the whole response arrived.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// Something answered, but not with an HTTP/1.x response we understand.
    #[error("not an HTTP response: {0}")]
    Malformed(String),
}

/// `GET http://{authority}{path}`, giving up after `timeout` in total.
pub fn get(authority: &str, path: &str, timeout: Duration) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(authority, deadline, timeout)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: switchyard/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let io_error = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout(timeout),
        _ => HttpError::Connect(e),
    };
    stream
        .set_write_timeout(Some(remaining(deadline, timeout)?))
        .map_err(HttpError::Connect)?;
    stream.write_all(request.as_bytes()).map_err(io_error)?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline, timeout)?))
            .map_err(HttpError::Connect)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::Malformed(format!(
                        "the response is larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    parse_response(&raw)
}

/// Connects to the first address `authority` resolves to that accepts, before `deadline`.
fn connect(authority: &str, deadline: Instant, timeout: Duration) -> Result<TcpStream, HttpError> {
    let addrs = authority.to_socket_addrs().map_err(HttpError::Connect)?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline, timeout)?) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(HttpError::Timeout(timeout));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(HttpError::Connect(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address")
    })))
}

/// Time left before `deadline`, or a timeout error when none is (a zero timeout would
/// mean "block forever" to the socket calls).
fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, HttpError> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(HttpError::Timeout(timeout)),
    }
}

/// Splits a complete raw response into status and body.
fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    let malformed = |m: &str| HttpError::Malformed(m.to_owned());
    let head_end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        if raw.is_empty() {
            malformed("the connection closed without an answer")
        } else {
            malformed("the headers never end")
        }
    })?;
    let head =
        std::str::from_utf8(&raw[..head_end]).map_err(|_| malformed("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next());
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line `{status_line}`")));
    }
    let status = code
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line `{status_line}`")))?;

    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("header line `{line}`")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| HttpError::Malformed(format!("Content-Length `{value}`")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = content_length {
        if rest.len() < len {
            return Err(malformed("the body ends before its Content-Length"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body (trailers, if any, are ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let malformed = |m: &str| HttpError::Malformed(m.to_owned());
    let mut body = Vec::new();
    loop {
        let line_end =
            find(rest, b"\r\n").ok_or_else(|| malformed("a chunk size line never ends"))?;
        let size_line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| malformed("a chunk size is not text"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size `{size_hex}`")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(malformed("a chunk ends early"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn content_length_body_is_read() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                body: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn chunked_body_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().body, b"{\"a\":1}");
    }

    #[test]
    fn close_delimited_body_is_read_to_the_end() {
        let r = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready\n").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"not ready\n");
    }

    #[test]
    fn something_that_is_not_http_is_malformed() {
        for raw in [
            &b""[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
        ] {
            assert!(
                matches!(parse_response(raw), Err(HttpError::Malformed(_))),
                "{raw:?}"
            );
        }
        let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert!(matches!(
            parse_response(truncated),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get(&format!("127.0.0.1:{port}"), "/", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, HttpError::Connect(_)), "{e:?}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = get(&addr.to_string(), "/", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HttpError::Timeout(_)), "{e:?}");
        drop(listener);
    }
}
