//! `kubectl upgrade-node` against real nodes: Debian roots with real apt and dpkg, reached
//! by real sshd in network namespaces through the plugin's default transport (ssh to the
//! node's InternalIP, BatchMode, no --remote-shell). See `upkeep_testkit::realnode`.
//!
//! Needs root and the packages scripts/setup.sh installs; a missing piece fails, never skips.

use std::time::Duration;

use serde_json::Value;
use upkeep::version::{MinorVersion, Release};
use upkeep_testkit::realnode::{
    ClusterSpec, Family, NodeSpec, REAL_NODE_LABEL, RealCluster, RealNode, SitePackage, rpm_version,
};
use upkeep_testkit::{code, node_ready, run_bounded, show};

const FROM: &str = "1.34.3-1.1";
const TO: &str = "1.35.2-1.1";

fn spec(published: &[(&str, &[&str])]) -> ClusterSpec {
    ClusterSpec {
        nodes: vec![
            NodeSpec {
                name: "controlplane01".into(),
                control_plane: true,
                family: Family::Apt,
                installed: FROM.into(),
            },
            NodeSpec {
                name: "node01".into(),
                control_plane: false,
                family: Family::Apt,
                installed: FROM.into(),
            },
            NodeSpec {
                name: "node02".into(),
                control_plane: false,
                family: Family::Dnf,
                installed: FROM.into(),
            },
        ],
        published: published
            .iter()
            .map(|(m, vs)| (m.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect(),
        // The only kube-apiserver is away for 20 lab seconds during `kubeadm upgrade apply`.
        lab_args: vec!["--time-scale".into(), "10".into()],
        simulated: Vec::new(),
        site_packages: Vec::new(),
    }
}

/// The whole cluster (a control plane and a worker on apt, a worker on dnf) to the next
/// minor over ssh: packages at the target in the real dpkg and rpm databases and held
/// (`apt-mark showhold`; the dnf repository's `exclude=`), the repository files on the new
/// minor, every node Ready at the target and uncordoned as real kubectl reads them.
#[test]
fn upgrade_node_all_over_ssh_on_real_apt_nodes() {
    let cluster = RealCluster::start(&spec(&[("v1.34", &[FROM]), ("v1.35", &[TO])]));
    let out = run_bounded(
        cluster.upgrade_node(&["--all", "--to", "v1.35", "--yes"]),
        Duration::from_secs(240),
    );
    assert_eq!(code(&out), 0, "{}\n{}", show(&out), cluster.lab.log());
    for n in &cluster.nodes {
        let installed = n.installed();
        let want = match n.family {
            Family::Apt => TO.to_string(),
            Family::Dnf => rpm_version(TO),
        };
        for p in upkeep_testkit::realnode::PACKAGES {
            assert_eq!(
                installed.get(p),
                Some(&want),
                "{} {p}: {installed:?}",
                n.name
            );
        }
        match n.family {
            Family::Apt => assert_eq!(n.holds(), ["kubeadm", "kubectl", "kubelet"], "{}", n.name),
            Family::Dnf => assert!(
                n.repo_file()
                    .contains("exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni"),
                "{}: {}",
                n.name,
                n.repo_file()
            ),
        }
        assert!(
            n.repo_file().contains("/core:/stable:/v1.35/"),
            "{}: {}",
            n.name,
            n.repo_file()
        );
        let node = cluster.lab.get_json(["node", &n.name]);
        assert!(node_ready(&node), "{} not Ready: {node:#}", n.name);
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.35.2");
        assert!(
            node["spec"]["unschedulable"].is_null() || node["spec"]["unschedulable"] == false,
            "{} still cordoned",
            n.name
        );
    }
    let version: Value =
        serde_json::from_str(&cluster.lab.kubectl_ok(["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.35.2");
}

/// `--dry-run` and a refusal leave every node as it was, byte for byte and inode for inode
/// (apt: `/etc/apt`, `/var/lib/apt/lists`, `/var/lib/dpkg/status`; dnf: `/etc/yum.repos.d`,
/// `/etc/dnf`, the rpm database, `/var/lib/dnf`); a minor the mirror does not carry is
/// refused (exit 1) from the real apt's and the real dnf's answers.
#[test]
fn dry_run_and_missing_minor_leave_real_nodes_untouched_and_the_simulation_conforms() {
    let mut spec = spec(&[("v1.34", &[FROM]), ("v1.35", &[TO])]);
    spec.simulated = vec![
        NodeSpec {
            name: "sim03".into(),
            control_plane: false,
            family: Family::Apt,
            installed: FROM.into(),
        },
        NodeSpec {
            name: "sim04".into(),
            control_plane: false,
            family: Family::Dnf,
            installed: FROM.into(),
        },
    ];
    spec.site_packages = ["sim03", "sim04"]
        .map(|node| SitePackage {
            node: node.into(),
            name: SITE.into(),
            pins: vec!["kubeadm".into(), "kubelet".into()],
        })
        .to_vec();
    let cluster = RealCluster::start(&spec);
    let real_nodes = format!("{REAL_NODE_LABEL}=true");
    let before: Vec<_> = cluster.nodes.iter().map(|n| n.package_state()).collect();

    let out = run_bounded(
        cluster.upgrade_node(&["-l", &real_nodes, "--to", "v1.35", "--dry-run"]),
        Duration::from_secs(120),
    );
    assert_eq!(code(&out), 0, "{}\n{}", show(&out), cluster.lab.log());
    assert!(
        upkeep_testkit::stdout(&out).contains("1.35.2"),
        "the dry run names the target the real repository offers:\n{}",
        show(&out)
    );
    for (n, b) in cluster.nodes.iter().zip(&before) {
        assert_same(&n.name, b, &n.package_state());
    }

    let text = refused(&cluster, &["-l", &real_nodes, "--to", "v1.36", "--yes"]);
    assert!(text.contains("v1.36"), "{text}");
    for (n, b) in cluster.nodes.iter().zip(&before) {
        assert_same(&n.name, b, &n.package_state());
        assert!(
            n.installed()
                .get("kubeadm")
                .is_some_and(|v| v.starts_with("1.34.3-")),
            "{}",
            n.name
        );
    }
    // The dnf node alone: dnf's own 404 for the missing minor's repomd.xml.
    let text = refused(&cluster, &["node02", "--to", "v1.36", "--yes"]);
    assert!(text.contains("v1.36"), "{text}");
    let dnf = cluster.node("node02");
    assert_same(&dnf.name, &before[2], &dnf.package_state());

    pinned_packages_are_refused(&cluster, &real_nodes);
    for n in &cluster.nodes {
        let node = cluster.lab.get_json(["node", &n.name]);
        assert!(
            node["spec"]["unschedulable"].is_null(),
            "{} cordoned",
            n.name
        );
    }
}

/// Runs upgrade-node on the real-node cluster, which must refuse (exit 1) within 2 minutes;
/// returns what it printed, stdout then stderr.
fn refused(cluster: &RealCluster, args: &[&str]) -> String {
    let out = run_bounded(cluster.upgrade_node(args), Duration::from_secs(120));
    assert_eq!(code(&out), 1, "{}", show(&out));
    format!(
        "{}{}",
        upkeep_testkit::stdout(&out),
        upkeep_testkit::stderr(&out)
    )
}

/// The site package [`pinned_packages_are_refused`] installs.
const SITE: &str = "site-kubernetes";

/// A site package requiring kubeadm and kubelet at exactly the installed versions stands in
/// the way: real apt would remove it (`apt-get install -y` does, exit 0) and real dnf refuses
/// the install. upgrade-node's probe reads it from dpkg's and rpm's databases and refuses
/// (exit 1) naming the package and what it requires, the node unchanged: on the apt control
/// plane for real, on the dnf worker in the rolling dry run that reaches it. The probe's
/// answer on a simulated node with the same package is the same.
fn pinned_packages_are_refused(cluster: &RealCluster, real_nodes: &str) {
    let cp = cluster.node("controlplane01");
    let dnf = cluster.node("node02");
    cp.install_site_package(SITE, &["kubeadm", "kubelet"]);
    dnf.install_site_package(SITE, &["kubeadm", "kubelet"]);
    probe_conforms(cluster, cp, "sim03", Family::Apt);
    probe_conforms(cluster, dnf, "sim04", Family::Dnf);
    let before = [cp.package_state(), dnf.package_state()];

    let text = refused(cluster, &["controlplane01", "--to", "v1.35", "--yes"]);
    for want in [
        "site-kubernetes 1.0 requires kubeadm (= 1.34.3-1.1) (the upgrade installs kubeadm 1.35.2-1.1)",
        "site-kubernetes 1.0 requires kubelet (= 1.34.3-1.1)",
        "apt-get install -y would remove them",
        "Nothing was changed",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    assert_same(&cp.name, &before[0], &cp.package_state());
    cp.remove_site_package(SITE);

    // node02 comes after the control plane: a rolling dry run plans it as it would be then.
    let text = refused(cluster, &["-l", real_nodes, "--to", "v1.35", "--dry-run"]);
    let rpm_from = rpm_version(FROM);
    for want in [
        format!("site-kubernetes 1.0-1 requires kubeadm = {rpm_from}"),
        "dnf install would refuse".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }
    assert_same(&dnf.name, &before[1], &dnf.package_state());
    dnf.remove_site_package(SITE);
}

/// upgrade-node's probe on a real node and on a simulated one: the same exit code and the
/// same installed dependencies read from the package database.
fn probe_conforms(cluster: &RealCluster, real: &RealNode, sim: &str, family: Family) {
    use upkeep::upgrade::recipe::parse_probe;
    use upkeep::upgrade::{PackageManager, Recipe};
    let r = Recipe::new(match family {
        Family::Apt => PackageManager::Apt,
        Family::Dnf => PackageManager::Dnf,
    });
    let line = r
        .probe(
            upkeep::version::MinorVersion::new(1, 35),
            "/tmp/upkeep-conformance",
        )
        .shell_line()
        .unwrap();
    let on_real = cluster.ssh(real, &line);
    let on_sim = on_sim(cluster, sim, &line);
    let answer = |o: &std::process::Output| {
        parse_probe(
            o.status.code(),
            &String::from_utf8_lossy(&o.stdout),
            &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (a, b) = (answer(&on_real), answer(&on_sim));
    assert_eq!(
        (on_real.status.code(), &a.dependents),
        (on_sim.status.code(), &b.dependents),
        "{family:?} probe\n  real: {}\n  simulated: {}",
        show(&on_real),
        show(&on_sim)
    );
    assert_eq!(a.dependents.len(), 2, "{:?}", a.dependents);
}

/// `line` on a simulated node, through `upkeep-lab node-shell`.
fn on_sim(cluster: &RealCluster, sim: &str, line: &str) -> std::process::Output {
    std::process::Command::new(upkeep_testkit::bin("upkeep-lab"))
        .arg("node-shell")
        .arg("--kubeconfig")
        .arg(&cluster.lab.kubeconfig)
        .args([sim, "--", line])
        .output()
        .unwrap()
}

type State = std::collections::BTreeMap<String, (u64, i64, i64, Vec<u8>)>;

fn assert_same(node: &str, before: &State, after: &State) {
    let mut diffs = Vec::new();
    for (path, b) in before {
        match after.get(path) {
            None => diffs.push(format!("removed {path}")),
            Some(a) if a.0 != b.0 => diffs.push(format!("{path}: inode {} -> {}", b.0, a.0)),
            Some(a) if (a.1, a.2) != (b.1, b.2) => diffs.push(format!("{path}: mtime changed")),
            Some(a) if a.3 != b.3 => diffs.push(format!("{path}: content changed")),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("created {path}"));
    }
    assert!(
        diffs.is_empty(),
        "node {node} changed:\n{}",
        diffs.join("\n")
    );
}

/// The patch the recipe conformance installs; the seeds' manual commands then go on to [`TO`].
const PATCH: &str = "1.35.1-1.1";

/// The simulated node shell held honest: the same command lines on a real node (over ssh)
/// and on a simulated node of the same OS and role (`upkeep-lab node-shell`) give the same
/// exit codes, and afterwards the same installed versions, holds (apt) and repository minor.
///
/// 1. Every command of upgrade-node's plan (`plan::build`) for each role, with the probe of
///    a missing and of an offered minor first: the first control plane on apt (`kubeadm
///    upgrade plan` and `apply`), another control plane on dnf (`kubeadm upgrade node`; a
///    worker is sent the same lines); to v1.35.1.
/// 2. The kubeadm upgrade document's manual commands (its "upgrade control plane nodes"
///    sections, apt and yum): `apt update`, `apt-cache madison`, `apt-mark unhold`,
///    `apt-get update`, `apt-get install -y kubeadm='1.35.2-*'` (also with
///    `--allow-change-held-packages`), `apt-mark hold`, `kubeadm version`,
///    `kubeadm upgrade plan|apply|node`, `yum list --showduplicates` and `yum install` with
///    `--disableexcludes=kubernetes`, `systemctl daemon-reload`, `systemctl restart
///    kubelet`; the patch upgrade to v1.35.2 on both control planes.
///
/// Left out of the document's lines: `sudo` (the roots have none and run as root; the
/// simulation strips it) and the confirmation of `kubeadm upgrade apply` (`--yes`: a
/// session has no terminal).
#[test]
fn the_simulated_node_shell_conforms_to_real_nodes() {
    let node = |name: &str, control_plane, family| NodeSpec {
        name: name.into(),
        control_plane,
        family,
        installed: FROM.into(),
    };
    let mut spec = spec(&[("v1.34", &[FROM]), ("v1.35", &[PATCH, TO])]);
    spec.nodes = vec![
        node("controlplane01", true, Family::Apt),
        node("controlplane02", true, Family::Dnf),
    ];
    spec.simulated = vec![
        node("simcp01", true, Family::Apt),
        node("simcp02", true, Family::Dnf),
    ];
    use upkeep::upgrade::Role;
    let patch = Release::new(1, 35, 1);
    // A worker is sent the same commands as a control-plane node that is not the first
    // (`kubeadm upgrade node` for both): the two control planes cover every recipe.
    for family in [Family::Apt, Family::Dnf] {
        assert_eq!(
            recipe_lines(family, Role::Worker, patch),
            recipe_lines(family, Role::ControlPlane, patch)
        );
    }
    let cluster = RealCluster::start(&spec);
    let pairs = [
        (
            "controlplane01",
            "simcp01",
            Family::Apt,
            Role::FirstControlPlane,
        ),
        ("controlplane02", "simcp02", Family::Dnf, Role::ControlPlane),
    ];
    for (real, sim, family, role) in pairs {
        let codes = conformance(
            &cluster,
            real,
            sim,
            family,
            &recipe_lines(family, role, patch),
        );
        // The commands ran: the probe of the missing minor failed, everything else succeeded.
        assert_ne!(codes[0], Some(0), "{real}: {codes:?}");
        assert!(
            codes[1..].iter().all(|c| *c == Some(0)),
            "{real}: {codes:?}"
        );
        let want = match family {
            Family::Apt => PATCH.to_string(),
            Family::Dnf => rpm_version(PATCH),
        };
        assert_eq!(cluster.node(real).installed().get("kubelet"), Some(&want));
    }
    for (real, sim, family, role) in pairs {
        let codes = conformance(&cluster, real, sim, family, &seed_lines(family, role));
        assert!(codes.iter().all(|c| *c == Some(0)), "{real}: {codes:?}");
        let want = match family {
            Family::Apt => TO.to_string(),
            Family::Dnf => rpm_version(TO),
        };
        for p in upkeep_testkit::realnode::PACKAGES {
            assert_eq!(
                cluster.node(real).installed().get(p),
                Some(&want),
                "{real} {p}"
            );
        }
    }
    let version: Value =
        serde_json::from_str(&cluster.lab.kubectl_ok(["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.35.2");
}

/// Every command upgrade-node sends to a node of `role` upgrading to `to` from FROM: its
/// read-only probe (of a minor the mirror lacks, then of the target's), then the node
/// commands of its plan, in order.
fn recipe_lines(family: Family, role: upkeep::upgrade::Role, to: Release) -> Vec<String> {
    use upkeep::upgrade::plan::{Action, PlanInput, build};
    use upkeep::upgrade::{PackageManager, Recipe};
    let recipe = Recipe::new(match family {
        Family::Apt => PackageManager::Apt,
        Family::Dnf => PackageManager::Dnf,
    });
    let plan = build(PlanInput {
        node: "n".into(),
        role,
        from: Release::new(1, 34, 3),
        target: to,
        recipe,
        repo_minor: Some(MinorVersion::new(1, 34)),
        revision: None,
        progress: None,
        keep_cordoned: false,
        warnings: Vec::new(),
    });
    let mut cmds = vec![
        recipe.probe(MinorVersion::new(1, 36), "/tmp/upkeep-conformance"),
        recipe.probe(to.minor_line(), "/tmp/upkeep-conformance"),
    ];
    for step in plan.steps {
        if let Action::Node { commands } = step.action {
            cmds.extend(commands);
        }
    }
    cmds.iter().map(|c| c.shell_line().unwrap()).collect()
}

/// The kubeadm upgrade document's manual commands for a control-plane node, to v1.35.2
/// (`sudo` and the prompt left out, see [`the_simulated_node_shell_conforms_to_real_nodes`]).
fn seed_lines(family: Family, role: upkeep::upgrade::Role) -> Vec<String> {
    let v = "1.35.2";
    let kubeadm_upgrade = match role {
        upkeep::upgrade::Role::FirstControlPlane => {
            vec![
                "kubeadm upgrade plan".to_string(),
                format!("kubeadm upgrade apply v{v} --yes"),
            ]
        }
        _ => vec!["kubeadm upgrade node".to_string()],
    };
    let mut lines: Vec<String> = match family {
        Family::Apt => vec![
            "apt update".into(),
            "apt-cache madison kubeadm".into(),
            format!(
                "apt-mark unhold kubeadm && apt-get update && apt-get install -y kubeadm='{v}-*' && apt-mark hold kubeadm"
            ),
            format!(
                "apt-get update && apt-get install -y --allow-change-held-packages kubeadm='{v}-*'"
            ),
        ],
        Family::Dnf => vec![
            "yum list --showduplicates kubeadm --disableexcludes=kubernetes".into(),
            format!("yum install -y kubeadm-'{v}-*' --disableexcludes=kubernetes"),
        ],
    };
    lines.push("kubeadm version".into());
    lines.extend(kubeadm_upgrade);
    lines.push(match family {
        Family::Apt => format!("apt-mark unhold kubelet kubectl && apt-get update && apt-get install -y kubelet='{v}-*' kubectl='{v}-*' && apt-mark hold kubelet kubectl"),
        Family::Dnf => format!("yum install -y kubelet-'{v}-*' kubectl-'{v}-*' --disableexcludes=kubernetes"),
    });
    lines.push("systemctl daemon-reload".into());
    lines.push("systemctl restart kubelet".into());
    lines
}

/// Runs `lines` one by one on the real node over ssh and on the simulated one; exit codes,
/// then installed versions, holds (apt) and the repository's minor must agree. Returns the
/// real node's exit codes.
fn conformance(
    cluster: &RealCluster,
    real: &str,
    sim: &str,
    family: Family,
    lines: &[String],
) -> Vec<Option<i32>> {
    let real = cluster.node(real);
    let mut diffs = Vec::new();
    let mut codes = Vec::new();
    for line in lines {
        let on_real = cluster.ssh(real, line);
        let on_sim = on_sim(cluster, sim, line);
        codes.push(on_real.status.code());
        if on_real.status.code() != on_sim.status.code() {
            diffs.push(format!(
                "{line}\n  real: {}\n  simulated: {}",
                show(&on_real),
                show(&on_sim)
            ));
        }
    }
    let host: Value = serde_json::from_str(&cluster.lab.kubectl_ok([
        "get",
        "--raw",
        &format!("/lab/v1/nodes/{sim}/host"),
    ]))
    .unwrap();
    let sim_installed: std::collections::BTreeMap<String, String> =
        serde_json::from_value(host["installed"].clone()).unwrap();
    let real_installed = real.installed();
    if sim_installed != real_installed {
        diffs.push(format!(
            "installed: real {real_installed:?}, simulated {sim_installed:?}"
        ));
    }
    if family == Family::Apt {
        let mut sim_holds: Vec<String> = serde_json::from_value(host["holds"].clone()).unwrap();
        sim_holds.sort();
        if sim_holds != real.holds() {
            diffs.push(format!(
                "holds: real {:?}, simulated {sim_holds:?}",
                real.holds()
            ));
        }
    }
    let real_minor = upkeep::upgrade::recipe::repo_minor(&real.repo_file()).map(|m| m.to_string());
    if host["repository"].as_str() != real_minor.as_deref() {
        diffs.push(format!(
            "repository: real {real_minor:?}, simulated {}",
            host["repository"]
        ));
    }
    assert!(
        diffs.is_empty(),
        "{} ({family:?}) and {sim}:\n{}",
        real.name,
        diffs.join("\n\n")
    );
    codes
}

/// Ctrl-C while the worker's real `apt-get install` has dpkg configuring kubeadm (its
/// postinst held on a gate), reaching the plugin and the node's apt-get, dpkg and postinst
/// (as through `ssh -t`), so dpkg leaves kubeadm half-configured; then the same command
/// again: it finishes, every package at the target and held, and dpkg is consistent
/// (`dpkg --audit` empty).
#[test]
fn ctrl_c_during_a_real_apt_get_install_then_rerun_finishes() {
    let mut spec = spec(&[("v1.34", &[FROM]), ("v1.35", &[TO])]);
    spec.nodes.retain(|n| n.family == Family::Apt);
    let cluster = RealCluster::start(&spec);
    let worker = cluster.node("node01");
    let gate = worker.root.join(upkeep_testkit::realnode::INSTALL_GATE);
    std::fs::write(&gate, "").unwrap();
    let args = ["--all", "--to", "v1.35", "--yes"];
    let mut child = cluster
        .upgrade_node(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    upkeep_testkit::wait_for(
        "dpkg configuring kubeadm on node01",
        Duration::from_secs(180),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("upgrade-node ended before the install: {status}");
            }
            (!worker.processes("postinst").is_empty()).then_some(())
        },
    );
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let first = upkeep_testkit::wait_for("upgrade-node to stop", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        !first.success(),
        "interrupted run succeeded: {}",
        show(&out)
    );
    // Without a terminal the node's apt-get outlives the session that started it; a Ctrl-C
    // typed into `ssh -t` reaches it. Do that: SIGINT to apt-get, dpkg and the postinst.
    for pid in ["apt-get", "dpkg", "postinst"]
        .iter()
        .flat_map(|p| worker.processes(p))
    {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
    upkeep_testkit::wait_for("dpkg on node01 to end", Duration::from_secs(60), || {
        worker.processes("dpkg").is_empty().then_some(())
    });
    std::fs::remove_file(&gate).unwrap();
    let audit = worker.dpkg_audit();
    assert!(
        audit.contains("kubeadm"),
        "the interrupted install left kubeadm unconfigured, as dpkg --audit says: {audit:?}"
    );
    let again = run_bounded(cluster.upgrade_node(&args), Duration::from_secs(240));
    assert_eq!(
        code(&again),
        0,
        "interrupted run:\n{}\nrerun:\n{}\n{}",
        show(&out),
        show(&again),
        cluster.lab.log()
    );
    assert_eq!(worker.dpkg_audit(), "", "dpkg --audit on node01");
    for n in &cluster.nodes {
        let installed = n.installed();
        for p in upkeep_testkit::realnode::PACKAGES {
            assert_eq!(
                installed.get(p).map(String::as_str),
                Some(TO),
                "{} {p}",
                n.name
            );
        }
        assert_eq!(n.holds(), ["kubeadm", "kubectl", "kubelet"], "{}", n.name);
    }
}
