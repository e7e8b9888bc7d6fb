//! The command-line layer every plugin shares: argument groups defined once
//! (one name, one help, one default), and value parsers that check each
//! value before anything runs. clap names the flag the user typed in every
//! parse error and exits 2, the "could not" code.

use std::time::Duration;

use clap::Args;

use crate::drain::PdbPolicy;
use crate::output::{OutputFormat, Printer};
use crate::upgrade::transport::RemoteShell;
use crate::upgrade::via::{Via, ViaKind};

/// `-o/--output` and `-q/--quiet`.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Output format of the result on stdout
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,

    /// No progress or notes on stderr (warnings and errors still show)
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
}

impl OutputArgs {
    pub fn printer(&self) -> Printer {
        Printer {
            format: self.output,
            quiet: self.quiet,
        }
    }
}

/// `-y/--yes`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfirmArgs {
    /// Do not ask for confirmation (required without a terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Which nodes: `NODE`, `-l SELECTOR` or `--all`, and how many at once.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeSelection {
    /// The node, by name
    #[arg(
        value_name = "NODE",
        value_parser = node_name,
        required_unless_present_any = ["all", "selector"],
        conflicts_with_all = ["all", "selector"]
    )]
    pub node: Option<String>,

    /// The nodes matching this label selector (e.g. node-role.kubernetes.io/worker=)
    #[arg(short = 'l', long, value_name = "SELECTOR", value_parser = label_selector, conflicts_with = "all")]
    pub selector: Option<String>,

    /// Every node of the cluster
    #[arg(long)]
    pub all: bool,

    /// With --all or -l: how many nodes may be out of service at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_unavailable: u32,
}

/// How commands reach a node: `--via`, `--remote-shell`, `--sudo`, `--pod-image`.
/// `kubectl upgrade-node` runs its steps through them; `kubectl skew plan` reads
/// each control-plane node's certificates through them.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Node access")]
pub struct NodeTransportArgs {
    /// How commands reach a node: shell (--remote-shell), pod (a privileged pod with nsenter),
    /// manual (print them, wait for you) or local (this machine is the node) [default: shell]
    #[arg(long, value_enum, value_name = "HOW")]
    pub via: Option<ViaKind>,

    /// The command that runs a command on a node; {node} and {address} (InternalIP) are filled in,
    /// and the command to run is appended as one quoted argument
    /// [default: ssh -o BatchMode=yes {address}]
    #[arg(long, value_name = "TEMPLATE", allow_hyphen_values = true)]
    pub remote_shell: Option<String>,

    /// Prefix every node command with sudo
    #[arg(long)]
    pub sudo: bool,

    /// With --via pod: the image of the privileged pod (needs nsenter)
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_POD_IMAGE)]
    pub pod_image: String,
}

/// The default of `--pod-image`.
pub const DEFAULT_POD_IMAGE: &str = "busybox:1.36";

impl NodeTransportArgs {
    /// Whether a way to reach the nodes was asked for (`--via` or `--remote-shell`).
    pub fn given(&self) -> bool {
        self.via.is_some() || self.remote_shell.is_some()
    }

    /// The transport these flags choose (shell over ssh when nothing is said);
    /// `timeout` bounds one command.
    pub fn transport(
        &self,
        client: &kube::Client,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Via> {
        let template = self.remote_shell.as_deref().unwrap_or(RemoteShell::DEFAULT);
        let kind = self.via.unwrap_or(ViaKind::Shell);
        if self.remote_shell.is_some() && kind != ViaKind::Shell {
            anyhow::bail!(
                "--remote-shell is used only with --via shell, not --via {}: drop one of them",
                clap::ValueEnum::to_possible_value(&kind)
                    .map_or_else(String::new, |v| v.get_name().to_string())
            );
        }
        Via::new(kind, client, template, &self.pod_image, timeout)
    }
}

/// The default of `--concurrency`: evictions in flight at once.
pub const DEFAULT_CONCURRENCY: u32 = 20;

/// How a node is drained: the flags `kubectl safedrain` and the drain step
/// of `kubectl upgrade-node` share.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Drain")]
pub struct DrainFlags {
    /// Continue even if pods keep data in emptyDir or hostPath volumes (the data is deleted)
    #[arg(long)]
    pub delete_emptydir_data: bool,

    /// Delete pods that nothing would recreate (bare pods, orphaned pods): they are lost for good.
    /// The plan lists each of them first
    #[arg(long)]
    pub delete_unmanaged: bool,

    /// PodDisruptionBudgets without room for all of the node's pods at once: pace the
    /// evictions as they free (refusing only a budget that never allows one), refuse, or
    /// wait even for a budget that only a change can free
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = PdbPolicy::Pace)]
    pub pdb: PdbPolicy,

    /// The same as --pdb=wait
    #[arg(long, conflicts_with = "pdb")]
    pub wait_for_pdb: bool,

    /// Refuse when a workload would have no ready replica during the drain (default: warn)
    #[arg(long)]
    pub no_downtime: bool,

    /// Seconds each pod gets to terminate; -1 uses the pod's own terminationGracePeriodSeconds
    #[arg(long, value_name = "SECONDS", default_value_t = -1, value_parser = grace_period, allow_negative_numbers = true)]
    pub grace_period: i64,

    /// At most this many evictions in flight
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY, value_parser = at_least_one, allow_negative_numbers = true)]
    pub concurrency: u32,
}

