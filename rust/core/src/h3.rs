//! Sans-IO wire details of HTTP/3 and WebTransport: draft-02 as Chrome and Firefox speak
//! it, and the capsules and settings of drafts 07..15 (see `draft.rs` for negotiation).
//!
//! QPACK (header blocks) and varints are `wtransport-proto`'s. Frames, settings, capsules
//! and stream preambles are our own, because wtransport-proto 0.7 is wrong for a server that speaks
//! every draft at once: its frame parser refuses unknown frame types (RFC 9114 9 says
//! ignore them, and browsers send reserved "grease" types) and refuses payloads over
//! 4 KiB, and its `Settings` keeps only the ids it knows, dropping the ones draft
//! negotiation reads (SETTINGS_WT_MAX_SESSIONS 0x14e9cd29, SETTINGS_WT_ENABLED
//! 0x2c7cf000, the flow-control initial limits 0x2b61..0x2b65). Its capsules are only
//! CLOSE_WEBTRANSPORT_SESSION (not DRAIN or the drafts' flow-control capsules), and its
//! stream-header parser fails on unknown stream types, which RFC 9114 6.2 says to ignore
//! (stop) and go on.

use wtransport_proto::bytes::{BytesReader, BytesWriter};
use wtransport_proto::frame::Frame;
use wtransport_proto::headers::Headers;
use wtransport_proto::varint::VarInt;

/// Unidirectional stream types.
pub const STREAM_CONTROL: u64 = 0x00;
/// QPACK encoder stream.
pub const STREAM_QPACK_ENCODER: u64 = 0x02;
/// QPACK decoder stream.
pub const STREAM_QPACK_DECODER: u64 = 0x03;
/// WebTransport unidirectional stream.
pub const STREAM_WT_UNI: u64 = 0x54;

/// Frame types.
pub const FRAME_DATA: u64 = 0x00;
/// HEADERS frame.
pub const FRAME_HEADERS: u64 = 0x01;
/// SETTINGS frame.
pub const FRAME_SETTINGS: u64 = 0x04;
/// GOAWAY frame.
pub const FRAME_GOAWAY: u64 = 0x07;
/// WEBTRANSPORT_STREAM signal that starts a WebTransport bidirectional stream.
pub const FRAME_WT_BIDI: u64 = 0x41;

/// CLOSE_WEBTRANSPORT_SESSION capsule.
pub const CAPSULE_CLOSE_SESSION: u64 = 0x2843;
/// DRAIN_WEBTRANSPORT_SESSION capsule (all drafts).
pub const CAPSULE_DRAIN_SESSION: u64 = 0x78ae;
/// WT_MAX_DATA capsule (drafts 13+).
pub const CAPSULE_WT_MAX_DATA: u64 = 0x190b_4d3d;
/// WT_MAX_STREAM_DATA capsule: defined for HTTP/2 only, prohibited over HTTP/3.
pub const CAPSULE_WT_MAX_STREAM_DATA: u64 = 0x190b_4d3e;
/// WT_MAX_STREAMS capsule for bidirectional streams.
pub const CAPSULE_WT_MAX_STREAMS_BIDI: u64 = 0x190b_4d3f;
/// WT_MAX_STREAMS capsule for unidirectional streams.
pub const CAPSULE_WT_MAX_STREAMS_UNI: u64 = 0x190b_4d40;
/// WT_DATA_BLOCKED capsule.
pub const CAPSULE_WT_DATA_BLOCKED: u64 = 0x190b_4d41;
/// WT_STREAM_DATA_BLOCKED capsule: HTTP/2 only, prohibited over HTTP/3.
pub const CAPSULE_WT_STREAM_DATA_BLOCKED: u64 = 0x190b_4d42;
/// WT_STREAMS_BLOCKED capsule for bidirectional streams.
pub const CAPSULE_WT_STREAMS_BLOCKED_BIDI: u64 = 0x190b_4d43;
/// WT_STREAMS_BLOCKED capsule for unidirectional streams.
pub const CAPSULE_WT_STREAMS_BLOCKED_UNI: u64 = 0x190b_4d44;

