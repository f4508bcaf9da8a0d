//! The one way the core takes a mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison: a poisoned lock only means another thread panicked while
/// holding it, and every structure the core keeps behind a mutex is valid between
/// statements, so the data is still good (and one panicking task must not take the
/// server's other sessions down with it).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
