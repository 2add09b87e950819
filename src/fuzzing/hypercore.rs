//! Fuzz targets of the hypercore replication protocol's decoders (crate `hypercore-wire`):
//! protomux frames, hypercore messages and manifests, stream framing, and a whole session
//! fed hostile frames. The crate owns the checks; these names put them in [`super::TARGETS`]
//! so the regression corpus is replayed with every other target.

/// Target `hypercore_message`: [`hypercore_wire::fuzzing::message`].
pub fn hypercore_message(data: &[u8]) {
    hypercore_wire::fuzzing::message(data)
}

/// Target `hypercore_manifest`: [`hypercore_wire::fuzzing::manifest`].
pub fn hypercore_manifest(data: &[u8]) {
    hypercore_wire::fuzzing::manifest(data)
}

/// Target `protomux_frame`: [`hypercore_wire::fuzzing::frame`].
pub fn protomux_frame(data: &[u8]) {
    hypercore_wire::fuzzing::frame(data)
}

/// Target `stream_framing`: [`hypercore_wire::fuzzing::stream`].
pub fn stream_framing(data: &[u8]) {
    hypercore_wire::fuzzing::stream(data)
}

/// Target `hypercore_session`: [`hypercore_wire::fuzzing::session`].
pub fn hypercore_session(data: &[u8]) {
    hypercore_wire::fuzzing::session(data)
}