/// SETTINGS identifiers.
pub const SETTING_QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
/// SETTINGS_QPACK_BLOCKED_STREAMS.
pub const SETTING_QPACK_BLOCKED_STREAMS: u64 = 0x07;
/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 9220).
pub const SETTING_ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
/// SETTINGS_H3_DATAGRAM (RFC 9297).
pub const SETTING_H3_DATAGRAM: u64 = 0x33;
/// SETTINGS_ENABLE_WEBTRANSPORT, drafts 00..06 (what Chrome and Firefox speak: draft-02).
pub const SETTING_ENABLE_WEBTRANSPORT_DRAFT02: u64 = 0x2b60_3742;
/// SETTINGS_WEBTRANSPORT_MAX_SESSIONS of draft-07. Never sent: advertising it switches
/// Chrome to draft-07. Safari sends it (with 0x14e9cd29).
pub const SETTING_WT_MAX_SESSIONS_DRAFT07: u64 = 0xc671_706a;
/// SETTINGS_WT_MAX_SESSIONS, drafts 13..14 (Safari requires >= 1).
pub const SETTING_WT_MAX_SESSIONS: u64 = 0x14e9_cd29;
/// SETTINGS_WT_ENABLED, draft-15 and later.
pub const SETTING_WT_ENABLED: u64 = 0x2c7c_f000;
/// SETTINGS_WT_INITIAL_MAX_DATA (drafts 13+).
pub const SETTING_WT_INITIAL_MAX_DATA: u64 = 0x2b61;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI (drafts 13+).
pub const SETTING_WT_INITIAL_MAX_STREAMS_UNI: u64 = 0x2b64;
/// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (drafts 13+).
pub const SETTING_WT_INITIAL_MAX_STREAMS_BIDI: u64 = 0x2b65;

/// HTTP/3 error codes used here.
pub const H3_NO_ERROR: u32 = 0x100;
/// H3_GENERAL_PROTOCOL_ERROR.
pub const H3_GENERAL_PROTOCOL_ERROR: u32 = 0x101;
/// H3_STREAM_CREATION_ERROR.
pub const H3_STREAM_CREATION_ERROR: u32 = 0x103;
/// H3_REQUEST_REJECTED.
pub const H3_REQUEST_REJECTED: u32 = 0x10b;
/// H3_REQUEST_INCOMPLETE.
pub const H3_REQUEST_INCOMPLETE: u32 = 0x10d;
/// H3_MESSAGE_ERROR.
pub const H3_MESSAGE_ERROR: u32 = 0x10e;
/// H3_FRAME_ERROR.
pub const H3_FRAME_ERROR: u32 = 0x106;
/// H3_FRAME_UNEXPECTED.
pub const H3_FRAME_UNEXPECTED: u32 = 0x105;
/// H3_CLOSED_CRITICAL_STREAM.
pub const H3_CLOSED_CRITICAL_STREAM: u32 = 0x104;
/// H3_SETTINGS_ERROR.
pub const H3_SETTINGS_ERROR: u32 = 0x109;
/// H3_MISSING_SETTINGS.
pub const H3_MISSING_SETTINGS: u32 = 0x10a;
/// H3_DATAGRAM_ERROR (RFC 9297).
pub const H3_DATAGRAM_ERROR: u32 = 0x33;
/// WT_FLOW_CONTROL_ERROR (drafts 13+).
pub const WT_FLOW_CONTROL_ERROR: u32 = 0x045d_4487;
/// WT_BUFFERED_STREAM_REJECTED: a stream arrived before its session and the buffer was full.
pub const WT_BUFFERED_STREAM_REJECTED: u32 = 0x3994_bd84;
/// WEBTRANSPORT_SESSION_GONE.
pub const WT_SESSION_GONE: u32 = 0x170d_7b68;

/// Header fields as (name, value) pairs.
pub type Fields = Vec<(String, String)>;

/// Longest CLOSE_WEBTRANSPORT_SESSION reason, in bytes (the drafts' limit).
pub const MAX_CLOSE_REASON: usize = 1024;

/// Largest frame payload we accept on control and CONNECT streams.
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;

const WT_CODE_FIRST: u64 = 0x52e4_a40f_a8db;
const WT_CODE_LAST: u64 = 0x52e5_ac98_3162;

/// Maps a WebTransport application error code to the HTTP/3 code that goes on the wire
/// for stream resets and stop-sending.
pub fn wt_code_to_h3(code: u32) -> u64 {
    let n = u64::from(code);
    WT_CODE_FIRST + n + n / 0x1e
}

