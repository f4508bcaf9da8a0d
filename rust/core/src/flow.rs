//! Session-level flow control of drafts 13+ (Safari, draft-15 peers): the WT_MAX_DATA,
//! WT_MAX_STREAMS, WT_DATA_BLOCKED and WT_STREAMS_BLOCKED capsules.
//!
//! Only sessions of those drafts have a [`Flow`]; draft-02 sessions (Chrome, Firefox)
//! carry `None` and do no per-stream or per-byte work for it.
//!
//! What we grant: the limits of [`LocalCredit`] are advertised in our SETTINGS and, for
//! drafts 07..14 (Safari sends nothing before it has credit), again in capsules right
//! after the session is established. As the peer opens streams and as stream data is taken out of QUIC into
//! a stream's buffer (at most 1 MiB per stream ahead of the application, so an
//! application that stops reading holds the peer back), the limits move forward: a new
//! capsule goes out once half a window is used. A peer that exceeds them ends the
//! session with WT_FLOW_CONTROL_ERROR.
//!
//! What we honour: when the peer declared flow control in its SETTINGS, we open no more
//! streams than its WT_MAX_STREAMS (initially its SETTINGS values); an opening waits for
//! more credit and tells the peer with WT_STREAMS_BLOCKED. Likewise the stream bodies we
//! send on all the session's streams together (stream headers excluded) stay within its
//! WT_MAX_DATA: a stream's pump takes credit before it hands bytes to QUIC, waits when
//! there is none and tells the peer with WT_DATA_BLOCKED (once per limit).

use crate::draft::PeerSettings;
use crate::h3::{self, Capsule, LocalCredit};
use crate::sync::lock;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Largest Maximum Streams value a WT_MAX_STREAMS capsule may carry (2^60).
const MAX_STREAMS_LIMIT: u64 = 1 << 60;

/// One session's flow-control state.
pub(crate) struct Flow {
    local: LocalCredit,
    /// The peer declared flow control: its limits apply to what we open.
    peer_enabled: bool,
    state: Mutex<State>,
    /// Wakes the session's capsule writer (see [`run`]).
    pub(crate) notify: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    // What we grant.
    received: u64,
    granted_data: u64,
    advertised_data: u64,
    peer_opened: [u64; 2],
    granted_streams: [u64; 2],
    advertised_streams: [u64; 2],
    // What the peer grants.
    peer_max_streams: [u64; 2],
    opened: [u64; 2],
    /// The limit a WT_STREAMS_BLOCKED is due (or was sent) for, per direction.
    blocked: [Option<(u64, bool)>; 2],
    peer_max_data: u64,
    /// Stream-body bytes we sent (took credit for) on the session's streams.
    sent: u64,
    /// The limit a WT_DATA_BLOCKED is due (or was sent) for.
    data_blocked: Option<(u64, bool)>,
    waiters: Vec<Waker>,
    violation: Option<String>,
}

fn idx(bidi: bool) -> usize {
    usize::from(!bidi)
}

/// Capsules to write and the grants they carry (committed once written).
pub(crate) struct Outgoing {
    pub(crate) bytes: Vec<u8>,
    data: u64,
    streams: [u64; 2],
    blocked: [Option<u64>; 2],
    data_blocked: Option<u64>,
}

