//! The interpreter end to end over plain data: the apt and dnf flows of the kubeadm upgrade
//! docs, holds and excludes, globs and missing versions, repository switches, kubeadm's
//! policy refusals, faults, and the kubelet restart that changes the reported version.

use super::cluster::{ClusterView, ComponentView, Effect, NodeView};
use super::host::{Host, HostSpec, OsFamily};
use super::interp::{Ctx, run};
use super::repo::{RepoSpec, Repos};
use super::version::KubeVersion;
use crate::exec::ExecOutput;

/// A node, the repositories and the cluster around it.
struct Node {
    host: Host,
    repos: Repos,
    view: ClusterView,
    effects: Vec<Effect>,
}

fn spec(name: &str, cp: bool, family: OsFamily, version: &str) -> HostSpec {
    HostSpec {
        node: name.into(),
        control_plane: cp,
        os_image: family.default_os_image().into(),
        family,
        kubelet_version: KubeVersion::parse(version).unwrap(),
        control_plane_version: None,
        etcd_tag: "3.6.4-0".into(),
        kernel: "6.8.0-79-generic".into(),
    }
}

/// Two control planes (cp1, cp2) and a worker (w1), all at v1.34.3; repositories as in the
/// cluster-upgrade scenario.
fn cluster() -> ClusterView {
    let mut components = Vec::new();
    for n in ["cp1", "cp2"] {
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            components.push(ComponentView {
                component: c.into(),
                node: n.into(),
                tag: "v1.34.3".into(),
            });
        }
        components.push(ComponentView {
            component: "etcd".into(),
            node: n.into(),
            tag: "3.6.4-0".into(),
        });
    }
    let node = |n: &str, cp: bool| NodeView {
        name: n.into(),
        kubelet_version: Some("v1.34.3".into()),
        control_plane: cp,
        ready: true,
        job_schedulable: true,
    };
    ClusterView {
        server_version: "v1.34.3".into(),
        config_version: Some("v1.34.3".into()),
        nodes: vec![node("cp1", true), node("cp2", true), node("w1", false)],
        components,
        kube_proxy_tag: Some("v1.34.3".into()),
        coredns_tag: Some("v1.12.1".into()),
    }
}

fn repos() -> Repos {
    Repos::from_specs(&[
        RepoSpec {
            minor: "v1.34".into(),
            versions: ["1.34.2-1.1", "1.34.3-1.1", "1.34.4-1.1"]
                .map(String::from)
                .to_vec(),
        },
        RepoSpec {
            minor: "v1.35".into(),
            versions: ["1.35.0-1.1", "1.35.1-2.1", "1.35.2-1.1"]
                .map(String::from)
                .to_vec(),
        },
    ])
    .unwrap()
}

impl Node {
    fn new(name: &str, cp: bool, family: OsFamily) -> Node {
        let repos = repos();
        Node {
            host: Host::new(&spec(name, cp, family, "v1.34.3"), &repos),
            repos,
            view: cluster(),
            effects: Vec::new(),
        }
    }

    /// Run a script line as `sh -c` (how transports send commands).
    fn sh(&mut self, script: &str) -> ExecOutput {
        self.sh_in(script, "")
    }

    fn sh_in(&mut self, script: &str, stdin: &str) -> ExecOutput {
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), script.into()];
        self.argv_in(&argv, stdin)
    }

    fn argv(&mut self, argv: &[&str]) -> ExecOutput {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.argv_in(&argv, "")
    }

    fn argv_in(&mut self, argv: &[String], stdin: &str) -> ExecOutput {
        let mut ctx = Ctx::new(&self.repos, self.view.clone(), "2026-11-22T03:55:28Z");
        let out = run(&mut self.host, &mut ctx, argv, stdin);
        self.view = ctx.cluster;
        self.effects.extend(ctx.effects);
        out
    }

    fn installed(&self, pkg: &str) -> String {
        self.host.installed[pkg].to_string()
    }
}

fn ok(o: &ExecOutput) {
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
}