/// Maps an HTTP/3 stream error code back to a WebTransport code. Codes outside the
/// WebTransport range (or GREASE points inside it) map to 0.
pub fn h3_code_to_wt(h3: u64) -> u32 {
    if !(WT_CODE_FIRST..=WT_CODE_LAST).contains(&h3) || (h3 >= 0x21 && (h3 - 0x21) % 0x1f == 0) {
        return 0;
    }
    let shifted = h3 - WT_CODE_FIRST;
    u32::try_from(shifted - shifted / 0x1f).unwrap_or(0)
}

/// Appends a QUIC variable-length integer (wtransport-proto's encoding). Values over
/// 2^62-1 are clamped (callers only pass stream ids, lengths and codes, which are far
/// below).
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    let v = VarInt::try_from_u64(v).unwrap_or(VarInt::MAX);
    // A `Vec` grows: writing into it cannot run out of buffer.
    let _ = out.put_varint(v);
}

/// Parses a varint at the start of `buf` (wtransport-proto's decoding):
/// `Some((value, length))`, or `None` when `buf` is too short.
pub fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut rest = buf;
    let v = rest.get_varint()?;
    Some((v.into_inner(), buf.len() - rest.len()))
}

/// Length in bytes of a varint's encoding (tests).
#[cfg(test)]
pub fn varint_len(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16383 => 2,
        16384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// A whole HTTP/3 frame parsed out of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame type.
    pub kind: u64,
    /// Frame payload.
    pub payload: Vec<u8>,
}

/// Parses one frame from the start of `buf`: `Ok(Some((frame, consumed)))`, `Ok(None)`
/// when more bytes are needed, or an error when the payload exceeds `max_payload`.
pub fn parse_frame(buf: &[u8], max_payload: usize) -> Result<Option<(RawFrame, usize)>, String> {
    let Some((kind, a)) = get_varint(buf) else {
        return Ok(None);
    };
    let Some((len, b)) = get_varint(&buf[a..]) else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(|_| "frame length overflow".to_string())?;
    if len > max_payload {
        return Err(format!(
            "frame of type {kind:#x} with {len} bytes exceeds {max_payload}"
        ));
    }
    let start = a + b;
    if buf.len() < start + len {
        return Ok(None);
    }
    let payload = buf[start..start + len].to_vec();
    Ok(Some((RawFrame { kind, payload }, start + len)))
}

