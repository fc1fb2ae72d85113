//! The HTTP floor: what every HTTP endpoint shares, whatever it serves (the
//! API, the transports, the console). The error type and its one mapping
//! to statuses, the shared state, bounded bodies, the socket under a
//! request, per-address limits, CORS, gzip for large JSON answers, and the
//! API's event body (checked the same way by the API and the console).

pub mod admission;
pub mod bearer;
pub mod body;
pub mod cors;
mod error;
pub mod event;
pub mod gzip;
pub mod peer;
pub mod per_address;
mod state;

pub use error::{HttpError, HttpResult};
pub use state::State;