#[test]
fn apt_worker_upgrade_as_the_docs_write_it() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    // Switch the repository to the next minor, as the upgrade page says.
    ok(&n.sh("sudo sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list"));
    let list = n.argv(&["cat", "/etc/apt/sources.list.d/kubernetes.list"]);
    assert_eq!(
        list.stdout,
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n"
    );
    ok(&n.sh("sudo apt update"));
    let madison = n.sh("sudo apt-cache madison kubeadm");
    ok(&madison);
    assert_eq!(
        madison.stdout.lines().collect::<Vec<_>>(),
        [
            "   kubeadm | 1.35.2-1.1 | https://pkgs.k8s.io/core:/stable:/v1.35/deb  Packages",
            "   kubeadm | 1.35.1-2.1 | https://pkgs.k8s.io/core:/stable:/v1.35/deb  Packages",
            "   kubeadm | 1.35.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.35/deb  Packages",
        ]
    );
    // The glob finds the -2.1 revision.
    let up = n.sh(
        "sudo apt-mark unhold kubeadm && sudo apt-get update && sudo apt-get install -y kubeadm='1.35.1-*' && sudo apt-mark hold kubeadm",
    );
    ok(&up);
    assert!(
        up.stdout.contains("Canceled hold on kubeadm."),
        "{}",
        up.stdout
    );
    assert!(
        up.stdout.contains("Selected version '1.35.1-2.1'"),
        "{}",
        up.stdout
    );
    assert!(
        up.stdout
            .contains("Unpacking kubeadm (1.35.1-2.1) over (1.34.3-1.1) ..."),
        "{}",
        up.stdout
    );
    assert!(up.stdout.contains("kubeadm set on hold."), "{}", up.stdout);
    assert_eq!(n.installed("kubeadm"), "1.35.1-2.1");
    assert_eq!(
        n.argv(&["kubeadm", "version", "-o", "short"]).stdout,
        "v1.35.1\n"
    );
    // Workers: kubeadm upgrade node rewrites the kubelet config only.
    n.view.apply(&Effect::ClusterVersion {
        version: "v1.35.1".into(),
    });
    let node = n.sh("sudo kubeadm upgrade node");
    ok(&node);
    assert!(
        node.stdout
            .contains("[upgrade/control-plane] Skipping phase. Not a control plane node."),
        "{}",
        node.stdout
    );
    assert!(
        node.stdout
            .contains("[upgrade] The configuration for this node was successfully updated!")
    );
    assert!(
        n.effects.is_empty(),
        "a worker's upgrade node changes nothing in the cluster: {:?}",
        n.effects
    );
    let backups = n.argv(&["ls", "/etc/kubernetes/tmp"]);
    assert_eq!(
        backups.stdout,
        "kubeadm-kubelet-config-2026-11-22-03-55-28\n"
    );
    ok(&n.sh("apt-mark unhold kubelet kubectl && apt-get update && apt-get install -y kubelet='1.35.1-*' kubectl='1.35.1-*' && apt-mark hold kubelet kubectl"));
    // Until the restart the node still reports the old kubelet.
    assert!(n.effects.is_empty());
    let restart = n.sh("sudo systemctl daemon-reload && sudo systemctl restart kubelet");
    ok(&restart);
    assert!(
        restart.stderr.is_empty(),
        "daemon-reload came first: {}",
        restart.stderr
    );
    assert_eq!(
        n.effects,
        [Effect::KubeletVersion {
            node: "w1".into(),
            version: "v1.35.1".into()
        }]
    );
    assert_eq!(
        n.argv(&["apt-mark", "showhold"]).stdout,
        "kubeadm\nkubectl\nkubelet\n"
    );
}

#[test]
fn held_packages_refuse_to_change() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    let held = n.argv(&["apt-get", "install", "-y", "kubeadm=1.34.4-*"]);
    assert_eq!(held.code, 100);
    assert!(
        held.stdout
            .contains("The following held packages will be changed:\n  kubeadm\n"),
        "{}",
        held.stdout
    );
    assert_eq!(
        held.stderr,
        "E: Held packages were changed and -y was used without --allow-change-held-packages.\n"
    );
    assert_eq!(n.installed("kubeadm"), "1.34.3-1.1");
    // The docs' alternative: allow the change; the hold stays.
    ok(&n.argv(&[
        "apt-get",
        "install",
        "-y",
        "--allow-change-held-packages",
        "kubeadm=1.34.4-*",
    ]));
    assert_eq!(n.installed("kubeadm"), "1.34.4-1.1");
    assert!(
        n.argv(&["apt-mark", "showhold"])
            .stdout
            .contains("kubeadm\n")
    );
    assert_eq!(n.installed("kubelet"), "1.34.3-1.1");
    // Without -y and without a terminal apt asks and aborts.
    ok(&n.argv(&["apt-mark", "unhold", "kubelet"]));
    let ask = n.argv(&["apt-get", "install", "kubelet=1.34.4-1.1"]);
    assert_eq!(ask.code, 1);
    assert!(
        ask.stdout
            .ends_with("Do you want to continue? [Y/n] Abort.\n"),
        "{}",
        ask.stdout
    );
    // apt-mark's own messages.
    assert_eq!(
        n.argv(&["apt-mark", "unhold", "kubelet"]).stdout,
        "kubelet was already not on hold.\n"
    );
    assert_eq!(
        n.argv(&["apt-mark", "hold", "kubeadm"]).stdout,
        "kubeadm was already set on hold.\n"
    );
}

#[test]
fn missing_versions_fail_like_apt() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    ok(&n.argv(&["apt-mark", "unhold", "kubeadm"]));
    for v in ["1.35.9-1.1", "1.34.9-*", "1.34.4-1.1"] {
        // 1.34.4 has revision -1.1, but "1.34.4-1.1" is fine; 1.34.9 does not exist at all.
        let o = n.argv(&["apt-get", "install", "-y", &format!("kubeadm={v}")]);
        if v == "1.34.4-1.1" {
            ok(&o);
        } else {
            assert_eq!(o.code, 100);
            assert_eq!(
                o.stderr,
                format!("E: Version '{v}' for 'kubeadm' was not found\n")
            );
        }
    }
    let unknown = n.argv(&["apt-get", "install", "-y", "kubernetes-dashboard"]);
    assert_eq!(
        (unknown.code, unknown.stderr.as_str()),
        (100, "E: Unable to locate package kubernetes-dashboard\n")
    );
    // A hard-coded -1.1 revision misses a -2.1 rebuild.
    ok(&n.sh("sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-get update"));
    let hard = n.argv(&["apt-get", "install", "-y", "kubeadm=1.35.1-1.1"]);
    assert_eq!(
        hard.stderr,
        "E: Version '1.35.1-1.1' for 'kubeadm' was not found\n"
    );
}

