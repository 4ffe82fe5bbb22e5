//! Tools behind `bench/run`: the parts of the benchmark that a shell script cannot time
//! well (broker limit, readiness and drain timing, an open-loop order generator) and the
//! report that puts every figure beside the limit it runs against.

pub mod autoscale;
pub mod broker_limit;
pub mod open_loop;
pub mod report;
pub mod wait;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time passed since `since_ns` (nanoseconds since the Unix epoch, as `date +%s%N` prints):
/// lets the script name the moment it spawned a process and the tool time from there.
pub fn elapsed_since(since_ns: u128) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    Duration::from_nanos(now.saturating_sub(since_ns).try_into().unwrap_or(u64::MAX))
}

/// The value at quantile `q` (0.0 to 1.0) of sorted samples, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&samples, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&samples, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(
            quantile(&samples[..1], 0.99),
            Some(Duration::from_millis(1))
        );
        assert_eq!(quantile(&[], 0.5), None);
    }
}
