//! `kubectl skew`: glue between the command line, the read-only collector and
//! the pure skew engine in `upkeep::skew`. The JSON documents defined here are
//! the plugin's stable output schema (see the crate README).

pub mod cli;

use anyhow::Context as _;
use jiff::civil::Date;
use serde::Serialize;

use upkeep::output::{Outcome, OutputFormat, render, table};
use upkeep::skew::collect::{collect, local_kubectl};
use upkeep::skew::readiness::{self, Level, Readiness, Removals};
use upkeep::skew::{
    ApiserverSummary, Calendar, Check, ClusterVersions, Component, Finding, Observed, RULES,
    SkewReport, Support, SupportStatus, Target, UpgradePlan, Verdict, evaluate, plan,
};
use upkeep::upgrade::transport::Transport as _;

use crate::cli::{Cli, Command, Common, PlanArgs};

/// The rule id of support-window warnings (not a skew rule: the calendar).
pub const SUPPORT_RULE: &str = "support-window";

/// The document `kubectl skew -o json` prints.
#[derive(Debug, Serialize)]
pub struct CheckDocument {
    /// The kubeconfig context and server checked.
    pub context: String,
    pub server: String,
    pub apiserver: ApiserverSummary,
    pub violations: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub components: Vec<Check>,
    pub support: Option<Support>,
    pub notes: Vec<String>,
    pub summary: Summary,
}

/// Counts, and the overall verdict.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub components: usize,
    pub violations: usize,
    pub warnings: usize,
    pub unknown: usize,
    /// `ok` or `violation`.
    pub verdict: Verdict,
}

/// The document `kubectl skew plan -o json` prints.
#[derive(Debug, Serialize)]
pub struct PlanDocument {
    pub context: String,
    pub server: String,
    pub apiserver: ApiserverSummary,
    /// False when the plan was refused; `reason` says why.
    pub planned: bool,
    pub reason: Option<String>,
    pub plan: Option<UpgradePlan>,
    /// The target minor's support window.
    pub target_support: Option<Support>,
    /// Per hop: the verdict and its findings (absent with --no-readiness or a refused plan).
    pub readiness: Option<Readiness>,
}

/// How long one node command (`kubeadm certs check-expiration`) may take.
const NODE_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs the command line; the outcome is the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let printer = cli.common.out.printer();
    if let Some(Command::Rules) = &cli.command {
        printer.result(&RULES, render_rules)?;
        return Ok(Outcome::Ok);
    }
    let as_of = as_of(&cli.common)?;
    let calendar = match &cli.common.calendar {
        Some(path) => Calendar::load(path)?,
        None => Calendar::embedded(),
    };
    // Parse user input before touching the network.
    let target = match &cli.command {
        Some(Command::Plan(PlanArgs { to, .. })) => Some(Target::parse(to).with_context(|| {
            format!("--to {to:?}: give a minor (v1.33) or a release (v1.33.4)")
        })?),
        _ => None,
    };
    let (kubectl, kubectl_note) = kubectl_version(&cli.common)?;

    let conn = cli.kube.connect().await?;
    let mut snapshot = collect(&conn.client, kubectl)
        .await
        .with_context(|| format!("could not check {} (context {})", conn.server, conn.context))?;
    snapshot.control_plane_nodes.sort();

    match target {
        None => {
            let doc = check_document(
                &snapshot,
                &calendar,
                as_of,
                conn.context,
                conn.server,
                kubectl_note,
            );
            printer.result(&doc, || render_check(&doc))?;
            Ok(if doc.violations.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Refused
            })
        }
        Some(target) => {
            if snapshot.apiserver_span().is_none() {
                // Nothing to plan from is a failure to check, not a refusal.
                return Err(upkeep::skew::PlanError::NoApiserverVersion.into());
            }
            let Some(Command::Plan(args)) = &cli.command else {
                unreachable!("a target comes from plan")
            };
            let mut doc = plan_document(
                &snapshot,
                &target,
                &calendar,
                as_of,
                conn.context,
                conn.server,
            );
            if let (Some(p), false) = (&doc.plan, args.no_readiness) {
                let removals = match &args.removed_apis {
                    Some(path) => Removals::load(path)?,
                    None => Removals::embedded(),
                };
                let (config, _) = cli.kube.config().await?;
                printer.note("checking upgrade readiness: removed APIs, drains, certificates");
                let mut rsnap = readiness::gather::gather(
                    &conn.client,
                    Some(&config),
                    snapshot.clone(),
                    &removals,
                    &readiness::gather::GatherOptions {
                        skip_drains: args.no_drains,
                    },
                )
                .await;
                let via = if args.node_access.given() {
                    Some(
                        args.node_access
                            .transport(&conn.client, Some(NODE_COMMAND_TIMEOUT))?,
                    )
                } else {
                    None
                };
                readiness::gather::node_certificates(
                    &conn.client,
                    via.as_ref().map(|v| (v, args.node_access.sudo)),
                    &mut rsnap,
                )
                .await;
                if let Some(v) = &via {
                    v.cleanup().await;
                }
                let settings = readiness::Settings {
                    as_of,
                    now: jiff::Timestamp::now(),
                    upgrade_days: args.upgrade_days,
                };
                doc.readiness = Some(readiness::evaluate(
                    &rsnap, p, &removals, &calendar, &settings,
                ));
            }
            match (&doc.reason, printer.format) {
                // People read the refusal on stderr; scripts get the document.
                (Some(reason), OutputFormat::Table) => printer.refuse(reason),
                _ => printer.result(&doc, || render_plan(&doc))?,
            }
            Ok(if !doc.planned {
                Outcome::Refused
            } else {
                match doc.readiness.as_ref().map(|r| r.verdict) {
                    Some(Level::NotReady) => Outcome::Refused,
                    Some(Level::Unknown) => Outcome::Error,
                    _ => Outcome::Ok,
                }
            })
        }
    }
}

