//! The answer deadline of session requests: a request the application has not accepted
//! or rejected by its connection's `request_timeout` is refused with 503.
//!
//! One task per server watches every pending deadline (a heap of weak references),
//! instead of one sleeping task per session: at hundreds of sessions a second, a timer
//! task per session kept ten seconds' worth of tasks and their timer entries alive.

use crate::session::{Session, SessionPhase, Shared as SessionShared};
use crate::sync::lock;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

struct Entry {
    at: Instant,
    session: Weak<SessionShared>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // The earliest deadline first (BinaryHeap is a max-heap).
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

/// Pending answer deadlines of one server.
#[derive(Default)]
pub(crate) struct Deadlines {
    heap: Mutex<BinaryHeap<Entry>>,
    changed: Notify,
}

impl Deadlines {
    /// Refuses `session` with 503 at `at` unless it was answered (or ended) before.
    pub(crate) fn watch(&self, session: &Session, at: Instant) {
        let mut heap = lock(&self.heap);
        let earliest = heap.peek().is_none_or(|e| at < e.at);
        heap.push(Entry {
            at,
            session: Arc::downgrade(&session.0),
        });
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Runs until the server is dropped (then only this task holds `deadlines`).
    pub(crate) async fn run(deadlines: Arc<Self>) {
        while Arc::strong_count(&deadlines) > 1 {
            let next = lock(&deadlines.heap).peek().map(|e| e.at);
            let changed = deadlines.changed.notified();
            match next {
                Some(at) if at <= Instant::now() => deadlines.expire(),
                // Wake at the deadline, on an earlier one, and now and then to notice
                // the server is gone.
                Some(at) => {
                    let at = at.min(Instant::now() + Duration::from_secs(5));
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), changed).await;
                }
            }
        }
    }

    fn expire(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut heap = lock(&self.heap);
            while heap.peek().is_some_and(|e| e.at <= now) {
                if let Some(entry) = heap.pop() {
                    due.push(entry.session);
                }
            }
        }
        for session in due.iter().filter_map(Weak::upgrade).map(Session) {
            if session.phase() != SessionPhase::Requested {
                continue;
            }
            warn!(target: "fastwt.core", peer = %session.remote_address(), path = session.path(), "refused with 503: not answered within request_timeout");
            tokio::spawn(async move {
                let retry = vec![("retry-after".into(), "1".into())];
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), session.reject(503, retry)).await;
            });
        }
    }
}
