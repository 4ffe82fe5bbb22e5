//! Load profiles as Goose test plans (`users,duration;users,duration;...`, each step moving
//! linearly to its user count over its duration).

use std::time::Duration;

use crate::Profile;

pub fn test_plan(profile: Profile, users: usize, duration: Duration) -> String {
    let users = users.max(1);
    let total = duration.as_secs().max(4);
    let part = |share: f64| ((total as f64 * share).round() as u64).max(1);
    match profile {
        Profile::Constant => {
            let ramp = part(0.1).min(10);
            format!(
                "{users},{ramp}s;{users},{}s;0,1s",
                total.saturating_sub(ramp).max(1)
            )
        }
        Profile::Ramp => format!(
            "{users},{}s;{users},{}s;0,{}s",
            part(0.6),
            part(0.2),
            part(0.2)
        ),
        // Every shopper from the start; each paces itself to the shared arrival rate.
        Profile::FlashSale => format!(
            "{users},1s;{users},{}s;0,1s",
            total.saturating_sub(2).max(1)
        ),
        Profile::Spike => {
            let base = (users / 10).max(1);
            format!(
                "{base},{}s;{users},1s;{users},{}s;{base},1s;{base},{}s;0,1s",
                part(0.2),
                part(0.3),
                part(0.5)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_peak_at_the_given_users_and_end_at_zero() {
        for profile in [
            Profile::Constant,
            Profile::Ramp,
            Profile::Spike,
            Profile::FlashSale,
        ] {
            let plan = test_plan(profile, 40, Duration::from_secs(60));
            let steps: Vec<(usize, u64)> = plan
                .split(';')
                .map(|s| {
                    let (u, d) = s.split_once(',').expect("users,duration");
                    (
                        u.parse().expect("users"),
                        d.trim_end_matches('s').parse().expect("secs"),
                    )
                })
                .collect();
            assert_eq!(steps.iter().map(|s| s.0).max(), Some(40), "{plan}");
            assert_eq!(steps.last().map(|s| s.0), Some(0), "{plan}");
            let secs: u64 = steps.iter().map(|s| s.1).sum();
            assert!((58..=64).contains(&secs), "{plan} lasts {secs}s");
        }
        let spike = test_plan(Profile::Spike, 40, Duration::from_secs(60));
        assert!(spike.starts_with("4,"), "{spike}");
    }
}
