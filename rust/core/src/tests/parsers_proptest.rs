//! Property tests of the wire parsers fastwt writes itself (`crate::h3`): varints,
//! frames, SETTINGS, capsules (CLOSE_WEBTRANSPORT_SESSION), header blocks, error-code
//! mapping, and the client's URL parser.
//!
//! For each: arbitrary bytes never panic and never report consuming more than given;
//! encode → parse round trips; a valid encoding cut at every point parses to the same
//! result as the whole ("need more" until complete, as the frame reader in frame.rs
//! rely on); over-limit lengths are errors given just their header.
//!
//! Cases per property: `PROPTEST_CASES` (default 256), so `cargo test` stays quick;
//! with `CI` set the seed is fixed (`PROPTEST_RNG_SEED` overrides it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::frame::FrameReader;
use crate::h3::{self, Capsule, RawFrame};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

const VARINT_MAX: u64 = (1 << 62) - 1;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Failing inputs are kept as plain #[test]s below, not as regression files.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        rng_seed: seed(),
        ..Config::default()
    }
}

/// The same cases on every CI run (`CI` set), unless `PROPTEST_RNG_SEED` says otherwise;
/// fresh ones elsewhere.
fn seed() -> RngSeed {
    match (std::env::var_os("CI"), std::env::var("PROPTEST_RNG_SEED")) {
        (Some(_), Err(_)) => RngSeed::Fixed(0x6661_7374_7774),
        _ => Config::default().rng_seed,
    }
}

/// Bytes biased towards the values that steer a varint or QPACK integer: length
/// prefixes 0b00..0b11, all-ones prefixes and continuation bits.
fn wire_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        1 => prop::sample::select(vec![
            0x00u8, 0x01, 0x1f, 0x3f, 0x40, 0x41, 0x54, 0x68, 0x7f, 0x80, 0xbf, 0xc0, 0xfe,
            0xff,
        ]),
    ]
}

fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(wire_byte(), 0..=max)
}

/// QPACK integers (RFC 9204 §4.1.1) with up to this many continuation bytes. 10 or more
/// make wtransport-proto's decoder shift past 64 bits: a panic where overflow checks are
/// on (debug builds). See `qpack_integer_with_ten_continuation_bytes` (ignored, a known
/// bug); raise this to 12, and drop the `prop_assume!` in
/// `decode_headers_on_arbitrary_bytes`, once that is fixed (with 12 the property finds
/// the bug within a few hundred cases).
const KNOWN_QPACK_INTEGER_BUG: usize = 9;

/// A piece of a QPACK field section: a field-line or prefix byte, an integer with an
/// all-ones prefix and continuation bytes, or a length-prefixed (maybe Huffman) string.
fn qpack_piece(max_continuations: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        wire_byte().prop_map(|b| vec![b]),
        (
            prop::sample::select(vec![0xffu8, 0x7f, 0x3f, 0x1f, 0x0f, 0x07, 0xcf, 0x5f, 0x2f]),
            vec(0x80u8..=0xff, 0..=max_continuations),
            0u8..0x80,
        )
            .prop_map(|(first, cont, last)| [vec![first], cont, vec![last]].concat()),
        (any::<bool>(), vec(any::<u8>(), 0..20)).prop_map(|(huffman, s)| {
            let mut out = vec![(u8::from(huffman) << 7) | s.len() as u8];
            out.extend_from_slice(&s);
            out
        }),
    ]
}

/// A varint value over the whole range, each encoded length equally likely.
fn varint_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        64u64..16384,
        16384u64..(1 << 30),
        (1u64 << 30)..=VARINT_MAX,
        prop::sample::select(vec![
            0,
            63,
            64,
            16383,
            16384,
            (1 << 30) - 1,
            1 << 30,
            VARINT_MAX
        ]),
    ]
}

/// A value with an encoded length of at least its minimal one (peers may send
/// non-minimal varints; RFC 9000 §16 allows it).
fn varint_with_len() -> impl Strategy<Value = (u64, usize)> {
    varint_value().prop_flat_map(|v| {
        let min = h3::varint_len(v);
        let lens: Vec<usize> = [1usize, 2, 4, 8]
            .into_iter()
            .filter(|l| *l >= min)
            .collect();
        (Just(v), prop::sample::select(lens))
    })
}

