//! Small pure pieces the layers share: wall-clock time, the open-file
//! limit, query strings, token buckets, and waiting for a condition
//! announced through a `Notify`. (The HTTP-specific helpers are in `crate::http`.)

pub mod clock;
pub mod files;
pub mod query;
pub mod rate;
pub mod wait;
