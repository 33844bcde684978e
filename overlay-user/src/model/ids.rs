//! Identifiers and timestamps as Docker shows them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a short ID (`docker ps`), also a name containers resolve.
pub const SHORT_LEN: usize = 12;

/// 64 lowercase hex digits from the kernel's random source, as Docker IDs.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom(2) fills 32 bytes at once; nothing to recover on failure.
    // SAFETY: the buffer is valid for 32 bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, 32, "getrandom failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time in RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `unix_ns` (ns since the epoch) in RFC 3339 with microseconds.
pub fn rfc3339_micros(unix_ns: u64) -> String {
    let secs = rfc3339(unix_ns / 1_000_000_000);
    let micros = unix_ns % 1_000_000_000 / 1000;
    format!("{}.{micros:06}Z", secs.trim_end_matches('Z'))
}

/// `secs` since the epoch in RFC 3339.
fn rfc3339(secs: u64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn micros_follow_the_seconds() {
        assert_eq!(
            rfc3339_micros(951_782_400_000_123_456),
            "2000-02-29T00:00:00.000123Z"
        );
    }

    #[test]
    fn dates_are_civil() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_036_645, "2026-11-30T11:04:05Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
    }
}
