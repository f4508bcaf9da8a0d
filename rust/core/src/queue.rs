use crate::error::Error;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// Bytes a queued datagram costs beyond its payload: its `Bytes` handle in the queue
/// (32) and the allocator's header of its copy (16).
pub const DATAGRAM_ENTRY_OVERHEAD: usize = 48;

/// What a received datagram weighs against a session's `datagram_queue_bytes`.
pub fn datagram_weight(d: &Bytes) -> usize {
    d.len() + DATAGRAM_ENTRY_OVERHEAD
}

/// What a full queue does with one more item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest queued item and count it (datagrams: fresh data wins).
    DropOldest,
    /// Refuse the new item; the producer decides what to do with it.
    Refuse,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// Sum of `weigh` over `items`, bounded by `max_bytes`.
    bytes: usize,
    max_bytes: usize,
    weigh: fn(&T) -> usize,
    overflow: Overflow,
    dropped: u64,
    closed: Option<Error>,
    waker: Option<Waker>,
}

/// A bounded queue from tokio tasks (producers) to one poller (the application).
///
/// The consumer either pops what is ready without waiting, or registers its `Waker`
/// atomically with finding the queue empty, so no wake-up is lost. Producers wake the
/// consumer only when one is registered, which keeps wake-ups to one per batch.
pub struct ReadyQueue<T> {
    state: Mutex<State<T>>,
}

/// The result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued after dropping the oldest item.
    DroppedOldest,
    /// Not queued: the queue is full (with [`Overflow::Refuse`]) or closed.
    Refused,
}

