//! Which WebTransport draft a session speaks, chosen per connection from what the peer
//! sent: its SETTINGS, the CONNECT request's `:protocol` and `sec-webtransport-http3-draft*`
//! headers. Also the peer SETTINGS' validation and the RFC 8941 strings of
//! `wt-available-protocols` / `wt-protocol`.
//!
//! | draft | peer sends | differences on the wire that we honour |
//! |---|---|---|
//! | 02 (Chrome, Firefox) | 0x2b603742, `:protocol webtransport`, `sec-webtransport-http3-draft02: 1` | response header `sec-webtransport-http3-draft: draft02`; no session flow control |
//! | 07..14 (Safari) | 0x14e9cd29 (WT_MAX_SESSIONS), often 0xc671706a too | session flow control (WT_MAX_DATA, WT_MAX_STREAMS) |
//! | 15+ (pywebtransport 0.21, webtransport-go >= 0.12) | 0x2c7cf000 (WT_ENABLED), `:protocol webtransport-h3` | session flow control, per-session exporter |

use crate::error::{Error, Result};
use crate::h3;

/// The WebTransport draft a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draft {
    /// draft-ietf-webtrans-http3-02: Chrome and Firefox.
    Draft02,
    /// Drafts 07 to 14 (SETTINGS_WT_MAX_SESSIONS): Safari.
    Draft07To14,
    /// Draft 15 and later (SETTINGS_WT_ENABLED, `webtransport-h3`).
    Draft15,
}

impl Draft {
    /// The name shown in diagnostics: "draft-02", "draft-07..14" or "draft-15".
    pub fn name(self) -> &'static str {
        match self {
            Draft::Draft02 => "draft-02",
            Draft::Draft07To14 => "draft-07..14",
            Draft::Draft15 => "draft-15",
        }
    }

    /// Whether the draft defines session-level flow control (capsules of drafts 13+).
    pub fn has_flow_control(self) -> bool {
        !matches!(self, Draft::Draft02)
    }
}

/// The WebTransport-relevant values of a peer's SETTINGS frame (absent settings are 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// ENABLE_CONNECT_PROTOCOL (0x08).
    pub enable_connect_protocol: u64,
    /// H3_DATAGRAM (0x33): 1 when the peer accepts HTTP datagrams.
    pub h3_datagram: u64,
    /// SETTINGS_ENABLE_WEBTRANSPORT of drafts 00..06 (0x2b603742).
    pub enable_webtransport_draft02: u64,
    /// SETTINGS_WEBTRANSPORT_MAX_SESSIONS of draft-07 (0xc671706a).
    pub wt_max_sessions_draft07: u64,
    /// SETTINGS_WT_MAX_SESSIONS of drafts 13..14 (0x14e9cd29).
    pub wt_max_sessions: u64,
    /// SETTINGS_WT_ENABLED of draft-15+ (0x2c7cf000).
    pub wt_enabled: u64,
    /// SETTINGS_WT_INITIAL_MAX_DATA (0x2b61).
    pub wt_initial_max_data: u64,
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_UNI (0x2b64).
    pub wt_initial_max_streams_uni: u64,
    /// SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (0x2b65).
    pub wt_initial_max_streams_bidi: u64,
}

/// A SETTINGS frame that breaks HTTP/3: the connection error code and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    /// The HTTP/3 error code to close the connection with.
    pub code: u32,
    /// What was wrong.
    pub reason: String,
}

