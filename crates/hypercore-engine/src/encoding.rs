//! compact-encoding primitives (the byte format of hypercore's messages and manifests):
//! varint `uint`, fixed-width little-endian integers, fixed 32/64-byte fields, length-prefixed
//! buffers and arrays. The reader never panics: short or malformed input is an error.

use crate::error::{Error, Result};

/// Arrays longer than this are refused (Node refuses the same bound).
pub const MAX_ARRAY: u64 = 0x10_0000;

/// Reads compact-encoded values from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Errors unless every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::Decode("trailing bytes"))
        }
    }

    /// Takes `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Error::Decode("out of bounds"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(Error::Decode("out of bounds"))?;
        self.pos = end;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        let b = self.bytes(1)?;
        b.first().copied().ok_or(Error::Decode("out of bounds"))
    }

    /// Fixed 8-byte little-endian integer.
    pub fn u64_le(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Variable-length unsigned integer.
    pub fn uint(&mut self) -> Result<u64> {
        let a = self.u8()?;
        Ok(match a {
            0..=0xfc => a as u64,
            0xfd => {
                let b: [u8; 2] = self
                    .bytes(2)?
                    .try_into()
                    .map_err(|_| Error::Decode("out of bounds"))?;
                u16::from_le_bytes(b) as u64
            }
            0xfe => {
                let b: [u8; 4] = self
                    .bytes(4)?
                    .try_into()
                    .map_err(|_| Error::Decode("out of bounds"))?;
                u32::from_le_bytes(b) as u64
            }
            0xff => self.u64_le()?,
        })
    }

    /// 32 fixed bytes.
    pub fn fixed32(&mut self) -> Result<[u8; 32]> {
        let b = self.bytes(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// 64 fixed bytes.
    pub fn fixed64(&mut self) -> Result<[u8; 64]> {
        let b = self.bytes(64)?;
        let mut a = [0u8; 64];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A length-prefixed buffer.
    pub fn buffer(&mut self) -> Result<&'a [u8]> {
        let len = self.uint()?;
        let len = usize::try_from(len).map_err(|_| Error::Decode("buffer too long"))?;
        self.bytes(len)
    }

    /// The length prefix of an array (bounded by [`MAX_ARRAY`] and by the bytes left, given
    /// the smallest encoded size of one element).
    pub fn array_len(&mut self, min_item: usize) -> Result<usize> {
        let len = self.uint()?;
        if len > MAX_ARRAY {
            return Err(Error::Decode("array too big"));
        }
        let len = len as usize;
        if len.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(Error::Decode("array longer than its bytes"));
        }
        Ok(len)
    }
}

/// Writes compact-encoded values.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Variable-length unsigned integer.
    pub fn uint(&mut self, n: u64) {
        if n <= 0xfc {
            self.buf.push(n as u8);
        } else if n <= 0xffff {
            self.buf.push(0xfd);
            self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n <= 0xffff_ffff {
            self.buf.push(0xfe);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            self.buf.push(0xff);
            self.buf.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Fixed 8-byte little-endian integer.
    pub fn u64_le(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// Raw bytes (fixed-size fields).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A length-prefixed buffer.
    pub fn buffer(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_round_trip() {
        for n in [
            0u64,
            1,
            0xfc,
            0xfd,
            0xffff,
            0x10000,
            0xffff_ffff,
            1 << 40,
            u64::MAX,
        ] {
            let mut w = Writer::new();
            w.uint(n);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.uint().unwrap(), n);
            r.finish().unwrap();
        }
    }

    #[test]
    fn short_input_errors() {
        for bytes in [&[][..], &[0xfd, 1], &[0xfe, 1, 2], &[0xff, 1, 2, 3]] {
            assert!(Reader::new(bytes).uint().is_err());
        }
        assert!(Reader::new(&[5, 1, 2]).buffer().is_err());
        assert!(Reader::new(&[0xff; 9]).buffer().is_err());
        assert!(Reader::new(&[0xfe, 0, 0, 0x10, 0]).array_len(1).is_err());
    }
}