impl<T> ReadyQueue<T> {
    /// A queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self::with_byte_limit(capacity, usize::MAX, |_| 0, overflow)
    }

    /// A queue holding at most `capacity` items whose `weigh`ts add up to at most
    /// `max_bytes` (one item alone may weigh more: it is queued when the queue is empty).
    pub fn with_byte_limit(
        capacity: usize,
        max_bytes: usize,
        weigh: fn(&T) -> usize,
        overflow: Overflow,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                bytes: 0,
                max_bytes,
                weigh,
                overflow,
                dropped: 0,
                closed: None,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }

    /// Adds an item, waking the consumer if it waits. Returns the item when refused.
    pub fn push(&self, item: T) -> (Pushed, Option<T>) {
        let waker;
        let pushed;
        {
            let mut s = self.lock();
            if s.closed.is_some() {
                return (Pushed::Refused, Some(item));
            }
            let weight = (s.weigh)(&item);
            let full = |s: &State<T>| {
                !s.items.is_empty()
                    && (s.items.len() >= s.capacity || s.bytes.saturating_add(weight) > s.max_bytes)
            };
            pushed = if !full(&s) {
                Pushed::Queued
            } else if s.overflow == Overflow::Refuse {
                return (Pushed::Refused, Some(item));
            } else {
                while full(&s) {
                    if let Some(old) = s.items.pop_front() {
                        s.bytes -= (s.weigh)(&old);
                        s.dropped += 1;
                    }
                }
                Pushed::DroppedOldest
            };
            s.bytes += weight;
            s.items.push_back(item);
            waker = s.waker.take();
        }
        if let Some(w) = waker {
            w.wake();
        }
        (pushed, None)
    }

    /// Closes the queue: items already queued can still be popped, then `err` is returned.
    /// The first close wins.
    pub fn close(&self, err: Error) {
        let waker = {
            let mut s = self.lock();
            if s.closed.is_none() {
                s.closed = Some(err);
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Pops one item, or registers the waker (when given) if none is ready.
    /// `Ok(None)` means pending.
    pub fn try_pop(&self, waker: Option<&Waker>) -> Result<Option<T>, Error> {
        let mut s = self.lock();
        if let Some(item) = s.items.pop_front() {
            s.bytes -= (s.weigh)(&item);
            return Ok(Some(item));
        }
        if let Some(err) = &s.closed {
            return Err(err.clone());
        }
        if let Some(w) = waker {
            set_waker(&mut s.waker, w);
        }
        Ok(None)
    }

    /// `Future`-style poll of [`Self::try_pop`].
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        match self.try_pop(Some(cx.waker())) {
            Ok(Some(item)) => Poll::Ready(Ok(item)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Pops up to `max` ready items into `out` without waiting. Returns the error only when
    /// nothing was popped and the queue is closed; registers the waker when nothing was ready.
    pub fn pop_many(
        &self,
        max: usize,
        out: &mut Vec<T>,
        waker: Option<&Waker>,
    ) -> Result<(), Error> {
        let mut s = self.lock();
        let n = max.min(s.items.len());
        let start = out.len();
        out.extend(s.items.drain(..n));
        let taken: usize = out[start..].iter().map(s.weigh).sum();
        s.bytes -= taken;
        if n == 0 {
            if let Some(err) = &s.closed {
                return Err(err.clone());
            }
            if let Some(w) = waker {
                set_waker(&mut s.waker, w);
            }
        }
        Ok(())
    }

    /// Items dropped by [`Overflow::DropOldest`] so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Items queued now (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is queued (tests).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns everything queued (used to clean up on close).
    pub fn drain(&self) -> Vec<T> {
        let mut s = self.lock();
        s.bytes = 0;
        s.items.drain(..).collect()
    }
}

/// Keeps `w` in `slot` unless the waker there already wakes the same task (no clone).
fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
        *slot = Some(w.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn drop_oldest_counts_and_keeps_newest() {
        let q = ReadyQueue::new(2, Overflow::DropOldest);
        q.push(1);
        q.push(2);
        assert_eq!(q.push(3).0, Pushed::DroppedOldest);
        assert_eq!(q.dropped(), 1);
        let mut out = vec![];
        q.pop_many(10, &mut out, None).unwrap();
        assert_eq!(out, vec![2, 3]);
    }

    #[test]
    fn byte_limit_drops_oldest_until_the_new_item_fits() {
        let q: ReadyQueue<Vec<u8>> =
            ReadyQueue::with_byte_limit(100, 10, |v| v.len(), Overflow::DropOldest);
        q.push(vec![1; 4]);
        q.push(vec![2; 4]);
        assert_eq!(q.push(vec![3; 6]).0, Pushed::DroppedOldest);
        assert_eq!(q.dropped(), 1);
        // One item heavier than the whole budget still gets through an empty queue.
        let mut out = vec![];
        q.pop_many(10, &mut out, None).unwrap();
        assert_eq!(out, vec![vec![2; 4], vec![3; 6]]);
        assert_eq!(q.push(vec![4; 50]).0, Pushed::Queued);
        assert_eq!(q.push(vec![5; 1]).0, Pushed::DroppedOldest);
        assert_eq!(q.try_pop(None).unwrap(), Some(vec![5]));
        let refusing: ReadyQueue<Vec<u8>> =
            ReadyQueue::with_byte_limit(100, 10, |v| v.len(), Overflow::Refuse);
        refusing.push(vec![0; 8]);
        assert_eq!(refusing.push(vec![0; 3]).0, Pushed::Refused);
    }

    #[test]
    fn refuse_when_full() {
        let q = ReadyQueue::new(1, Overflow::Refuse);
        q.push(1);
        assert_eq!(q.push(2), (Pushed::Refused, Some(2)));
    }

    #[test]
    fn waker_fires_once_per_registration_and_close_reaches_waiter() {
        let q: ReadyQueue<u8> = ReadyQueue::new(4, Overflow::Refuse);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert_eq!(q.try_pop(Some(&waker)).unwrap(), None);
        q.push(1);
        q.push(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(q.try_pop(None).unwrap(), Some(1));
        q.close(Error::EndpointClosed);
        assert_eq!(q.try_pop(None).unwrap(), Some(2));
        assert!(q.try_pop(None).is_err());
        assert_eq!(q.push(3).0, Pushed::Refused);
    }
}
