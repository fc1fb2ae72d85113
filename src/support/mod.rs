//! Small pieces every layer uses: wall-clock time, query strings, and
//! waiting for a condition announced through a `Notify`.

pub mod clock;
pub mod query;
pub mod wait;
