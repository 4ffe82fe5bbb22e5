//! The decision rules, one behaviour per test, on a fake clock.

use std::time::{Duration, Instant};

use super::*;

fn policy() -> Policy {
    Policy {
        min: 1,
        max: 20,
        target_backlog: 10,
        tolerance: 0.1,
        max_step_up: 4,
        scale_down_window: Duration::from_secs(10),
    }
}

fn full(ready: u64, unacked: u64) -> Option<Observation> {
    Some(Observation {
        ready,
        unacked: Some(unacked),
    })
}

/// A decider on a fake clock that ticks once a second.
struct Sim {
    decider: Decider,
    start: Instant,
    t: Duration,
    current: u32,
}

impl Sim {
    fn new(policy: Policy, current: u32) -> Sim {
        Sim {
            decider: Decider::new(policy),
            start: Instant::now(),
            t: Duration::ZERO,
            current,
        }
    }

    /// One tick: decide, apply the decision, advance the clock by a second.
    fn tick(&mut self, observation: Option<Observation>) -> Decision {
        let d = self
            .decider
            .decide(self.start + self.t, self.current, observation);
        assert_eq!(d.current, self.current);
        self.current = d.desired;
        self.t += Duration::from_secs(1);
        d
    }

    fn ticks(&mut self, n: usize, observation: Option<Observation>) -> Decision {
        let mut last = None;
        for _ in 0..n {
            last = Some(self.tick(observation));
        }
        last.expect("at least one tick")
    }
}

#[test]
fn desired_is_the_backlog_divided_by_the_target_rounded_up() {
    let mut sim = Sim::new(policy(), 1);
    let d = sim.tick(full(21, 0));
    assert_eq!((d.desired, d.action), (3, Action::Up));
    assert_eq!(d.recommendation, Some(3));
    assert!(d.reason.starts_with("scale up: backlog 21"), "{}", d.reason);
}

#[test]
fn unacked_messages_count_as_backlog() {
    // 40 messages being worked on and none ready: these workers are busy, keep them.
    let mut sim = Sim::new(policy(), 4);
    let d = sim.ticks(30, full(0, 40));
    assert_eq!((d.desired, d.action), (4, Action::Hold));
    assert!(
        d.reason
            .starts_with("steady: backlog 40 (ready 0, unacked 40)")
    );
}

#[test]
fn a_ready_only_reading_is_used_and_marked() {
    let mut sim = Sim::new(policy(), 1);
    let d = sim.tick(Some(Observation {
        ready: 35,
        unacked: None,
    }));
    assert_eq!(d.desired, 4);
    assert!(d.reason.contains("unacked ?"), "{}", d.reason);
    assert!(d.reason.contains("ready-only"), "{}", d.reason);
    let d = sim.tick(full(35, 0));
    assert!(!d.reason.contains("ready-only"), "{}", d.reason);
}

#[test]
fn the_recommendation_is_clamped_to_max() {
    let mut sim = Sim::new(policy(), 18);
    let d = sim.tick(full(100_000, 50));
    assert_eq!((d.desired, d.recommendation), (20, Some(20)));
    let d = sim.tick(full(u64::MAX, u64::MAX));
    assert_eq!((d.desired, d.action), (20, Action::Hold));
}

#[test]
fn an_empty_queue_goes_down_to_min_not_below() {
    let mut p = policy();
    p.min = 2;
    let mut sim = Sim::new(p, 3);
    let d = sim.ticks(30, full(0, 0));
    assert_eq!(d.desired, 2);
    assert_eq!(d.recommendation, Some(2));
}

#[test]
fn a_count_outside_the_bounds_is_corrected_at_once() {
    // Above max: down at once, without waiting for the window.
    let mut sim = Sim::new(policy(), 25);
    let d = sim.tick(full(1000, 0));
    assert_eq!((d.desired, d.action), (20, Action::Down));
    assert!(d.reason.contains("outside [1, 20]"), "{}", d.reason);
    // Below min, even without a reading (min is configuration, not a guess).
    let mut p = policy();
    p.min = 3;
    let mut sim = Sim::new(p, 0);
    let d = sim.tick(None);
    assert_eq!((d.desired, d.action), (3, Action::Up));
    assert!(d.reason.starts_with("metric unavailable"), "{}", d.reason);
}

#[test]
fn changes_within_the_tolerance_are_ignored() {
    let mut sim = Sim::new(policy(), 10);
    // 11 is 10 % above 10: ignored, and recorded as "keep 10".
    let d = sim.tick(full(105, 0));
    assert_eq!(
        (d.desired, d.recommendation, d.action),
        (10, Some(10), Action::Hold)
    );
    assert!(d.reason.starts_with("within tolerance"), "{}", d.reason);
    // 9 is 10 % below: ignored too, even after a full window.
    let d = sim.ticks(30, full(85, 0));
    assert_eq!((d.desired, d.action), (10, Action::Hold));
    assert!(d.reason.starts_with("within tolerance"), "{}", d.reason);
    // 12 is 20 % above: followed.
    let d = sim.tick(full(115, 0));
    assert_eq!((d.desired, d.action), (12, Action::Up));
}

