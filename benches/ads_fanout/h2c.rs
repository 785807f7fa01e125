//! Just enough HTTP/2 (cleartext, prior knowledge) for one long-lived gRPC call per
//! connection, the load generator's side of an ADS stream, and optionally a second one on
//! the same connection, its load reporting (LRS) stream, as Envoy opens them.
//!
//! Why not the `h2` crate: the load generator shares two cores with the server it
//! measures, so every microsecond it spends per stream shows up in the figures. `h2`
//! keeps about 30 KiB of buffers per connection and does general-purpose work (stream
//! tables, prioritization, a full HPACK decoder) that one stream with a known peer does not
//! need. Here a connection holds no buffer while idle, the request headers are encoded once,
//! response headers are skipped without decoding (nothing in them is needed: a gRPC
//! stream that ends, with trailers, is an error for this bench whatever its status), and
//! all frames produced while handling one read go out in one write.
//!
//! What it does implement: the connection preface and SETTINGS exchange (ACKed), PING
//! replies, flow control both ways (the peer's windows are tracked and respected; ours
//! are Envoy's 256 MiB and topped up), and errors for GOAWAY, RST_STREAM and end of stream.

use std::cell::RefCell;
use std::io::{ErrorKind, Read as _};
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const PADDED: u8 = 0x8;
const SETTINGS_ENABLE_PUSH: u16 = 2;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 4;
/// The connection's first stream (ADS).
pub const STREAM: u32 = 1;
/// Its second stream (LRS), if opened.
pub const SECOND: u32 = 3;
/// HTTP/2's initial window, before SETTINGS and WINDOW_UPDATE change it.
const DEFAULT_WINDOW: i64 = 65_535;
/// Largest DATA frame a peer must accept without saying otherwise.
const MAX_FRAME: usize = 16_384;
/// Envoy's default stream and connection windows for gRPC services (256 MiB).
pub const WINDOW: u32 = 256 * 1024 * 1024;

/// One HTTP/2 connection carrying one gRPC call.
pub struct GrpcConn {
    tcp: TcpStream,
    /// Bytes read but not yet a whole frame (empty, and unallocated, when idle).
    input: BytesMut,
    /// Bytes of each stream's response body not yet a whole gRPC message.
    bodies: [BytesMut; 2],
    /// Frames to write at the next flush.
    output: BytesMut,
    /// What the peer lets us send (its windows).
    send_window_conn: i64,
    send_window_streams: [i64; 2],
    peer_initial_window: i64,
    /// Response bytes received since our windows were last topped up.
    unacknowledged: u32,
}

/// What one read brought.
pub struct Read {
    /// The response headers arrived (the call is accepted).
    pub headers: bool,
    /// Whole gRPC messages (without their 5-byte prefix) of the first stream...
    pub messages: Vec<Bytes>,
    /// ... and of the second.
    pub second: Vec<Bytes>,
}

/// Which of the two streams `stream` is.
fn slot(stream: u32) -> Option<usize> {
    match stream {
        STREAM => Some(0),
        SECOND => Some(1),
        _ => None,
    }
}

