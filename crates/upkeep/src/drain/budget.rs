//! Will a PodDisruptionBudget ever let this node's pods go? The drain paces
//! its evictions when the budget frees as replacements become healthy, and
//! refuses up front only when it never can (where `kubectl drain` retries
//! forever).
//!
//! The numbers follow the disruption controller
//! (kubernetes `pkg/controller/disruption/disruption.go` getExpectedPodCount,
//! updatePdbStatus): `maxUnavailable` gives desired = expected − maxUnavailable
//! (percentages of the expected count, rounded up); an integer `minAvailable`
//! is the desired count against the pods it selects; a percentage one is
//! rounded up against the expected count; a policy/v1 spec with neither has no
//! default (only policy/v1beta1 defaulted minAvailable to 1,
//! `pkg/apis/policy/v1beta1/defaults.go`), so expected and desired are 0 and
//! `disruptionsAllowed` is forced to 0.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the budget means for the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outlook {
    /// It allows every eviction the node needs right now.
    Room,
    /// Not all at once, but it frees as replacements become healthy.
    Paced,
    /// No eviction is ever allowed until someone changes the budget or the
    /// workload: why, and the fix.
    Never { why: String, fix: String },
}

/// `int` or `N%` of `total`, rounded up: apimachinery
/// `pkg/util/intstr/intstr.go` GetScaledValueFromIntOrPercent (roundUp true,
/// as the disruption controller calls it). `None` for a malformed percentage.
pub fn scaled(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            let v = (pct * i64::from(total) + 99) / 100;
            i32::try_from(v).ok()
        }
    }
}

fn show(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// Judges `pdb` for a drain that must evict `need` of its healthy pods.
/// `selected` is how many pods of the cluster it selects (the expected count
/// of an integer minAvailable); the scale-based expected count is read from
/// `status.expectedPods`, falling back to `selected` before the controller
/// has computed it.
pub fn outlook(pdb: &PodDisruptionBudget, need: i32, selected: i32) -> Outlook {
    let spec = pdb.spec.clone().unwrap_or_default();
    let status = pdb.status.clone().unwrap_or_default();
    let scale_expected = status.expected_pods.filter(|e| *e > 0).unwrap_or(selected);
    let (expected, desired, what) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(mu), _) => {
            let Some(m) = scaled(mu, scale_expected) else {
                return Outlook::Never {
                    why: format!(
                        "maxUnavailable {:?} is not an integer or a percentage",
                        show(mu)
                    ),
                    fix: "set maxUnavailable to an integer or a percentage such as 1 or 10%".into(),
                };
            };
            if m <= 0 {
                return Outlook::Never {
                    why: format!("maxUnavailable {} never allows a disruption", show(mu)),
                    fix: "raise maxUnavailable to 1 or more (`kubectl edit pdb`)".into(),
                };
            }
            (
                scale_expected,
                scale_expected - m,
                format!("maxUnavailable {}", show(mu)),
            )
        }
        (None, Some(ma @ IntOrString::Int(i))) => {
            (selected, *i, format!("minAvailable {}", show(ma)))
        }
        (None, Some(ma)) => {
            let Some(d) = scaled(ma, scale_expected) else {
                return Outlook::Never {
                    why: format!(
                        "minAvailable {:?} is not an integer or a percentage",
                        show(ma)
                    ),
                    fix: "set minAvailable to an integer or a percentage".into(),
                };
            };
            (scale_expected, d, format!("minAvailable {}", show(ma)))
        }
        (None, None) => {
            return Outlook::Never {
                why: "it sets neither minAvailable nor maxUnavailable: policy/v1 has no default, so it allows 0 disruptions".into(),
                fix: "set maxUnavailable: 1 (or a minAvailable below the replicas)".into(),
            };
        }
    };
    if expected <= 0 {
        return Outlook::Never {
            why: "it expects 0 pods, so the disruption controller allows 0 disruptions".into(),
            fix: "check its selector against the workload's pod labels".into(),
        };
    }
    if desired >= expected {
        return Outlook::Never {
            why: format!(
                "{what} keeps all {expected} of its pods (desired {desired} of {expected})"
            ),
            fix: format!(
                "scale the workload to {} replicas (`kubectl scale`) so one may move at a time, or lower it so desired healthy is below {expected}",
                desired + 1
            ),
        };
    }
    if status.disruptions_allowed.unwrap_or(0) >= need {
        Outlook::Room
    } else {
        Outlook::Paced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};

    fn budget(
        min: Option<IntOrString>,
        max: Option<IntOrString>,
        allowed: i32,
        expected: i32,
    ) -> PodDisruptionBudget {
        PodDisruptionBudget {
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..Default::default()
            }),
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: Some(allowed),
                expected_pods: Some(expected),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    use IntOrString::{Int, String as Pct};

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&Pct("10%".into()), 5), Some(1));
        assert_eq!(scaled(&Pct("50%".into()), 3), Some(2));
        assert_eq!(scaled(&Pct("0%".into()), 9), Some(0));
        assert_eq!(scaled(&Pct("ten".into()), 9), None);
        assert_eq!(scaled(&Int(2), 9), Some(2));
    }

    #[test]
    fn budgets_that_never_allow_are_told_apart_from_slow_ones() {
        let never =
            |b: &PodDisruptionBudget, sel| matches!(outlook(b, 1, sel), Outlook::Never { .. });
        // maxUnavailable 0 / 0%; minAvailable = replicas; 1 replica with minAvailable 1; 100%.
        assert!(never(&budget(None, Some(Int(0)), 0, 3), 3));
        assert!(never(&budget(None, Some(Pct("0%".into())), 0, 3), 3));
        assert!(never(&budget(Some(Int(3)), None, 0, 3), 3));
        assert!(never(&budget(Some(Int(1)), None, 0, 1), 1));
        assert!(never(&budget(Some(Pct("100%".into())), None, 0, 4), 4));
        // An empty policy/v1 spec, whatever the status says.
        assert!(never(&budget(None, None, 2, 3), 3));
        // maxUnavailable 1 with 3 replicas, two on the node: paced.
        assert_eq!(
            outlook(&budget(None, Some(Int(1)), 1, 3), 2, 3),
            Outlook::Paced
        );
        assert_eq!(
            outlook(&budget(None, Some(Int(1)), 1, 3), 1, 3),
            Outlook::Room
        );
        // minAvailable 2 of 3: paced; a percentage of a scale: paced.
        assert_eq!(
            outlook(&budget(Some(Int(2)), None, 0, 3), 1, 3),
            Outlook::Paced
        );
        assert_eq!(
            outlook(&budget(Some(Pct("50%".into())), None, 0, 4), 2, 4),
            Outlook::Paced
        );
        let Outlook::Never { fix, .. } = outlook(&budget(Some(Int(2)), None, 0, 2), 1, 2) else {
            panic!("minAvailable 2 of 2 never allows");
        };
        assert!(fix.contains("3 replicas"), "{fix}");
    }
}
