//! Tests over loopback that need the crate's wire layer (`h3`: raw HTTP/3 peers that
//! break the protocol, the parsers' property tests), so they live inside the crate;
//! `rust/core/tests/` holds the ones that need only the public API.

mod cid_steering;
mod common;
mod drafts;
mod misbehaving_peers;
mod parsers_proptest;
mod pooling;
mod stream_preamble_proptest;