#[test]
fn a_repository_switch_needs_apt_get_update() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    ok(&n.sh("echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /' | sudo tee /etc/apt/sources.list.d/kubernetes.list"));
    let stale = n.argv(&[
        "apt-get",
        "install",
        "-y",
        "--allow-change-held-packages",
        "kubeadm=1.35.2-*",
    ]);
    assert_eq!(
        stale.stderr,
        "E: Version '1.35.2-*' for 'kubeadm' was not found\n"
    );
    assert!(
        !n.argv(&["apt-cache", "madison", "kubeadm"])
            .stdout
            .contains("1.35")
    );
    ok(&n.argv(&["apt-get", "update"]));
    ok(&n.argv(&[
        "apt-get",
        "install",
        "-y",
        "--allow-change-held-packages",
        "kubeadm=1.35.2-*",
    ]));
    assert_eq!(
        n.argv(&["dpkg-query", "-W", "kubeadm"]).stdout,
        "kubeadm\t1.35.2-1.1\n"
    );
    // A garbled list file breaks apt-get update like apt says.
    ok(&n.sh("echo 'deb garbage' > /etc/apt/sources.list.d/kubernetes.list"));
    let broken = n.argv(&["apt-get", "update"]);
    assert_eq!(broken.code, 100);
    assert!(
        broken
            .stderr
            .contains("E: The list of sources could not be read.")
    );
}

#[test]
fn repositories_of_unreleased_minors_do_not_exist() {
    // The test repositories declare v1.34 and v1.35: v1.36 is not released.
    let mut n = Node::new("w1", false, OsFamily::Apt);
    ok(&n.sh("sed -i 's/v1.34/v1.36/' /etc/apt/sources.list.d/kubernetes.list"));
    let up = n.argv(&["apt-get", "update"]);
    assert_eq!(up.code, 100);
    assert!(up.stderr.starts_with("E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.36/deb  Release' does not have a Release file."), "{}", up.stderr);
    assert_eq!(n.argv(&["apt-cache", "madison", "kubeadm"]).stdout, "");
    let mut r = Node::new("w1", false, OsFamily::Dnf);
    ok(&r.sh("sed -i 's/v1.34/v1.36/g' /etc/yum.repos.d/kubernetes.repo"));
    let inst = r.sh("dnf install -y 'kubeadm-1.36.0-*' --disableexcludes=kubernetes");
    assert_eq!(inst.code, 1);
    assert!(
        inst.stderr
            .contains("Error: Failed to download metadata for repo 'kubernetes'"),
        "{}",
        inst.stderr
    );
}

#[test]
fn dnf_excludes_and_the_disableexcludes_flags() {
    let mut n = Node::new("w1", false, OsFamily::Dnf);
    let repo = n.argv(&["cat", "/etc/yum.repos.d/kubernetes.repo"]).stdout;
    assert!(
        repo.contains("baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/\n"),
        "{repo}"
    );
    assert!(repo.contains("exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"));
    ok(&n.sh("sed -i 's/v1.34/v1.35/g' /etc/yum.repos.d/kubernetes.repo"));
    let excluded = n.sh("sudo yum install -y kubeadm-'1.35.1-*'");
    assert_eq!(excluded.code, 1);
    assert!(
        excluded.stdout.contains(
            "All matches were filtered out by exclude filtering for argument: kubeadm-1.35.1-*"
        ),
        "{}",
        excluded.stdout
    );
    assert_eq!(
        excluded.stderr,
        "Error: Unable to find a match: kubeadm-1.35.1-*\n"
    );
    let list = n.sh("sudo yum list --showduplicates kubeadm --disableexcludes=kubernetes");
    ok(&list);
    assert!(
        list.stdout.contains("Installed Packages\nkubeadm.x86_64"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("1.34.3-150500.1.1"));
    for v in [
        "1.35.0-150500.1.1",
        "1.35.1-150500.2.1",
        "1.35.2-150500.1.1",
    ] {
        assert!(list.stdout.contains(v), "{v} in {}", list.stdout);
    }
    let up = n.sh("sudo yum install -y kubeadm-'1.35.1-*' --disableexcludes=kubernetes");
    ok(&up);
    assert!(up.stdout.contains("Upgrading:\n kubeadm"), "{}", up.stdout);
    assert!(up.stdout.ends_with("Complete!\n"));
    assert_eq!(n.installed("kubeadm"), "1.35.1-150500.2.1");
    assert_eq!(
        n.argv(&["rpm", "-q", "kubeadm"]).stdout,
        "kubeadm-1.35.1-150500.2.1.x86_64\n"
    );
    let missing = n.sh("dnf install -y 'kubelet-1.35.9-*' --disableexcludes=kubernetes");
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stdout
            .contains("No match for argument: kubelet-1.35.9-*")
    );
    // dnf without -y asks and aborts.
    let ask = n.sh("dnf install 'kubelet-1.35.1-*' --disableexcludes=kubernetes");
    assert_eq!(ask.code, 1);
    assert!(ask.stdout.ends_with("Operation aborted.\n"));
    // apt does not exist here.
    assert_eq!(n.argv(&["apt-get", "update"]).code, 127);
}

#[test]
fn dnf5_takes_only_setopt_disable_excludes() {
    let mut n = Node::new("w1", false, OsFamily::Dnf5);
    ok(&n.sh("sed -i 's/v1.34/v1.35/' /etc/yum.repos.d/kubernetes.repo"));
    let old_flag = n.sh("sudo dnf install -y 'kubeadm-1.35.2-*' --disableexcludes=kubernetes");
    assert_eq!(old_flag.code, 2);
    assert!(
        old_flag.stderr.starts_with(
            "Unknown argument \"--disableexcludes=kubernetes\" for command \"install\""
        ),
        "{}",
        old_flag.stderr
    );
    ok(&n.sh("sudo yum install -y kubeadm-'1.35.2-*' --setopt=disable_excludes=kubernetes"));
    assert_eq!(n.installed("kubeadm"), "1.35.2-150500.1.1");
    // yum-only hosts have no dnf.
    let mut old = Node::new("w1", false, OsFamily::Yum);
    assert_eq!(old.argv(&["dnf", "list"]).stderr, "sh: 1: dnf: not found\n");
}

