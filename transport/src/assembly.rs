//! One message's stream as it arrives: pieces in any order from QUIC's unordered reads, and the
//! message's parity datagrams ([`crate::fec`]). Plain state, no network: [`crate::frame`]
//! feeds it and asks after each piece whether the message is complete.
//!
//! The message is complete when the stream's bytes cover its declared length, or when parity
//! and the stream's whole shards rebuild it with the announced digest. What it refuses, before
//! holding anything: bytes beyond the largest message any kind allows, a head whose declared
//! length is above the limit of its kind, bytes after the declared end. What it ignores: parity
//! that disagrees with the stream or with the message's first parity, or that rebuilds another
//! message (the stream then completes the message on its own). It holds at most the declared
//! length of stream bytes (each byte once, however often a piece is repeated) and at most as many
//! parity shards as the message has shards of data.

use crate::fec::{self, FecError, Layout, ParityShard};
use crate::frame::{parse_head, FrameError, RawFrame, FRAME_HEAD_LEN};
use bytes::{Buf, Bytes};
use fedbank_common::wire::HEADER_LEN;
use std::collections::BTreeMap;

/// The arriving pieces of one message, whose kinds' limits `limit` gives.
pub struct Assembly<L: Fn(u8) -> usize> {
    /// The largest body for a kind byte.
    limit: L,
    /// Most stream bytes any kind of message may take (head included).
    ceiling: u64,
    /// Received stream bytes by offset; the pieces never overlap.
    pieces: BTreeMap<u64, Bytes>,
    /// Bytes in `pieces`.
    received: u64,
    /// The stream's length from its head, once the head is in.
    total: Option<u64>,
    /// The layout the message's first parity announced.
    layout: Option<Layout>,
    /// Parity shards by index.
    parity: BTreeMap<u16, Bytes>,
    /// Set when parity disagreed with the stream or rebuilt another message: the rest is ignored.
    parity_refused: bool,
    /// Set when parity completed the message.
    rebuilt: bool,
}

impl<L: Fn(u8) -> usize> Assembly<L> {
    /// An empty assembly for a message whose body is at most `limit(kind)` bytes.
    pub fn new(limit: L) -> Self {
        let largest = (0..=u8::MAX).map(&limit).max().unwrap_or(0);
        Self {
            limit,
            ceiling: (FRAME_HEAD_LEN + largest) as u64,
            pieces: BTreeMap::new(),
            received: 0,
            total: None,
            layout: None,
            parity: BTreeMap::new(),
            parity_refused: false,
            rebuilt: false,
        }
    }

    /// Whether the message's parity was found inconsistent or rebuilt another message, so that
    /// only the stream can complete it now.
    pub fn parity_refused(&self) -> bool {
        self.parity_refused
    }

    /// Whether parity completed the message (rather than the whole stream).
    pub fn rebuilt(&self) -> bool {
        self.rebuilt
    }

    /// Stream bytes held.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes a piece of the stream at `offset`; refuses a head above its kind's limit, and a
    /// piece that reaches beyond what any message may be, or beyond the declared end.
    pub fn add_piece(&mut self, offset: u64, bytes: Bytes) -> Result<(), FrameError> {
        if self.total.is_none() && offset == 0 {
            if let Some(head) = bytes
                .get(..FRAME_HEAD_LEN)
                .and_then(|h| <[u8; FRAME_HEAD_LEN]>::try_from(h).ok())
            {
                self.take_head(&head)?;
            }
        }
        let end = offset
            .checked_add(bytes.len() as u64)
            .ok_or(FrameError::BeyondLimit {
                end: u64::MAX,
                limit: self.ceiling,
            })?;
        if self.total.is_some_and(|total| end > total) {
            return Err(FrameError::TrailingBytes);
        }
        if end > self.ceiling {
            return Err(FrameError::BeyondLimit {
                end,
                limit: self.ceiling,
            });
        }
        if self.layout.is_some_and(|l| end > l.length) {
            self.refuse_parity();
        }
        self.insert(offset, bytes);
        Ok(())
    }

    /// Takes a parity shard of this message; one that disagrees with the stream or with the
    /// message's first parity makes all parity of the message ignored.
    pub fn add_parity(&mut self, shard: ParityShard) -> Result<(), FecError> {
        if self.parity_refused {
            return Ok(());
        }
        let layout = shard.layout;
        let consistent = match self.layout {
            Some(first) if first != layout => Err("layout differs from the message's first parity"),
            _ if layout.length > self.ceiling => Err("longer than any message may be"),
            _ if self.total.is_some_and(|t| t != layout.length) => {
                Err("length differs from the stream's head")
            }
            _ if self.stream_end() > layout.length => Err("the stream carries bytes beyond it"),
            _ => Ok(()),
        };
        if let Err(why) = consistent {
            self.refuse_parity();
            return Err(FecError::Inconsistent(why));
        }
        self.layout = Some(layout);
        // More parity than shards of data cannot help.
        if self.parity.len() < usize::from(layout.original) {
            self.parity.entry(shard.index).or_insert(shard.bytes);
        }
        Ok(())
    }

