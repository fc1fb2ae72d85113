//! permessage-deflate (RFC 7692) at the upgrade: which of a client's
//! offers Herald agrees to, and what it answers. Herald always answers
//! with `server_no_context_takeover` and `client_no_context_takeover`:
//! every message is compressed on its own, in both directions, which is
//! what lets a broadcast be compressed once for all its subscribers and
//! keeps no compressor or inflater on an idle connection (see
//! `protocol::deflate`).

/// What a connection agreed to: the window its compressed frames may use
/// (what the client asked for with `server_max_window_bits`, 15 if it did
/// not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    pub window_bits: u8,
}

impl Deflate {
    /// The first offer in a `Sec-WebSocket-Extensions` header that Herald
    /// can honour, with the response header that accepts it; `None` (an
    /// uncompressed connection) when there is none.
    pub fn negotiate(offers: &str) -> Option<(Deflate, String)> {
        offers.split(',').find_map(Deflate::accept)
    }

    /// One offer: `permessage-deflate` with known parameters, each at most
    /// once, with valid values.
    fn accept(offer: &str) -> Option<(Deflate, String)> {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
            return None;
        }
        let mut seen = Vec::new();
        let mut window_bits = None;
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (param, None),
            };
            if seen.contains(&name) {
                return None;
            }
            seen.push(name);
            match (name, value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
                // Herald inflates with the largest window, so whatever the
                // client uses is fine.
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(bits)) => {
                    bits.parse::<u8>().ok().filter(|b| (8..=15).contains(b))?;
                }
                // zlib cannot make raw deflate with a 256-byte window (it
                // uses 512), so 8 is declined, as the RFC allows.
                ("server_max_window_bits", Some(bits)) => {
                    window_bits = Some(bits.parse::<u8>().ok().filter(|b| (9..=15).contains(b))?);
                }
                _ => return None,
            }
        }
        let mut response =
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_owned();
        if let Some(bits) = window_bits {
            response.push_str(&format!("; server_max_window_bits={bits}"));
        }
        Some((
            Deflate {
                window_bits: window_bits.unwrap_or(15),
            },
            response,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_herald_can_honour_are_accepted() {
        let (deflate, response) =
            Deflate::negotiate("permessage-deflate; client_max_window_bits").expect("accepted");
        assert_eq!(deflate.window_bits, 15);
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (deflate, response) = Deflate::negotiate(
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
        )
        .expect("the third offer");
        assert_eq!(deflate.window_bits, 10);
        assert!(response.ends_with("; server_max_window_bits=10"));
        for refused in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert_eq!(Deflate::negotiate(refused), None, "{refused}");
        }
    }
}
