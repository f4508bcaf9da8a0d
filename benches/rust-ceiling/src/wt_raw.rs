//! A WebTransport session opened by hand over raw quinn, for the fan-out client: only
//! what receiving datagrams needs, so the client spends as little as possible per
//! datagram (no HTTP/3 driver task between quinn and the reader).
//!
//! It speaks draft-02 as Chrome does: a control stream with SETTINGS (H3_DATAGRAM = 1,
//! ENABLE_WEBTRANSPORT = 1), then a CONNECT request (`:protocol webtransport`,
//! `sec-webtransport-http3-draft02: 1`) on the first bidirectional stream, QPACK without
//! a dynamic table (so no encoder or decoder stream, RFC 9204 4.2), and waits for a
//! `:status 200` reply. The session's datagrams are quinn datagrams whose payload starts
//! with the quarter stream id of the CONNECT stream (RFC 9297); [`payload`] strips it.

use super::raw_quinn::{client_config, endpoint_on, server_addr};
use super::{udp_socket, AnyResult};
use std::time::Duration;

/// quinn's defaults with wtransport's client timing (keep-alive 3 s, idle 30 s), as the
/// wtransport clients of this crate use.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap_or_default()))
        .keep_alive_interval(Some(Duration::from_secs(3)));
    t
}

/// A client endpoint on its own UDP socket (4 MiB kernel buffers), offering ALPN `h3`.
pub fn endpoint() -> AnyResult<quinn::Endpoint> {
    let mut e = endpoint_on(udp_socket()?, None)?;
    e.set_default_client_config(client_config(b"h3", transport())?);
    Ok(e)
}

/// QUIC variable-length integer (RFC 9000 16).
fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Reads a QUIC varint at the start of `b`: (value, its length).
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    Some((v, len))
}

