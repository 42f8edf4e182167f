//! Framed messages on QUIC streams. Each message travels on its own unidirectional stream:
//!
//! ```text
//!   wire header (8 bytes: magic, kind, torus bits, version) | body length: u64 LE | body
//! ```
//!
//! The receiver refuses a declared length above the limit for that kind as soon as the head is
//! in, holds only the bytes that arrived, refuses bytes beyond the declared end, and decodes with
//! [`fedbank_common::wire`], which checks everything again.
//!
//! Beside each stream the sender sends Reed–Solomon parity of it as datagrams ([`crate::fec`]);
//! the receiver reads the stream out of order and completes the message from whichever comes
//! first — the whole stream, or its whole shards and enough parity ([`crate::assembly`]) — so
//! that a lost packet does not hold the message for a round trip of retransmission. A
//! [`Receiver`] collects a connection's parity datagrams for the streams it reads.

use crate::assembly::Assembly;
use crate::fec::{self, ParityShard};
use fedbank_common::wire::{self, WireError, WireMessage, HEADER_LEN};
use quinn::{Connection, RecvStream};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
    /// Reading a piece of the stream failed.
    #[error("receiving")]
    ReadPiece(#[source] quinn::ReadError),
    /// The stream carries bytes beyond the largest message any kind allows.
    #[error("the stream carries bytes up to offset {end}, beyond the largest message of any kind ({limit} bytes)")]
    BeyondLimit {
        /// One past the last byte offered.
        end: u64,
        /// Most stream bytes any message may take.
        limit: u64,
    },
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

/// A frame from the whole content of a stream already in memory, through the assembly that
/// [`read_frame`] uses (head, limit, exact body, nothing after it). Used by tests and fuzzing to
/// exercise the receive path without a connection.
pub fn frame_from_stream_bytes(
    stream: &[u8],
    limit: impl Fn(u8) -> usize,
) -> Result<RawFrame, FrameError> {
    let mut assembly = Assembly::new(limit);
    assembly.add_piece(0, bytes::Bytes::copy_from_slice(stream))?;
    assembly.complete()?.ok_or_else(|| assembly.truncated())
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
    let length = (body.len() as u64).to_le_bytes();
    stream.write_all(header).await?;
    stream.write_all(&length).await?;
    stream.write_all(body).await?;
    stream.finish()?;
    send_parity(conn, stream_number(stream.id()), &[header, &length, body]).await;
    Ok(stream)
}

/// Messages up to this size have their parity computed on the executor; larger ones (up to
/// [`fec::MAX_PROTECTED`]) on a blocking thread.
const PARITY_INLINE: usize = 64 << 10;

/// Sends the parity datagrams of a stream whose bytes are `parts`, as many as the connection's
/// measured loss calls for; nothing when the peer takes no datagrams or the message is too
/// large to be worth it. Parity is an accelerator: any failure here leaves the stream to
/// complete the message alone.
async fn send_parity(conn: &Connection, stream: u64, parts: &[&[u8]]) {
    let length: usize = parts.iter().map(|p| p.len()).sum();
    let Some(max_datagram) = conn.max_datagram_size() else {
        return;
    };
    let loss = fec::loss_estimate(&conn.stats());
    let Some((shard, _, recovery)) = fec::plan(length, max_datagram, loss) else {
        return;
    };
    let bytes = parts.concat();
    let encode = move || fec::parity_datagrams(stream, &bytes, shard, recovery);
    let datagrams = if length <= PARITY_INLINE {
        encode()
    } else {
        match tokio::task::spawn_blocking(encode).await {
            Ok(d) => d,
            Err(_) => return,
        }
    };
    match datagrams {
        Ok(datagrams) => {
            for datagram in datagrams {
                if conn.send_datagram(datagram).is_err() {
                    break;
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "no parity for this message"),
    }
}

/// A stream's number as parity datagrams name it.
fn stream_number(id: quinn::StreamId) -> u64 {
    quinn::VarInt::from(id).into_inner()
}

/// Parity datagrams a connection holds for streams not yet read, at most.
pub const PARITY_HELD_BYTES: usize = 4 << 20;

/// A connection's parity datagrams, by stream, until the stream's reader takes them.
#[derive(Debug, Default)]
pub struct ParityInbox {
    held: Mutex<HeldParity>,
    arrived: tokio::sync::watch::Sender<u64>,
    /// Messages that parity completed before their stream did.
    rebuilt: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct HeldParity {
    by_stream: BTreeMap<u64, Vec<ParityShard>>,
    bytes: usize,
    /// Streams up to this one have been read: their parity is dropped on arrival.
    read_through: Option<u64>,
    /// Streams whose parity alone rebuilt no message of theirs: their parity is dropped too.
    refused: std::collections::BTreeSet<u64>,
    /// Datagrams dropped (malformed, late, or over the cap).
    dropped: u64,
}

impl HeldParity {
    /// Frees the bytes of parity that is no longer held.
    fn release<'a>(&mut self, shards: impl Iterator<Item = &'a ParityShard>) {
        let freed: usize = shards.map(ParityShard::datagram_len).sum();
        self.bytes -= freed.min(self.bytes);
    }
}

impl ParityInbox {
    /// Takes one datagram from the peer; a malformed one, one for a stream already read, or one
    /// beyond [`PARITY_HELD_BYTES`] is dropped.
    pub fn offer(&self, datagram: bytes::Bytes) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        let shard = match ParityShard::parse(datagram) {
            Ok(s) => s,
            Err(e) => {
                held.dropped += 1;
                tracing::debug!(error = %e, "parity datagram dropped");
                return;
            }
        };
        if held.read_through.is_some_and(|r| shard.stream <= r)
            || held.refused.contains(&shard.stream)
            || held.bytes + shard.datagram_len() > PARITY_HELD_BYTES
        {
            held.dropped += 1;
            return;
        }
        held.bytes += shard.datagram_len();
        held.by_stream.entry(shard.stream).or_default().push(shard);
        drop(held);
        self.arrived.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The parity held for `stream`, handed over.
    fn take(&self, stream: u64) -> Vec<ParityShard> {
        let Ok(mut held) = self.held.lock() else {
            return Vec::new();
        };
        let taken = held.by_stream.remove(&stream).unwrap_or_default();
        held.release(taken.iter());
        taken
    }

    /// The parity held for `stream`, left in place.
    fn peek(&self, stream: u64) -> Vec<ParityShard> {
        self.held
            .lock()
            .ok()
            .and_then(|held| held.by_stream.get(&stream).cloned())
            .unwrap_or_default()
    }

    /// Marks streams up to `stream` as read, counting a message parity completed: their parity
    /// held now and arriving later is dropped.
    fn read_through(&self, stream: u64, rebuilt: bool) {
        if rebuilt {
            self.rebuilt
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        let later = held.by_stream.split_off(&(stream + 1));
        let read = std::mem::replace(&mut held.by_stream, later);
        held.release(read.values().flatten());
        held.refused = held.refused.split_off(&(stream + 1));
        held.read_through = Some(held.read_through.map_or(stream, |r| r.max(stream)));
    }

    /// Drops the parity of `stream`, held and to come: on its own it rebuilt no message of that
    /// stream (a peer's garbage costs one attempt, not one per datagram); the stream itself
    /// completes the message.
    fn refuse(&self, stream: u64) {
        if let Ok(mut held) = self.held.lock() {
            if let Some(dropped) = held.by_stream.remove(&stream) {
                held.release(dropped.iter());
            }
            held.refused.insert(stream);
        }
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.held.lock().map_or(0, |h| h.dropped)
    }
}

/// The receiving side of a connection: reads its messages, each from its stream and the
/// stream's parity datagrams, which a task collects for as long as the receiver lives.
///
/// A message whose stream has not reached this side at all — a one-packet message whose packet
/// was lost — is rebuilt from its parity alone when that suffices; its stream, when QUIC brings
/// it later, is stopped and skipped.
pub struct Receiver {
    conn: Connection,
    parity: Arc<ParityInbox>,
    collector: tokio::task::JoinHandle<()>,
    /// Index of the next unidirectional stream of the peer to read.
    next: std::sync::atomic::AtomicU64,
}

/// The next message's source: its stream, or its parity alone.
enum Next {
    Stream(RecvStream),
    Rebuilt(RawFrame),
}

impl Receiver {
    /// Starts collecting `conn`'s parity datagrams.
    pub fn new(conn: &Connection) -> Self {
        let parity = Arc::new(ParityInbox::default());
        let collector = {
            let (conn, parity) = (conn.clone(), parity.clone());
            tokio::spawn(async move {
                while let Ok(datagram) = conn.read_datagram().await {
                    parity.offer(datagram);
                }
            })
        };
        Self {
            conn: conn.clone(),
            parity,
            collector,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Accepts the next stream and reads one frame from it; `limit` gives the largest body for a
    /// kind byte.
    pub async fn recv(&self, limit: impl Fn(u8) -> usize) -> Result<RawFrame, FrameError> {
        match self.next_message(&limit).await? {
            Next::Stream(mut stream) => read_frame(&mut stream, limit, Some(&self.parity)).await,
            Next::Rebuilt(frame) => Ok(frame),
        }
    }

    /// Accepts the next stream and reads one frame from it while holding a permit of `gate`,
    /// which is handed back with the frame: the receiver holds at most as many messages (each
    /// at most its limit) as the gate has permits, however many peers send at once; the rest
    /// wait in QUIC flow control. A message not completed within `patience` is abandoned, so
    /// that a stalled upload cannot hold a permit.
    pub async fn recv_gated(
        &self,
        limit: impl Fn(u8) -> usize,
        gate: &std::sync::Arc<tokio::sync::Semaphore>,
        patience: std::time::Duration,
    ) -> Result<(RawFrame, tokio::sync::OwnedSemaphorePermit), FrameError> {
        let next = self.next_message(&limit).await?;
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| FrameError::Stalled(patience))?;
        let mut stream = match next {
            Next::Stream(stream) => stream,
            Next::Rebuilt(frame) => return Ok((frame, permit)),
        };
        match tokio::time::timeout(patience, read_frame(&mut stream, limit, Some(&self.parity)))
            .await
        {
            Ok(frame) => Ok((frame?, permit)),
            Err(_) => {
                self.parity.read_through(stream_number(stream.id()), false);
                let _ = stream.stop(quinn::VarInt::from_u32(0));
                Err(FrameError::Stalled(patience))
            }
        }
    }

    /// Parity datagrams dropped so far (malformed, late, refused, or over the cap).
    pub fn parity_dropped(&self) -> u64 {
        self.parity.dropped()
    }

    /// Bytes of parity datagrams held for streams not yet read.
    pub fn parity_held_bytes(&self) -> usize {
        self.parity.held.lock().map_or(0, |h| h.bytes)
    }

    /// Messages that parity completed before their stream did.
    pub fn rebuilt(&self) -> u64 {
        self.parity
            .rebuilt
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The next stream the peer opened, or the next message rebuilt from parity alone while
    /// its stream has not arrived; a stream whose message was rebuilt so is stopped and skipped.
    async fn next_message(&self, limit: &impl Fn(u8) -> usize) -> Result<Next, FrameError> {
        use std::sync::atomic::Ordering;
        loop {
            let index = self.next.load(Ordering::Relaxed);
            let number = stream_number(quinn::StreamId::new(
                !self.conn.side(),
                quinn::Dir::Uni,
                index,
            ));
            tokio::select! {
                biased;
                stream = self.conn.accept_uni() => {
                    let stream = stream?;
                    let got = stream.id().index();
                    if got < index {
                        let mut stream = stream;
                        let _ = stream.stop(quinn::VarInt::from_u32(0));
                        continue;
                    }
                    self.next.store(got + 1, Ordering::Relaxed);
                    return Ok(Next::Stream(stream));
                }
                frame = self.rebuilt_from_parity(number, limit) => {
                    self.next.store(index + 1, Ordering::Relaxed);
                    return Ok(Next::Rebuilt(frame));
                }
            }
        }
    }

    /// Completes once the parity held for stream `number` rebuilds its message on its own.
    async fn rebuilt_from_parity(&self, number: u64, limit: &impl Fn(u8) -> usize) -> RawFrame {
        let mut arrived = self.parity.arrived.subscribe();
        loop {
            arrived.borrow_and_update();
            let shards = self.parity.peek(number);
            if !shards.is_empty() {
                let mut assembly = Assembly::new(limit);
                for shard in shards {
                    let _ = assembly.add_parity(shard);
                }
                match assembly.complete() {
                    Ok(Some(frame)) => {
                        self.parity.read_through(number, true);
                        return frame;
                    }
                    Ok(None) if !assembly.parity_refused() => {}
                    _ => self.parity.refuse(number),
                }
            }
            if arrived.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.collector.abort();
    }
}

/// Reads one frame from a stream, out of order, completing it from `parity` when that comes
/// first; `limit` gives the largest body for a kind byte.
pub async fn read_frame(
    stream: &mut RecvStream,
    limit: impl Fn(u8) -> usize,
    parity: Option<&ParityInbox>,
) -> Result<RawFrame, FrameError> {
    let mut assembly = Assembly::new(limit);
    let number = stream_number(stream.id());
    let mut arrived = parity.map(|p| p.arrived.subscribe());
    let outcome = loop {
        // Seen before taking, so that parity arriving in between wakes the wait below.
        if let Some(arrived) = arrived.as_mut() {
            arrived.borrow_and_update();
        }
        if let Some(parity) = parity {
            for shard in parity.take(number) {
                if let Err(e) = assembly.add_parity(shard) {
                    tracing::debug!(error = %e, "parity ignored");
                }
            }
        }
        match assembly.complete() {
            Ok(Some(frame)) => break Ok(frame),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let more_parity = async {
            match arrived.as_mut() {
                Some(arrived) => {
                    if arrived.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            piece = stream.read_chunk(READ_CHUNK, false) => match piece {
                Ok(Some(piece)) => {
                    if let Err(e) = assembly.add_piece(piece.offset, piece.bytes) {
                        break Err(e);
                    }
                }
                Ok(None) => break Err(assembly.truncated()),
                Err(quinn::ReadError::ConnectionLost(e)) => break Err(FrameError::Connection(e)),
                Err(e) => break Err(FrameError::ReadPiece(e)),
            },
            () = more_parity => {}
        }
    };
    if let Some(parity) = parity {
        parity.read_through(number, assembly.rebuilt());
    }
    let frame = outcome?;
    // Bytes after the declared end are refused when they are already in; the stream is not
    // waited for beyond the message (a stream completed from parity is stopped on drop, and
    // its pieces still in are the message's own).
    while let Ok(Ok(Some(piece))) = tokio::time::timeout(
        std::time::Duration::ZERO,
        stream.read_chunk(READ_CHUNK, false),
    )
    .await
    {
        assembly.add_piece(piece.offset, piece.bytes)?;
    }
    Ok(frame)
}

/// Accepts the next stream on `conn` and reads one frame from it, without parity (a
/// [`Receiver`] uses the connection's parity datagrams too).
pub async fn recv(conn: &Connection, limit: impl Fn(u8) -> usize) -> Result<RawFrame, FrameError> {
    let mut stream = conn.accept_uni().await?;
    read_frame(&mut stream, limit, None).await
}
