//! What every request handler and connection shares: the configuration, the
//! hub and the cluster adapter.

use std::sync::Arc;

use crate::adapter::Adapter;
use crate::config::ServerConfig;
use crate::fallback::HttpSessions;
use crate::hub::Hub;

/// Shared server state, cheap to clone.
#[derive(Clone)]
pub struct State {
    pub server: Arc<ServerConfig>,
    pub hub: Arc<Hub>,
    pub adapter: Arc<dyn Adapter>,
    /// pusher-js HTTP fallback sessions open on this node.
    pub http_sessions: Arc<HttpSessions>,
}
