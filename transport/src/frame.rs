//! Framed messages on QUIC streams. Each message travels on its own unidirectional stream:
//!
//! ```text
//!   wire header (8 bytes: magic, kind, torus bits, version) | body length: u64 LE | body
//! ```
//!
//! The receiver reads the header and the declared length first and refuses a length above the
//! limit for that kind before reading the body; it then reads exactly that many bytes, refuses
//! trailing bytes, and decodes with [`fedbank_common::wire`], which checks everything again.

use fedbank_common::wire::{self, WireError, WireMessage, HEADER_LEN};
use quinn::{Connection, RecvStream};

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 1 << 20;

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or was closed.
    #[error("connection")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the stream failed.
    #[error("sending")]
    Write(#[from] quinn::WriteError),
    /// Finishing the stream failed.
    #[error("closing stream")]
    Closed(#[from] quinn::ClosedStream),
    /// Reading the stream failed.
    #[error("receiving")]
    Read(#[from] quinn::ReadExactError),
    /// Reading the stream's end failed.
    #[error("receiving")]
    ReadToEnd(#[from] quinn::ReadToEndError),
    /// The declared body is larger than the kind allows.
    #[error("message of kind {kind} declares {len} bytes, the limit is {limit}")]
    TooLarge {
        /// Kind byte.
        kind: u8,
        /// Declared length.
        len: u64,
        /// Limit.
        limit: usize,
    },
    /// Bytes follow the declared body.
    #[error("bytes follow the declared message body")]
    TrailingBytes,
    /// The peer started a message and did not finish it in time; the stream was stopped.
    #[error("the message was not completed within {0:?} (stalled upload); its stream was stopped")]
    Stalled(std::time::Duration),
    /// The message does not decode.
    #[error("decoding")]
    Wire(#[from] WireError),
    /// The stream ended before the declared body did.
    #[error("the stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the head announced (head included).
        expected: usize,
        /// Bytes there were.
        got: usize,
    },
}

/// The fixed start of every frame: the wire header and the body length.
pub const FRAME_HEAD_LEN: usize = HEADER_LEN + 8;

/// A frame's kind byte and declared body length, refused when the length is above `limit` for
/// that kind — before a single body byte is read or allocated.
pub fn parse_head(
    head: &[u8; FRAME_HEAD_LEN],
    limit: impl Fn(u8) -> usize,
) -> Result<(u8, usize), FrameError> {
    let kind = head[4];
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&head[HEADER_LEN..]);
    let len = u64::from_le_bytes(len_bytes);
    let max = limit(kind);
    if len > max as u64 {
        return Err(FrameError::TooLarge {
            kind,
            len,
            limit: max,
        });
    }
    Ok((kind, len as usize))
}

/// A frame from the whole content of a stream already in memory, with the checks of
/// [`read_frame`] (head, limit, exact body, nothing after it). Used by tests and fuzzing to
/// exercise the receive path without a connection.
pub fn frame_from_stream_bytes(
    stream: &[u8],
    limit: impl Fn(u8) -> usize,
) -> Result<RawFrame, FrameError> {
    let head: &[u8; FRAME_HEAD_LEN] = stream
        .get(..FRAME_HEAD_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated {
            expected: FRAME_HEAD_LEN,
            got: stream.len(),
        })?;
    let (kind, len) = parse_head(head, limit)?;
    let body = &stream[FRAME_HEAD_LEN..];
    if body.len() < len {
        return Err(FrameError::Truncated {
            expected: FRAME_HEAD_LEN + len,
            got: stream.len(),
        });
    }
    if body.len() > len {
        return Err(FrameError::TrailingBytes);
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + len);
    bytes.extend_from_slice(&head[..HEADER_LEN]);
    bytes.extend_from_slice(body);
    Ok(RawFrame { kind, bytes })
}

/// A received frame, not yet decoded: its kind byte and its wire bytes.
#[derive(Debug)]
pub struct RawFrame {
    /// Kind byte from the header.
    pub kind: u8,
    /// Header and body, ready for [`wire::decode`].
    pub bytes: Vec<u8>,
}

impl RawFrame {
    /// Decodes the frame as `T` (checking kind, version, limits and invariants).
    pub fn decode<T: WireMessage>(&self) -> Result<T, WireError> {
        wire::decode(&self.bytes)
    }
}

/// Sends one message on a new unidirectional stream.
pub async fn send<T: WireMessage>(conn: &Connection, message: &T) -> Result<(), FrameError> {
    send_raw(conn, &wire::encode(message)?).await
}

/// Sends one already-encoded wire object (header and body) on a new unidirectional stream.
pub async fn send_raw(conn: &Connection, bytes: &[u8]) -> Result<(), FrameError> {
    write_frame(conn, bytes).await.map(|_| ())
}

/// [`send_raw`], returning the finished stream, whose `stopped()` completes once the peer has
/// acknowledged the whole message (or stopped reading it).
pub async fn send_raw_stream(
    conn: &Connection,
    bytes: &[u8],
) -> Result<quinn::SendStream, FrameError> {
    write_frame(conn, bytes).await
}

async fn write_frame(conn: &Connection, bytes: &[u8]) -> Result<quinn::SendStream, FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Wire(WireError::UnexpectedKind { found: 0 }));
    }
    let (header, body) = bytes.split_at(HEADER_LEN);
    let mut stream = conn.open_uni().await?;
    stream.write_all(header).await?;
    stream.write_all(&(body.len() as u64).to_le_bytes()).await?;
    stream.write_all(body).await?;
    stream.finish()?;
    Ok(stream)
}