impl PeerSettings {
    /// Parses and validates a SETTINGS payload: a repeated identifier or an HTTP/2
    /// setting (0x02..0x05) is H3_SETTINGS_ERROR (RFC 9114 7.2.4), as is an H3_DATAGRAM
    /// value other than 0 or 1 (RFC 9297 2.1.1). Unknown settings are ignored.
    pub fn parse(payload: &[u8]) -> std::result::Result<Self, SettingsError> {
        let error = |reason: String| SettingsError {
            code: h3::H3_SETTINGS_ERROR,
            reason,
        };
        let pairs = h3::parse_settings(payload).map_err(|e| SettingsError {
            code: h3::H3_FRAME_ERROR,
            reason: e,
        })?;
        let mut out = Self::default();
        let mut seen: Vec<u64> = Vec::with_capacity(pairs.len());
        for (id, value) in pairs {
            if seen.contains(&id) {
                return Err(error(format!("setting {id:#x} sent twice")));
            }
            seen.push(id);
            match id {
                0x02..=0x05 => return Err(error(format!("HTTP/2 setting {id:#x} in HTTP/3"))),
                h3::SETTING_ENABLE_CONNECT_PROTOCOL => out.enable_connect_protocol = value,
                h3::SETTING_H3_DATAGRAM => {
                    if value > 1 {
                        return Err(error(format!("H3_DATAGRAM value {value} is not 0 or 1")));
                    }
                    out.h3_datagram = value;
                }
                h3::SETTING_ENABLE_WEBTRANSPORT_DRAFT02 => out.enable_webtransport_draft02 = value,
                h3::SETTING_WT_MAX_SESSIONS_DRAFT07 => out.wt_max_sessions_draft07 = value,
                h3::SETTING_WT_MAX_SESSIONS => out.wt_max_sessions = value,
                h3::SETTING_WT_ENABLED => out.wt_enabled = value,
                h3::SETTING_WT_INITIAL_MAX_DATA => out.wt_initial_max_data = value,
                h3::SETTING_WT_INITIAL_MAX_STREAMS_UNI => out.wt_initial_max_streams_uni = value,
                h3::SETTING_WT_INITIAL_MAX_STREAMS_BIDI => out.wt_initial_max_streams_bidi = value,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether the peer declared session flow control (drafts 13+): any initial limit
    /// other than 0, or (drafts 13..14) room for more than one session.
    pub fn declares_flow_control(&self) -> bool {
        self.wt_initial_max_data != 0
            || self.wt_initial_max_streams_bidi != 0
            || self.wt_initial_max_streams_uni != 0
            || self.wt_max_sessions > 1
    }

    /// Whether a server with these SETTINGS offers WebTransport in any draft we speak.
    pub fn offers_webtransport(&self) -> bool {
        self.enable_webtransport_draft02 != 0 || self.wt_max_sessions != 0 || self.wt_enabled != 0
    }
}

/// The server's choice of draft for a CONNECT request with `:protocol` `token` (already
/// known to be `webtransport` or `webtransport-h3`), the client's SETTINGS and whether
/// the request carries `sec-webtransport-http3-draft02`. The newest draft both sides
/// speak wins, except that a draft-02 header keeps Chrome and Firefox on draft-02.
pub fn choose(token: &str, settings: &PeerSettings, draft02_header: bool) -> Draft {
    if token == "webtransport-h3" {
        if settings.wt_enabled == 0 && settings.wt_max_sessions != 0 {
            return Draft::Draft07To14;
        }
        return Draft::Draft15;
    }
    // `:protocol webtransport`: draft-02 .. draft-14.
    if draft02_header {
        return Draft::Draft02;
    }
    if settings.wt_max_sessions != 0 {
        return Draft::Draft07To14;
    }
    if settings.wt_enabled != 0 && settings.enable_webtransport_draft02 == 0 {
        return Draft::Draft15;
    }
    Draft::Draft02
}

/// The client's choice from the server's SETTINGS: draft-15 (`webtransport-h3`) when the
/// server offers only it, else draft-02 as browsers speak it (which every server for
/// browsers, fastwt included, offers).
pub fn choose_for_server(settings: &PeerSettings) -> Draft {
    if settings.wt_enabled != 0 && settings.enable_webtransport_draft02 == 0 {
        Draft::Draft15
    } else {
        Draft::Draft02
    }
}

/// The `:protocol` tokens a server accepts.
pub fn is_webtransport_token(token: &str) -> bool {
    token == "webtransport" || token == "webtransport-h3"
}

/// The TLS exporter label of a draft-15 session's keying material.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-WebTransport";

/// The TLS exporter context of draft-15's per-session exporter: the session id (64
/// bits), then the application's label and context, each after its length (8 bits).
pub fn exporter_context(session_id: u64, label: &[u8], context: &[u8]) -> Result<Vec<u8>> {
    let (Ok(label_len), Ok(context_len)) = (u8::try_from(label.len()), u8::try_from(context.len()))
    else {
        return Err(Error::Config(
            "exporter label and context must be at most 255 bytes each".into(),
        ));
    };
    let mut out = Vec::with_capacity(10 + label.len() + context.len());
    out.extend_from_slice(&session_id.to_be_bytes());
    out.push(label_len);
    out.extend_from_slice(label);
    out.push(context_len);
    out.extend_from_slice(context);
    Ok(out)
}

/// Parses an RFC 8941 List of Strings (`wt-available-protocols`). Parameters are
/// ignored; a member that is not a String, or any syntax error, makes the whole field
/// ignored (`None`), as the draft asks.
pub fn parse_sf_string_list(field: &str) -> Option<Vec<String>> {
    let b = field.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    let skip_ows = |pos: &mut usize| {
        while *pos < b.len() && (b[*pos] == b' ' || b[*pos] == b'\t') {
            *pos += 1;
        }
    };
    skip_ows(&mut pos);
    if pos == b.len() {
        return Some(out);
    }
    loop {
        let (s, next) = parse_sf_string(b, pos)?;
        out.push(s);
        pos = skip_params(b, next)?;
        skip_ows(&mut pos);
        if pos == b.len() {
            return Some(out);
        }
        if b[pos] != b',' {
            return None;
        }
        pos += 1;
        skip_ows(&mut pos);
        if pos == b.len() {
            return None; // trailing comma
        }
    }
}

/// Parses an RFC 8941 Item that must be a String (`wt-protocol`); parameters ignored.
pub fn parse_sf_string_item(field: &str) -> Option<String> {
    let b = field.as_bytes();
    let mut pos = 0;
    while pos < b.len() && b[pos] == b' ' {
        pos += 1;
    }
    let (s, next) = parse_sf_string(b, pos)?;
    let mut end = skip_params(b, next)?;
    while end < b.len() && b[end] == b' ' {
        end += 1;
    }
    (end == b.len()).then_some(s)
}

/// Serializes a String as an RFC 8941 sf-string; `Err` if it has characters outside
/// printable ASCII.
pub fn sf_string(value: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                return Err(Error::Config(format!(
                    "protocol {value:?} is not printable ASCII (RFC 8941 sf-string)"
                )))
            }
        }
    }
    out.push('"');
    Ok(out)
}

