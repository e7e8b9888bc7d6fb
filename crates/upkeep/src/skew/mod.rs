//! The version skew policy, the support calendar and the upgrade path planner.
//!
//! Pure decisions over a plain [`ClusterVersions`] snapshot:
//!
//! - [`rules`]: the policy as one table ([`RULES`]) and [`evaluate`], which
//!   gives every observed instance its allowed range, verdict and reason, plus
//!   the `violations` and `warnings` lists.
//! - [`calendar`]: the embedded release calendar and [`Calendar::support`].
//! - [`plan()`]: the hops from today's versions to a [`Target`].
//!
//! And the thin I/O that builds the snapshot: [`collect::collect`].
//!
//! ```
//! use upkeep::skew::{ClusterVersions, Component, Observed, evaluate};
//! let snapshot = ClusterVersions {
//!     control_plane_visible: true,
//!     components: vec![
//!         Observed::from_image(Component::KubeApiserver, Some("cp1"),
//!             "registry.k8s.io/kube-apiserver:v1.31.2", "pod"),
//!         Observed::from_version(Component::Kubelet, Some("w1"), "v1.27.4", "node"),
//!     ],
//!     ..Default::default()
//! };
//! let report = evaluate(&snapshot);
//! assert_eq!(report.violations[0].rule, "kubelet-vs-apiserver");
//! ```

pub mod calendar;
pub mod collect;
pub mod plan;
pub mod readiness;
pub mod rules;
pub mod snapshot;

pub use calendar::{Calendar, Release, Support, SupportStatus};
pub use plan::{
    Hop, PlanError, Precondition, Projected, Step, StepAction, Target, UpgradePlan, plan,
};
pub use rules::{
    AllowedRange, ApiserverSummary, Check, Finding, RULES, Rule, SkewReport, Verdict,
    allowed_range, evaluate, rule, rules_for,
};
pub use snapshot::{ClusterVersions, Component, Observed};

#[cfg(test)]
mod tests;