    /// The message, once complete: `Ok(Some(frame))` when the stream covers its declared length
    /// or parity rebuilds it, `Ok(None)` while pieces are missing.
    pub fn complete(&mut self) -> Result<Option<RawFrame>, FrameError> {
        let kind = match self.head()? {
            Some(kind) => kind,
            None => return Ok(self.rebuild()),
        };
        if Some(self.received) == self.total {
            let mut bytes = Vec::with_capacity(self.received as usize);
            for piece in self.pieces.values() {
                bytes.extend_from_slice(piece);
            }
            return Ok(Some(frame_of_stream(kind, &bytes)));
        }
        Ok(self.rebuild())
    }

    /// Why the stream's end leaves the message incomplete (the stream finished early).
    pub fn truncated(&self) -> FrameError {
        FrameError::Truncated {
            expected: self.total.unwrap_or(FRAME_HEAD_LEN as u64) as usize,
            got: self.received as usize,
        }
    }

    /// The kind byte, once the head's bytes are in; checks the declared length against the limit
    /// of the kind and against what the stream already carries.
    fn head(&mut self) -> Result<Option<u8>, FrameError> {
        let Some(head) = self.stream_head() else {
            return Ok(None);
        };
        self.take_head(&head).map(Some)
    }

    /// Checks a head and takes the stream's length from it.
    fn take_head(&mut self, head: &[u8; FRAME_HEAD_LEN]) -> Result<u8, FrameError> {
        let (kind, len) = parse_head(head, &self.limit)?;
        let total = (FRAME_HEAD_LEN + len) as u64;
        if self.total.is_none() {
            if self.stream_end() > total {
                return Err(FrameError::TrailingBytes);
            }
            if self.layout.is_some_and(|l| l.length != total) {
                self.refuse_parity();
            }
            self.total = Some(total);
        }
        Ok(kind)
    }

