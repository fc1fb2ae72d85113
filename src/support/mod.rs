//! Small pieces the layers share: wall-clock time, query strings, bounded
//! request bodies, per-address limits and token buckets, the TCP socket
//! under a request, and waiting for a condition announced through a
//! `Notify`.

pub mod body;
pub mod clock;
pub mod peer;
pub mod per_address;
pub mod query;
pub mod rate;
pub mod wait;