fn as_of(common: &Common) -> anyhow::Result<Date> {
    match &common.as_of {
        Some(text) => text.parse::<Date>().with_context(|| {
            format!("--as-of {text:?} is not a date: use YYYY-MM-DD, e.g. 2026-12-31")
        }),
        None => Ok(jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()),
    }
}

/// kubectl from `--kubectl-version`, else the one on PATH; a note when neither.
fn kubectl_version(common: &Common) -> anyhow::Result<(Option<Observed>, Option<String>)> {
    if let Some(v) = &common.kubectl_version {
        let observed = Observed::from_version(Component::Kubectl, None, v, "--kubectl-version");
        if let Some(why) = &observed.unknown {
            anyhow::bail!("--kubectl-version: {why}");
        }
        return Ok((Some(observed), None));
    }
    match local_kubectl("kubectl") {
        Ok(Some(o)) => Ok((Some(o), None)),
        Ok(None) => Ok((
            None,
            Some(
                "kubectl is not on PATH, so it is not checked; pass --kubectl-version to check one"
                    .into(),
            ),
        )),
        Err(e) => Ok((
            None,
            Some(format!(
                "could not read the local kubectl version ({e:#}); pass --kubectl-version to check one"
            )),
        )),
    }
}

/// Builds the check document: the skew report plus the support window.
pub fn check_document(
    snapshot: &ClusterVersions,
    calendar: &Calendar,
    as_of: Date,
    context: String,
    server: String,
    kubectl_note: Option<String>,
) -> CheckDocument {
    let SkewReport {
        apiserver,
        violations,
        mut warnings,
        components,
        mut notes,
    } = evaluate(snapshot);
    if let Some(n) = kubectl_note {
        notes.push(n);
    }
    for (node, down) in &snapshot.not_ready {
        notes.push(down.summary(node));
    }
    let support = apiserver.oldest.map(|minor| calendar.support(minor, as_of));
    if let Some(s) = &support
        && matches!(
            s.status,
            SupportStatus::EndOfLife
                | SupportStatus::MaintenanceMode
                | SupportStatus::NotInCalendar
        )
    {
        warnings.push(Finding {
            component: Component::KubeApiserver,
            node: None,
            version: s.minor.to_string(),
            rule: SUPPORT_RULE,
            message: s.message.clone(),
        });
    }
    let summary = Summary {
        components: components.len(),
        violations: violations.len(),
        warnings: warnings.len(),
        unknown: components
            .iter()
            .filter(|c| c.verdict == Verdict::Unknown)
            .count(),
        verdict: if violations.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Violation
        },
    };
    CheckDocument {
        context,
        server,
        apiserver,
        violations,
        warnings,
        components,
        support,
        notes,
        summary,
    }
}

