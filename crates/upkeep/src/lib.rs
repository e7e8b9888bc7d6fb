//! The core of upkeep: pure decisions over cluster snapshots, and the thin
//! shared I/O every plugin needs (kubectl-standard flags, output).
//!
//! - [`version`]: Kubernetes and package versions as real clusters report them.
//! - [`skew`]: the version skew policy as data, the support calendar, the upgrade path planner.
//! - [`drain`]: pod classification rules, the drain plan, the eviction engine.
//! - [`upgrade`]: the node upgrade state machine, package recipes, remote-shell transports.
//! - [`etcdsnap`]: etcd snapshot files: checksum, bbolt structure, status, read in bounded memory.
//! - [`cli`]: the argument groups and value parsers every plugin shares.
//! - [`labels`]: label selectors parsed as the API server parses them.
//! - [`connect`]: the kubectl-standard flags resolved into a client.
//! - [`controlplane`]: which nodes are the control plane, and which is upgraded first.
//! - [`list`]: the one pager (`limit` plus `continue`), streaming or whole.
//! - [`output`]: the one printer (tables, `-o json|yaml`, progress on stderr), exit codes.

pub mod cli;
pub mod complete;
pub mod connect;
pub mod controlplane;
pub mod drain;
pub mod labels;
pub mod list;
pub mod output;
pub mod skew;
pub mod transient;
pub mod upgrade;
pub mod version;

/// etcd snapshot files (its own crate: see its Cargo.toml for why).
pub use upkeep_etcdsnap as etcdsnap;
