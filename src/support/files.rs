//! The process's open-file limit: every connection is a descriptor, so
//! the limit is a connection cap whether Herald knows it or not. Herald
//! knows it: it warns at start when the limit is below what it is asked
//! to hold, and admits connections only while some descriptors stay spare
//! (a refusal the client hears, 4100, instead of the kernel's EMFILE,
//! which stalls every accept).

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`
/// (`None` where there is no such file, or it says "unlimited").
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Descriptors kept for what is not a client connection: listeners,
/// Redis, webhook deliveries, HTTP API requests in flight, files. One in
/// 64 of the limit, at least 64 and at most 1024.
pub fn spare_files(limit: u64) -> u64 {
    (limit / 64).clamp(64, 1024)
}

/// Client connections the limit leaves room for.
pub fn connection_room(limit: u64) -> u64 {
    limit.saturating_sub(spare_files(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_keeps_some_descriptors_spare() {
        assert_eq!(connection_room(1024), 960);
        assert_eq!(connection_room(20_000), 19_688);
        assert_eq!(connection_room(1 << 20), (1 << 20) - 1024);
        assert_eq!(connection_room(10), 0);
        assert!(open_file_limit().is_some_and(|limit| limit > 0));
    }
}