#[test]
fn kubeadm_apply_refuses_what_its_policy_refuses() {
    let mut n = Node::new("cp1", true, OsFamily::Apt);
    // kubeadm still 1.34.3: a 1.35 target is a minor above kubeadm (fatal).
    let old = n.sh("kubeadm upgrade apply v1.35.1 -y");
    assert_eq!(old.code, 1);
    assert!(old.stdout.contains("[upgrade/versions] Cluster version: v1.34.3\n[upgrade/versions] kubeadm version: v1.34.3\n"), "{}", old.stdout);
    assert!(old.stderr.starts_with("error execution phase preflight: the version argument is invalid due to these fatal errors:\n\n\t- Specified version to upgrade to \"v1.35.1\" is at least one minor release higher than the kubeadm minor release (35 > 34). Such an upgrade is not supported\n"), "{}", old.stderr);
    assert!(
        old.stderr
            .ends_with("To see the stack trace of this error execute with --v=5 or higher\n")
    );
    // Two minors up, even with a new enough kubeadm (repositories without declarations
    // publish every minor).
    n.repos = Repos::default();
    ok(&n.sh("sed -i 's/v1.34/v1.36/' /etc/apt/sources.list.d/kubernetes.list && apt-get update && apt-get install -y --allow-change-held-packages kubeadm=1.36.1-*"));
    let two = n.sh("kubeadm upgrade apply v1.36.1 --yes");
    assert!(two.stderr.contains("- Specified version to upgrade to \"v1.36.1\" is too high; kubeadm can upgrade only 1 minor version at a time"), "{}", two.stderr);
    // A patch above kubeadm is skippable with --force.
    // Back to the 1.34 repository (apt only knows versions of the lists it fetched).
    let gone = n.sh("apt-get install -y --allow-change-held-packages kubeadm=1.34.3-1.1");
    assert_eq!(
        gone.stderr,
        "E: Version '1.34.3-1.1' for 'kubeadm' was not found\n"
    );
    ok(&n.sh("sed -i 's/v1.36/v1.34/' /etc/apt/sources.list.d/kubernetes.list && apt-get update"));
    let down = n.sh("apt-get install -y --allow-change-held-packages kubeadm=1.34.3-1.1");
    assert_eq!(
        down.stderr,
        "E: Packages were downgraded and -y was used without --allow-downgrades.\n"
    );
    ok(&n.sh(
        "apt-get install -y --allow-change-held-packages --allow-downgrades kubeadm=1.34.3-1.1",
    ));
    let patch = n.sh("kubeadm upgrade apply v1.34.4 -y");
    assert_eq!(patch.code, 1);
    assert!(patch.stderr.contains("is higher than the kubeadm version \"v1.34.3\". Upgrade kubeadm first using the tool you used to install kubeadm\n\nCan be bypassed if you pass the --force flag"), "{}", patch.stderr);
    let forced = n.sh("kubeadm upgrade apply v1.34.4 -y --force");
    ok(&forced);
    assert!(forced.stdout.contains(
        "Found 1 potential version compatibility errors but skipping since the --force flag is set"
    ));
    // A worker has no admin.conf.
    let mut w = Node::new("w1", false, OsFamily::Apt);
    let onw = w.sh("kubeadm upgrade apply v1.34.4 -y");
    assert!(
        onw.stderr
            .contains("/etc/kubernetes/admin.conf: no such file or directory"),
        "{}",
        onw.stderr
    );
}

#[test]
fn kubeadm_refuses_when_kubelets_are_too_old_and_asks_before_applying() {
    let mut n = Node::new("cp1", true, OsFamily::Apt);
    n.view.nodes[2].kubelet_version = Some("v1.31.9".into());
    ok(&n.sh("sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-get update && apt-get install -y --allow-change-held-packages kubeadm=1.35.2-*"));
    let old = n.sh("kubeadm upgrade apply v1.35.2 -y");
    assert!(old.stderr.contains("the version argument is invalid due to these errors:\n\n\t- There are kubelets in this cluster that are too old that have these versions [v1.31.9]\n"), "{}", old.stderr);
    n.view.nodes[2].kubelet_version = Some("v1.32.0".into());
    let ask = n.sh("kubeadm upgrade apply v1.35.2");
    assert_eq!(ask.code, 1);
    assert!(
        ask.stdout
            .contains("[upgrade] Are you sure you want to proceed? [y/N]: ")
    );
    assert!(
        ask.stderr
            .starts_with("won't proceed; the user didn't answer (Y|y) in order to continue")
    );
    assert!(n.effects.is_empty());
    let dry = n.sh("kubeadm upgrade apply v1.35.2 --dry-run");
    ok(&dry);
    assert!(n.effects.is_empty(), "a dry run changes nothing");
    // Answering y on stdin proceeds.
    ok(&n.sh_in("kubeadm upgrade apply v1.35.2", "y\n"));
    assert!(n.effects.contains(&Effect::ClusterVersion {
        version: "v1.35.2".into()
    }));
}

