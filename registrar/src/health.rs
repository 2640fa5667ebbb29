//! Rise and fall: turning a stream of check results into up/down, per check and per service.
//!
//! Lifecycle of one check: it starts `Down { passes: 0 }` (nothing is known, so nothing is
//! registered); `rise` consecutive passes make it `Up`; from `Up`, `fall` consecutive failures
//! make it `Down` again. A pass resets the failure count and a failure the pass count, so only
//! consecutive results count. A service is up when every one of its checks is up. No I/O.

use std::num::NonZeroU32;

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Not (or no longer) healthy; `passes` consecutive passes seen so far.
    Down { passes: u32 },
    /// Healthy; `failures` consecutive failures seen so far.
    Up { failures: u32 },
}

/// Rise/fall tracking for one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckHealth {
    rise: NonZeroU32,
    fall: NonZeroU32,
    state: CheckState,
}

impl CheckHealth {
    /// A check that has not run yet: down.
    pub fn new(rise: NonZeroU32, fall: NonZeroU32) -> CheckHealth {
        CheckHealth { rise, fall, state: CheckState::Down { passes: 0 } }
    }

    /// A check that starts where its service stands: up with no failure yet when the service
    /// is up (it stays registered until this check has failed `fall` times), else down.
    pub fn starting(rise: NonZeroU32, fall: NonZeroU32, up: bool) -> CheckHealth {
        let state = if up { CheckState::Up { failures: 0 } } else { CheckState::Down { passes: 0 } };
        CheckHealth { rise, fall, state }
    }

    pub fn state(&self) -> CheckState {
        self.state
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, CheckState::Up { .. })
    }

    /// Records one result; returns whether the check changed between up and down.
    pub fn record(&mut self, passed: bool) -> bool {
        let (next, flipped) = match (self.state, passed) {
            (CheckState::Down { passes }, true) if passes + 1 >= self.rise.get() => {
                (CheckState::Up { failures: 0 }, true)
            }
            (CheckState::Down { passes }, true) => (CheckState::Down { passes: passes + 1 }, false),
            (CheckState::Down { .. }, false) => (CheckState::Down { passes: 0 }, false),
            (CheckState::Up { failures }, false) if failures + 1 >= self.fall.get() => {
                (CheckState::Down { passes: 0 }, true)
            }
            (CheckState::Up { failures }, false) => (CheckState::Up { failures: failures + 1 }, false),
            (CheckState::Up { .. }, true) => (CheckState::Up { failures: 0 }, false),
        };
        self.state = next;
        flipped
    }
}

/// Rise/fall tracking for all of a service's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    checks: Vec<CheckHealth>,
}

impl ServiceHealth {
    pub fn new(checks: impl IntoIterator<Item = (NonZeroU32, NonZeroU32)>) -> ServiceHealth {
        ServiceHealth { checks: checks.into_iter().map(|(rise, fall)| CheckHealth::new(rise, fall)).collect() }
    }

    /// Up when every check is up (and there is at least one).
    pub fn is_up(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(CheckHealth::is_up)
    }

    pub fn checks(&self) -> &[CheckHealth] {
        &self.checks
    }

    /// This health under a new configuration of the checks, one `(rise, fall, same)` per new
    /// check, `same` when it checks what the check at its position checked before: such a
    /// check keeps its state and counts under the new thresholds; any other starts where the
    /// service stands ([`CheckHealth::starting`]).
    pub fn carried(&self, checks: impl IntoIterator<Item = (NonZeroU32, NonZeroU32, bool)>) -> ServiceHealth {
        let up = self.is_up();
        let checks = checks
            .into_iter()
            .enumerate()
            .map(|(i, (rise, fall, same))| match self.checks.get(i) {
                Some(old) if same => CheckHealth { rise, fall, state: old.state },
                _ => CheckHealth::starting(rise, fall, up),
            })
            .collect();
        ServiceHealth { checks }
    }

