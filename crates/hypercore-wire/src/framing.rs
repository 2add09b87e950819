//! Length-prefixed framing for byte streams that do not keep message boundaries (TCP, a QUIC
//! stream): each protomux frame is sent as a 3-byte little-endian length and the frame, the
//! layout secret-stream uses inside its encryption. Over hyperswarm the bridge hands over whole
//! decrypted messages and this module is not needed.
//!
//! [`FrameDecoder`] checks a length against its cap before buffering the frame's bytes.

use crate::error::DecodeError;

/// The largest frame a 3-byte length can carry.
pub const MAX_FRAME: usize = (1 << 24) - 1;

/// Prefixes `frame` with its 3-byte length; `None` if it is longer than [`MAX_FRAME`].
pub fn encode_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|l| *l as usize <= MAX_FRAME)?;
    let mut out = Vec::with_capacity(frame.len() + 3);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.extend_from_slice(frame);
    Some(out)
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` (at most [`MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame: max_frame.min(MAX_FRAME),
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start.min(self.buf.len()));
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or an error (the stream must
    /// be closed) when a length exceeds the cap. Empty frames are returned as empty vectors.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(header) = pending.get(..3) else {
            return Ok(None);
        };
        let len = header
            .iter()
            .rev()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len > self.max_frame {
            return Err(DecodeError::FrameTooLarge {
                len,
                cap: self.max_frame,
            });
        }
        let Some(frame) = pending.get(3..3 + len) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.start += 3 + len;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_pushes_come_out_whole() {
        let frames: Vec<Vec<u8>> = vec![vec![], vec![1, 2, 3], vec![7; 70_000]];
        let stream: Vec<u8> = frames
            .iter()
            .flat_map(|f| encode_frame(f).unwrap_or_default())
            .collect();
        let mut d = FrameDecoder::new(MAX_FRAME);
        let mut out = vec![];
        for chunk in stream.chunks(1000) {
            d.push(chunk);
            while let Ok(Some(f)) = d.next_frame() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(1000);
        d.push(&[0xe9, 0x03, 0x00]);
        assert_eq!(
            d.next_frame(),
            Err(DecodeError::FrameTooLarge {
                len: 1001,
                cap: 1000
            })
        );
        assert!(encode_frame(&vec![0; MAX_FRAME + 1]).is_none());
    }
}
