//! Herald: a self-hosted, Pusher-protocol-compatible broadcast server.
//!
//! The modules stand on floors, each importing only from below (see
//! `docs/architecture.md`; `layering` keeps it so): `protocol`, `config`,
//! `auth`, `support`, `metrics` and `tls` on the ground; `hub` (in-node
//! state and the events it reports); `adapter` (the cluster, publishing);
//! `session` and `webhooks`; `http`; the transports `ws`, `fallback` and
//! `polling`; `api` and `console`; then the listener, reload and the CLI
//! helpers; `server` and `doctor` on top.

pub mod adapter;
pub mod admin;
pub mod api;
pub mod app_store;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod console;
pub mod doctor;
pub mod fallback;
pub mod health;
pub mod http;
pub mod hub;
pub mod laravel;
pub mod listener;
pub mod metrics;
pub mod polling;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod support;
pub mod tls;
pub mod trigger;
pub mod webhooks;
pub mod ws;

#[cfg(test)]
mod layering;