/// Reads one frame from a stream; `limit` gives the largest body for a kind byte.
pub async fn read_frame(
    stream: &mut RecvStream,
    limit: impl Fn(u8) -> usize,
) -> Result<RawFrame, FrameError> {
    let mut head = [0u8; FRAME_HEAD_LEN];
    stream.read_exact(&mut head).await?;
    let (kind, len) = parse_head(&head, limit)?;
    // Grow the buffer as bytes arrive: a peer that declares a large body but sends little makes
    // us hold only what it sent.
    let mut bytes = Vec::with_capacity(HEADER_LEN + len.min(READ_CHUNK));
    bytes.extend_from_slice(&head[..HEADER_LEN]);
    let mut chunk = vec![0u8; READ_CHUNK.min(len.max(1))];
    let mut remaining = len;
    while remaining > 0 {
        let n = remaining.min(chunk.len());
        stream.read_exact(&mut chunk[..n]).await?;
        bytes.extend_from_slice(&chunk[..n]);
        remaining -= n;
    }
    if !stream.read_to_end(0).await?.is_empty() {
        return Err(FrameError::TrailingBytes);
    }
    Ok(RawFrame { kind, bytes })
}

/// Accepts the next stream on `conn` and reads one frame from it while holding a permit of
/// `gate`, which is handed back with the frame: the receiver holds at most as many messages
/// (each at most its limit) as the gate has permits, however many peers send at once; the rest
/// wait in QUIC flow control. A message not completed within `patience` is abandoned, so that a
/// stalled upload cannot hold a permit.
pub async fn recv_gated(
    conn: &Connection,
    limit: impl Fn(u8) -> usize,
    gate: &std::sync::Arc<tokio::sync::Semaphore>,
    patience: std::time::Duration,
) -> Result<(RawFrame, tokio::sync::OwnedSemaphorePermit), FrameError> {
    let mut stream = conn.accept_uni().await?;
    let permit = gate
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| FrameError::Stalled(patience))?;
    match tokio::time::timeout(patience, read_frame(&mut stream, limit)).await {
        Ok(frame) => Ok((frame?, permit)),
        Err(_) => {
            let _ = stream.stop(quinn::VarInt::from_u32(0));
            Err(FrameError::Stalled(patience))
        }
    }
}

/// Accepts the next stream on `conn` and reads one frame from it.
pub async fn recv(conn: &Connection, limit: impl Fn(u8) -> usize) -> Result<RawFrame, FrameError> {
    let mut stream = conn.accept_uni().await?;
    read_frame(&mut stream, limit).await
}
