//! The one reader of HTTP/3 frames off a QUIC stream: the peer's control stream, the
//! CONNECT request's and response's HEADERS, and the CONNECT stream's capsules all go
//! through [`FrameReader`], so buffering, the size limit and the end of the stream are
//! handled in one place (h3's `frame.rs` does the same).

use crate::h3::{self, RawFrame};

/// Bytes asked of quinn per read: HTTP/3 frames on these streams are small (SETTINGS,
/// HEADERS, capsules), and a larger read would only grow the buffer.
const READ_CHUNK: usize = 4096;

/// Why [`FrameReader::next`] returned no frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The bytes are not a frame we take (over [`h3::MAX_CONTROL_FRAME`], bad length).
    Malformed(String),
    /// The peer ended the stream (FIN) with no partial frame pending or in the middle
    /// of one.
    Ended,
    /// Reading failed: the peer reset the stream, or the connection ended.
    Read(quinn::ReadError),
}

/// Reads whole HTTP/3 frames from a stream, keeping the bytes of a partial frame
/// between reads. Unknown frame types are returned like any other: skipping them is
/// the caller's rule (HTTP/3 says to ignore them).
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// A reader whose first bytes are `buffered` (read from the stream before: a
    /// stream header's leftover, or the HEADERS frame type already consumed).
    pub(crate) fn with_bytes(buffered: Vec<u8>) -> Self {
        Self { buf: buffered }
    }

    /// The next whole frame already buffered, if any.
    pub(crate) fn buffered(&mut self) -> Result<Option<RawFrame>, FrameError> {
        match h3::parse_frame(&self.buf, h3::MAX_CONTROL_FRAME) {
            Ok(Some((frame, used))) => {
                self.buf.drain(..used);
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(FrameError::Malformed(e)),
        }
    }

    /// The next frame: from the buffer when one is whole there, else after reading
    /// more from `recv` (cancel-safe: a partial frame stays buffered).
    pub(crate) async fn next(
        &mut self,
        recv: &mut quinn::RecvStream,
    ) -> Result<RawFrame, FrameError> {
        loop {
            if let Some(frame) = self.buffered()? {
                return Ok(frame);
            }
            match recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => return Err(FrameError::Ended),
                Err(e) => return Err(FrameError::Read(e)),
            }
        }
    }

    /// Reads frames until a HEADERS frame is whole and returns its decoded fields;
    /// DATA and unknown frames before it are skipped.
    pub(crate) async fn read_headers(
        &mut self,
        recv: &mut quinn::RecvStream,
    ) -> crate::Result<h3::Fields> {
        use crate::Error;
        loop {
            match self.next(recv).await {
                Ok(frame) if frame.kind == h3::FRAME_HEADERS => {
                    return h3::decode_headers(&frame.payload).map_err(Error::Protocol)
                }
                Ok(_) => {}
                Err(FrameError::Malformed(e)) => return Err(Error::Protocol(e)),
                Err(FrameError::Ended) => {
                    return Err(Error::Protocol("stream ended before HEADERS".into()))
                }
                Err(FrameError::Read(e)) => {
                    return Err(Error::Connection(format!("reading HEADERS: {e}")))
                }
            }
        }
    }

    /// Adds bytes read elsewhere (tests: the reader without a stream).
    #[cfg(test)]
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered past the last frame returned (tests).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames split at every byte come out whole and in order, with nothing left over.
    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut wire = h3::encode_frame(h3::FRAME_HEADERS, b"abc");
        wire.extend(h3::encode_frame(0x21, &[7; 300]));
        wire.extend(h3::encode_frame(h3::FRAME_DATA, b""));
        for cut in 0..=wire.len() {
            let mut reader = FrameReader::with_bytes(wire[..cut].to_vec());
            let mut got = Vec::new();
            while let Some(f) = reader.buffered().unwrap() {
                got.push(f);
            }
            reader.extend(&wire[cut..]);
            while let Some(f) = reader.buffered().unwrap() {
                got.push(f);
            }
            let kinds: Vec<u64> = got.iter().map(|f| f.kind).collect();
            assert_eq!(
                kinds,
                [h3::FRAME_HEADERS, 0x21, h3::FRAME_DATA],
                "cut {cut}"
            );
            assert_eq!(got[1].payload, vec![7; 300]);
            assert_eq!(reader.pending(), 0);
        }
    }

    /// A frame over the limit is an error as soon as its header is read, before its
    /// payload arrives (the reader never buffers it).
    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut header = Vec::new();
        h3::put_varint(&mut header, h3::FRAME_HEADERS);
        h3::put_varint(&mut header, h3::MAX_CONTROL_FRAME as u64 + 1);
        let mut reader = FrameReader::with_bytes(header);
        assert!(matches!(reader.buffered(), Err(FrameError::Malformed(_))));
    }
}
