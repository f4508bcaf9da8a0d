use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data as it is if another thread panicked while holding it: the
/// bridge's locks guard plain queues and slots that stay consistent between statements,
/// and one panicking session must not take every later call down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