fn parse_sf_string(b: &[u8], mut pos: usize) -> Option<(String, usize)> {
    if b.get(pos) != Some(&b'"') {
        return None;
    }
    pos += 1;
    let mut s = String::new();
    loop {
        let c = *b.get(pos)?;
        pos += 1;
        match c {
            b'\\' => {
                let e = *b.get(pos)?;
                if e != b'"' && e != b'\\' {
                    return None;
                }
                s.push(char::from(e));
                pos += 1;
            }
            b'"' => return Some((s, pos)),
            0x20..=0x7e => s.push(char::from(c)),
            _ => return None,
        }
    }
}

/// Skips `;key[=value]` parameters after a member (values are not checked closely: they
/// carry no meaning here). Returns the position after them.
fn skip_params(b: &[u8], mut pos: usize) -> Option<usize> {
    while b.get(pos) == Some(&b';') {
        pos += 1;
        while b.get(pos) == Some(&b' ') {
            pos += 1;
        }
        let start = pos;
        while pos < b.len()
            && (b[pos].is_ascii_lowercase()
                || b[pos].is_ascii_digit()
                || matches!(b[pos], b'_' | b'-' | b'.' | b'*'))
        {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        if b.get(pos) == Some(&b'=') {
            pos += 1;
            if b.get(pos) == Some(&b'"') {
                let (_, next) = parse_sf_string(b, pos)?;
                pos = next;
            } else {
                let start = pos;
                while pos < b.len() && !matches!(b[pos], b',' | b';' | b' ' | b'\t') {
                    pos += 1;
                }
                if pos == start {
                    return None;
                }
            }
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut out = vec![];
        for (id, v) in pairs {
            h3::put_varint(&mut out, *id);
            h3::put_varint(&mut out, *v);
        }
        out
    }

    #[test]
    fn duplicate_and_http2_settings_are_settings_errors() {
        let dup = settings(&[(0x33, 1), (0x33, 1)]);
        assert_eq!(
            PeerSettings::parse(&dup).unwrap_err().code,
            h3::H3_SETTINGS_ERROR
        );
        let h2 = settings(&[(0x04, 100)]);
        assert_eq!(
            PeerSettings::parse(&h2).unwrap_err().code,
            h3::H3_SETTINGS_ERROR
        );
        let bad_dgram = settings(&[(0x33, 2)]);
        assert!(PeerSettings::parse(&bad_dgram).is_err());
        let unknown = settings(&[(0x1f * 7 + 0x21, 5), (0x33, 1)]);
        assert_eq!(PeerSettings::parse(&unknown).unwrap().h3_datagram, 1);
    }

    #[test]
    fn drafts_are_chosen_from_what_the_client_sent() {
        let chrome =
            PeerSettings::parse(&settings(&[(0x2b60_3742, 1), (0x33, 1), (0xc671_706a, 1)]))
                .unwrap();
        assert_eq!(choose("webtransport", &chrome, true), Draft::Draft02);
        assert_eq!(choose("webtransport", &chrome, false), Draft::Draft02);
        let safari =
            PeerSettings::parse(&settings(&[(0x33, 1), (0xc671_706a, 1), (0x14e9_cd29, 1)]))
                .unwrap();
        assert_eq!(
            choose("webtransport-h3", &safari, false),
            Draft::Draft07To14
        );
        assert_eq!(choose("webtransport", &safari, false), Draft::Draft07To14);
        let d15 = PeerSettings::parse(&settings(&[(0x33, 1), (0x2c7c_f000, 1)])).unwrap();
        assert_eq!(choose("webtransport-h3", &d15, false), Draft::Draft15);
        assert_eq!(choose_for_server(&d15), Draft::Draft15);
        let pre = h3::control_stream_preamble();
        let (frame, _) = h3::parse_frame(&pre[1..], h3::MAX_CONTROL_FRAME)
            .unwrap()
            .unwrap();
        let ours = PeerSettings::parse(&frame.payload).unwrap();
        assert_eq!(choose_for_server(&ours), Draft::Draft02);
        assert!(ours.declares_flow_control());
        assert!(ours.offers_webtransport());
    }

    #[test]
    fn exporter_context_layout() {
        let c = exporter_context(4, b"ab", b"xyz").unwrap();
        assert_eq!(
            c,
            [0, 0, 0, 0, 0, 0, 0, 4, 2, b'a', b'b', 3, b'x', b'y', b'z']
        );
        assert!(exporter_context(0, &[0; 256], b"").is_err());
    }

    #[test]
    fn structured_field_strings() {
        assert_eq!(
            parse_sf_string_list(r#""chat-v2", "chat-v1";q=1, "a\"b""#).unwrap(),
            vec!["chat-v2", "chat-v1", "a\"b"]
        );
        assert_eq!(parse_sf_string_list("").unwrap(), Vec::<String>::new());
        assert!(parse_sf_string_list(r#""a", token"#).is_none());
        assert!(parse_sf_string_list(r#""a","#).is_none());
        assert!(parse_sf_string_list(r#""unterminated"#).is_none());
        assert_eq!(parse_sf_string_item(r#""x\\y""#).unwrap(), "x\\y");
        assert!(parse_sf_string_item("x").is_none());
        assert_eq!(sf_string("a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert!(sf_string("é").is_err());
        let s = sf_string("moq-16").unwrap();
        assert_eq!(parse_sf_string_item(&s).unwrap(), "moq-16");
    }
}
