//! Herald: a self-hosted, Pusher-protocol-compatible broadcast server.
//!
//! `protocol` and `auth` are pure (wire types and signatures); `hub` holds
//! the in-node state; `adapter` is the seam to the cluster; `ws` and `api`
//! are the two ways in; `server` wires them onto actix-web.

pub mod adapter;
pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod doctor;
pub mod fallback;
pub mod http_error;
pub mod hub;
pub mod laravel;
pub mod listener;
pub mod metrics;
pub mod polling;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod state;
pub mod support;
pub mod tls;
pub mod trigger;
pub mod webhooks;
pub mod ws;