impl Flow {
    /// The state of a new session: our grants start at `local` (what our SETTINGS said),
    /// the peer's at its SETTINGS' initial values.
    pub(crate) fn new(local: LocalCredit, peer: &PeerSettings) -> Self {
        let state = State {
            // Our SETTINGS already told the peer these.
            granted_data: local.max_data,
            advertised_data: local.max_data,
            granted_streams: [local.max_streams_bidi, local.max_streams_uni],
            advertised_streams: [local.max_streams_bidi, local.max_streams_uni],
            peer_max_streams: [
                peer.wt_initial_max_streams_bidi,
                peer.wt_initial_max_streams_uni,
            ],
            peer_max_data: peer.wt_initial_max_data,
            ..State::default()
        };
        Self {
            local,
            peer_enabled: peer.declares_flow_control(),
            state: Mutex::new(state),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Poison only means a panic elsewhere; counters stay valid between statements.
        lock(&self.state)
    }

    /// The flow-control violation that ends the session, if any.
    pub(crate) fn violation(&self) -> Option<String> {
        self.lock().violation.clone()
    }

    fn violate(&self, s: &mut State, why: String) {
        if s.violation.is_none() {
            s.violation = Some(why);
        }
        self.notify.notify_one();
    }

    /// `n` bytes of stream body were taken out of QUIC on one of the session's streams.
    pub(crate) fn received(&self, n: usize) {
        let mut s = self.lock();
        s.received += n as u64;
        // The peer can only know what we wrote (a grant still in the outbox is not).
        if s.received > s.advertised_data {
            let why = format!(
                "peer sent {} stream bytes, over the {} granted",
                s.received, s.advertised_data
            );
            self.violate(&mut s, why);
            return;
        }
        if s.granted_data - s.received < self.local.max_data / 2 {
            s.granted_data = s.received + self.local.max_data;
            drop(s);
            self.notify.notify_one();
        }
    }

    /// The peer opened a stream of the session. `false` (and the session ends) when it
    /// exceeded our WT_MAX_STREAMS.
    pub(crate) fn peer_opened(&self, bidi: bool) -> bool {
        let i = idx(bidi);
        let window = if bidi {
            self.local.max_streams_bidi
        } else {
            self.local.max_streams_uni
        };
        let mut s = self.lock();
        s.peer_opened[i] += 1;
        if s.peer_opened[i] > s.advertised_streams[i] {
            let why = format!(
                "peer opened {} {} streams, over the {} granted",
                s.peer_opened[i],
                if bidi {
                    "bidirectional"
                } else {
                    "unidirectional"
                },
                s.advertised_streams[i]
            );
            self.violate(&mut s, why);
            return false;
        }
        if s.granted_streams[i] - s.peer_opened[i] < window.div_ceil(2) {
            s.granted_streams[i] = (s.peer_opened[i] + window).min(MAX_STREAMS_LIMIT);
            drop(s);
            self.notify.notify_one();
        }
        true
    }

    /// Takes credit to open one stream: `Ready` at once when the peer's limit allows (or
    /// it did not declare flow control), else `Pending` until a WT_MAX_STREAMS raises it
    /// (a WT_STREAMS_BLOCKED goes out once per limit).
    pub(crate) fn poll_open(&self, bidi: bool, cx: &mut Context<'_>) -> Poll<()> {
        if !self.peer_enabled {
            return Poll::Ready(());
        }
        let i = idx(bidi);
        let mut s = self.lock();
        if s.opened[i] < s.peer_max_streams[i] {
            s.opened[i] += 1;
            return Poll::Ready(());
        }
        let limit = s.peer_max_streams[i];
        if !matches!(s.blocked[i], Some((l, _)) if l == limit) {
            s.blocked[i] = Some((limit, false));
            self.notify.notify_one();
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether the peer declared flow control: only then do its limits bind our sends.
    pub(crate) fn binds_sends(&self) -> bool {
        self.peer_enabled
    }

    /// Takes credit to send up to `want` stream-body bytes: `Ready(n)` with `1..=want`
    /// bytes allowed now, else `Pending` until a WT_MAX_DATA raises the limit (a
    /// WT_DATA_BLOCKED goes out once per limit).
    pub(crate) fn poll_send_credit(&self, want: usize, cx: &mut Context<'_>) -> Poll<usize> {
        if !self.peer_enabled || want == 0 {
            return Poll::Ready(want);
        }
        let mut s = self.lock();
        let room = s.peer_max_data.saturating_sub(s.sent);
        if room > 0 {
            let n = usize::try_from(room).map_or(want, |room| room.min(want));
            s.sent += n as u64;
            return Poll::Ready(n);
        }
        let limit = s.peer_max_data;
        if !matches!(s.data_blocked, Some((l, _)) if l == limit) {
            s.data_blocked = Some((limit, false));
            self.notify.notify_one();
        }
        if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            s.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Waits for credit to open one stream (see [`Self::poll_open`]).
    pub(crate) async fn open(&self, bidi: bool) {
        std::future::poll_fn(|cx| self.poll_open(bidi, cx)).await;
    }

    /// A capsule from the peer. Flow-control capsules of a peer that did not declare
    /// flow control are ignored (the draft says so); unknown capsules never get here.
    pub(crate) fn on_capsule(&self, capsule: &Capsule) {
        let mut s = self.lock();
        match *capsule {
            Capsule::MaxStreamsBidi(v) | Capsule::MaxStreamsUni(v) if self.peer_enabled => {
                let i = idx(matches!(capsule, Capsule::MaxStreamsBidi(_)));
                if v > MAX_STREAMS_LIMIT || v < s.peer_max_streams[i] {
                    let why = format!(
                        "WT_MAX_STREAMS {v} is below {} or above 2^60",
                        s.peer_max_streams[i]
                    );
                    return self.violate(&mut s, why);
                }
                s.peer_max_streams[i] = v;
                let waiters = std::mem::take(&mut s.waiters);
                drop(s);
                for w in waiters {
                    w.wake();
                }
            }
            Capsule::MaxData(v) if self.peer_enabled => {
                if v < s.peer_max_data {
                    let why = format!("WT_MAX_DATA {v} is below {}", s.peer_max_data);
                    return self.violate(&mut s, why);
                }
                s.peer_max_data = v;
                let waiters = std::mem::take(&mut s.waiters);
                drop(s);
                for w in waiters {
                    w.wake();
                }
            }
            Capsule::Prohibited(kind) => {
                self.violate(
                    &mut s,
                    format!("capsule {kind:#x} is not allowed over HTTP/3"),
                );
            }
            // The peer is blocked: our grants move on as it sends, nothing to do now.
            _ => {}
        }
    }

    /// Every current grant, for the capsules that follow the establishment of a
    /// drafts 07..14 session (Safari waits for credit; repeating our SETTINGS' values is
    /// allowed). Draft-15 peers have the same values from our SETTINGS and some
    /// (pywebtransport 0.21) refuse a WT_MAX_DATA that does not raise the limit, so
    /// they get capsules only when a limit moves.
    pub(crate) fn initial(&self) -> Outgoing {
        self.build(true)
    }

    /// The capsules due now (grants moved on, streams blocked); empty when none.
    pub(crate) fn outgoing(&self) -> Outgoing {
        self.build(false)
    }

    fn build(&self, all: bool) -> Outgoing {
        let s = self.lock();
        let mut out = Outgoing {
            bytes: Vec::new(),
            data: s.advertised_data,
            streams: s.advertised_streams,
            blocked: [None, None],
            data_blocked: None,
        };
        if let Some((limit, false)) = s.data_blocked {
            out.bytes.extend(h3::encode_varint_capsule(
                h3::CAPSULE_WT_DATA_BLOCKED,
                limit,
            ));
            out.data_blocked = Some(limit);
        }
        if all || s.granted_data > s.advertised_data {
            out.bytes.extend(h3::encode_varint_capsule(
                h3::CAPSULE_WT_MAX_DATA,
                s.granted_data,
            ));
            out.data = s.granted_data;
        }
        for (i, kind) in [
            h3::CAPSULE_WT_MAX_STREAMS_BIDI,
            h3::CAPSULE_WT_MAX_STREAMS_UNI,
        ]
        .into_iter()
        .enumerate()
        {
            if all || s.granted_streams[i] > s.advertised_streams[i] {
                out.bytes
                    .extend(h3::encode_varint_capsule(kind, s.granted_streams[i]));
                out.streams[i] = s.granted_streams[i];
            }
        }
        for (i, kind) in [
            h3::CAPSULE_WT_STREAMS_BLOCKED_BIDI,
            h3::CAPSULE_WT_STREAMS_BLOCKED_UNI,
        ]
        .into_iter()
        .enumerate()
        {
            if let Some((limit, false)) = s.blocked[i] {
                out.bytes.extend(h3::encode_varint_capsule(kind, limit));
                out.blocked[i] = Some(limit);
            }
        }
        out
    }

    /// `out` was written: its grants are what the peer now knows.
    pub(crate) fn commit(&self, out: &Outgoing) {
        let mut s = self.lock();
        s.advertised_data = s.advertised_data.max(out.data);
        if let (Some(limit), Some((l, sent))) = (out.data_blocked, s.data_blocked.as_mut()) {
            if *l == limit {
                *sent = true;
            }
        }
        for i in 0..2 {
            s.advertised_streams[i] = s.advertised_streams[i].max(out.streams[i]);
            if let (Some(limit), Some((l, sent))) = (out.blocked[i], s.blocked[i].as_mut()) {
                if *l == limit {
                    *sent = true;
                }
            }
        }
    }

    /// (granted to the peer, granted by the peer) for diagnostics: data and streams.
    pub(crate) fn snapshot(&self) -> FlowSnapshot {
        let s = self.lock();
        FlowSnapshot {
            local_max_data: s.granted_data,
            local_max_streams_bidi: s.granted_streams[0],
            local_max_streams_uni: s.granted_streams[1],
            peer_max_data: self.peer_enabled.then_some(s.peer_max_data),
            peer_max_streams_bidi: self.peer_enabled.then_some(s.peer_max_streams[0]),
            peer_max_streams_uni: self.peer_enabled.then_some(s.peer_max_streams[1]),
            received: s.received,
        }
    }
}

/// Flow-control limits of a session at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSnapshot {
    /// Stream bytes the peer may send in all (cumulative).
    pub local_max_data: u64,
    /// Bidirectional streams the peer may open in all.
    pub local_max_streams_bidi: u64,
    /// Unidirectional streams the peer may open in all.
    pub local_max_streams_uni: u64,
    /// The peer's WT_MAX_DATA (`None` when it did not declare flow control).
    pub peer_max_data: Option<u64>,
    /// The peer's bidirectional WT_MAX_STREAMS.
    pub peer_max_streams_bidi: Option<u64>,
    /// The peer's unidirectional WT_MAX_STREAMS.
    pub peer_max_streams_uni: Option<u64>,
    /// Stream bytes received so far.
    pub received: u64,
}

/// The session's capsule writer: sends grants as they move and ends the session on a
/// flow-control violation. Runs until the session ends.
pub(crate) async fn run(session: crate::session::Session, flow: std::sync::Arc<Flow>) {
    loop {
        tokio::select! {
            _ = flow.notify.notified() => {}
            _ = session.closed() => return,
        }
        if let Some(why) = flow.violation() {
            tracing::warn!(target: "fastwt.core", session = session.id(), "flow control: {why}");
            session.abort(h3::WT_FLOW_CONTROL_ERROR, &why);
            return;
        }
        let out = flow.outgoing();
        if out.bytes.is_empty() {
            continue;
        }
        if session.send_capsules(&out.bytes) {
            flow.commit(&out);
        } else if session.close_info().is_none() {
            // The CONNECT stream is busy (a response being written) or not accepted
            // yet: try again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            flow.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn credit() -> LocalCredit {
        LocalCredit {
            max_data: 1000,
            max_streams_bidi: 4,
            max_streams_uni: 2,
        }
    }

    #[test]
    fn grants_move_forward_and_overruns_are_violations() {
        let flow = Flow::new(credit(), &PeerSettings::default());
        let first = flow.initial();
        assert!(!first.bytes.is_empty());
        flow.commit(&first);
        assert!(flow.outgoing().bytes.is_empty());
        flow.received(400);
        assert!(flow.outgoing().bytes.is_empty(), "less than half used");
        flow.received(200);
        let out = flow.outgoing();
        assert_eq!(out.data, 1600);
        flow.commit(&out);
        for _ in 0..3 {
            assert!(flow.peer_opened(true));
        }
        assert_eq!(flow.outgoing().streams[0], 7);
        // The new grant is not written yet: the peer knows only 4 streams.
        assert!(flow.peer_opened(true));
        assert!(
            !flow.peer_opened(true),
            "a fifth stream exceeds what the peer knew"
        );
        assert!(flow.violation().is_some());
        let flow = Flow::new(credit(), &PeerSettings::default());
        flow.received(1000);
        assert!(flow.violation().is_none());
        flow.received(1);
        assert!(
            flow.violation().is_some(),
            "over the data limit the peer knew"
        );
    }

    #[test]
    fn openings_wait_for_the_peers_credit() {
        let peer = PeerSettings {
            wt_initial_max_streams_uni: 1,
            ..PeerSettings::default()
        };
        let flow = Flow::new(credit(), &peer);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(flow.poll_open(false, &mut cx).is_ready());
        assert!(flow.poll_open(false, &mut cx).is_pending());
        let out = flow.outgoing();
        assert_eq!(out.blocked[1], Some(1), "WT_STREAMS_BLOCKED is due");
        flow.commit(&out);
        assert!(flow.poll_open(false, &mut cx).is_pending());
        assert!(flow.outgoing().blocked[1].is_none(), "sent once per limit");
        flow.on_capsule(&Capsule::MaxStreamsUni(2));
        assert!(flow.poll_open(false, &mut cx).is_ready());
        flow.on_capsule(&Capsule::MaxStreamsUni(1));
        assert!(flow.violation().is_some(), "a lower limit is a violation");
        // Without declared flow control, nothing limits us and capsules are ignored.
        let free = Flow::new(credit(), &PeerSettings::default());
        for _ in 0..10 {
            assert!(free.poll_open(true, &mut cx).is_ready());
        }
        free.on_capsule(&Capsule::MaxStreamsBidi(0));
        assert!(free.violation().is_none());
    }
}