#[test]
fn kubeadm_apply_then_node_upgrades_the_control_plane_and_then_the_addons() {
    let mut cp1 = Node::new("cp1", true, OsFamily::Apt);
    ok(&cp1.sh("sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-mark unhold kubeadm && apt-get update && apt-get install -y kubeadm='1.35.1-*' && apt-mark hold kubeadm"));
    let plan = cp1.sh("kubeadm upgrade plan");
    ok(&plan);
    assert!(
        plan.stdout
            .contains("[upgrade/versions] Target version: v1.35.2"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("kubeadm upgrade apply v1.35.2"));
    assert!(plan.stdout.contains(
        "Note: Before you can perform this upgrade, you have to update kubeadm to v1.35.2."
    ));
    assert!(
        plan.stdout
            .contains("kube-apiserver            cp2    v1.34.3   v1.35.2"),
        "{}",
        plan.stdout
    );
    // etcd's target is the version apply installs for v1.35, not the current one.
    assert!(
        plan.stdout
            .contains("etcd                      cp2    3.6.4-0   3.6.5-0"),
        "{}",
        plan.stdout
    );
    // With a version, plan shows that version (kubeadm's offline version getter).
    let pinned = cp1.sh("kubeadm upgrade plan v1.35.1");
    ok(&pinned);
    assert!(
        pinned.stdout.contains("kubeadm upgrade apply v1.35.1"),
        "{}",
        pinned.stdout
    );
    assert!(!pinned.stdout.contains("v1.35.2"), "{}", pinned.stdout);
    assert!(
        !pinned
            .stdout
            .contains("Note: Before you can perform this upgrade")
    );
    let apply = cp1.sh("sudo kubeadm upgrade apply v1.35.1 --yes");
    ok(&apply);
    assert!(apply.stdout.contains(
        "[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"v1.35.1\"."
    ));
    assert!(apply.stdout.contains("Skipping upgrade of addons because control plane instances [cp2] have not been upgraded"), "{}", apply.stdout);
    assert_eq!(
        cp1.effects,
        [
            Effect::StaticPods {
                node: "cp1".into(),
                tag: "v1.35.1".into(),
                etcd: Some("3.6.5-0".into())
            },
            Effect::ClusterVersion {
                version: "v1.35.1".into()
            }
        ]
    );
    assert_eq!(
        cp1.host.static_pod_version("kube-apiserver"),
        KubeVersion::parse("v1.35.1")
    );
    let tmp = cp1.argv(&["ls", "/etc/kubernetes/tmp"]).stdout;
    assert_eq!(
        tmp,
        "kubeadm-backup-etcd-2026-11-22-03-55-28\nkubeadm-backup-manifests-2026-11-22-03-55-28\nkubeadm-kubelet-config-2026-11-22-03-55-28\n"
    );
    // etcd follows the target minor's pinned version, its data backed up first.
    let etcd = cp1.argv(&[
        "ls",
        "/etc/kubernetes/tmp/kubeadm-backup-etcd-2026-11-22-03-55-28",
    ]);
    assert_eq!(etcd.stdout, "etcd\n");
    assert!(
        apply
            .stdout
            .contains("Component \"etcd\" upgraded successfully!"),
        "{}",
        apply.stdout
    );
    let backup = cp1.argv(&[
        "cat",
        "/etc/kubernetes/tmp/kubeadm-backup-manifests-2026-11-22-03-55-28/kube-apiserver.yaml",
    ]);
    assert!(
        backup
            .stdout
            .contains("image: registry.k8s.io/kube-apiserver:v1.34.3"),
        "{}",
        backup.stdout
    );

    // The second control plane, with the cluster as cp1 left it.
    let mut cp2 = Node::new("cp2", true, OsFamily::Apt);
    cp2.view = cp1.view.clone();
    ok(&cp2.sh("sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-get update && apt-get install -y --allow-change-held-packages kubeadm='1.35.1-*'"));
    let node = cp2.sh("kubeadm upgrade node");
    ok(&node);
    assert!(
        node.stdout.contains(
            "Upgrading your Static Pod-hosted control plane instance to version \"v1.35.1\""
        ),
        "{}",
        node.stdout
    );
    assert!(
        node.stdout
            .contains("[addons] Applied essential addon: kube-proxy")
    );
    assert_eq!(
        cp2.effects,
        [
            Effect::StaticPods {
                node: "cp2".into(),
                tag: "v1.35.1".into(),
                etcd: Some("3.6.5-0".into())
            },
            Effect::KubeProxy {
                tag: "v1.35.1".into()
            }
        ]
    );
    // Re-running is idempotent: nothing left to change.
    let again = cp2.sh("kubeadm upgrade node");
    assert!(
        again
            .stdout
            .contains("Current and new manifests of kube-apiserver are equal, skipping upgrade"),
        "{}",
        again.stdout
    );
}

#[test]
fn faults_fail_the_named_command_the_given_number_of_times() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    n.host.faults.push(super::host::ShellFault {
        fail: "kubeadm upgrade node".into(),
        times: Some(1),
        code: None,
        message: None,
    });
    let first = n.sh("sudo kubeadm upgrade node");
    assert_eq!(first.code, 1);
    assert!(
        first
            .stderr
            .contains("kubeadm upgrade node: failed (fault injected by the lab on node w1)"),
        "{}",
        first.stderr
    );
    ok(&n.sh("sudo kubeadm upgrade node"));
    n.host.faults.push(super::host::ShellFault {
        fail: "systemctl restart kubelet".into(),
        times: None,
        code: Some(5),
        message: Some("Job for kubelet.service failed.".into()),
    });
    for _ in 0..2 {
        let r = n.sh("systemctl restart kubelet");
        assert_eq!(
            (r.code, r.stderr.as_str()),
            (5, "Job for kubelet.service failed.\n")
        );
    }
    assert!(n.effects.is_empty());
}

