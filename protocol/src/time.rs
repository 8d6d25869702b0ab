//! The wall clock, read one way everywhere.

/// Nanoseconds since the Unix epoch, now; 0 if the clock reads before it
/// (a record's `created_ns` is signed, so this fits it as is).
#[inline]
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