/// Builds the plan document; a refusal is a document too (`planned: false`).
pub fn plan_document(
    snapshot: &ClusterVersions,
    target: &Target,
    calendar: &Calendar,
    as_of: Date,
    context: String,
    server: String,
) -> PlanDocument {
    let apiserver = evaluate(snapshot).apiserver;
    let target_support = Some(calendar.support(target.minor(), as_of));
    match plan(snapshot, target) {
        Ok(mut p) => {
            if let Some(s) = &target_support
                && matches!(
                    s.status,
                    SupportStatus::NotInCalendar
                        | SupportStatus::Unreleased
                        | SupportStatus::EndOfLife
                )
            {
                p.notes.push(s.message.clone());
            }
            PlanDocument {
                context,
                server,
                apiserver,
                planned: true,
                reason: None,
                plan: Some(p),
                target_support,
                readiness: None,
            }
        }
        Err(e) => PlanDocument {
            context,
            server,
            apiserver,
            planned: false,
            reason: Some(e.to_string()),
            plan: None,
            target_support,
            readiness: None,
        },
    }
}

fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("-")
}

/// The human form of the check.
pub fn render_check(doc: &CheckDocument) -> String {
    let mut t = table([
        "COMPONENT",
        "NODE",
        "VERSION",
        "ALLOWED",
        "VERDICT",
        "REASON",
    ]);
    for c in &doc.components {
        t.add_row([
            c.component.to_string(),
            or_dash(c.node.as_deref()).to_string(),
            c.version.clone(),
            c.allowed.map_or("-".to_string(), |a| a.to_string()),
            c.verdict.to_string(),
            c.reason.clone(),
        ]);
    }
    let mut out = render(&t);
    let s = &doc.summary;
    let span = match (doc.apiserver.oldest, doc.apiserver.newest) {
        (Some(a), Some(b)) if a == b => format!("kube-apiserver {a}"),
        (Some(a), Some(b)) => format!("kube-apiserver {a} to {b}"),
        _ => "kube-apiserver unknown".to_string(),
    };
    out.push_str(&format!(
        "\n{}: {} {}, {} {} in {} components ({span}{}){}\n",
        if s.violations == 0 { "OK" } else { "VIOLATION" },
        s.violations,
        plural(s.violations, "violation", "violations"),
        s.warnings,
        plural(s.warnings, "warning", "warnings"),
        s.components,
        if doc.apiserver.control_plane_visible {
            ""
        } else {
            ", control plane not visible"
        },
        if s.unknown > 0 {
            format!(", {} unknown", s.unknown)
        } else {
            String::new()
        },
    ));
    match &doc.support {
        Some(support) => out.push_str(&format!("Support: {}\n", support.message)),
        None => out.push_str("Support: unknown (no kube-apiserver version)\n"),
    }
    for w in doc.warnings.iter().filter(|w| w.rule != SUPPORT_RULE) {
        let at = w
            .node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default();
        out.push_str(&format!("Warning: {}{at}: {}\n", w.component, w.message));
    }
    for n in &doc.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    out
}

/// The rule table for people: id, components, allowed window, and the
/// upstream sentence with its source.
pub fn render_rules() -> String {
    let mut t = table(["RULE", "COMPONENTS", "ALLOWED"]);
    for r in RULES {
        let components: Vec<&str> = r.components.iter().map(|c| c.name()).collect();
        t.add_row([
            r.id.to_string(),
            components.join(", "),
            r.summary.to_string(),
        ]);
    }
    let mut out = render(&t);
    for r in RULES {
        out.push_str(&format!(
            "\n{}:\n  \"{}\"\n  ({})\n",
            r.id, r.policy, r.source
        ));
    }
    out
}