#[test]
fn the_kubelet_restart_reports_the_installed_version() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    ok(&n.sh("apt-mark unhold kubelet && apt-get install -y kubelet=1.34.4-1.1"));
    let status = n.argv(&["systemctl", "status", "kubelet"]);
    assert!(status.stdout.contains("Active: active (running)"));
    assert!(
        status.stdout.contains("kubelet version: v1.34.3"),
        "still the old binary: {}",
        status.stdout
    );
    let warn = n.argv(&["systemctl", "restart", "kubelet"]);
    ok(&warn);
    assert!(
        warn.stderr
            .contains("Run 'systemctl daemon-reload' to reload units."),
        "{}",
        warn.stderr
    );
    assert_eq!(
        n.effects,
        [Effect::KubeletVersion {
            node: "w1".into(),
            version: "v1.34.4".into()
        }]
    );
    ok(&n.argv(&["systemctl", "stop", "kubelet"]));
    let inactive = n.argv(&["systemctl", "is-active", "kubelet"]);
    assert_eq!((inactive.code, inactive.stdout.as_str()), (3, "inactive\n"));
    assert_eq!(
        n.effects.last(),
        Some(&Effect::KubeletService {
            node: "w1".into(),
            running: false
        })
    );
    ok(&n.argv(&["systemctl", "start", "kubelet"]));
    assert_eq!(
        n.effects.last(),
        Some(&Effect::KubeletService {
            node: "w1".into(),
            running: true
        })
    );
    let nounit = n.argv(&["systemctl", "restart", "kubelett"]);
    assert_eq!(
        (nounit.code, nounit.stderr.as_str()),
        (
            5,
            "Failed to restart kubelett.service: Unit kubelett.service not found.\n"
        )
    );
}

#[test]
fn shell_semantics() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    assert_eq!(n.sh("false && echo no || echo yes").stdout, "yes\n");
    assert_eq!(n.sh("true || echo no; echo after").stdout, "after\n");
    let e = n.sh("set -e; false; echo unreachable");
    assert_eq!((e.code, e.stdout.as_str()), (1, ""));
    assert_eq!(n.sh("false | true").code, 0);
    assert_eq!(n.sh("set -o pipefail; false | true").code, 1);
    assert_eq!(n.sh("exit 3; echo no").code, 3);
    let nf = n.argv(&["foo", "--bar"]);
    assert_eq!(
        (nf.code, nf.stderr.as_str()),
        (127, "sh: 1: foo: not found\n")
    );
    assert_eq!(n.sh("foo && echo no").code, 127);
    let syntax = n.sh("apt-get update &&");
    assert_eq!(
        (syntax.code, syntax.stderr.as_str()),
        (2, "sh: 1: Syntax error: end of file unexpected\n")
    );
    for gone in [
        "hostname", "uname", "whoami", "id", "date", "printf", "kubelet",
    ] {
        let out = n.argv(&[gone]);
        assert_eq!(
            (out.code, out.stderr),
            (127, format!("sh: 1: {gone}: not found\n")),
            "{gone} is in neither the conformance suite nor the practice list"
        );
    }
    assert!(
        n.argv(&["cat", "/etc/os-release"])
            .stdout
            .contains("PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"")
    );
    assert_eq!(
        n.argv(&["cat", "/nope"]).stderr,
        "cat: /nope: No such file or directory\n"
    );
    assert_eq!(
        n.sh("echo hi > /nodir/x").stderr,
        "sh: 1: cannot create /nodir/x: Directory nonexistent\n"
    );
    assert_eq!(
        n.sh("dpkg-query -W kubeadm | cut -f2").code,
        127,
        "cut is not a lab command"
    );
    // Variables, as people write upgrade scripts.
    let vars = n.sh("VER=1.34.4-1.1; PKG=kubeadm; apt-mark unhold $PKG && apt-get install -y \"$PKG=${VER}\"; echo \"status $?\" '$VER'");
    ok(&vars);
    assert!(
        vars.stdout
            .contains("Unpacking kubeadm (1.34.4-1.1) over (1.34.3-1.1) ..."),
        "{}",
        vars.stdout
    );
    assert!(vars.stdout.ends_with("status 0 $VER\n"), "{}", vars.stdout);
    assert_eq!(
        n.sh("export MINOR=v1.35; echo $MINOR $HOME $UNSET.").stdout,
        "v1.35 /root .\n"
    );
    assert_eq!(
        n.sh("echo $MINOR").stdout,
        "\n",
        "variables do not outlive one command"
    );
    // Heredocs write repository files.
    ok(&n.sh("cat <<EOF | sudo tee /tmp/x.list >/dev/null\nline one\nEOF\n"));
    assert_eq!(n.argv(&["cat", "/tmp/x.list"]).stdout, "line one\n");
    // The wrappers of privileged pods and remote shells.
    assert_eq!(
        n.argv(&[
            "nsenter",
            "-t",
            "1",
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "--",
            "cat",
            "/etc/hostname"
        ])
        .stdout,
        "w1\n"
    );
    assert_eq!(
        n.argv(&["sudo", "-n", "/usr/bin/cat", "/etc/hostname"])
            .stdout,
        "w1\n"
    );
    assert_eq!(n.host.history.len(), 27);
}

