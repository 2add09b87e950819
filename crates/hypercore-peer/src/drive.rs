//! The one piece of the hyperdrive layout a mirror needs to replicate a drive: the blobs
//! core's key, from the db core's first block (a Hyperbee protobuf `Header { 1: protocol,
//! 2: Metadata { 1: contentFeed } }`), or derived from the db core's manifest (hyperdrive
//! 12/13 on manifest-keyed cores).

use crate::error::PeerError;
use hypercore_engine::Store;

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, PeerError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(PeerError::NotADrive("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PeerError::NotADrive("varint too long"))
}

/// Length-delimited fields of a protobuf message: (field number, bytes).
fn fields(buf: &[u8]) -> Result<Vec<(u64, &[u8])>, PeerError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        match tag & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)
                    .map_err(|_| PeerError::NotADrive("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(PeerError::NotADrive("field past the end"))?;
                out.push((tag >> 3, buf.get(pos..end).unwrap_or_default()));
                pos = end;
            }
            _ => return Err(PeerError::NotADrive("unexpected wire type")),
        }
    }
    Ok(out)
}

/// The blobs key (`contentFeed`) in a Hyperbee header block, if it names one.
pub fn content_feed(header: &[u8]) -> Result<Option<[u8; 32]>, PeerError> {
    let top = fields(header)?;
    let protocol = top.iter().find(|(f, _)| *f == 1).map(|(_, b)| *b);
    if protocol != Some(b"hyperbee".as_slice()) {
        return Err(PeerError::NotADrive("not a hyperbee header"));
    }
    let Some((_, metadata)) = top.iter().find(|(f, _)| *f == 2) else {
        return Ok(None);
    };
    for (f, b) in fields(metadata)? {
        if f == 1 {
            return <[u8; 32]>::try_from(b)
                .map(Some)
                .map_err(|_| PeerError::NotADrive("contentFeed is not 32 bytes"));
        }
    }
    Ok(None)
}

/// The blobs core key of the drive whose db core is `db_key`: the header's `contentFeed`
/// when block 0 is held and names one, else derived from the db core's manifest.
pub fn blobs_key(store: &Store, db_key: &[u8; 32]) -> Result<Option<[u8; 32]>, PeerError> {
    if let Some(header) = store.get(db_key, 0)? {
        if let Some(k) = content_feed(&header)? {
            return Ok(Some(k));
        }
    }
    let info = store.info(db_key)?;
    match (&info.manifest, info.compat) {
        (Some(m), false) => Ok(m.blobs_key(db_key)?),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_feed_and_refuses_garbage() {
        let mut meta = vec![0x0a, 32];
        meta.extend([9u8; 32]);
        let mut h = vec![0x0a, 8];
        h.extend(b"hyperbee");
        h.push(0x12);
        h.push(meta.len() as u8);
        h.extend(&meta);
        assert_eq!(content_feed(&h).unwrap(), Some([9; 32]));
        assert!(content_feed(&[0x0a, 200]).is_err());
        assert!(content_feed(b"").is_err());
        assert!(content_feed(&[0xff; 12]).is_err());
    }
}
