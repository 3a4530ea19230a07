//! How many connections HAProxy can hold within the open-files limit it inherits.
//!
//! HAProxy needs two descriptors per connection and some more (listeners, the
//! master socket, checks). When the configured `maxconn` needs more than the hard
//! limit, which it cannot raise without `CAP_SYS_RESOURCE`, it refuses to start
//! ("Cannot raise FD limit"): the case in containers started with a 1024 limit
//! (`ctr run`'s default). The driver lowers `maxconn` to fit instead.

/// Descriptors kept beyond two per connection.
const RESERVED: u64 = 256;

/// `wanted`, or the largest `maxconn` that fits `hard_limit` open files (at least 1).
pub(crate) fn fitting_maxconn(wanted: u32, hard_limit: Option<u64>) -> u32 {
    let Some(limit) = hard_limit else {
        return wanted;
    };
    let fits = limit.saturating_sub(RESERVED) / 2;
    u32::try_from(fits)
        .unwrap_or(u32::MAX)
        .clamp(1, wanted.max(1))
}

/// This process's hard limit on open files, which HAProxy inherits; `None` when
/// unlimited or unknown (no `/proc`).
pub(crate) fn open_files_hard_limit() -> Option<u64> {
    parse_hard_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The hard limit on the `Max open files` line of a `/proc/<pid>/limits` file.
fn parse_hard_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut columns = line.trim_start_matches("Max open files").split_whitespace();
    let _soft = columns.next()?;
    columns.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max processes             63711                63711                processes \n\
        Max open files            1024                 4096                 files     \n";

    #[test]
    fn reads_the_hard_limit_on_open_files() {
        assert_eq!(parse_hard_limit(LIMITS), Some(4096));
        let unlimited = LIMITS.replace("4096 ", "unlimited ");
        assert_eq!(parse_hard_limit(&unlimited), None);
        assert_eq!(parse_hard_limit("Max processes 1 1 processes"), None);
    }

    #[test]
    fn maxconn_is_lowered_only_when_the_limit_is_short() {
        assert_eq!(fitting_maxconn(4096, None), 4096);
        assert_eq!(fitting_maxconn(4096, Some(1_048_576)), 4096);
        // ctr run's default: 1024 descriptors hold 384 connections.
        assert_eq!(fitting_maxconn(4096, Some(1024)), 384);
        assert_eq!(fitting_maxconn(4096, Some(10)), 1);
    }

    #[test]
    fn this_process_has_a_readable_limit() {
        // Linux test machines have /proc; the value is whatever the shell set.
        assert!(std::path::Path::new("/proc/self/limits").exists());
        let _ = open_files_hard_limit();
    }
}