impl DrainFlags {
    /// The drain rules these flags choose; `also_leaving` names the nodes
    /// leaving at the same time.
    pub fn options(&self, also_leaving: Vec<String>) -> crate::drain::DrainOptions {
        crate::drain::DrainOptions {
            delete_emptydir_data: self.delete_emptydir_data,
            delete_unmanaged: self.delete_unmanaged,
            pdb: self.pdb_policy(),
            no_downtime: self.no_downtime,
            also_leaving,
        }
    }

    /// `--pdb`, with `--wait-for-pdb` as its older spelling.
    pub fn pdb_policy(&self) -> PdbPolicy {
        if self.wait_for_pdb {
            PdbPolicy::Wait
        } else {
            self.pdb
        }
    }

    /// How the evictions run (the timeout and the rest come from the caller).
    pub fn exec(&self) -> crate::drain::ExecOptions {
        crate::drain::ExecOptions {
            grace_period: u32::try_from(self.grace_period).ok(),
            concurrency: self.concurrency as usize,
            ..Default::default()
        }
    }
}

/// A duration flag's value: `None` is "no limit" (`0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit(pub Option<Duration>);

impl Limit {
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("0"),
            Some(d) => write!(f, "{}", humantime::format_duration(d)),
        }
    }
}

/// A duration as kubectl's duration flags take it (Go `time.ParseDuration`,
/// src/time/format.go): numbers with units (ns, us, µs, ms, s, m, h), e.g.
/// `90s`, `1h30m`, `1.5h`; a bare `0` is no limit. A number without a unit
/// is rejected ("missing unit"), as kubectl does; so is a negative one.
pub fn duration(text: &str) -> Result<Limit, String> {
    let hint = "e.g. 90s, 5m, 1h30m; 0 for no limit";
    if text.starts_with('-') {
        return Err(format!("a duration cannot be negative ({hint})"));
    }
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Ok(Limit(None));
    }
    if body.is_empty() {
        return Err(format!("invalid duration {text:?} ({hint})"));
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!("invalid duration {text:?} ({hint})"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "" => return Err(format!("missing unit in duration {text:?} ({hint})")),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {text:?} ({hint})"
                ));
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?} ({hint})"))?;
        total += value * scale;
        rest = next;
    }
    // Go caps durations at about 290 years; so does this, more kindly.
    if !total.is_finite() || total > 1e10 {
        return Err(format!("duration {text:?} is too long ({hint})"));
    }
    let d = Duration::from_secs_f64(total);
    Ok(Limit((!d.is_zero()).then_some(d)))
}

/// `--request-timeout` as client-go takes it (`clientcmd.ParseTimeout`): a
/// bare number of seconds, or a duration with a unit; 0 for no limit.
pub fn request_timeout(text: &str) -> Result<Limit, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Limit((secs > 0).then(|| Duration::from_secs(secs))));
    }
    duration(text).map_err(|_| {
        "must be a single integer in seconds, or an integer followed by a unit (e.g. 1s | 2m | 3h)"
            .to_string()
    })
}

/// A count of 1 or more (`--max-unavailable`, `--concurrency`, `--max-surge`).
pub fn at_least_one(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be at least 1, not {n}")),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `--grace-period`: seconds, or -1 for each pod's own period.
pub fn grace_period(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if n >= -1 && n <= i64::from(u32::MAX) => Ok(n),
        Ok(n) => Err(format!(
            "must be -1 (each pod's own period) or a number of seconds, not {n}"
        )),
        Err(_) => Err(format!("{text:?} is not a whole number of seconds")),
    }
}

/// A label selector the API server would accept (see [`crate::labels`]).
pub fn label_selector(text: &str) -> Result<String, String> {
    crate::labels::parse(text)?;
    Ok(text.to_string())
}

/// A node name as the API server validates it (a DNS subdomain).
pub fn node_name(text: &str) -> Result<String, String> {
    crate::upgrade::validate::node_name(text).map(str::to_string)
}

/// `--to` of upgrade-node: the canonical version forms only.
pub fn target(text: &str) -> Result<crate::upgrade::TargetSpec, String> {
    if text.trim() != text {
        return Err(format!(
            "{text:?} has spaces around it: give the version alone, e.g. v1.34.1"
        ));
    }
    crate::upgrade::TargetSpec::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_like_kubectl() {
        assert_eq!(duration("0").unwrap(), Limit(None));
        assert_eq!(
            duration("90s").unwrap().get(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            duration("1h30m").unwrap().get(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            duration("1.5s").unwrap().get(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(duration("0s").unwrap(), Limit(None));
        assert!(duration("5").unwrap_err().contains("missing unit"));
        assert!(duration("banana").is_err());
        assert!(duration("").is_err());
        assert!(duration("5 m").is_err());
        assert!(duration("-5s").unwrap_err().contains("negative"));
        assert!(duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn request_timeouts_also_take_seconds() {
        assert_eq!(
            request_timeout("30").unwrap().get(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(request_timeout("0").unwrap(), Limit(None));
        assert_eq!(
            request_timeout("1m").unwrap().get(),
            Some(Duration::from_secs(60))
        );
        assert!(request_timeout("soon").is_err());
    }

    #[test]
    fn counts_and_targets() {
        assert_eq!(at_least_one("3").unwrap(), 3);
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-5").unwrap_err().contains("at least 1"));
        assert!(grace_period("-2").is_err());
        assert_eq!(grace_period("-1").unwrap(), -1);
        assert!(target(" v1.35").is_err());
        assert!(target("v1.35").is_ok());
        assert!(label_selector("==bad").is_err());
        assert!(node_name("Node_1").is_err());
    }
}