#[test]
fn tolerance_never_blocks_small_counts() {
    // From 1 to 2 is +100 %; from 0 there is no ratio at all.
    let mut sim = Sim::new(policy(), 1);
    assert_eq!(sim.tick(full(11, 0)).desired, 2);
    let mut p = policy();
    p.min = 0;
    let mut sim = Sim::new(p, 0);
    let d = sim.tick(full(0, 0));
    assert_eq!((d.desired, d.action), (0, Action::Hold));
    let d = sim.tick(full(1, 0));
    assert_eq!((d.desired, d.action), (1, Action::Up));
}

#[test]
fn scale_up_is_immediate_but_limited_per_decision() {
    let mut sim = Sim::new(policy(), 1);
    let d = sim.tick(full(200, 0));
    assert_eq!(d.desired, 5);
    assert_eq!(d.recommendation, Some(20));
    assert!(d.reason.contains("step limit 4: 20 wanted"), "{}", d.reason);
    assert_eq!(sim.tick(full(200, 0)).desired, 9);
    assert_eq!(sim.tick(full(200, 0)).desired, 13);
    assert_eq!(sim.tick(full(200, 0)).desired, 17);
    let d = sim.tick(full(200, 0));
    assert_eq!(d.desired, 20);
    assert!(!d.reason.contains("step limit"), "{}", d.reason);
}

#[test]
fn no_scale_down_before_the_window_is_full() {
    let mut sim = Sim::new(policy(), 5);
    // Readings at t = 0..9 s: the 10 s window is not full yet.
    for _ in 0..10 {
        let d = sim.tick(full(0, 0));
        assert_eq!((d.desired, d.action), (5, Action::Hold));
        assert!(d.reason.contains("not full yet"), "{}", d.reason);
    }
    // At t = 10 s it is; every reading said 1.
    let d = sim.tick(full(0, 0));
    assert_eq!((d.desired, d.action), (1, Action::Down));
    assert!(d.reason.starts_with("scale down"), "{}", d.reason);
}

#[test]
fn scale_down_goes_to_the_highest_recommendation_of_the_window() {
    let mut sim = Sim::new(policy(), 8);
    sim.ticks(15, full(80, 0)); // steady at 8
    // The backlog falls: 60 (6), then 30 (3), then 0 (1).
    sim.tick(full(60, 0));
    sim.ticks(4, full(30, 0));
    let d = sim.tick(full(0, 0));
    // The window still holds the 8s and the 6: no scale-down yet.
    assert_eq!((d.desired, d.action), (8, Action::Hold));
    assert!(
        d.reason.contains("a recommendation of 8 in the last 10s"),
        "{}",
        d.reason
    );
    // Once the last 8 left the window, down to 6 (the 6 is still in it), not further.
    let mut downs = Vec::new();
    for _ in 0..30 {
        let d = sim.tick(full(0, 0));
        if d.action == Action::Down {
            downs.push(d.desired);
        }
    }
    assert_eq!(
        downs,
        vec![6, 3, 1],
        "each step waits for the window to agree"
    );
}

#[test]
fn one_high_reading_in_the_window_holds_the_workers() {
    let mut sim = Sim::new(policy(), 4);
    sim.ticks(12, full(40, 0));
    for i in 0..40 {
        // Mostly empty, but a burst of 40 every 8 s.
        let obs = if i % 8 == 0 { full(40, 0) } else { full(0, 0) };
        let d = sim.tick(obs);
        assert_eq!(d.desired, 4, "tick {i}: {}", d.reason);
    }
}

#[test]
fn flapping_input_does_not_flap_the_workers() {
    let mut sim = Sim::new(policy(), 1);
    let mut changes = 0;
    let mut last = 1;
    for i in 0..120 {
        let obs = if i % 2 == 0 { full(60, 0) } else { full(0, 0) };
        let d = sim.tick(obs);
        if d.desired != last {
            changes += 1;
            last = d.desired;
        }
    }
    assert_eq!(last, 6);
    assert_eq!(changes, 2, "1 -> 5 -> 6, then steady");
}

#[test]
fn a_missing_metric_holds_and_restarts_the_window() {
    let mut sim = Sim::new(policy(), 6);
    sim.ticks(20, full(60, 0));
    let d = sim.tick(None);
    assert_eq!(
        (d.desired, d.action, d.recommendation),
        (6, Action::Hold, None)
    );
    assert_eq!(d.reason, "metric unavailable: holding 6 workers");
    // The queue is empty again, but the window restarts with the readings.
    for _ in 0..10 {
        let d = sim.tick(full(0, 0));
        assert_eq!(d.desired, 6, "{}", d.reason);
    }
    assert_eq!(sim.tick(full(0, 0)).desired, 1);
}

