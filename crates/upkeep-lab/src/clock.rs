//! The lab's scaled clock.
//!
//! Lab time starts at the real wall-clock time when the lab is created and then runs
//! `time_scale` times faster than real time: with `time_scale = 100`, 300 s of lab time
//! (the default pod-eviction timeout) pass in 3 s. Every timestamp the lab writes
//! (creationTimestamp, deletionTimestamp, conditions, leases) comes from [`Clock::now`];
//! simulated components wait with [`Clock::sleep`] so they follow the same scale.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    real: Instant,
    lab: Timestamp,
    scale: f64,
}

/// Scaled lab time. Cheap to read from any thread.
#[derive(Debug)]
pub struct Clock {
    anchor: Mutex<Anchor>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl Clock {
    pub fn new(time_scale: f64) -> Self {
        Clock {
            anchor: Mutex::new(Anchor {
                real: Instant::now(),
                lab: Timestamp::now(),
                scale: sane(time_scale),
            }),
        }
    }

    /// Current lab time.
    pub fn now(&self) -> Timestamp {
        let a = *self.anchor.lock();
        let real = a.real.elapsed().as_secs_f64() * a.scale;
        a.lab + jiff::SignedDuration::from_secs_f64(real)
    }

    /// Current lab time as RFC 3339 with whole seconds (`metav1.Time`): `2026-05-01T10:00:00Z`.
    pub fn now_rfc3339(&self) -> String {
        format_time(self.now())
    }

    /// Current lab time as `metav1.MicroTime` (leases, events.k8s.io eventTime).
    pub fn now_micro(&self) -> String {
        let t = self.now();
        let secs = t.as_second();
        let micros = t.subsec_microsecond();
        let whole = Timestamp::from_second(secs).unwrap_or(t);
        format!("{}.{:06}Z", whole.strftime("%Y-%m-%dT%H:%M:%S"), micros)
    }

    pub fn time_scale(&self) -> f64 {
        self.anchor.lock().scale
    }

    /// Change the scale from now on (lab time stays continuous).
    pub fn set_time_scale(&self, scale: f64) {
        let mut a = self.anchor.lock();
        let now_real = Instant::now();
        let lab_now = a.lab
            + jiff::SignedDuration::from_secs_f64(
                now_real.duration_since(a.real).as_secs_f64() * a.scale,
            );
        *a = Anchor {
            real: now_real,
            lab: lab_now,
            scale: sane(scale),
        };
    }

    /// Jump lab time forward (tests and "fast-forward" lab commands).
    pub fn advance(&self, lab: Duration) {
        let mut a = self.anchor.lock();
        a.lab += jiff::SignedDuration::try_from(lab).unwrap_or_default();
    }

    /// Real duration that corresponds to `lab` of lab time.
    pub fn real_duration(&self, lab: Duration) -> Duration {
        lab.div_f64(self.time_scale())
    }

    /// Sleep for a lab duration (scaled to real time).
    pub async fn sleep(&self, lab: Duration) {
        tokio::time::sleep(self.real_duration(lab)).await
    }

    /// Lab seconds elapsed since `rfc3339` (negative if in the future); None if unparsable.
    pub fn seconds_since(&self, rfc3339: &str) -> Option<f64> {
        let t: Timestamp = rfc3339.parse().ok()?;
        Some(self.now().duration_since(t).as_secs_f64())
    }
}

fn sane(scale: f64) -> f64 {
    if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    }
}

/// `metav1.Time` formatting: RFC 3339, whole seconds, UTC.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Short human age like kubectl prints (`5s`, `3m2s`, `4h`, `12d`) — pkg/util/duration HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let d = h / 24;
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let y = h / (24 * 365);
        let d = (h / 24) % 365;
        return if d == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{d}d")
        };
    }
    format!("{}y", h / (24 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_time_runs_faster() {
        let c = Clock::new(1000.0);
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let dt = c.now().duration_since(t0).as_secs_f64();
        assert!(dt >= 19.0, "lab time advanced only {dt}s");
        assert_eq!(
            c.real_duration(Duration::from_secs(300)),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
