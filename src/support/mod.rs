//! Small pieces every layer uses: wall-clock time, query strings, bounded
//! request bodies, and waiting for a condition announced through a `Notify`.

pub mod body;
pub mod clock;
pub mod query;
pub mod wait;