/// Encodes a frame (type, length, payload).
pub fn encode_frame(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    put_varint(&mut out, kind);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The control stream preamble with the default session credit (see
/// [`control_stream_preamble_with`]).
#[cfg(test)]
pub fn control_stream_preamble() -> Vec<u8> {
    control_stream_preamble_with(&LocalCredit::default(), 1)
}

/// Session-level flow-control credit we grant a peer (drafts 13+), as advertised in our
/// SETTINGS and kept up by WT_MAX_DATA / WT_MAX_STREAMS capsules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalCredit {
    /// Stream-body bytes the peer may send on all of a session's streams ahead of what
    /// we have taken in.
    pub max_data: u64,
    /// Bidirectional streams the peer may open ahead of those it already opened.
    pub max_streams_bidi: u64,
    /// Unidirectional streams the peer may open ahead of those it already opened.
    pub max_streams_uni: u64,
}

impl Default for LocalCredit {
    fn default() -> Self {
        Self {
            max_data: 16 * 1024 * 1024,
            max_streams_bidi: 100,
            max_streams_uni: 100,
        }
    }
}

/// The control stream preamble: stream type then our SETTINGS frame, advertising
/// extended CONNECT, HTTP datagrams and WebTransport for every draft we speak at once
/// (draft-02's ENABLE_WEBTRANSPORT for Chrome and Firefox, WT_MAX_SESSIONS for drafts
/// 13..14 and Safari, WT_ENABLED for draft-15), plus the initial session credit of the
/// flow-controlled drafts, and `max_sessions` as the sessions the connection may carry
/// (SETTINGS_WT_MAX_SESSIONS: 1 unless the server pools). Draft-07's 0xc671706a is
/// deliberately absent: it switches Chrome to draft-07.
pub fn control_stream_preamble_with(credit: &LocalCredit, max_sessions: usize) -> Vec<u8> {
    let settings: [(u64, u64); 10] = [
        (SETTING_QPACK_MAX_TABLE_CAPACITY, 0), // static table only
        (SETTING_QPACK_BLOCKED_STREAMS, 0),
        (SETTING_ENABLE_CONNECT_PROTOCOL, 1),
        (SETTING_H3_DATAGRAM, 1),
        (SETTING_ENABLE_WEBTRANSPORT_DRAFT02, 1),
        (
            SETTING_WT_MAX_SESSIONS,
            u64::try_from(max_sessions).unwrap_or(u64::MAX).max(1),
        ),
        (SETTING_WT_ENABLED, 1),
        (SETTING_WT_INITIAL_MAX_DATA, credit.max_data),
        (SETTING_WT_INITIAL_MAX_STREAMS_UNI, credit.max_streams_uni),
        (SETTING_WT_INITIAL_MAX_STREAMS_BIDI, credit.max_streams_bidi),
    ];
    let mut payload = Vec::new();
    for (id, value) in settings {
        put_varint(&mut payload, id);
        put_varint(&mut payload, value);
    }
    let mut out = vec![];
    put_varint(&mut out, STREAM_CONTROL);
    out.extend_from_slice(&encode_frame(FRAME_SETTINGS, &payload));
    out
}

/// Parses a SETTINGS payload into (id, value) pairs.
pub fn parse_settings(payload: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let mut out = vec![];
    let mut pos = 0;
    while pos < payload.len() {
        let (id, a) = get_varint(&payload[pos..]).ok_or("truncated setting id")?;
        pos += a;
        let (value, b) = get_varint(&payload[pos..]).ok_or("truncated setting value")?;
        pos += b;
        out.push((id, value));
    }
    Ok(out)
}

/// Encodes a HEADERS frame (QPACK with the static table only).
pub fn encode_headers(fields: &[(String, String)]) -> Vec<u8> {
    let headers: Headers = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let frame = headers.generate_frame();
    encode_frame(FRAME_HEADERS, frame.payload())
}

/// Decodes a HEADERS frame payload into its fields.
pub fn decode_headers(payload: &[u8]) -> Result<Vec<(String, String)>, String> {
    // wtransport-proto 0.7.2's QPACK integer decoder shifts without a check: an integer
    // with ten or more continuation bytes panics where overflow checks are on (found by
    // the property tests). Peer input must never panic, so a panic is a decoding error.
    let decoded = std::panic::catch_unwind(|| {
        let frame = Frame::new_headers(std::borrow::Cow::Borrowed(payload));
        Headers::with_frame(&frame).map_err(|e| format!("QPACK: {e:?}"))
    });
    let headers = decoded.map_err(|_| "QPACK: malformed integer".to_string())??;
    Ok(headers
        .as_ref()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// The DATA frame carrying a CLOSE_WEBTRANSPORT_SESSION capsule. The reason is cut to
/// 1024 bytes (on a character boundary), the protocol's limit.
pub fn encode_close_capsule(code: u32, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(&reason.as_bytes()[..cut]);
    let mut capsule = vec![];
    put_varint(&mut capsule, CAPSULE_CLOSE_SESSION);
    put_varint(&mut capsule, body.len() as u64);
    capsule.extend_from_slice(&body);
    encode_frame(FRAME_DATA, &capsule)
}

/// Encodes one capsule whose body is a single varint, wrapped in a DATA frame.
pub fn encode_varint_capsule(kind: u64, value: u64) -> Vec<u8> {
    let mut body = vec![];
    put_varint(&mut body, value);
    let mut capsule = vec![];
    put_varint(&mut capsule, kind);
    put_varint(&mut capsule, body.len() as u64);
    capsule.extend_from_slice(&body);
    encode_frame(FRAME_DATA, &capsule)
}

/// The DATA frame carrying an (empty) DRAIN_WEBTRANSPORT_SESSION capsule.
pub fn encode_drain_capsule() -> Vec<u8> {
    let mut capsule = vec![];
    put_varint(&mut capsule, CAPSULE_DRAIN_SESSION);
    put_varint(&mut capsule, 0);
    encode_frame(FRAME_DATA, &capsule)
}

/// A capsule read from the CONNECT stream's DATA.
#[derive(Debug, PartialEq, Eq)]
pub enum Capsule {
    /// CLOSE_WEBTRANSPORT_SESSION with its code and reason.
    Close(u32, String),
    /// DRAIN_WEBTRANSPORT_SESSION.
    Drain,
    /// WT_MAX_DATA.
    MaxData(u64),
    /// WT_MAX_STREAMS for bidirectional streams.
    MaxStreamsBidi(u64),
    /// WT_MAX_STREAMS for unidirectional streams.
    MaxStreamsUni(u64),
    /// WT_DATA_BLOCKED.
    DataBlocked(u64),
    /// WT_STREAMS_BLOCKED, bidirectional (`true`) or unidirectional.
    StreamsBlocked(bool, u64),
    /// WT_MAX_STREAM_DATA or WT_STREAM_DATA_BLOCKED: prohibited over HTTP/3.
    Prohibited(u64),
    /// Any other capsule (ignored).
    Other(u64),
}

fn varint_body(kind: u64, body: &[u8]) -> Result<u64, String> {
    match get_varint(body) {
        Some((v, n)) if n == body.len() => Ok(v),
        _ => Err(format!(
            "capsule {kind:#x} does not hold exactly one varint"
        )),
    }
}

/// Parses capsules from accumulated CONNECT-stream DATA. Returns the parsed capsules and
/// the number of bytes consumed; a partial capsule stays in the buffer.
pub fn parse_capsules(buf: &[u8]) -> Result<(Vec<Capsule>, usize), String> {
    let mut out = vec![];
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        let Some((kind, a)) = get_varint(rest) else {
            break;
        };
        let Some((len, b)) = get_varint(&rest[a..]) else {
            break;
        };
        let len = usize::try_from(len).map_err(|_| "capsule length overflow".to_string())?;
        if len > MAX_CONTROL_FRAME {
            return Err(format!("capsule of {len} bytes is too large"));
        }
        if rest.len() < a + b + len {
            break;
        }
        let body = &rest[a + b..a + b + len];
        let capsule = match kind {
            CAPSULE_CLOSE_SESSION => {
                if body.len() < 4 {
                    return Err("CLOSE_WEBTRANSPORT_SESSION shorter than 4 bytes".into());
                }
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let reason = &body[4..];
                if reason.len() > MAX_CLOSE_REASON {
                    return Err(format!(
                        "CLOSE_WEBTRANSPORT_SESSION reason of {} bytes (at most {MAX_CLOSE_REASON})",
                        reason.len()
                    ));
                }
                let reason = std::str::from_utf8(reason)
                    .map_err(|_| "CLOSE_WEBTRANSPORT_SESSION reason is not UTF-8".to_string())?;
                Capsule::Close(code, reason.to_string())
            }
            CAPSULE_DRAIN_SESSION => Capsule::Drain,
            CAPSULE_WT_MAX_DATA => Capsule::MaxData(varint_body(kind, body)?),
            CAPSULE_WT_MAX_STREAMS_BIDI => Capsule::MaxStreamsBidi(varint_body(kind, body)?),
            CAPSULE_WT_MAX_STREAMS_UNI => Capsule::MaxStreamsUni(varint_body(kind, body)?),
            CAPSULE_WT_DATA_BLOCKED => Capsule::DataBlocked(varint_body(kind, body)?),
            CAPSULE_WT_STREAMS_BLOCKED_BIDI => {
                Capsule::StreamsBlocked(true, varint_body(kind, body)?)
            }
            CAPSULE_WT_STREAMS_BLOCKED_UNI => {
                Capsule::StreamsBlocked(false, varint_body(kind, body)?)
            }
            CAPSULE_WT_MAX_STREAM_DATA | CAPSULE_WT_STREAM_DATA_BLOCKED => {
                Capsule::Prohibited(kind)
            }
            other => Capsule::Other(other),
        };
        out.push(capsule);
        pos += a + b + len;
    }
    Ok((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip() {
        for v in [
            0u64,
            63,
            64,
            16383,
            16384,
            (1 << 30) - 1,
            1 << 30,
            (1 << 62) - 1,
        ] {
            let mut out = vec![];
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(get_varint(&out), Some((v, out.len())));
            assert_eq!(get_varint(&out[..out.len() - 1]), None);
        }
    }

    #[test]
    fn wt_code_mapping_roundtrips_and_skips_grease() {
        for code in [0u32, 1, 29, 30, 31, 255, 65535, u32::MAX] {
            let h3 = wt_code_to_h3(code);
            assert!(h3 <= WT_CODE_LAST);
            assert_ne!((h3 - 0x21) % 0x1f, 0, "mapped onto a GREASE point");
            assert_eq!(h3_code_to_wt(h3), code);
        }
        assert_eq!(h3_code_to_wt(7), 0);
    }

    #[test]
    fn headers_roundtrip() {
        let fields = vec![
            (":status".to_string(), "401".to_string()),
            ("www-authenticate".to_string(), "Bearer".to_string()),
        ];
        let frame = encode_headers(&fields);
        let (raw, used) = parse_frame(&frame, MAX_CONTROL_FRAME).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(raw.kind, FRAME_HEADERS);
        let mut back = decode_headers(&raw.payload).unwrap();
        back.sort();
        let mut want = fields.clone();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn close_capsule_roundtrip_and_partial() {
        let frame = encode_close_capsule(42, "bye");
        let (raw, _) = parse_frame(&frame, MAX_CONTROL_FRAME).unwrap().unwrap();
        assert_eq!(raw.kind, FRAME_DATA);
        let (caps, used) = parse_capsules(&raw.payload).unwrap();
        assert_eq!(caps, vec![Capsule::Close(42, "bye".into())]);
        assert_eq!(used, raw.payload.len());
        let (caps, used) = parse_capsules(&raw.payload[..3]).unwrap();
        assert!(caps.is_empty());
        assert_eq!(used, 0);
    }

    #[test]
    fn oversize_frame_is_an_error_not_a_hang() {
        let mut buf = vec![];
        put_varint(&mut buf, FRAME_HEADERS);
        put_varint(&mut buf, 1 << 20);
        assert!(parse_frame(&buf, MAX_CONTROL_FRAME).is_err());
    }

    #[test]
    fn settings_parse() {
        let pre = control_stream_preamble();
        let (raw, _) = parse_frame(&pre[1..], MAX_CONTROL_FRAME).unwrap().unwrap();
        let s = parse_settings(&raw.payload).unwrap();
        assert!(s.contains(&(0x2b60_3742, 1)));
        assert!(s.contains(&(SETTING_WT_MAX_SESSIONS, 1)));
        assert!(s.contains(&(SETTING_WT_ENABLED, 1)));
        assert!(s.contains(&(SETTING_H3_DATAGRAM, 1)));
        assert!(s.contains(&(SETTING_ENABLE_CONNECT_PROTOCOL, 1)));
        assert!(s
            .iter()
            .all(|(id, _)| *id != SETTING_WT_MAX_SESSIONS_DRAFT07));
        let credit = LocalCredit::default();
        assert!(s.contains(&(SETTING_WT_INITIAL_MAX_DATA, credit.max_data)));
    }

    #[test]
    fn flow_capsules_roundtrip_and_unknown_ones_are_ignored() {
        let mut data = vec![];
        for frame in [
            encode_varint_capsule(CAPSULE_WT_MAX_DATA, 1 << 20),
            encode_varint_capsule(CAPSULE_WT_MAX_STREAMS_BIDI, 7),
            encode_varint_capsule(CAPSULE_WT_STREAMS_BLOCKED_UNI, 3),
            encode_varint_capsule(0x1234_5678, 9),
            encode_drain_capsule(),
        ] {
            let (raw, _) = parse_frame(&frame, MAX_CONTROL_FRAME).unwrap().unwrap();
            data.extend_from_slice(&raw.payload);
        }
        let (caps, used) = parse_capsules(&data).unwrap();
        assert_eq!(used, data.len());
        assert_eq!(
            caps,
            vec![
                Capsule::MaxData(1 << 20),
                Capsule::MaxStreamsBidi(7),
                Capsule::StreamsBlocked(false, 3),
                Capsule::Other(0x1234_5678),
                Capsule::Drain,
            ]
        );
        // A flow capsule whose body is not one varint is an error, not a panic.
        let mut bad = vec![];
        put_varint(&mut bad, CAPSULE_WT_MAX_DATA);
        put_varint(&mut bad, 0);
        assert!(parse_capsules(&bad).is_err());
    }
}