#[test]
fn a_missing_metric_never_scales_to_zero_or_up() {
    let mut p = policy();
    p.min = 0;
    let mut sim = Sim::new(p, 3);
    for _ in 0..100 {
        let d = sim.tick(None);
        assert_eq!((d.desired, d.action), (3, Action::Hold));
    }
}

#[test]
fn a_zero_window_scales_down_at_once() {
    let mut p = policy();
    p.scale_down_window = Duration::ZERO;
    let mut sim = Sim::new(p, 5);
    assert_eq!(sim.tick(full(20, 0)).desired, 2);
}

#[test]
fn the_bounds_and_the_step_hold_for_any_input() {
    // A xorshift stream of readings, some missing: invariants of every decision.
    let p = Policy {
        min: 2,
        max: 9,
        ..policy()
    };
    let mut sim = Sim::new(p.clone(), 0);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let obs = match x % 5 {
            0 => None,
            1 => Some(Observation {
                ready: x % 150,
                unacked: None,
            }),
            _ => full(x % 150, (x >> 8) % 20),
        };
        let before = sim.current;
        let d = sim.tick(obs);
        assert!((p.min..=p.max).contains(&d.desired), "{d:?}");
        if before >= p.min {
            assert!(d.desired <= before + p.max_step_up, "{d:?}");
        }
        if obs.is_none() && before >= p.min {
            assert_eq!(d.desired, before, "{d:?}");
        }
    }
}

#[test]
fn policies_that_cannot_work_are_rejected() {
    assert!(policy().validate().is_ok());
    let bad = [
        Policy {
            min: 5,
            max: 4,
            ..policy()
        },
        Policy {
            min: 0,
            max: 0,
            ..policy()
        },
        Policy {
            target_backlog: 0,
            ..policy()
        },
        Policy {
            max_step_up: 0,
            ..policy()
        },
        Policy {
            tolerance: 1.5,
            ..policy()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
}

/// A function's scaler (SNS -> Lambda): min 0, max 1, scaled from zero.
fn from_zero() -> Policy {
    Policy {
        min: 0,
        max: 1,
        target_backlog: 20,
        ..policy()
    }
}

#[test]
fn min_zero_is_a_valid_policy() {
    assert!(from_zero().validate().is_ok());
}

#[test]
fn an_empty_queue_keeps_zero_workers() {
    let mut sim = Sim::new(from_zero(), 0);
    let d = sim.ticks(30, full(0, 0));
    assert_eq!((d.desired, d.action), (0, Action::Hold));
    assert!(d.reason.starts_with("steady"), "{}", d.reason);
}

#[test]
fn one_message_activates_from_zero_at_once() {
    // KEDA's activation with activationQueueLength 0: any backlog starts the first worker,
    // however far below the target backlog per worker it is.
    let mut sim = Sim::new(from_zero(), 0);
    sim.ticks(5, full(0, 0));
    let d = sim.tick(full(1, 0));
    assert_eq!((d.current, d.desired, d.action), (0, 1, Action::Up));
    assert!(d.reason.starts_with("scale up"), "{}", d.reason);
    // A ready-only reading (the exact AMQP count) activates as well.
    let mut sim = Sim::new(from_zero(), 0);
    let d = sim.tick(Some(Observation {
        ready: 1,
        unacked: None,
    }));
    assert_eq!(d.desired, 1);
}

#[test]
fn the_worker_stays_while_it_holds_a_message_then_goes_to_zero_after_the_window() {
    let mut sim = Sim::new(from_zero(), 0);
    assert_eq!(sim.tick(full(1, 0)).desired, 1);
    // Taken, not yet acked: still backlog.
    assert_eq!(sim.ticks(3, full(0, 1)).desired, 1);
    // Empty: held for the whole window (10 s), then zero.
    let held = sim.ticks(10, full(0, 0));
    assert_eq!(held.desired, 1, "{}", held.reason);
    assert!(
        held.reason.starts_with("scale-down held"),
        "{}",
        held.reason
    );
    let d = sim.tick(full(0, 0));
    assert_eq!((d.desired, d.action), (0, Action::Down), "{}", d.reason);
    // And a new message starts one again at once.
    assert_eq!(sim.tick(full(0, 0)).desired, 0);
    assert_eq!(sim.tick(full(2, 0)).desired, 1);
}

#[test]
fn a_missing_reading_at_zero_holds_zero() {
    let mut sim = Sim::new(from_zero(), 0);
    let d = sim.ticks(3, None);
    assert_eq!((d.desired, d.action), (0, Action::Hold));
    assert_eq!(sim.tick(full(1, 0)).desired, 1);
}