/// Encodes `v` on exactly `len` bytes (1, 2, 4 or 8).
fn varint_at(v: u64, len: usize) -> Vec<u8> {
    let prefix = (len.trailing_zeros() as u8) << 6;
    let mut bytes = v.to_be_bytes()[8 - len..].to_vec();
    bytes[0] |= prefix;
    bytes
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = vec![];
    h3::put_varint(&mut out, v);
    out
}

fn capsule_bytes(kind: u64, body: &[u8]) -> Vec<u8> {
    let mut out = varint(kind);
    out.extend_from_slice(&varint(body.len() as u64));
    out.extend_from_slice(body);
    out
}

/// A capsule as the reader reports it, with its encoding.
fn capsule() -> impl Strategy<Value = (Capsule, Vec<u8>)> {
    prop_oneof![
        (any::<u32>(), reason(h3::MAX_CLOSE_REASON)).prop_map(|(code, reason)| {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            let bytes = capsule_bytes(h3::CAPSULE_CLOSE_SESSION, &body);
            (Capsule::Close(code, reason), bytes)
        }),
        (
            varint_value().prop_filter("not CLOSE", |k| *k != h3::CAPSULE_CLOSE_SESSION),
            vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, body)| (Capsule::Other(kind), capsule_bytes(kind, &body))),
    ]
}

/// A UTF-8 string of at most `max` bytes, multi-byte characters included.
fn reason(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..=max).prop_map(move |chars| {
            let mut s = String::new();
            for c in chars {
                if s.len() + c.len_utf8() > max {
                    break;
                }
                s.push(c);
            }
            s
        }),
        // Exactly at the limit.
        Just("r".repeat(max)),
        Just("é".repeat(max / 2)),
    ]
}

/// Runs `chunks` through the CONNECT-stream loop's steps (driver.rs
/// `connect_stream_loop` over frame.rs's `FrameReader`): frames out of the byte buffer, DATA payloads into the capsule
/// buffer, capsules out of that; consumed bytes drained each time.
fn read_connect_stream(chunks: &[&[u8]]) -> Result<(Vec<Capsule>, usize, usize), String> {
    let mut frames = FrameReader::default();
    let mut data = Vec::new();
    let mut capsules = Vec::new();
    for chunk in chunks {
        frames.extend(chunk);
        while let Some(frame) = frames.buffered().map_err(|e| format!("{e:?}"))? {
            if frame.kind != h3::FRAME_DATA {
                continue;
            }
            data.extend_from_slice(&frame.payload);
            let (got, used) = h3::parse_capsules(&data)?;
            assert!(used <= data.len());
            data.drain(..used);
            capsules.extend(got);
        }
    }
    Ok((capsules, frames.pending(), data.len()))
}

/// Splits `bytes` at the given cut points (sorted, deduplicated, within range).
fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = vec![];
    let mut from = 0;
    for c in cuts {
        out.push(&bytes[from..c]);
        from = c;
    }
    out.push(&bytes[from..]);
    out
}

