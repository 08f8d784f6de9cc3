//! Clocks and statistics: the cycle counter used for single-operation latencies, its
//! calibration against `Instant`, and medians/percentiles.

use std::time::{Duration, Instant};

/// Reads a fine-grained tick counter: `lfence; rdtsc; lfence` on x86_64, so the read is not
/// reordered with the measured operation; nanoseconds since a process-wide epoch elsewhere.
#[inline(always)]
pub fn now_ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: `lfence` and `rdtsc` are available on every x86_64 CPU and have no memory
        // effects.
        unsafe {
            _mm_lfence();
            let ticks = _rdtsc();
            _mm_lfence();
            ticks
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// CPU time consumed so far by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; this clock exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Pins the calling thread to CPU `cpu` (modulo the CPUs available); returns whether the
/// kernel accepted it. Used so the two threads of d/e really run on two cores and every
/// remote free moves cache lines between them.
pub fn pin_current_thread(cpu: usize) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: `set` is a plain bit set owned by this frame; `sched_setaffinity(0, ..)` only
    // changes the calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Name of the latency clock, for the report.
pub const TICK_SOURCE: &str = if cfg!(target_arch = "x86_64") {
    "lfence+rdtsc around each single operation, timer overhead subtracted, TSC calibrated against Instant"
} else {
    "Instant around each single operation, timer overhead subtracted"
};

/// Converts ticks of [`now_ticks`] to nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct TickClock {
    /// Nanoseconds per tick.
    ns_per_tick: f64,
    /// Median ticks of an empty measurement (two back-to-back reads).
    overhead_ticks: u64,
}

impl TickClock {
    /// Calibrates the counter against `Instant` over `window` and measures the read overhead.
    pub fn calibrate(window: Duration) -> Self {
        let start_instant = Instant::now();
        let start_ticks = now_ticks();
        while start_instant.elapsed() < window {
            core::hint::spin_loop();
        }
        let elapsed_ticks = now_ticks() - start_ticks;
        let elapsed_ns = start_instant.elapsed().as_nanos() as f64;
        let ns_per_tick = elapsed_ns / elapsed_ticks.max(1) as f64;
        let mut empty: Vec<u64> = (0..10_001)
            .map(|_| {
                let t0 = now_ticks();
                let t1 = now_ticks();
                t1 - t0
            })
            .collect();
        let overhead_ticks = percentile_u64(&mut empty, 50.0);
        Self {
            ns_per_tick,
            overhead_ticks,
        }
    }

    /// Nanoseconds for one measured interval, minus the timer overhead (never negative).
    pub fn interval_ns(&self, ticks: u64) -> f64 {
        ticks.saturating_sub(self.overhead_ticks) as f64 * self.ns_per_tick
    }

    /// Counter frequency in GHz (for the report).
    pub fn ghz(&self) -> f64 {
        1.0 / self.ns_per_tick
    }

    /// Timer overhead in nanoseconds (for the report).
    pub fn overhead_ns(&self) -> f64 {
        self.overhead_ticks as f64 * self.ns_per_tick
    }
}

/// The `pct`-th percentile (nearest rank) of `values`, which it sorts.
pub fn percentile_u64(values: &mut [u64], pct: f64) -> u64 {
    assert!(!values.is_empty(), "percentile of no samples");
    values.sort_unstable();
    // The epsilon keeps float error (99.9 / 100 * 1000 = 999.0000000000001) from moving the
    // rank up by one.
    let rank = ((pct / 100.0) * values.len() as f64 - 1e-9).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Median, minimum and maximum of a set of trial results.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Number of values summarised.
    pub count: usize,
}

impl Summary {
    /// Summarises `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        assert!(!values.is_empty(), "summary of no trials");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            count: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_median() {
        let odd = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!(
            (odd.median, odd.min, odd.max, odd.count),
            (2.0, 1.0, 3.0, 3)
        );
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut values: Vec<u64> = (1..=1000).rev().collect();
        assert_eq!(percentile_u64(&mut values, 50.0), 500);
        assert_eq!(percentile_u64(&mut values, 99.0), 990);
        assert_eq!(percentile_u64(&mut values, 99.9), 999);
        assert_eq!(percentile_u64(&mut values, 100.0), 1000);
    }
}
