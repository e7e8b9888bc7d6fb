//! upkeep-lab: a simulated Kubernetes cluster in one process.
//!
//! * [`lab`]: the shared state ([`Lab`]) and the plugin seam ([`LabPlugin`]).
//! * [`store`]: the object store with watch history; [`etcd`]: the store kept in a real etcd.
//! * [`resources`]: the table of served resources.
//! * [`sim`]: controllers, scheduler, kubelets, node lifecycle; [`scenario`]: scenarios.
//! * [`nodeshell`]: each node's command line (packages, kubeadm, systemctl) and [`exec`].
//! * [`clock`], [`faults`], [`metrics`], [`selector`], [`patch`], [`error`]: building blocks.

// ApiError is the Status an API request answers: errors are a normal, cheap path here.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod error;
pub mod etcd;
pub mod exec;
pub mod faults;
pub mod lab;
pub mod metrics;
pub mod nodeshell;
pub mod patch;
pub mod resources;
pub mod scenario;
pub mod selector;
pub mod server;
pub mod sim;
pub mod store;

pub use error::{ApiError, ApiResult};
pub use lab::{Lab, LabOptions, LabPlugin, ServerVersion, default_plugins};
pub use store::{
    DeleteOpts, DeleteOutcome, EventKind, ListQuery, Obj, Store, WatchEvent, WriteScope,
};
