//! Keys and links: the 32-byte ed25519 public keys that name hypercores, sites, laptops and
//! mirrors, in the ecosystem's two spellings (64 hex chars, 52 z-base32 chars), bare or inside
//! `hyper://` / `dat://` links, plus the discovery key peers use to ask for a core without
//! revealing it. Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use blake2::digest::{consts::U32, Mac};

/// A 32-byte public key (of a hypercore, a site, a laptop or a mirror).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

/// Why a string is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty key: expected 64 hex characters or 52 z-base32 characters")]
    Empty,
    #[error(
        "'{0}' is not a key: expected 64 hex characters or 52 z-base32 characters, \
         bare or as hyper://KEY or dat://KEY"
    )]
    Malformed(String),
}

const Z32_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// 52 z-base32 characters (the spelling of hypercore-id-encoding and pkarr).
    pub fn to_z32(&self) -> String {
        z32_encode(&self.0)
    }

    /// Short form for logs: the first 8 hex characters.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }

    /// `hyper://<hex>`.
    pub fn to_link(&self) -> String {
        format!("hyper://{}", self.to_hex())
    }

    /// The discovery key: BLAKE2b-256 keyed by the public key over the bytes "hypercore",
    /// as hypercore computes it. Peers ask for cores by this, so a peer that does not
    /// know the key learns nothing from the request.
    pub fn discovery_key(&self) -> [u8; 32] {
        let mut mac = blake2::Blake2bMac::<U32>::new_from_slice(&self.0)
            .expect("32-byte keys are valid BLAKE2b keys");
        mac.update(b"hypercore");
        mac.finalize().into_bytes().into()
    }

    /// Parses a bare key (hex or z-base32), trimming surrounding whitespace.
    pub fn parse(input: &str) -> Result<Key, KeyError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.len() == 64 {
            let mut out = [0u8; 32];
            if hex::decode_to_slice(s, &mut out).is_ok() {
                return Ok(Key(out));
            }
        }
        if s.len() == 52 {
            if let Some(bytes) = z32_decode(&s.to_ascii_lowercase()) {
                return Ok(Key(bytes));
            }
        }
        Err(KeyError::Malformed(truncate_for_error(s)))
    }

    /// Parses a key or a link: `hyper://KEY[/path]`, `dat://KEY[/path]`, `KEY`.
    pub fn parse_link(input: &str) -> Result<Key, KeyError> {
        let s = input.trim();
        let lower = s.to_ascii_lowercase();
        let rest = if lower.starts_with("hyper://") {
            &s["hyper://".len()..]
        } else if lower.starts_with("dat://") {
            &s["dat://".len()..]
        } else {
            return Key::parse(s);
        };
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .split('+') // dat://KEY+VERSION
            .next()
            .unwrap_or_default();
        Key::parse(host)
    }

    /// Finds the first link or bare key in a text (a `.url` file, a link file written with
    /// `echo`, a `[InternetShortcut]` file). Returns `None` if there is none.
    pub fn find_in_text(text: &str) -> Option<Key> {
        for raw in
            text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
        {
            // `URL=hyper://...` in .url files
            let token = raw
                .rsplit_once('=')
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty())
                .unwrap_or(raw);
            for candidate in [raw, token] {
                if let Ok(key) = Key::parse_link(candidate) {
                    return Some(key);
                }
            }
        }
        None
    }
}

fn truncate_for_error(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::parse_link(s)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Key::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// z-base32 encoding of any bytes (32 bytes → 52 characters; the last one carries the
/// leftover bits, zero-padded).
pub(crate) fn z32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = ((acc << 8) | b as u32) & 0xffff;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(Z32_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(Z32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes z-base32 made by [`z32_encode`]; `None` on a character outside the alphabet or
/// non-zero padding bits.
pub(crate) fn z32_decode_vec(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = Z32_ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Fewer than 5 leftover bits, all zero: otherwise a character too many or a typo.
    if bits >= 5 || acc != 0 {
        return None;
    }
    Some(out)
}

fn z32_decode(s: &str) -> Option<[u8; 32]> {
    // 52 * 5 = 260 bits: 32 bytes and 4 padding bits, which must be zero.
    z32_decode_vec(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Key {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        Key(b)
    }

    #[test]
    fn hex_and_z32_round_trip() {
        let k = sample();
        assert_eq!(k.to_hex().len(), 64);
        assert_eq!(k.to_z32().len(), 52);
        assert_eq!(Key::parse(&k.to_hex()).unwrap(), k);
        assert_eq!(Key::parse(&k.to_z32()).unwrap(), k);
        assert_eq!(Key::parse(&k.to_hex().to_uppercase()).unwrap(), k);
    }

    #[test]
    fn links() {
        let k = sample();
        for s in [
            format!("hyper://{}", k.to_hex()),
            format!("hyper://{}/", k.to_z32()),
            format!("dat://{}/index.html", k.to_hex()),
            format!("dat://{}+12/x", k.to_hex()),
            format!("  HYPER://{}\n", k.to_hex()),
        ] {
            assert_eq!(Key::parse_link(&s).unwrap(), k, "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "abc",
            &"g".repeat(64),
            &"0".repeat(63),
            &"l".repeat(52),
            "hyper://",
            "https://example.com",
        ] {
            assert!(Key::parse_link(s).is_err(), "{s:?}");
        }
        // non-zero padding bits in the last z32 char
        let mut z = sample().to_z32();
        z.pop();
        z.push('9');
        assert!(Key::parse(&z).is_err());
    }

    #[test]
    fn finds_keys_in_text() {
        let k = sample();
        let url_file = format!("[InternetShortcut]\nURL=hyper://{}/\n", k.to_hex());
        assert_eq!(Key::find_in_text(&url_file), Some(k));
        assert_eq!(
            Key::find_in_text(&format!("my blog: dat://{} yay", k.to_z32())),
            Some(k)
        );
        assert_eq!(Key::find_in_text("nothing here"), None);
    }

    #[test]
    fn discovery_key_differs_from_key() {
        let k = sample();
        assert_ne!(k.discovery_key(), k.0);
        assert_eq!(k.discovery_key(), k.discovery_key());
    }
}
