//! `kubectl upgrade-node`: the command line and the transport it picks; the
//! decisions live in `upkeep::upgrade`.

pub mod cli;