fn longest_high_bit_run(bytes: &[u8]) -> usize {
    bytes
        .split(|b| b & 0x80 == 0)
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

fn sorted(mut fields: Vec<(String, String)>) -> Vec<(String, String)> {
    fields.sort();
    fields
}

proptest! {
    #![proptest_config(config())]

    // ---- varints ----

    #[test]
    fn varint_round_trips_over_the_whole_range(v in varint_value()) {
        let bytes = varint(v);
        prop_assert_eq!(bytes.len(), h3::varint_len(v));
        prop_assert_eq!(h3::get_varint(&bytes), Some((v, bytes.len())));
        // Trailing bytes are not consumed.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xff, 0x00]);
        prop_assert_eq!(h3::get_varint(&longer), Some((v, bytes.len())));
        // Every proper prefix needs more.
        for cut in 0..bytes.len() {
            prop_assert_eq!(h3::get_varint(&bytes[..cut]), None);
        }
    }

    #[test]
    fn non_minimal_varints_parse((v, len) in varint_with_len()) {
        let bytes = varint_at(v, len);
        prop_assert_eq!(h3::get_varint(&bytes), Some((v, len)));
    }

    #[test]
    fn put_varint_clamps_values_over_the_range(v in (VARINT_MAX + 1)..=u64::MAX) {
        prop_assert_eq!(h3::get_varint(&varint(v)), Some((VARINT_MAX, 8)));
    }

    #[test]
    fn get_varint_on_arbitrary_bytes(buf in wire_bytes(12)) {
        match h3::get_varint(&buf) {
            Some((v, len)) => {
                prop_assert!([1, 2, 4, 8].contains(&len));
                prop_assert!(len <= buf.len());
                prop_assert!(v <= VARINT_MAX);
                prop_assert_eq!(len, 1 << (buf[0] >> 6));
                prop_assert_eq!(varint_at(v, len), buf[..len].to_vec());
            }
            None => prop_assert!(buf.is_empty() || buf.len() < 1 << (buf[0] >> 6)),
        }
    }

    // ---- frames ----

    #[test]
    fn parse_frame_on_arbitrary_bytes(buf in wire_bytes(80), max in 0usize..100) {
        let whole = h3::parse_frame(&buf, max);
        if let Ok(Some((frame, used))) = &whole {
            prop_assert!(*used <= buf.len());
            prop_assert!(frame.payload.len() <= max);
            prop_assert_eq!(&buf[*used - frame.payload.len()..*used], &frame.payload[..]);
        }
        // Incremental: a prefix gives "need more", or the same answer as the whole once
        // it holds what the whole consumed (or, for an error, its header).
        for cut in 0..=buf.len() {
            let part = h3::parse_frame(&buf[..cut], max);
            match (&whole, &part) {
                (_, Ok(None)) => {}
                (Ok(Some((_, used))), Ok(Some(_))) => {
                    prop_assert!(cut >= *used);
                    prop_assert_eq!(&part, &whole);
                }
                (Err(_), Err(_)) => prop_assert_eq!(&part, &whole),
                _ => prop_assert!(false, "prefix {cut} gave {part:?}, whole gave {whole:?}"),
            }
        }
    }

    #[test]
    fn frame_round_trips_and_needs_more_until_complete(
        kind in varint_value(),
        payload in vec(any::<u8>(), 0..200),
    ) {
        let bytes = h3::encode_frame(kind, &payload);
        let want = RawFrame { kind, payload: payload.clone() };
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[0x00, 0x41]);
        prop_assert_eq!(
            h3::parse_frame(&trailing, h3::MAX_CONTROL_FRAME),
            Ok(Some((want, bytes.len())))
        );
        for cut in 0..bytes.len() {
            prop_assert_eq!(h3::parse_frame(&bytes[..cut], h3::MAX_CONTROL_FRAME), Ok(None));
        }
    }

    #[test]
    fn frame_sequence_read_in_arbitrary_chunks(
        frames in vec((varint_value(), vec(any::<u8>(), 0..100)), 0..6),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut bytes = vec![];
        for (kind, payload) in &frames {
            bytes.extend_from_slice(&h3::encode_frame(*kind, payload));
        }
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in split_at(&bytes, &cuts) {
            buf.extend_from_slice(chunk);
            while let Some((frame, used)) = h3::parse_frame(&buf, h3::MAX_CONTROL_FRAME).unwrap() {
                buf.drain(..used);
                got.push((frame.kind, frame.payload));
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn oversized_frame_is_an_error_from_its_header_alone(
        kind in varint_value(),
        max in 0usize..=h3::MAX_CONTROL_FRAME,
        over in 1u64..=VARINT_MAX,
        (kind_len, len_len) in (prop::sample::select(vec![1usize, 2, 4, 8]), prop::sample::select(vec![1usize, 2, 4, 8])),
    ) {
        let len = (max as u64).saturating_add(over).min(VARINT_MAX);
        let mut header = varint_at(kind, kind_len.max(h3::varint_len(kind)));
        header.extend_from_slice(&varint_at(len, len_len.max(h3::varint_len(len))));
        // No payload at all: the reader must not wait for (or buffer) `len` bytes.
        prop_assert!(h3::parse_frame(&header, max).is_err());
    }

    // ---- SETTINGS ----

    #[test]
    fn settings_round_trip_and_cuts(
        settings in vec((varint_with_len(), varint_with_len()), 0..12),
    ) {
        let mut payload = vec![];
        let mut ends = vec![0];
        for ((id, id_len), (value, value_len)) in &settings {
            payload.extend_from_slice(&varint_at(*id, *id_len));
            payload.extend_from_slice(&varint_at(*value, *value_len));
            ends.push(payload.len());
        }
        let want: Vec<(u64, u64)> = settings.iter().map(|((i, _), (v, _))| (*i, *v)).collect();
        prop_assert_eq!(h3::parse_settings(&payload), Ok(want.clone()));
        // A payload cut between two settings is the shorter list; cut inside one, an
        // error (a SETTINGS frame is parsed whole, never "need more").
        for cut in 0..payload.len() {
            match ends.iter().position(|e| *e == cut) {
                Some(n) => prop_assert_eq!(h3::parse_settings(&payload[..cut]), Ok(want[..n].to_vec())),
                None => prop_assert!(h3::parse_settings(&payload[..cut]).is_err()),
            }
        }
    }

    #[test]
    fn parse_settings_on_arbitrary_bytes(payload in wire_bytes(64)) {
        if let Ok(list) = h3::parse_settings(&payload) {
            prop_assert!(payload.len() >= 2 * list.len());
            prop_assert!(payload.len() <= 16 * list.len());
            prop_assert!(list.iter().all(|(i, v)| *i <= VARINT_MAX && *v <= VARINT_MAX));
        }
    }

    // ---- capsules ----

    #[test]
    fn close_capsule_round_trips(code in any::<u32>(), reason in reason(h3::MAX_CLOSE_REASON)) {
        let bytes = h3::encode_close_capsule(code, &reason);
        let (capsules, rest, data) = read_connect_stream(&[&bytes]).unwrap();
        prop_assert_eq!(capsules, vec![Capsule::Close(code, reason)]);
        prop_assert_eq!((rest, data), (0, 0));
    }

    #[test]
    fn long_close_reason_is_cut_on_a_character_boundary(
        code in any::<u32>(),
        reason in vec(any::<char>(), 1020..1400).prop_map(|c| c.into_iter().collect::<String>()),
    ) {
        let bytes = h3::encode_close_capsule(code, &reason);
        let (capsules, _, _) = read_connect_stream(&[&bytes]).unwrap();
        let [Capsule::Close(got_code, got)] = &capsules[..] else {
            return Err(TestCaseError::fail(format!("{capsules:?}")));
        };
        prop_assert_eq!(*got_code, code);
        prop_assert!(got.len() <= h3::MAX_CLOSE_REASON);
        prop_assert!(reason.starts_with(got.as_str()));
        // The longest such prefix: the next character would not have fitted.
        if let Some(next) = reason[got.len()..].chars().next() {
            prop_assert!(got.len() + next.len_utf8() > h3::MAX_CLOSE_REASON);
        }
    }

    #[test]
    fn capsules_cut_at_every_point(caps in vec(capsule(), 1..4)) {
        let mut bytes = vec![];
        let mut ends = vec![];
        for (_, encoded) in &caps {
            bytes.extend_from_slice(encoded);
            ends.push(bytes.len());
        }
        let want: Vec<Capsule> = caps.into_iter().map(|(c, _)| c).collect();
        for cut in 0..=bytes.len() {
            let complete = ends.iter().take_while(|e| **e <= cut).count();
            let used = if complete == 0 { 0 } else { ends[complete - 1] };
            let (got, got_used) = h3::parse_capsules(&bytes[..cut]).unwrap();
            prop_assert_eq!(got_used, used);
            prop_assert_eq!(&got[..], &want[..complete]);
        }
    }

    #[test]
    fn capsules_in_data_frames_read_in_arbitrary_chunks(
        caps in vec(capsule(), 0..5),
        frame_cuts in vec(any::<usize>(), 0..5),
        other_frames in vec((prop::sample::select(vec![0x21u64, 0x04, 0x7fff]), vec(any::<u8>(), 0..20)), 0..3),
        cuts in vec(any::<usize>(), 0..10),
    ) {
        // The capsule bytes go in DATA frames cut at arbitrary points (a capsule may span
        // frames), with other frames between them, and the stream arrives in arbitrary
        // chunks.
        let mut capsule_bytes = vec![];
        for (_, encoded) in &caps {
            capsule_bytes.extend_from_slice(encoded);
        }
        let mut stream = vec![];
        let mut others = other_frames.iter();
        for piece in split_at(&capsule_bytes, &frame_cuts) {
            stream.extend_from_slice(&h3::encode_frame(h3::FRAME_DATA, piece));
            if let Some((kind, payload)) = others.next() {
                stream.extend_from_slice(&h3::encode_frame(*kind, payload));
            }
        }
        let (got, rest, data) = read_connect_stream(&split_at(&stream, &cuts)).unwrap();
        let want: Vec<Capsule> = caps.into_iter().map(|(c, _)| c).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!((rest, data), (0, 0));
    }

    #[test]
    fn parse_capsules_on_arbitrary_bytes(buf in prop_oneof![
        wire_bytes(64),
        // A CLOSE_WEBTRANSPORT_SESSION type followed by arbitrary bytes.
        wire_bytes(64).prop_map(|b| [vec![0x68, 0x43], b].concat()),
    ]) {
        let whole = h3::parse_capsules(&buf);
        if let Ok((caps, used)) = &whole {
            prop_assert!(*used <= buf.len());
            // What was consumed parses alone to the same capsules; the rest is one
            // incomplete capsule.
            let (again, again_used) = h3::parse_capsules(&buf[..*used]).unwrap();
            prop_assert_eq!((&again, again_used), (caps, *used));
            prop_assert_eq!(h3::parse_capsules(&buf[*used..]), Ok((vec![], 0)));
        }
        for cut in 0..=buf.len() {
            let part = h3::parse_capsules(&buf[..cut]);
            match (&whole, &part) {
                (Ok((all, used)), Ok((some, some_used))) => {
                    prop_assert!(some_used <= used && *some_used <= cut);
                    prop_assert!(all.starts_with(some));
                    if cut >= *used {
                        prop_assert_eq!(&part, &whole);
                    }
                }
                (Err(_), Ok((_, used))) => prop_assert!(*used <= cut),
                (Err(_), Err(_)) => prop_assert_eq!(&part, &whole),
                (Ok(_), Err(_)) => prop_assert!(false, "prefix {cut} gave {part:?}, whole gave {whole:?}"),
            }
        }
    }

    #[test]
    fn capsule_limits(
        over in 1u64..=(VARINT_MAX - h3::MAX_CONTROL_FRAME as u64),
        kind in prop_oneof![Just(h3::CAPSULE_CLOSE_SESSION), varint_value()],
        long_reason in (h3::MAX_CLOSE_REASON + 1)..(h3::MAX_CONTROL_FRAME - 4),
        short_body in vec(any::<u8>(), 0..4),
        code in any::<u32>(),
    ) {
        // Over 64 KiB: an error from the header alone.
        let mut header = varint(kind);
        header.extend_from_slice(&varint(h3::MAX_CONTROL_FRAME as u64 + over));
        prop_assert!(h3::parse_capsules(&header).is_err());
        // A CLOSE reason over 1024 bytes: an error once complete, "need more" before.
        let mut body = code.to_be_bytes().to_vec();
        body.resize(4 + long_reason, b'x');
        let close = capsule_bytes(h3::CAPSULE_CLOSE_SESSION, &body);
        prop_assert!(h3::parse_capsules(&close).is_err());
        prop_assert_eq!(h3::parse_capsules(&close[..close.len() - 1]), Ok((vec![], 0)));
        // A CLOSE body too short for its code.
        let short = capsule_bytes(h3::CAPSULE_CLOSE_SESSION, &short_body);
        prop_assert!(h3::parse_capsules(&short).is_err());
    }

    #[test]
    fn close_reason_that_is_not_utf8_is_an_error(
        code in any::<u32>(),
        reason in vec(any::<u8>(), 1..=h3::MAX_CLOSE_REASON)
            .prop_filter("not UTF-8", |r| std::str::from_utf8(r).is_err()),
    ) {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(&reason);
        prop_assert!(h3::parse_capsules(&capsule_bytes(h3::CAPSULE_CLOSE_SESSION, &body)).is_err());
    }

    // ---- header blocks (QPACK, static table) ----

    #[test]
    fn header_list_round_trips(
        fields in prop::collection::btree_map(
            prop_oneof![
                prop::sample::select(vec![
                    ":method", ":protocol", ":scheme", ":authority", ":path", ":status",
                    "origin", "cookie", "content-type", "sec-webtransport-http3-draft02",
                    "access-control-allow-origin", "accept",
                ]).prop_map(str::to_string),
                "[a-z0-9-]{1,20}",
                any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            ],
            prop_oneof![
                prop::sample::select(vec!["", "CONNECT", "webtransport", "https", "/", "200", "404", "*", "text/plain"])
                    .prop_map(str::to_string),
                any::<String>(),
                vec(any::<char>(), 0..600).prop_map(|c| c.into_iter().collect::<String>()),
            ],
            0..10,
        )
    ) {
        let fields: Vec<(String, String)> = fields.into_iter().collect();
        let bytes = h3::encode_headers(&fields);
        let (frame, used) = h3::parse_frame(&bytes, h3::MAX_CONTROL_FRAME).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.kind, h3::FRAME_HEADERS);
        prop_assert_eq!(sorted(h3::decode_headers(&frame.payload).unwrap()), sorted(fields));
        for cut in 0..bytes.len() {
            prop_assert_eq!(h3::parse_frame(&bytes[..cut], h3::MAX_CONTROL_FRAME), Ok(None));
        }
    }

    #[test]
    fn decode_headers_on_arbitrary_bytes(payload in prop_oneof![
        wire_bytes(48),
        // After the two prefix integers (required insert count, base): field lines.
        wire_bytes(48).prop_map(|b| [vec![0x00, 0x00], b].concat()),
        vec(qpack_piece(KNOWN_QPACK_INTEGER_BUG), 0..8).prop_map(|p| p.concat()),
        vec(qpack_piece(KNOWN_QPACK_INTEGER_BUG), 0..8).prop_map(|p| [vec![0x00, 0x00], p.concat()].concat()),
    ]) {
        // The known bug needs ten bytes in a row with the continuation bit set; pieces
        // put side by side can make such a run.
        prop_assume!(longest_high_bit_run(&payload) < 10);
        if let Ok(fields) = h3::decode_headers(&payload) {
            // No amplification beyond the format's: a one-byte reference yields at most
            // the longest static-table entry (69 bytes), Huffman at most 8/5 per byte.
            let total: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
            prop_assert!(total <= 69 * payload.len(), "{total} from {}", payload.len());
        }
    }

    // ---- error codes, URLs ----

    #[test]
    fn error_codes_round_trip_and_any_h3_code_maps(code in any::<u32>(), h3_code in any::<u64>()) {
        let wire = h3::wt_code_to_h3(code);
        prop_assert!(wire <= VARINT_MAX);
        prop_assert_ne!((wire - 0x21) % 0x1f, 0, "a GREASE point");
        prop_assert_eq!(h3::h3_code_to_wt(wire), code);
        let back = h3::h3_code_to_wt(h3_code);
        prop_assert!(back == 0 || h3::wt_code_to_h3(back) == h3_code);
    }

    #[test]
    fn parse_url_never_panics(url in prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("https://{s}")),
        "https://[\\[\\]:0-9a-f]{0,12}[/?#:]{0,3}.{0,8}",
    ]) {
        let _ = crate::client::parse_url(&url);
    }

    #[test]
    fn parse_url_round_trips(
        host in prop_oneof!["[a-z0-9.-]{1,30}", "\\[[0-9a-f:]{2,20}\\]"],
        port in proptest::option::of(any::<u16>()),
        path in "(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,10}){0,4}",
        query in proptest::option::of("[A-Za-z0-9=&%-]{0,20}"),
    ) {
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let url = format!("https://{authority}{path}{query}#frag");
        let target = crate::client::parse_url(&url).unwrap();
        prop_assert_eq!(target.host, host.trim_start_matches('[').trim_end_matches(']'));
        prop_assert_eq!(target.port, port.unwrap_or(443));
        prop_assert_eq!(target.authority, authority);
        let want_path = if path.is_empty() { format!("/{query}") } else { format!("{path}{query}") };
        prop_assert_eq!(target.path, want_path);
    }
}