impl GrpcConn {
    /// Connects and starts the call `path` with `first` (a whole gRPC message, prefix
    /// included) as its first request message.
    pub async fn open(addr: SocketAddr, path: &str, first: &[u8]) -> Result<GrpcConn, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut conn = GrpcConn {
            tcp,
            input: BytesMut::new(),
            bodies: Default::default(),
            output: BytesMut::with_capacity(512),
            send_window_conn: DEFAULT_WINDOW,
            send_window_streams: [DEFAULT_WINDOW; 2],
            peer_initial_window: DEFAULT_WINDOW,
            unacknowledged: 0,
        };
        conn.output.put_slice(PREFACE);
        let mut settings = [0u8; 12];
        settings[..2].copy_from_slice(&SETTINGS_ENABLE_PUSH.to_be_bytes());
        settings[6..8].copy_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
        settings[8..].copy_from_slice(&WINDOW.to_be_bytes());
        conn.frame(SETTINGS, 0, 0, &settings);
        let increment = WINDOW - DEFAULT_WINDOW as u32;
        conn.frame(WINDOW_UPDATE, 0, 0, &increment.to_be_bytes());
        let headers = request_headers(&addr.to_string(), path);
        conn.frame(HEADERS, 0x4, STREAM, &headers); // END_HEADERS
        conn.send_message(first)?;
        conn.flush().await?;
        Ok(conn)
    }

    /// Queues one gRPC message (prefix included) as DATA frames on the first stream.
    pub fn send_message(&mut self, message: &[u8]) -> Result<(), String> {
        self.send_on(STREAM, &[message])
    }

    /// Starts the call `path` on the second stream, with `first` (a whole gRPC message) as
    /// its first request message.
    pub fn open_second(
        &mut self,
        authority: &str,
        path: &str,
        first: &[&[u8]],
    ) -> Result<(), String> {
        let headers = request_headers(authority, path);
        self.frame(HEADERS, 0x4, SECOND, &headers); // END_HEADERS
        self.send_on(SECOND, first)
    }

    /// What `stream` may send now (the smaller of its window and the connection's).
    pub fn send_window(&self, stream: u32) -> i64 {
        let slot = slot(stream).expect("one of the two streams");
        self.send_window_conn.min(self.send_window_streams[slot])
    }

    /// Queues one gRPC message, the concatenation of `parts` (prefix included), as DATA
    /// frames on `stream`.
    pub fn send_on(&mut self, stream: u32, parts: &[&[u8]]) -> Result<(), String> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let window = self.send_window(stream);
        if len as i64 > window {
            return Err(format!(
                "the server's flow-control window ({window} bytes) is too small for a {len}-byte request"
            ));
        }
        self.send_window_conn -= len as i64;
        self.send_window_streams[slot(stream).expect("checked above")] -= len as i64;
        // DATA frames of at most MAX_FRAME bytes each, copied straight from the parts.
        let mut parts = parts.iter().copied();
        let mut part: &[u8] = &[];
        let mut remaining = len;
        while remaining > 0 {
            let n = remaining.min(MAX_FRAME);
            self.frame_header(DATA, 0, stream, n);
            let mut left = n;
            while left > 0 {
                if part.is_empty() {
                    part = parts.next().expect("the parts add up to len");
                    continue;
                }
                let take = left.min(part.len());
                self.output.put_slice(&part[..take]);
                part = &part[take..];
                left -= take;
            }
            remaining -= n;
        }
        Ok(())
    }

    /// Writes every queued frame.
    pub async fn flush(&mut self) -> Result<(), String> {
        if !self.output.is_empty() {
            self.tcp
                .write_all(&self.output)
                .await
                .map_err(|e| format!("write: {e}"))?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads what the server sent next and handles its frames. Control frames are answered
    /// (queued; see [`Self::flush`]); an end of the call is an error.
    pub async fn read(&mut self) -> Result<Read, String> {
        let n = loop {
            self.tcp.readable().await.map_err(|e| e.to_string())?;
            // A read that does not fill the scratch buffer has drained the socket: it then
            // reports `WouldBlock` to tokio, which clears the readiness (unless an event
            // came in meanwhile) instead of a second `recv` that would only say `EAGAIN`.
            let mut got = None;
            let socket = socket2::SockRef::from(&self.tcp);
            let result = self.tcp.try_io(Interest::READABLE, || {
                SCRATCH.with_borrow_mut(|scratch| {
                    let n = (&*socket).read(scratch)?;
                    self.input.extend_from_slice(&scratch[..n]);
                    got = Some(n);
                    if n > 0 && n < scratch.len() {
                        Err(ErrorKind::WouldBlock.into())
                    } else {
                        Ok(())
                    }
                })
            });
            match (got, result) {
                (Some(n), _) => break n,
                (None, Err(e)) if e.kind() == ErrorKind::WouldBlock => {}
                (None, Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                (None, Err(e)) => return Err(format!("read: {e}")),
                (None, Ok(())) => unreachable!("a successful read sets `got`"),
            }
        };
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        let mut read = Read {
            headers: false,
            messages: Vec::new(),
            second: Vec::new(),
        };
        while self.input.len() >= 9 {
            let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            if self.input.len() < 9 + len {
                break;
            }
            let kind = self.input[3];
            let flags = self.input[4];
            let stream = u32::from_be_bytes(self.input[5..9].try_into().unwrap()) & 0x7fff_ffff;
            self.input.advance(9);
            let payload = self.input.split_to(len);
            self.on_frame(kind, flags, stream, &payload, &mut read)?;
        }
        if self.input.is_empty() {
            self.input = BytesMut::new(); // hold nothing while idle
        }
        if self.unacknowledged > WINDOW / 2 {
            let increment = std::mem::take(&mut self.unacknowledged).to_be_bytes();
            self.frame(WINDOW_UPDATE, 0, 0, &increment);
            self.frame(WINDOW_UPDATE, 0, STREAM, &increment);
        }
        Ok(read)
    }

    fn on_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        read: &mut Read,
    ) -> Result<(), String> {
        match kind {
            DATA => {
                self.unacknowledged += payload.len() as u32;
                let mut data = payload;
                if flags & PADDED != 0 {
                    let pad = *data.first().ok_or("empty padded DATA frame")? as usize;
                    data = data
                        .get(1..data.len().saturating_sub(pad))
                        .ok_or("bad padding in a DATA frame")?;
                }
                let Some(slot) = slot(stream) else {
                    return Ok(());
                };
                let body = &mut self.bodies[slot];
                body.extend_from_slice(data);
                let messages = match slot {
                    0 => &mut read.messages,
                    _ => &mut read.second,
                };
                while let Some(message) = next_message(body)? {
                    messages.push(message);
                }
                if body.is_empty() {
                    *body = BytesMut::new();
                }
                if flags & END_STREAM != 0 {
                    return Err(format!("the server ended the call on stream {stream}"));
                }
            }
            HEADERS if slot(stream).is_some() => {
                if flags & END_STREAM != 0 {
                    return Err(format!(
                        "the server ended the call on stream {stream} (trailers)"
                    ));
                }
                read.headers |= stream == STREAM;
            }
            RST_STREAM => return Err(format!("stream reset by the server: {payload:?}")),
            SETTINGS if flags & ACK == 0 => {
                for setting in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    let value = u32::from_be_bytes(setting[2..6].try_into().unwrap()) as i64;
                    if id == SETTINGS_INITIAL_WINDOW_SIZE {
                        for window in &mut self.send_window_streams {
                            *window += value - self.peer_initial_window;
                        }
                        self.peer_initial_window = value;
                    }
                }
                self.frame(SETTINGS, ACK, 0, &[]);
            }
            PING if flags & ACK == 0 => self.frame(PING, ACK, 0, payload),
            GOAWAY => {
                let reason = String::from_utf8_lossy(payload.get(8..).unwrap_or_default());
                return Err(format!("GOAWAY from the server: {reason}"));
            }
            WINDOW_UPDATE if payload.len() == 4 => {
                let increment =
                    (u32::from_be_bytes(payload.try_into().unwrap()) & 0x7fff_ffff) as i64;
                match slot(stream) {
                    _ if stream == 0 => self.send_window_conn += increment,
                    Some(slot) => self.send_window_streams[slot] += increment,
                    None => {}
                }
            }
            _ => {} // SETTINGS ACKs, PING ACKs, CONTINUATION of skipped headers, PRIORITY
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.frame_header(kind, flags, stream, payload.len());
        self.output.put_slice(payload);
    }

    fn frame_header(&mut self, kind: u8, flags: u8, stream: u32, len: usize) {
        let len = (len as u32).to_be_bytes();
        self.output.put_slice(&len[1..]);
        self.output.put_u8(kind);
        self.output.put_u8(flags);
        self.output.put_u32(stream);
    }
}

thread_local! {
    /// Where each read lands before its bytes are parsed: one per worker thread, so that an
    /// idle connection holds no buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// Takes the next complete gRPC message (5-byte prefix: flag, length) off `buf`.
fn next_message(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err("compressed gRPC message".to_owned());
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The request's header block (HPACK, literals without indexing: no table state).
fn request_headers(authority: &str, path: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    literal(&mut b, 4, path); // :path
    literal(&mut b, 1, authority); // :authority
    literal(&mut b, 31, "application/grpc"); // content-type
    b.push(0); // a literal name: te
    string(&mut b, "te");
    string(&mut b, "trailers");
    b
}

/// A literal header field without indexing, its name from the static table.
fn literal(b: &mut Vec<u8>, name_index: usize, value: &str) {
    integer(b, 4, 0x00, name_index);
    string(b, value);
}

fn string(b: &mut Vec<u8>, s: &str) {
    integer(b, 7, 0x00, s.len()); // not Huffman-coded
    b.extend_from_slice(s.as_bytes());
}

/// HPACK integer with an `n`-bit prefix, the first byte's other bits `high`.
fn integer(b: &mut Vec<u8>, n: u32, high: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        b.push(high | v as u8);
        return;
    }
    b.push(high | max as u8);
    v -= max;
    while v >= 128 {
        b.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    b.push(v as u8);
}
