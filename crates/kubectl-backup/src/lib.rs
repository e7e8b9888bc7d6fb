//! `kubectl backup`: etcd snapshots you can trust, and a resource export that
//! is really complete.
//!
//! - [`snapshot`]: what a snapshot file is; its checksum and status (shared
//!   with `kubectl upgrade-node --etcd-backup`, so it lives in the core).
//! - [`manifest`]: pointing a kubeadm etcd static pod at a new data directory (pure).
//! - [`etcd`]: save over TLS, restore through etcdutl/etcdctl, the control-plane switch.
//! - [`export`]: every listable object of every API group as YAML files.
//! - [`import`]: applying an export back (`resources restore`).
//! - [`cli`]: the command line.

pub mod cli;
pub mod etcd;
pub mod export;
pub mod import;
pub mod manifest;

pub use upkeep::etcdsnap as snapshot;
pub use upkeep::etcdsnap::bolt;
