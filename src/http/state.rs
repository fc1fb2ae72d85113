//! What every request handler shares: the server settings, the hub and the
//! cluster adapter. Transports keep their own shared data beside it (the
//! HTTP fallback's session table is `fallback::HttpSessions`).

use std::sync::Arc;

use crate::adapter::Adapter;
use crate::config::ServerConfig;
use crate::http::admission::Admission;
use crate::http::per_address::PerAddress;
use crate::hub::Hub;
use crate::session;

/// Shared server state, cheap to clone.
#[derive(Clone)]
pub struct State {
    pub server: Arc<ServerConfig>,
    pub hub: Arc<Hub>,
    pub adapter: Arc<Adapter>,
    /// Long-polls held per client address.
    pub long_polls: Arc<PerAddress>,
    /// Who may open a connection on this node (caps, rates, memory).
    pub admission: Arc<Admission>,
}

impl State {
    /// What a protocol session needs of it.
    pub fn session_context(&self) -> session::Context {
        session::Context {
            server: self.server.clone(),
            adapter: self.adapter.clone(),
        }
    }
}