/// The human form of a plan.
pub fn render_plan(doc: &PlanDocument) -> String {
    let mut out = String::new();
    let Some(p) = &doc.plan else {
        out.push_str(&format!(
            "No plan: {}\n",
            doc.reason.as_deref().unwrap_or("refused")
        ));
        return out;
    };
    out.push_str(&format!(
        "Upgrade path {} -> {}: {} {}\n",
        p.from,
        p.to,
        p.hops.len(),
        plural(p.hops.len(), "hop", "hops")
    ));
    for n in &p.notes {
        out.push_str(&format!("Note: {n}\n"));
    }
    for (i, hop) in p.hops.iter().enumerate() {
        out.push_str(&format!(
            "\nHop {}: {} -> {} (install {})\n",
            i + 1,
            hop.from,
            hop.to,
            hop.target
        ));
        if hop.preconditions.is_empty() {
            out.push_str("Preconditions: none outstanding\n");
        } else {
            out.push_str("Preconditions:\n");
            for pre in &hop.preconditions {
                out.push_str(&format!(
                    "  - [{}] {}: {}\n",
                    pre.rule,
                    pre.message,
                    pre.nodes.join(", ")
                ));
            }
        }
        let mut t = table(["STEP", "ACTION", "NODE", "COMMAND", "WHAT"]);
        for (n, step) in hop.steps.iter().enumerate() {
            t.add_row([
                (n + 1).to_string(),
                step.action.to_string(),
                or_dash(step.node.as_deref()).to_string(),
                or_dash(step.command.as_deref()).to_string(),
                step.description.clone(),
            ]);
        }
        out.push_str(&render(&t));
        if let Some(r) = doc.readiness.as_ref().and_then(|r| r.hops.get(i)) {
            out.push_str(&render_hop_readiness(r));
        }
        let v = &hop.projected.violations;
        if v.is_empty() {
            out.push_str(&format!(
                "After hop {}: no skew violations ({} {})\n",
                i + 1,
                hop.projected.warnings.len(),
                plural(hop.projected.warnings.len(), "warning", "warnings")
            ));
        } else {
            out.push_str(&format!("After hop {}: {} remaining:\n", i + 1, v.len()));
            for f in v {
                out.push_str(&format!(
                    "  - {} {}: {}\n",
                    f.component, f.version, f.message
                ));
            }
        }
    }
    if let Some(r) = &doc.readiness {
        out.push_str(&format!("\nReadiness: {}\n", r.verdict));
        for u in &r.unreadable {
            out.push_str(&format!("Could not read: {}: {}\n", u.what, u.error));
        }
        for n in &r.notes {
            out.push_str(&format!("Note: {n}\n"));
        }
    }
    out
}

