//! The seam between simulated pods and node shells: running a command "on a node".
//!
//! The node shell registers one function under the lab extension [`EXTENSION`]
//! (`"nodeshell.exec"`) with [`register`]; the kubelet calls it (through [`lookup`]) for
//! privileged host pods whose command is `nsenter ... -- CMD...`, with the node name and
//! `CMD...` as argv.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::lab::Lab;

/// What a command printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl ExecOutput {
    /// Exit 0 with this stdout.
    pub fn ok(stdout: impl Into<String>) -> Self {
        ExecOutput {
            stdout: stdout.into(),
            stderr: String::new(),
            code: 0,
        }
    }
    /// Exit `code` with this stderr.
    pub fn fail(code: i32, stderr: impl Into<String>) -> Self {
        ExecOutput {
            stdout: String::new(),
            stderr: stderr.into(),
            code,
        }
    }
}

/// `(node, argv) -> output`.
pub type NodeExecFn = Arc<dyn Fn(&str, &[String]) -> ExecOutput + Send + Sync>;

/// The extension name.
pub const EXTENSION: &str = "nodeshell.exec";

/// The slot stored in the lab.
#[derive(Default)]
pub struct NodeExec {
    f: RwLock<Option<NodeExecFn>>,
}

fn slot(lab: &Lab) -> Arc<NodeExec> {
    lab.extension(EXTENSION, NodeExec::default)
}

/// Register the function that runs commands on nodes (replaces an earlier one).
pub fn register(lab: &Lab, f: NodeExecFn) {
    *slot(lab).f.write() = Some(f);
}

/// The registered function, if any.
pub fn lookup(lab: &Lab) -> Option<NodeExecFn> {
    slot(lab).f.read().clone()
}

/// `nsenter -t 1 -m -u -i -n -p -- sh -c '...'` → `["sh", "-c", "..."]`; None when the
/// command is not an nsenter into the host.
pub fn strip_nsenter(argv: &[String]) -> Option<Vec<String>> {
    let first = argv.first()?;
    if first != "nsenter" && !first.ends_with("/nsenter") {
        return None;
    }
    let dd = argv.iter().position(|a| a == "--")?;
    let rest = argv[dd + 1..].to_vec();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_nsenter_prefix() {
        let argv: Vec<String> = ["nsenter", "-t", "1", "-m", "--", "apt-get", "update"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            strip_nsenter(&argv).unwrap(),
            vec!["apt-get".to_string(), "update".to_string()]
        );
        assert!(strip_nsenter(&["sh".to_string()]).is_none());
    }
}