#[test]
fn kubeadm_version_outputs() {
    let mut n = Node::new("w1", false, OsFamily::Apt);
    assert_eq!(
        n.argv(&["kubeadm", "version", "-o", "short"]).stdout,
        "v1.34.3\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&n.argv(&["kubeadm", "version", "-o", "json"]).stdout).unwrap();
    assert_eq!(j["clientVersion"]["gitVersion"], "v1.34.3");
    assert_eq!(j["clientVersion"]["minor"], "34");
    assert!(n.argv(&["kubeadm", "version"]).stdout.starts_with(
        "kubeadm version: &version.Info{Major:\"1\", Minor:\"34\", GitVersion:\"v1.34.3\""
    ));
}

/// The argv forms an upgrade tool sends: a bracket-class sed with `#` delimiters over the
/// pkgs.k8s.io path, a fixed-string grep to verify, listings of all three packages.
#[test]
fn argv_recipes_of_an_upgrade_tool() {
    for family in [OsFamily::Apt, OsFamily::Dnf, OsFamily::Dnf5, OsFamily::Yum] {
        let mut n = Node::new("w1", false, family);
        let file = if family == OsFamily::Apt {
            "/etc/apt/sources.list.d/kubernetes.list"
        } else {
            "/etc/yum.repos.d/kubernetes.repo"
        };
        ok(&n.argv(&[
            "sed",
            "-i",
            "s#/core:/stable:/v[0-9][0-9]*[.][0-9][0-9]*/#/core:/stable:/v1.35/#g",
            file,
        ]));
        let check = n.argv(&["grep", "-F", "/core:/stable:/v1.35/", file]);
        ok(&check);
        assert!(
            !n.argv(&["cat", file]).stdout.contains("v1.34"),
            "{family:?}"
        );
        let listing = match family {
            OsFamily::Apt => {
                ok(&n.argv(&["apt-get", "update"]));
                n.argv(&["apt-cache", "madison", "kubeadm", "kubelet", "kubectl"])
            }
            OsFamily::Dnf5 => n.argv(&[
                "dnf",
                "list",
                "--showduplicates",
                "kubeadm",
                "kubelet",
                "kubectl",
                "--setopt=disable_excludes=kubernetes",
            ]),
            OsFamily::Yum => n.argv(&[
                "yum",
                "list",
                "--showduplicates",
                "kubeadm",
                "kubelet",
                "kubectl",
                "--disableexcludes=kubernetes",
            ]),
            OsFamily::Dnf => n.argv(&[
                "dnf",
                "list",
                "--showduplicates",
                "kubeadm",
                "kubelet",
                "kubectl",
                "--disableexcludes=kubernetes",
            ]),
        };
        ok(&listing);
        for p in ["kubeadm", "kubelet", "kubectl"] {
            assert_eq!(
                listing
                    .stdout
                    .lines()
                    .filter(|l| l.contains(p) && l.contains("1.35."))
                    .count(),
                3,
                "{family:?} {p}: {}",
                listing.stdout
            );
        }
    }
}

/// The read-only probe upgrade-node runs (its recipe, written out here as a node sees it):
/// a scratch copy of the repository file, apt pointed at it with `-o Dir::...`, dnf with
/// `--setopt=reposdir=`; the scratch directory removed by the EXIT trap.
fn probe_script(family: OsFamily, to: &str) -> String {
    let (file, copy) = match family {
        OsFamily::Apt => (
            "/etc/apt/sources.list.d/kubernetes.list",
            "/tmp/p.1/sources.list",
        ),
        _ => (
            "/etc/yum.repos.d/kubernetes.repo",
            "/tmp/p.1/kubernetes.repo",
        ),
    };
    let mut s = format!(
        "cat /etc/os-release || exit 91\necho\necho '--- upkeep: repository file'\ncat {file} || exit 92\necho\necho '--- upkeep: versions'\n\
         mkdir /tmp/p.1 || exit 93\ntrap 'rm -rf /tmp/p.1' EXIT\ntrap 'exit 130' HUP INT TERM\n"
    );
    let sed = format!(
        "sed -i 's#/core:/stable:/v[0-9][0-9]*[.][0-9][0-9]*/#/core:/stable:/{to}/#g' {copy} || exit 93\n"
    );
    match family {
        OsFamily::Apt => {
            let o = "-o 'Dir::Etc::SourceList=/tmp/p.1/sources.list' -o 'Dir::Etc::SourceParts=-' -o 'Dir::State::Lists=/tmp/p.1/lists' -o 'Dir::Cache::pkgcache=' -o 'Dir::Cache::srcpkgcache='";
            s.push_str(&format!(
                "mkdir /tmp/p.1/lists /tmp/p.1/lists/partial || exit 93\ncp {file} {copy} || exit 93\n{sed}\
                 apt-get -q {o} update || exit 94\napt-cache {o} madison kubeadm kubelet kubectl || exit 95"
            ));
        }
        _ => s.push_str(&format!(
            "cp {file} {copy} || exit 93\n{sed}\
             dnf '--setopt=reposdir=/tmp/p.1' '--setopt=cachedir=/tmp/p.1/cache' '--setopt=persistdir=/tmp/p.1/persist' '--setopt=skip_if_unavailable=False' '--disableexcludes=kubernetes' list --showduplicates kubeadm kubelet kubectl || exit 95"
        )),
    }
    s
}

/// What a dry run must leave alone on a simulated node.
fn node_state(n: &Node) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        n.host.files, n.host.dirs, n.host.installed, n.host.holds, n.host.apt_lists
    )
}

