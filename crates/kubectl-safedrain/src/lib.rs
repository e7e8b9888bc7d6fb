//! `kubectl safedrain`: the command line; the rules and the engine live in `upkeep::drain`.

pub mod cli;