    /// Records one round of results, one per check in order; returns whether the service
    /// changed between up and down. Results beyond the number of checks are ignored.
    pub fn record(&mut self, results: impl IntoIterator<Item = bool>) -> bool {
        let before = self.is_up();
        for (check, passed) in self.checks.iter_mut().zip(results) {
            check.record(passed);
        }
        before != self.is_up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    /// Feeds a sequence of results ('+' pass, '-' fail) and returns the up/down trace.
    fn trace(rise: u32, fall: u32, results: &str) -> String {
        let mut health = CheckHealth::new(n(rise), n(fall));
        results
            .chars()
            .map(|c| {
                health.record(c == '+');
                if health.is_up() { 'U' } else { 'D' }
            })
            .collect()
    }

    #[test]
    fn starts_down_and_needs_rise_consecutive_passes() {
        assert_eq!(trace(3, 2, "+++"), "DDU");
        assert_eq!(trace(3, 2, "++-+++"), "DDDDDU");
        assert_eq!(trace(1, 1, "+"), "U");
        assert_eq!(trace(1, 1, "-"), "D");
    }

    #[test]
    fn falls_after_fall_consecutive_failures() {
        assert_eq!(trace(1, 3, "+---"), "UUUD");
        assert_eq!(trace(1, 3, "+--+--+"), "UUUUUUU");
        assert_eq!(trace(2, 2, "++--++"), "DUUDDU");
    }

    #[test]
    fn counters_are_visible_in_the_state() {
        let mut h = CheckHealth::new(n(3), n(2));
        h.record(true);
        assert_eq!(h.state(), CheckState::Down { passes: 1 });
        h.record(true);
        assert!(h.record(true));
        assert_eq!(h.state(), CheckState::Up { failures: 0 });
        assert!(!h.record(false));
        assert_eq!(h.state(), CheckState::Up { failures: 1 });
    }

    #[test]
    fn a_service_is_up_only_when_every_check_is_up() {
        let mut s = ServiceHealth::new([(n(1), n(1)), (n(2), n(1))]);
        assert!(!s.is_up());
        assert!(!s.record([true, true]));
        assert!(s.record([true, true]));
        assert!(s.is_up());
        assert!(s.record([true, false]));
        assert!(!s.is_up());
        assert!(!ServiceHealth::new([]).is_up());
    }

    #[test]
    fn a_new_configuration_keeps_state_and_new_checks_start_where_the_service_stands() {
        let mut s = ServiceHealth::new([(n(2), n(3))]);
        s.record([true]);
        s.record([true]);
        s.record([false]);
        assert_eq!(s.checks()[0].state(), CheckState::Up { failures: 1 });
        // Same check, new thresholds: same state and count.
        let kept = s.carried([(n(5), n(2), true)]);
        assert_eq!(kept.checks()[0].state(), CheckState::Up { failures: 1 });
        let mut kept2 = kept.clone();
        assert!(kept2.record([false]), "the new fall of 2 applies");
        // A changed check and an added one start up: one failure is not enough to go.
        let mut changed = s.carried([(n(2), n(2), false), (n(1), n(2), false)]);
        assert!(changed.is_up());
        assert!(!changed.record([false, true]));
        assert!(changed.record([false, true]));
        // A down service's new checks start down.
        let down = ServiceHealth::new([(n(2), n(2))]);
        assert!(!down.carried([(n(1), n(1), false)]).is_up());
    }

    proptest::proptest! {
        /// Agrees with a differently written model: count the streak of results that disagree
        /// with the current state; flip when it reaches rise (when down) or fall (when up).
        #[test]
        fn matches_a_streak_model(rise in 1u32..5, fall in 1u32..5, results in proptest::collection::vec(proptest::bool::ANY, 0..64)) {
            let mut health = CheckHealth::new(n(rise), n(fall));
            let (mut up, mut streak) = (false, 0u32);
            for passed in results {
                let before = up;
                if passed != up {
                    streak += 1;
                    if streak >= if up { fall } else { rise } {
                        up = !up;
                        streak = 0;
                    }
                } else {
                    streak = 0;
                }
                let flipped = health.record(passed);
                proptest::prop_assert_eq!(health.is_up(), up);
                proptest::prop_assert_eq!(flipped, before != up);
            }
        }
    }
}
