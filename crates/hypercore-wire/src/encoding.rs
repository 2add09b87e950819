//! compact-encoding primitives (the byte format of Node's `compact-encoding` 3): variable-length
//! `uint`, fixed 32-byte values, length-prefixed buffers and strings, `uint32array`, arrays.
//!
//! [`Reader`] never panics and never allocates from a length before checking that the input
//! holds that many bytes. Encoding appends to a `Vec<u8>`.

use crate::error::DecodeError;

/// The largest array Node's compact-encoding accepts (`Array is too big` above it).
pub const MAX_ARRAY: u64 = 0x10_0000;

/// A cursor over received bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::OutOfBounds);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes everything left (compact-encoding's `raw`).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (first, tail) = self.buf.split_first().ok_or(DecodeError::OutOfBounds)?;
        self.buf = tail;
        Ok(*first)
    }

    fn le(&mut self, n: usize) -> Result<u64, DecodeError> {
        let bytes = self.take(n)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A little-endian `uint32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.le(4)?;
        u32::try_from(v).map_err(|_| DecodeError::OutOfBounds)
    }

    /// A variable-length `uint` (1, 3, 5 or 9 bytes). Like Node, non-minimal forms are accepted.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        match self.u8()? {
            a @ 0..=0xfc => Ok(u64::from(a)),
            0xfd => self.le(2),
            0xfe => self.le(4),
            _ => self.le(8),
        }
    }

    /// A `uint` used as a length, checked to fit `usize`.
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        usize::try_from(n).map_err(|_| DecodeError::LengthOverflow(n))
    }

    /// 32 raw bytes (`fixed32`).
    pub fn fixed32(&mut self) -> Result<[u8; 32], DecodeError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// A length-prefixed byte string (`buffer`).
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    /// compact-encoding's `optionalBuffer`: length 0 means absent.
    pub fn optional_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let b = self.buffer()?;
        Ok(if b.is_empty() { None } else { Some(b) })
    }

    /// A length-prefixed UTF-8 string; invalid UTF-8 is replaced (as Node's decoder does).
    pub fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.buffer()?).into_owned())
    }

    /// An array length, refused above [`MAX_ARRAY`] or when the input cannot hold that many
    /// elements of at least `min_elem_len` bytes each.
    pub fn array_len(&mut self, min_elem_len: usize) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        if n > MAX_ARRAY {
            return Err(DecodeError::ArrayTooBig(n));
        }
        let n = usize::try_from(n).map_err(|_| DecodeError::LengthOverflow(n))?;
        match n.checked_mul(min_elem_len.max(1)) {
            Some(bytes) if bytes <= self.remaining() => Ok(n),
            _ => Err(DecodeError::OutOfBounds),
        }
    }

    /// compact-encoding's `uint32array`: a count, then that many little-endian `uint32`s.
    pub fn uint32_array(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = self.array_len(4)?;
        let bytes = self.take(n.checked_mul(4).ok_or(DecodeError::OutOfBounds)?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| {
                c.iter()
                    .rev()
                    .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
            })
            .collect())
    }
}

/// Appends a variable-length `uint`.
pub fn put_uint(out: &mut Vec<u8>, n: u64) {
    if n <= 0xfc {
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xfd);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0xffff_ffff {
        out.push(0xfe);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.push(0xff);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// The encoded length of a `uint`.
pub fn uint_len(n: u64) -> usize {
    if n <= 0xfc {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Appends a `uint` length prefix and the bytes.
pub fn put_buffer(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends an `optionalBuffer` (absent or empty: a single 0).
pub fn put_optional_buffer(out: &mut Vec<u8>, b: Option<&[u8]>) {
    put_buffer(out, b.unwrap_or(&[]));
}

/// Appends a length-prefixed UTF-8 string.
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_buffer(out, s.as_bytes());
}

/// Appends a `uint32array`.
pub fn put_uint32_array(out: &mut Vec<u8>, words: &[u32]) {
    put_uint(out, words.len() as u64);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_boundaries_round_trip() {
        for n in [
            0u64,
            1,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_uint(&mut out, n);
            assert_eq!(out.len(), uint_len(n));
            let mut r = Reader::new(&out);
            assert_eq!(r.uint(), Ok(n));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn non_minimal_uint_is_accepted_like_node() {
        let mut r = Reader::new(&[0xfd, 5, 0]);
        assert_eq!(r.uint(), Ok(5));
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        let mut r = Reader::new(&[0xfe, 0xff, 0xff, 0x0f, 0x00, 1, 2]);
        assert!(r.uint32_array().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(r.buffer().is_err());
        let mut r = Reader::new(&[0xfe, 0x00, 0x00, 0x20, 0x00]);
        assert_eq!(r.array_len(1), Err(DecodeError::ArrayTooBig(0x20_0000)));
    }
}