/// HPACK/QPACK prefix integer (RFC 7541 5.1): `v` in the low `bits` of a first byte
/// whose high bits are `flags`.
fn prefix_int(out: &mut Vec<u8>, flags: u8, bits: u32, v: u64) {
    let max = (1u64 << bits) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A QPACK string literal without Huffman coding.
fn qpack_string(out: &mut Vec<u8>, s: &str) {
    prefix_int(out, 0x00, 7, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The CONNECT request's HEADERS frame. Static table (RFC 9204 appendix A): 0
/// `:authority`, 1 `:path /`, 15 `:method CONNECT`, 23 `:scheme https`.
fn connect_headers(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x00, 0x00]; // Required Insert Count 0, Delta Base 0
    prefix_int(&mut block, 0xc0, 6, 15); // indexed, static: :method CONNECT
    prefix_int(&mut block, 0xc0, 6, 23); // :scheme https
    prefix_int(&mut block, 0x50, 4, 0); // literal, static name :authority
    qpack_string(&mut block, authority);
    prefix_int(&mut block, 0x50, 4, 1); // literal, static name :path
    qpack_string(&mut block, path);
    for (name, value) in [
        (":protocol", "webtransport"),
        ("sec-webtransport-http3-draft02", "1"),
    ] {
        prefix_int(&mut block, 0x20, 3, name.len() as u64); // literal name
        block.extend_from_slice(name.as_bytes());
        qpack_string(&mut block, value);
    }
    let mut frame = Vec::with_capacity(block.len() + 4);
    varint(&mut frame, 0x01); // HEADERS
    varint(&mut frame, block.len() as u64);
    frame.extend_from_slice(&block);
    frame
}

/// The control stream's opening: stream type 0 and SETTINGS.
fn control_stream_opening() -> Vec<u8> {
    let mut settings = Vec::new();
    for (id, v) in [(0x33u64, 1u64), (0x2b60_3742, 1)] {
        varint(&mut settings, id);
        varint(&mut settings, v);
    }
    let mut out = vec![0x00];
    varint(&mut out, 0x04); // SETTINGS
    varint(&mut out, settings.len() as u64);
    out.extend_from_slice(&settings);
    out
}

/// Reads an HPACK/QPACK prefix integer of `bits` bits at the start of `b`: (value, length).
fn read_prefix_int(b: &[u8], bits: u32) -> Option<(u64, usize)> {
    let max = (1u64 << bits) - 1;
    let first = u64::from(*b.first()?) & max;
    if first < max {
        return Some((first, 1));
    }
    let (mut v, mut shift) = (max, 0u32);
    for (i, x) in b.iter().enumerate().skip(1) {
        v = v.checked_add(u64::from(x & 0x7f).checked_shl(shift)?)?;
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
        shift += 7;
    }
    None
}

/// Whether the first field line of a QPACK header block (after its two-byte section
/// prefix: no dynamic table) is `:status 200`: the static entry 25 indexed, or a literal
/// `200` (plain, or Huffman-coded as `10 01`) on a static `:status` name (24..=28).
fn first_line_is_200(block: &[u8]) -> bool {
    let line = block.get(2..).unwrap_or(&[]);
    let Some(&b) = line.first() else {
        return false;
    };
    if b & 0xc0 == 0xc0 {
        return read_prefix_int(line, 6).is_some_and(|(i, _)| i == 25);
    }
    if b & 0xd0 != 0x50 {
        return false; // not a literal with a static name reference
    }
    let Some((idx, n)) = read_prefix_int(line, 4) else {
        return false;
    };
    let value = &line[n..];
    (24..=28).contains(&idx)
        && (value.get(..4) == Some(&[3, b'2', b'0', b'0'])
            || value.get(..3) == Some(&[0x82, 0x10, 0x01]))
}

/// Whether a response's first HEADERS frame (the bytes read so far of the request
/// stream; `None` while incomplete) says `:status 200`.
fn status_ok(buf: &[u8]) -> Option<Result<(), String>> {
    let mut at = 0;
    loop {
        let (ty, n1) = read_varint(&buf[at..])?;
        let (len, n2) = read_varint(&buf[at + n1..])?;
        let start = at + n1 + n2;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let body = buf.get(start..end)?;
        if ty != 0x01 {
            at = end; // an unknown or reserved frame before the HEADERS: skip it
            continue;
        }
        return Some(if first_line_is_200(body) {
            Ok(())
        } else {
            Err(format!("CONNECT refused: response headers {body:02x?}"))
        });
    }
}

/// An open session: its connection (datagrams carry [`payload`]'s prefix).
pub struct Session {
    pub conn: quinn::Connection,
    /// Kept open: finishing or dropping the CONNECT stream would end the session.
    _request: (quinn::SendStream, quinn::RecvStream),
    _control: quinn::SendStream,
}

/// Connects to `url`'s host and port and opens a session on `path`.
pub async fn open(endpoint: &quinn::Endpoint, url: &str, path: &str) -> AnyResult<Session> {
    let addr = server_addr(url)?;
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let mut control = conn.open_uni().await?;
    control.write_all(&control_stream_opening()).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&connect_headers(&addr.to_string(), path))
        .await?;
    let mut buf = Vec::new();
    loop {
        match recv.read_chunk(4096, true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err("the server ended the CONNECT stream".into()),
        }
        match status_ok(&buf) {
            Some(Ok(())) => break,
            Some(Err(e)) => return Err(e.into()),
            None if buf.len() > 64 * 1024 => return Err("CONNECT response too long".into()),
            None => {}
        }
    }
    Ok(Session {
        conn,
        _request: (send, recv),
        _control: control,
    })
}

/// A session datagram's payload: the datagram without its quarter-stream-id prefix.
pub fn payload(datagram: &[u8]) -> Option<&[u8]> {
    let (_qsid, n) = read_varint(datagram)?;
    datagram.get(n..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_encode_as_the_rfcs_examples() {
        let mut v = Vec::new();
        varint(&mut v, 15_293); // RFC 9000 A.1: 0x7bbd
        assert_eq!(v, [0x7b, 0xbd]);
        assert_eq!(read_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(
            read_varint(&[0x9d, 0x7f, 0x3e, 0x7d]),
            Some((494_878_333, 4))
        );
        let mut p = Vec::new();
        prefix_int(&mut p, 0, 5, 1337); // RFC 7541 C.1.2
        assert_eq!(p, [0x1f, 0x9a, 0x0a]);
    }

    #[test]
    fn a_200_response_is_recognised_and_others_refused() {
        assert!(status_ok(&[0x01, 0x02, 0x00, 0x00]).is_some_and(|r| r.is_err()));
        assert!(status_ok(&[0x01, 0x03, 0x00, 0x00, 0xd9]) == Some(Ok(())));
        assert!(status_ok(&[0x01, 0x03, 0x00, 0x00, 0xdb]).is_some_and(|r| r.is_err()));
        assert!(status_ok(&[0x01, 0x05, 0x00]).is_none()); // incomplete
                                                           // fastwt-core's reply: a literal on static name 24, Huffman-coded "200"
        let fastwt = [0x01, 0x07, 0x00, 0x00, 0x5f, 0x09, 0x82, 0x10, 0x01];
        assert!(status_ok(&fastwt[..7]).is_none());
        assert!(status_ok(&fastwt) == Some(Ok(())));
        assert!(
            status_ok(&[0x01, 0x07, 0x00, 0x00, 0x5f, 0x09, 0x82, 0x10, 0x03])
                .is_some_and(|r| r.is_err())
        );
        assert_eq!(payload(&[0x00, 7, 8]), Some(&[7u8, 8][..]));
    }
}
