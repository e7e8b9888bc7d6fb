//! Node upgrades: the state machine, package-manager recipes, remote-shell transports.
//!
//! - [`target`]: the `--to` target, reported versions, package versions with revisions.
//! - [`validate`]: every value placed into a node command is checked first.
//! - [`recipe`]: the exact commands per package manager (apt, dnf, dnf5, yum), as argv.
//! - [`preflight`]: pure checks over a cluster snapshot and a read-only node probe.
//! - [`plan`]: the named steps of one node's upgrade, resumable from the node's annotation.
//! - [`rolling`]: the order of a whole-cluster upgrade; the surge plan.
//! - [`transport`]: how commands reach a node (remote shell, privileged pod, manual, local).
//! - [`via`]: the transport picked on the command line, as one type.
//! - [`run`]: the thin I/O layer: snapshot, lock, execute, record progress.
//! - [`rollout`]: one node or a whole cluster: lock, waves, confirmation, the interrupt summary.

pub mod plan;
pub mod pod;
pub mod preflight;
pub mod recipe;
pub mod rolling;
pub mod rollout;
pub mod run;
pub mod target;
pub mod transport;
pub mod validate;
pub mod via;

pub use plan::{NodePlan, PROGRESS_ANNOTATION, Progress, Role, StepId};
pub use recipe::{Cmd, PackageManager, Recipe};
pub use target::TargetSpec;