    /// The first [`FRAME_HEAD_LEN`] bytes, if they are in.
    fn stream_head(&self) -> Option<[u8; FRAME_HEAD_LEN]> {
        let mut head = [0u8; FRAME_HEAD_LEN];
        let mut at = 0usize;
        for (&offset, piece) in &self.pieces {
            if offset as usize != at || at >= FRAME_HEAD_LEN {
                break;
            }
            let n = piece.len().min(FRAME_HEAD_LEN - at);
            head[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
        }
        (at == FRAME_HEAD_LEN).then_some(head)
    }

    /// The message rebuilt from parity and the stream's whole shards, when there are enough;
    /// parity that rebuilds another message, or whose head the limits refuse, is dropped.
    fn rebuild(&mut self) -> Option<RawFrame> {
        let layout = self.layout.filter(|_| !self.parity_refused)?;
        let original = usize::from(layout.original);
        let shard = u64::from(layout.shard_bytes);
        // A cheap bound first: whole shards can be at most the bytes received ÷ shard size.
        if self.parity.is_empty() || (self.received / shard) as usize + self.parity.len() < original
        {
            return None;
        }
        let mut covered = vec![0u64; original];
        for (&offset, piece) in &self.pieces {
            let end = offset + piece.len() as u64;
            let mut at = offset;
            while at < end {
                let index = (at / shard) as usize;
                let shard_end = ((index as u64 + 1) * shard).min(end);
                if let Some(c) = covered.get_mut(index) {
                    *c += shard_end - at;
                }
                at = shard_end;
            }
        }
        let whole: Vec<usize> = (0..original)
            .filter(|&i| {
                let range = layout.shard_range(i);
                covered[i] == range.end - range.start
            })
            .collect();
        if whole.len() + self.parity.len() < original {
            return None;
        }
        let have: Vec<(usize, Vec<u8>)> = whole
            .iter()
            .map(|&i| (i, self.shard_bytes(&layout, i)))
            .collect();
        let parity: Vec<(usize, Bytes)> = self
            .parity
            .iter()
            .map(|(&i, b)| (usize::from(i), b.clone()))
            .collect();
        let rebuilt = fec::recover(&layout, &have, &parity)
            .ok()
            .and_then(|stream| {
                let head: [u8; FRAME_HEAD_LEN] = stream.get(..FRAME_HEAD_LEN)?.try_into().ok()?;
                let (kind, len) = parse_head(&head, &self.limit).ok()?;
                ((FRAME_HEAD_LEN + len) as u64 == layout.length)
                    .then(|| frame_of_stream(kind, &stream))
            });
        self.rebuilt = rebuilt.is_some();
        if rebuilt.is_none() {
            tracing::debug!(
                "parity rebuilt a message that is not this stream's; waiting for the stream"
            );
            self.refuse_parity();
        }
        rebuilt
    }

    /// Original shard `index`, all of whose bytes are in, zero-padded to the shard size.
    fn shard_bytes(&self, layout: &Layout, index: usize) -> Vec<u8> {
        let range = layout.shard_range(index);
        let mut out = vec![0u8; usize::from(layout.shard_bytes)];
        for (&offset, piece) in self.pieces.range(..range.end) {
            let end = offset + piece.len() as u64;
            if end <= range.start {
                continue;
            }
            let from = offset.max(range.start);
            let to = end.min(range.end);
            out[(from - range.start) as usize..(to - range.start) as usize]
                .copy_from_slice(&piece[(from - offset) as usize..(to - offset) as usize]);
        }
        out
    }

    fn refuse_parity(&mut self) {
        self.parity_refused = true;
        self.parity.clear();
    }

    /// One past the last stream byte held.
    fn stream_end(&self) -> u64 {
        self.pieces
            .last_key_value()
            .map_or(0, |(&offset, piece)| offset + piece.len() as u64)
    }

    /// Adds the parts of a piece that are not held yet.
    fn insert(&mut self, mut offset: u64, mut bytes: Bytes) {
        if let Some((&start, before)) = self.pieces.range(..=offset).next_back() {
            let end = start + before.len() as u64;
            if end > offset {
                let skip = ((end - offset) as usize).min(bytes.len());
                bytes.advance(skip);
                offset += skip as u64;
            }
        }
        while !bytes.is_empty() {
            let next = self
                .pieces
                .range(offset..)
                .next()
                .map(|(&start, piece)| (start, piece.len()));
            match next {
                Some((start, len)) if start < offset + bytes.len() as u64 => {
                    let gap = bytes.split_to((start - offset) as usize);
                    if !gap.is_empty() {
                        self.received += gap.len() as u64;
                        self.pieces.insert(offset, gap);
                    }
                    let skip = len.min(bytes.len());
                    bytes.advance(skip);
                    offset = start + skip as u64;
                }
                _ => {
                    self.received += bytes.len() as u64;
                    self.pieces.insert(offset, bytes);
                    break;
                }
            }
        }
    }
}

/// The frame (wire header and body) of a stream's bytes, which carry the body length between.
fn frame_of_stream(kind: u8, stream: &[u8]) -> RawFrame {
    let mut bytes = Vec::with_capacity(stream.len() - (FRAME_HEAD_LEN - HEADER_LEN));
    bytes.extend_from_slice(&stream[..HEADER_LEN]);
    bytes.extend_from_slice(&stream[FRAME_HEAD_LEN..]);
    RawFrame { kind, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 16;

    /// A stream as a sender writes it: wire header, body length, body.
    fn stream_of(body_len: usize, kind: u8) -> Vec<u8> {
        let mut s = vec![b'F', b'B', b'W', b'1', kind, 0, 0, 1];
        s.extend_from_slice(&(body_len as u64).to_le_bytes());
        s.extend((0..body_len).map(|i| (i * 31 % 253) as u8));
        s
    }

    fn parity_of(stream: &[u8], shard: u16, recovery: u16) -> Vec<ParityShard> {
        fec::parity_datagrams(4, stream, shard, recovery)
            .expect("encoded")
            .into_iter()
            .map(|d| ParityShard::parse(d).expect("parsed"))
            .collect()
    }

    fn limit(_: u8) -> usize {
        LIMIT
    }

    #[test]
    fn a_stream_in_any_order_completes_the_message() {
        let stream = stream_of(3000, 7);
        let mut a = Assembly::new(limit);
        for (i, piece) in stream.chunks(700).enumerate().rev() {
            assert!(a.complete().expect("fine").is_none());
            a.add_piece((i * 700) as u64, Bytes::copy_from_slice(piece))
                .expect("taken");
        }
        let frame = a.complete().expect("fine").expect("complete");
        assert_eq!(frame.kind, 7);
        assert_eq!(&frame.bytes[..HEADER_LEN], &stream[..HEADER_LEN]);
        assert_eq!(&frame.bytes[HEADER_LEN..], &stream[FRAME_HEAD_LEN..]);
    }

    #[test]
    fn parity_fills_what_the_stream_lost() {
        let stream = stream_of(10_000, 3);
        let parity = parity_of(&stream, 512, 6);
        let mut a = Assembly::new(limit);
        // Two packets' worth lost in the middle, and the head: 3 of 20 shards.
        for (i, piece) in stream.chunks(600).enumerate() {
            if i != 0 && i != 7 && i != 12 {
                a.add_piece((i * 600) as u64, Bytes::copy_from_slice(piece))
                    .expect("taken");
            }
        }
        assert!(a.complete().expect("fine").is_none());
        for p in parity {
            a.add_parity(p).expect("consistent");
        }
        let frame = a.complete().expect("fine").expect("rebuilt");
        assert_eq!(frame.kind, 3);
        assert_eq!(&frame.bytes[HEADER_LEN..], &stream[FRAME_HEAD_LEN..]);
    }

    #[test]
    fn bytes_beyond_any_message_or_the_declared_end_are_refused() {
        let stream = stream_of(100, 1);
        let mut a = Assembly::new(limit);
        assert!(matches!(
            a.add_piece(LIMIT as u64, Bytes::from(vec![0u8; 100])),
            Err(FrameError::BeyondLimit { .. })
        ));
        a.add_piece(0, Bytes::copy_from_slice(&stream))
            .expect("taken");
        assert!(a.complete().expect("fine").is_some());
        assert!(matches!(
            a.add_piece(stream.len() as u64, Bytes::from_static(b"x")),
            Err(FrameError::TrailingBytes)
        ));
        // A head above its kind's limit is refused as soon as it is in.
        let mut b = Assembly::new(|_| 10);
        assert!(matches!(
            b.add_piece(0, Bytes::copy_from_slice(&stream[..FRAME_HEAD_LEN])),
            Err(FrameError::TooLarge { len: 100, .. })
        ));
        // Also when the head arrives in two pieces, the second one first.
        let mut c = Assembly::new(|_| 10);
        c.add_piece(8, Bytes::copy_from_slice(&stream[8..FRAME_HEAD_LEN]))
            .expect("taken");
        c.add_piece(0, Bytes::copy_from_slice(&stream[..8]))
            .expect("taken");
        assert!(matches!(
            c.complete(),
            Err(FrameError::TooLarge { len: 100, .. })
        ));
    }

    #[test]
    fn parity_of_another_message_is_ignored_and_the_stream_still_completes() {
        let stream = stream_of(5000, 2);
        let mut other = stream.clone();
        other[500] ^= 0xff;
        let mut a = Assembly::new(limit);
        let pieces: Vec<(usize, &[u8])> = stream.chunks(512).enumerate().collect();
        for (i, piece) in &pieces {
            if *i != 3 {
                a.add_piece((i * 512) as u64, Bytes::copy_from_slice(piece))
                    .expect("taken");
            }
        }
        for p in parity_of(&other, 512, 2) {
            a.add_parity(p).expect("consistent layout");
        }
        assert!(
            a.complete().expect("fine").is_none(),
            "the mixture's digest is refused"
        );
        // A differing layout after that changes nothing either.
        let _ = a.add_parity(parity_of(&stream, 1024, 2).remove(0));
        a.add_piece(3 * 512, Bytes::copy_from_slice(pieces[3].1))
            .expect("taken");
        let frame = a.complete().expect("fine").expect("complete");
        assert_eq!(&frame.bytes[HEADER_LEN..], &stream[FRAME_HEAD_LEN..]);
    }

    #[test]
    fn parity_that_disagrees_with_the_head_is_refused() {
        let stream = stream_of(2000, 2);
        let longer = stream_of(2500, 2);
        let mut a = Assembly::new(limit);
        a.add_piece(0, Bytes::copy_from_slice(&stream[..100]))
            .expect("taken");
        assert!(a.complete().expect("fine").is_none());
        assert_eq!(
            a.add_parity(parity_of(&longer, 512, 2).remove(0)),
            Err(FecError::Inconsistent(
                "length differs from the stream's head"
            ))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Pieces in any order, repeated and overlapping, with or without parity: the message
        /// completes exactly when the stream covers it or enough whole shards and parity are in,
        /// and is then the sent one; memory held never exceeds the stream's length.
        #[test]
        fn any_arrival_order_completes_the_sent_message(
            body in 1usize..6000,
            cuts in proptest::collection::vec((0usize..6100, 1usize..1500), 1..80),
            parity_count in 0u16..8,
        ) {
            let stream = stream_of(body, 5);
            let mut a = Assembly::new(limit);
            if parity_count > 0 {
                for p in parity_of(&stream, 256, parity_count) {
                    a.add_parity(p).expect("consistent");
                }
            }
            let mut done = None;
            for (start, len) in cuts {
                let start = start % stream.len();
                let end = (start + len).min(stream.len());
                a.add_piece(start as u64, Bytes::copy_from_slice(&stream[start..end])).expect("taken");
                prop_assert!(a.received() <= stream.len() as u64);
                if let Some(frame) = a.complete().expect("fine") {
                    done = Some(frame);
                    break;
                }
            }
            if let Some(frame) = done {
                prop_assert_eq!(&frame.bytes[HEADER_LEN..], &stream[FRAME_HEAD_LEN..]);
            } else {
                prop_assert!(a.received() < stream.len() as u64);
            }
        }
    }
}
