//! Node upgrades: the state machine, package-manager recipes, remote-shell transports.
