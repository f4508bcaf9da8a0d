//! The core's lock helper (poison-tolerant), under the name the bindings' modules use.

pub(crate) use fastwt_core::sync::lock;