// ---- fixed cases ----

#[test]
fn control_stream_preamble_settings() {
    let pre = h3::control_stream_preamble();
    assert_eq!(h3::get_varint(&pre), Some((h3::STREAM_CONTROL, 1)));
    let (frame, used) = h3::parse_frame(&pre[1..], h3::MAX_CONTROL_FRAME)
        .unwrap()
        .unwrap();
    assert_eq!(used, pre.len() - 1);
    assert_eq!(frame.kind, h3::FRAME_SETTINGS);
    let settings = h3::parse_settings(&frame.payload).unwrap();
    for want in [
        (0x08, 1),
        (0x33, 1),
        (0x2b60_3742, 1),
        (0x14e9_cd29, 1),
        (0x2c7c_f000, 1),
    ] {
        assert!(settings.contains(&want), "{settings:?}");
    }
    // Draft-07's setting switches Chrome to draft-07: never sent.
    assert!(
        !settings.iter().any(|(id, _)| *id == 0xc671_706a),
        "{settings:?}"
    );
}

/// Found by `decode_headers_on_arbitrary_bytes` with more continuation bytes: a HEADERS
/// payload whose first QPACK integer has ten or more continuation bytes,
/// `ff 80 80 80 80 80 80 80 80 80 80 00`, panicked in wtransport-proto 0.7.2's
/// `Decoder::decode_integer` ("attempt to shift left with overflow") where overflow
/// checks are on. `h3::decode_headers` now turns that into a decoding error.
#[test]
fn qpack_integer_with_ten_continuation_bytes() {
    let mut payload = vec![0xffu8];
    payload.extend_from_slice(&[0x80; 10]);
    payload.push(0x00);
    let result = std::panic::catch_unwind(|| h3::decode_headers(&payload));
    assert!(
        matches!(result, Ok(Err(_))),
        "a decoding error, not a panic or a header list"
    );
}

