//! The scaling decision: a pure function of one queue reading, the current number of
//! workers and the recommendations of the last stabilization window. No I/O and no clock:
//! the caller passes `now`, so every rule is unit-tested without waiting.
//!
//! The rules, in order (docs/autoscaling.md explains why):
//! 1. backlog = ready + unacknowledged. Unacked messages are being worked on right now, so
//!    they need workers as much as ready ones (KEDA counted only ready ones: #356).
//! 2. raw = ceil(backlog / target backlog per worker), clamped to [min, max].
//! 3. Tolerance: when `current > 0` and |raw - current| / current <= tolerance, this
//!    reading recommends `current` (no change for small wobbles).
//! 4. Up: a recommendation above `current` is followed at once, by at most `max_step_up`.
//! 5. Down: only after a full window of readings, and only to the HIGHEST recommendation
//!    of the window, so every reading of the window agrees to go at least that low.
//! 6. A missing reading holds `current` and restarts the window: no scale-down on
//!    readings that were not seen.
//! 7. The bounds always win: a count outside [min, max] is brought inside at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The knobs of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min: u32,
    pub max: u32,
    /// Acceptable backlog per worker: acceptable latency / average processing time.
    pub target_backlog: u32,
    /// Relative change ignored, e.g. 0.1 for 10 %.
    pub tolerance: f64,
    /// Most workers added by one decision.
    pub max_step_up: u32,
    /// How long every recommendation must agree before workers are removed.
    pub scale_down_window: Duration,
}

impl Policy {
    /// Rejects settings the rules cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!("min ({}) is above max ({})", self.min, self.max));
        }
        if self.max == 0 {
            return Err("max must be at least 1".to_owned());
        }
        if self.target_backlog == 0 {
            return Err("the target backlog per worker must be at least 1".to_owned());
        }
        if self.max_step_up == 0 {
            return Err("the step limit must be at least 1".to_owned());
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(format!("tolerance {} is not in [0, 1)", self.tolerance));
        }
        Ok(())
    }

    fn clamp(&self, n: u64) -> u32 {
        u32::try_from(n)
            .unwrap_or(u32::MAX)
            .clamp(self.min, self.max)
    }
}

/// One reading of the queue. `unacked` is `None` when only the ready count could be read
/// (the AMQP fallback), which the decision's reason says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub ready: u64,
    pub unacked: Option<u64>,
}

impl Observation {
    pub fn backlog(&self) -> u64 {
        self.ready.saturating_add(self.unacked.unwrap_or(0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Up,
    Down,
    Hold,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::Hold => "hold",
        }
    }
}

/// What one tick decided, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub current: u32,
    pub desired: u32,
    /// This reading's recommendation (after clamp and tolerance); none without a reading.
    pub recommendation: Option<u32>,
    pub action: Action,
    pub reason: String,
}

/// The decision function plus its only state: the recommendations of the window.
#[derive(Debug, Clone)]
pub struct Decider {
    policy: Policy,
    history: VecDeque<(Instant, u32)>,
    /// Start of the current unbroken run of readings.
    readings_since: Option<Instant>,
}

impl Decider {
    pub fn new(policy: Policy) -> Self {
        Decider {
            policy,
            history: VecDeque::new(),
            readings_since: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides the number of workers for this tick. `current` is the count the backend
    /// runs now; `observation` is `None` when the queue could not be read.
    pub fn decide(
        &mut self,
        now: Instant,
        current: u32,
        observation: Option<Observation>,
    ) -> Decision {
        let Some(obs) = observation else {
            self.history.clear();
            self.readings_since = None;
            return self.finish(
                current,
                current,
                None,
                format!("metric unavailable: holding {current} workers"),
            );
        };
        let p = &self.policy;
        let window = p.scale_down_window;
        let since = *self.readings_since.get_or_insert(now);

        let backlog = obs.backlog();
        let raw = backlog.div_ceil(u64::from(p.target_backlog));
        let clamped = p.clamp(raw);
        let within_tolerance = current > 0
            && clamped != current
            && f64::from(clamped.abs_diff(current)) / f64::from(current) <= p.tolerance;
        let recommendation = if within_tolerance { current } else { clamped };

        self.history.push_back((now, recommendation));
        while let Some(&(t, _)) = self.history.front() {
            if now.saturating_duration_since(t) > window {
                self.history.pop_front();
            } else {
                break;
            }
        }

        let unacked = obs
            .unacked
            .map_or_else(|| "?".to_owned(), |u| u.to_string());
        let ready_only = if obs.unacked.is_none() {
            " [ready-only reading: unacked unknown]"
        } else {
            ""
        };
        let bounded = if u64::from(clamped) == raw {
            String::new()
        } else {
            format!(" -> {clamped} in [{}, {}]", p.min, p.max)
        };
        let basis = format!(
            "backlog {backlog} (ready {}, unacked {unacked}) / target {} = {raw}{bounded}{ready_only}",
            obs.ready, p.target_backlog
        );
        let window_text = humantime::format_duration(window);

        let (desired, reason) = if recommendation > current {
            let desired = recommendation.min(current.saturating_add(p.max_step_up));
            let limit = if desired < recommendation {
                format!(" (step limit {}: {recommendation} wanted)", p.max_step_up)
            } else {
                String::new()
            };
            (desired, format!("scale up: {basis}{limit}"))
        } else if recommendation < current {
            let elapsed = now.saturating_duration_since(since);
            let highest = self
                .history
                .iter()
                .map(|&(_, r)| r)
                .max()
                .unwrap_or(recommendation);
            if elapsed < window {
                (
                    current,
                    format!(
                        "scale-down held: {basis}; the {window_text} window is not full yet ({} seen)",
                        humantime::format_duration(round_ms(elapsed))
                    ),
                )
            } else if highest < current {
                (
                    highest,
                    format!(
                        "scale down: {basis}; highest recommendation in the last {window_text} is {highest}"
                    ),
                )
            } else {
                (
                    current,
                    format!(
                        "scale-down held: {basis}; a recommendation of {highest} in the last {window_text}"
                    ),
                )
            }
        } else if within_tolerance {
            (
                current,
                format!(
                    "within tolerance: {basis}; {clamped} is within {}% of {current}",
                    (p.tolerance * 100.0).round()
                ),
            )
        } else {
            (current, format!("steady: {basis}"))
        };
        self.finish(current, desired, Some(recommendation), reason)
    }

    /// Applies the bounds (they always win) and names the action.
    fn finish(
        &self,
        current: u32,
        candidate: u32,
        recommendation: Option<u32>,
        mut reason: String,
    ) -> Decision {
        let desired = self.policy.clamp(u64::from(candidate));
        if desired != candidate {
            reason.push_str(&format!(
                "; {candidate} is outside [{}, {}]: {desired}",
                self.policy.min, self.policy.max
            ));
        }
        let action = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => Action::Up,
            std::cmp::Ordering::Less => Action::Down,
            std::cmp::Ordering::Equal => Action::Hold,
        };
        Decision {
            current,
            desired,
            recommendation,
            action,
            reason,
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
