//! `kubectl backup`: etcd snapshots you can trust, and a resource export that
//! is really complete.
//!
//! - [`snapshot`]: what a snapshot file is; its checksum and status (pure).
//! - [`bolt`]: a read-only reader of the bbolt files etcd snapshots are (pure).
//! - [`manifest`]: pointing a kubeadm etcd static pod at a new data directory (pure).
//! - [`etcd`]: save over TLS, restore through etcdutl/etcdctl, the control-plane switch.
//! - [`export`]: every listable object of every API group as YAML files.
//! - [`cli`]: the command line.

pub mod bolt;
pub mod cli;
pub mod etcd;
pub mod export;
pub mod manifest;
pub mod snapshot;