/// Found by `parse_url_round_trips`: a fragment right after the authority (no path) was
/// kept in the host (`https://0#frag` gave host `0#frag`), and `https://h:443#x` was a
/// bad port.
#[test]
fn url_fragment_after_the_authority() {
    let t = crate::client::parse_url("https://0#frag").unwrap();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.authority.as_str(),
            t.path.as_str()
        ),
        ("0", 443, "0", "/")
    );
    let t = crate::client::parse_url("https://h:4433#x?y").unwrap();
    assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("h", 4433, "/"));
}

/// KNOWN LIMITATION (seen while writing `header_list_round_trips`, which therefore uses
/// distinct names): repeated field lines collapse to one. wtransport-proto decodes a
/// field section into a HashMap, so of `cookie: a=1` and `cookie: b=2` (cookie crumbs,
/// RFC 9114 §4.2.1) or two `x-token` lines only one reaches `Session::headers()`, and
/// the Python side's joining of repeated fields never sees a repeat. `encode_headers`
/// collapses repeated names the same way. Fixing it means decoding QPACK without that
/// HashMap, not a local change.
#[test]
#[ignore = "known limitation: repeated header field lines collapse to one (wtransport-proto decodes into a HashMap)"]
fn repeated_field_lines_are_all_kept() {
    // Required insert count 0, base 0; then twice a literal with the static name
    // `cookie` (index 5): 0101 0101, value length, value.
    let mut payload = vec![0x00, 0x00];
    payload.extend_from_slice(&[0x55, 0x03, b'a', b'=', b'1']);
    payload.extend_from_slice(&[0x55, 0x03, b'b', b'=', b'2']);
    let fields = h3::decode_headers(&payload).unwrap();
    let cookies: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        cookies == ["a=1", "b=2"] || cookies == ["a=1; b=2"],
        "{fields:?}"
    );
}