/// One hop's readiness for people: the verdict, then a row per finding and
/// its fix.
pub fn render_hop_readiness(r: &readiness::HopReadiness) -> String {
    let mut out = format!(
        "Readiness of hop {} ({} -> {}): {}\n",
        r.hop, r.from, r.to, r.verdict
    );
    if r.findings.is_empty() {
        return out;
    }
    let mut t = table(["SEVERITY", "RULE", "OBJECT", "SOURCE", "MESSAGE", "FIX"]);
    for f in &r.findings {
        let object = match (&f.namespace, f.name.is_empty()) {
            (Some(ns), _) => format!("{}/{ns}/{}", f.kind, f.name),
            (None, false) => format!("{}/{}", f.kind, f.name),
            (None, true) => f.kind.clone(),
        };
        t.add_row([
            match f.severity {
                readiness::Severity::Block => "BLOCK".to_string(),
                readiness::Severity::Warn => "warn".to_string(),
            },
            f.rule.to_string(),
            object,
            f.source.clone(),
            f.message.clone(),
            f.fix.clone(),
        ]);
    }
    out.push_str(&render(&t));
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn cluster() -> ClusterVersions {
        let image = |c: Component, node: &str, tag: &str| {
            Observed::from_image(c, Some(node), &format!("registry.k8s.io/{c}:{tag}"), "pod")
        };
        let kubelet =
            |node: &str, v: &str| Observed::from_version(Component::Kubelet, Some(node), v, "node");
        ClusterVersions {
            served: Some(Observed::from_version(
                Component::KubeApiserver,
                None,
                "v1.31.2",
                "/version",
            )),
            control_plane_visible: true,
            control_plane_nodes: vec!["cp1".into()],
            components: vec![
                image(Component::KubeApiserver, "cp1", "v1.31.2"),
                image(Component::KubeControllerManager, "cp1", "v1.31.2"),
                kubelet("cp1", "v1.31.2"),
                kubelet("w1", "v1.28.3"),
                kubelet("w2", "v1.27.1"),
                Observed::from_version(Component::Kubectl, None, "v1.32.0", "--kubectl-version"),
            ],
            ..Default::default()
        }
    }

    fn doc(as_of: Date) -> CheckDocument {
        check_document(
            &cluster(),
            &Calendar::embedded(),
            as_of,
            "ctx".into(),
            "https://x/".into(),
            None,
        )
    }

    #[test]
    fn the_table_has_a_row_per_instance_a_summary_and_the_support_line() {
        let text = render_check(&doc(date(2025, 6, 1)));
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "COMPONENT",
                "NODE",
                "VERSION",
                "ALLOWED",
                "VERDICT",
                "REASON"
            ]
        );
        let row = |node: &str, component: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().take(2).eq([component, node]))
                .unwrap_or_else(|| panic!("no {component} {node} row:\n{text}"))
                .split_whitespace()
                .take(5)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("w2", "kubelet"),
            ["kubelet", "w2", "v1.27.1", "v1.28-v1.31", "violation"]
        );
        assert_eq!(
            row("w1", "kubelet"),
            ["kubelet", "w1", "v1.28.3", "v1.28-v1.31", "warning"]
        );
        assert_eq!(
            row("-", "kubectl"),
            ["kubectl", "-", "v1.32.0", "v1.30-v1.32", "ok"]
        );
        assert!(
            text.contains(
                "VIOLATION: 1 violation, 1 warning in 6 components (kube-apiserver v1.31)"
            ),
            "{text}"
        );
        assert!(text.contains("Support: v1.31 is supported"), "{text}");
        assert!(text.contains("Warning: kubelet on w1: "), "{text}");
    }

    #[test]
    fn end_of_life_is_a_support_window_warning_not_a_violation() {
        let d = doc(date(2026, 1, 5));
        let support = d.support.as_ref().unwrap();
        assert_eq!(support.status, SupportStatus::EndOfLife);
        let w = d
            .warnings
            .iter()
            .find(|w| w.rule == SUPPORT_RULE)
            .expect("a support warning");
        assert_eq!(w.node, None);
        assert!(
            w.message.contains("end of life on 2025-10-28"),
            "{}",
            w.message
        );
        assert_eq!(d.summary.violations, 1);
        assert_eq!(d.summary.warnings, 2);
        let json = serde_json::to_value(&d).unwrap();
        for key in [
            "violations",
            "warnings",
            "components",
            "support",
            "apiserver",
            "summary",
            "notes",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["support"]["status"], "end-of-life");
    }

    #[test]
    fn the_rules_listing_comes_from_the_rule_table() {
        let text = render_rules();
        for r in RULES {
            assert!(text.contains(r.id) && text.contains(r.policy), "{}", r.id);
        }
    }

    #[test]
    fn plan_documents_and_their_rendering() {
        let cal = Calendar::embedded();
        let target = Target::parse("v1.32.4").unwrap();
        let d = plan_document(
            &cluster(),
            &target,
            &cal,
            date(2025, 6, 1),
            "c".into(),
            "s".into(),
        );
        assert!(d.planned);
        let text = render_plan(&d);
        assert!(
            text.contains("Upgrade path v1.31 -> v1.32.4: 1 hop"),
            "{text}"
        );
        assert!(text.contains("[kubelet-vs-apiserver]"), "{text}");
        assert!(text.contains("kubeadm upgrade apply v1.32.4"), "{text}");
        assert!(text.contains("After hop 1: no skew violations"), "{text}");

        let refused = plan_document(
            &cluster(),
            &Target::parse("v1.29").unwrap(),
            &cal,
            date(2025, 6, 1),
            "c".into(),
            "s".into(),
        );
        assert!(!refused.planned);
        assert!(refused.plan.is_none());
        assert!(
            refused
                .reason
                .as_deref()
                .unwrap()
                .contains("downgrades are not planned")
        );

        // A target the calendar does not know is planned, with a note.
        let far = plan_document(
            &cluster(),
            &Target::parse("v1.33").unwrap(),
            &cal,
            date(2024, 9, 1),
            "c".into(),
            "s".into(),
        );
        let notes = &far.plan.as_ref().unwrap().notes;
        assert!(
            notes.iter().any(|n| n.contains("not released yet")),
            "{notes:?}"
        );
    }
}