#[test]
fn the_probe_lists_another_minor_and_changes_nothing() {
    for family in [OsFamily::Apt, OsFamily::Dnf] {
        let mut n = Node::new("w1", false, family);
        ok(&n.sh("apt-get update || true"));
        let before = node_state(&n);
        let out = n.argv(&["sudo", "sh", "-c", &probe_script(family, "v1.35")]);
        ok(&out);
        let (_, listing) = out.stdout.split_once("--- upkeep: versions\n").unwrap();
        let want = match family {
            OsFamily::Apt => {
                "   kubeadm | 1.35.1-2.1 | https://pkgs.k8s.io/core:/stable:/v1.35/deb  Packages"
            }
            _ => "1.35.1-150500.2.1",
        };
        assert!(listing.contains(want), "{family:?}: {listing}");
        assert!(!listing.contains("1.34.4"), "{family:?}: {listing}");
        assert_eq!(
            node_state(&n),
            before,
            "{family:?}: the probe changed the node"
        );

        // A minor the repository does not carry: apt's and dnf's own 404, still nothing changed.
        let missing = n.argv(&["sh", "-c", &probe_script(family, "v1.36")]);
        match family {
            OsFamily::Apt => {
                assert_eq!(missing.code, 94, "{missing:?}");
                assert!(missing.stderr.contains("does not have a Release file"));
            }
            _ => {
                assert_eq!(missing.code, 95, "{missing:?}");
                assert!(missing.stderr.contains("Status code: 404"));
            }
        }
        assert_eq!(
            node_state(&n),
            before,
            "{family:?}: the failed probe changed the node"
        );
    }
}

/// A site package requiring kubeadm and kubelet at the node's versions, as a real node answers
/// for it: the probe's dependency query (dpkg-query, rpm's query format) names it; apt-get
/// removes it on `install -y` of another kubeadm (real apt 2.6 does, exit 0); dnf refuses
/// (real dnf 4.14, exit 1), changing nothing.
#[test]
fn a_site_package_pinning_kubeadm_as_real_apt_and_dnf_treat_it() {
    use super::host::SitePackageSpec;
    let site = [SitePackageSpec {
        name: "site-kubernetes".into(),
        version: "1.0".into(),
        pins: vec!["kubeadm".into(), "kubelet".into()],
    }];
    let query = "mkdir /tmp/p && dpkg-query -W -f '${db:Status-Status} ${Package} ${Version} ${Depends}, ${Pre-Depends}\\n' > /tmp/p/deps || exit 96\n\
                 grep -E ' (kubeadm|kubelet|kubectl) [(<>=]' /tmp/p/deps || test $? = 1 || exit 96";
    let mut n = Node::new("w1", false, OsFamily::Apt);
    // Without one, grep finds nothing and the script goes on (status 0).
    let none = n.sh(query);
    ok(&none);
    assert_eq!(none.stdout, "");
    n.host.add_site_packages(&site);
    ok(&n.sh("rm -rf /tmp/p"));
    let found = n.sh(query);
    ok(&found);
    assert_eq!(
        found.stdout,
        "installed site-kubernetes 1.0 kubeadm (= 1.34.3-1.1), kubelet (= 1.34.3-1.1), \n"
    );
    ok(&n.sh("sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-get update && apt-mark unhold kubeadm"));
    let sim = n.sh("apt-get install -s 'kubeadm=1.35.2-*'");
    ok(&sim);
    assert!(
        sim.stdout
            .contains("The following packages will be REMOVED:\n  site-kubernetes\n"),
        "{}",
        sim.stdout
    );
    assert!(
        sim.stdout.contains("Remv site-kubernetes [1.0]"),
        "{}",
        sim.stdout
    );
    assert_eq!(n.host.site_packages.len(), 1, "-s changes nothing");
    let up = n.sh("apt-get install -y 'kubeadm=1.35.2-*'");
    ok(&up);
    assert!(
        up.stdout.contains("Removing site-kubernetes (1.0) ..."),
        "{}",
        up.stdout
    );
    assert!(n.host.site_packages.is_empty());
    assert_eq!(n.installed("kubeadm"), "1.35.2-1.1");

    let mut n = Node::new("w2", false, OsFamily::Dnf);
    n.host.add_site_packages(&site);
    let q = n.sh("rpm -qa --qf '[%{=NAME} %{=VERSION}-%{=RELEASE} %{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\\n]' | grep -E ' (kubeadm|kubelet|kubectl) [(<>=]'");
    ok(&q);
    assert_eq!(
        q.stdout,
        "site-kubernetes 1.0-1 kubeadm = 1.34.3-150500.1.1\nsite-kubernetes 1.0-1 kubelet = 1.34.3-150500.1.1\n"
    );
    ok(&n.sh("sed -i 's/v1.34/v1.35/g' /etc/yum.repos.d/kubernetes.repo"));
    let up = n.sh("dnf install -y 'kubeadm-1.35.2-*' --disableexcludes=kubernetes");
    assert_eq!(up.code, 1, "{}\n{}", up.stdout, up.stderr);
    assert!(
        up.stderr.contains("package site-kubernetes-1.0-1.x86_64 requires kubeadm = 1.34.3-150500.1.1, but none of the providers can be installed"),
        "{}",
        up.stderr
    );
    assert_eq!(n.installed("kubeadm"), "1.34.3-150500.1.1");
    assert_eq!(n.host.site_packages.len(), 1);
}
