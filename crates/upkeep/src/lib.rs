//! The core of upkeep: pure decisions over cluster snapshots, and the thin
//! shared I/O every plugin needs (kubectl-standard flags, output).

pub mod connect;
pub mod output;
pub mod version;
