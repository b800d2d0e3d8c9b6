//! Wall-clock time as moat records it: whole seconds since the Unix epoch
//! (0 if the clock is before it, which only a broken RTC gives).

pub fn unix_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
