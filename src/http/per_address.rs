//! Limits per client address, for what a client can hold without a socket
//! of its own: HTTP fallback sessions (how many at once, how many new per
//! second) and long-polls (how many at once).
//!
//! The address is the TCP peer's, or, when `trust_forwarded_for` is set
//! because Herald runs behind a reverse proxy, the last address that proxy
//! appended to `X-Forwarded-For` (earlier entries are the client's to
//! invent).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use actix_web::HttpRequest;
use dashmap::DashMap;

use crate::support::rate::TokenBucket;

/// The client's address for per-address limits.
pub fn client_address(req: &HttpRequest, trust_forwarded_for: bool) -> IpAddr {
    address_of(req.headers(), req.peer_addr(), trust_forwarded_for)
}

/// The client's address from a request's headers and its TCP peer (for
/// requests that are not actix-web's, such as a WebSocket upgrade).
pub fn address_of(
    headers: &actix_web::http::header::HeaderMap,
    peer: Option<std::net::SocketAddr>,
    trust_forwarded_for: bool,
) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| headers.get("X-Forwarded-For"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok());
    forwarded
        .or_else(|| peer.map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Which limit refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The address holds as many as it may.
    Held,
    /// The address took new ones faster than its rate.
    Rate,
}

/// What one address holds.
struct Usage {
    active: usize,
    /// New admissions per second, when the limit has a rate.
    bucket: Option<TokenBucket>,
}

/// A count of things held per address, with a cap and optionally a rate of
/// new ones. Entries disappear when their address holds nothing.
pub struct PerAddress {
    usage: DashMap<IpAddr, Usage>,
    max_active: usize,
    /// (per second, burst); `None`: no rate limit.
    rate: Option<(u32, u32)>,
}

impl PerAddress {
    /// `max_active` 0 means unlimited; a `per_second` of 0 means no rate.
    pub fn new(max_active: usize, per_second: u32) -> Arc<Self> {
        Arc::new(PerAddress {
            usage: DashMap::new(),
            max_active,
            rate: (per_second > 0).then(|| (per_second, per_second.saturating_mul(2))),
        })
    }

    /// Takes a place for `address`, or `None` when it is at its cap or
    /// over its rate. The place is given back when the permit is dropped.
    pub fn acquire(self: &Arc<Self>, address: IpAddr) -> Option<AddressPermit> {
        self.try_acquire(address).ok()
    }

    /// Like [`PerAddress::acquire`], saying which limit refused.
    pub fn try_acquire(self: &Arc<Self>, address: IpAddr) -> Result<AddressPermit, Limit> {
        if self.max_active == 0 && self.rate.is_none() {
            // No limit: nothing to remember per address.
            return Ok(AddressPermit {
                limits: None,
                address,
            });
        }
        let mut usage = self.usage.entry(address).or_insert_with(|| Usage {
            active: 0,
            bucket: self.rate.map(|(rate, burst)| TokenBucket::new(rate, burst)),
        });
        if self.max_active > 0 && usage.active >= self.max_active {
            return Err(Limit::Held);
        }
        if let Some(bucket) = usage.bucket.as_mut() {
            if !bucket.take() {
                return Err(Limit::Rate);
            }
        }
        usage.active += 1;
        Ok(AddressPermit {
            limits: Some(self.clone()),
            address,
        })
    }

    /// Forgets addresses that hold nothing (run periodically): their rate
    /// starts afresh, at most once per sweep.
    pub fn sweep(&self) {
        self.usage.retain(|_, u| u.active > 0);
    }
}

/// One place held by an address.
pub struct AddressPermit {
    /// `None`: taken from limits that count nothing.
    limits: Option<Arc<PerAddress>>,
    address: IpAddr,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let Some(limits) = &self.limits else { return };
        if let Some(mut usage) = limits.usage.get_mut(&self.address) {
            usage.active = usage.active.saturating_sub(1);
        }
        // Without a rate, an idle address needs no memory; with one, its
        // bucket must survive so that the rate holds across sessions.
        limits
            .usage
            .remove_if(&self.address, |_, u| u.active == 0 && u.bucket.is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_what_one_address_holds_at_once() {
        let limits = PerAddress::new(2, 0);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = limits.acquire(a).expect("first");
        let _second = limits.acquire(a).expect("second");
        assert!(limits.acquire(a).is_none());
        assert!(limits.acquire(b).is_some());
        drop(first);
        assert!(limits.acquire(a).is_some());
    }

    #[test]
    fn a_rate_limits_new_places() {
        let limits = PerAddress::new(0, 5);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        // The burst (twice the rate), then nothing until tokens come back.
        let held: Vec<_> = (0..10).map(|_| limits.acquire(a).expect("burst")).collect();
        assert!(limits.acquire(a).is_none());
        drop(held);
        assert!(limits.acquire(a).is_none());
    }
}
