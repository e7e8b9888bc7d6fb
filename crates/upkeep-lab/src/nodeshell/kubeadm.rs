//! kubeadm on a simulated node: `version`, `upgrade plan`, `upgrade apply`, `upgrade node`,
//! with kubeadm's own version policy and the effects of each phase on the node (static pod
//! manifests, kubelet config, backups under /etc/kubernetes/tmp) and on the cluster.

use serde_json::json;

use super::cluster::Effect;
use super::host::{
    CONTROL_PLANE_COMPONENTS, Host, KUBEADM_TMP_DIR, KUBELET_CONFIG, MANIFESTS_DIR,
    static_pod_manifest,
};
use super::interp::Ctx;
use super::repo::PkgFormat;
use super::version::KubeVersion;
use crate::exec::ExecOutput;

/// What EnforceVersionPolicies found (cmd/kubeadm/app/phases/upgrade/policy.go
/// `VersionSkewPolicyErrors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyErrors {
    /// Cannot be bypassed.
    pub mandatory: Vec<String>,
    /// Bypassed with `--force`.
    pub skippable: Vec<String>,
}

impl PolicyErrors {
    pub fn is_empty(&self) -> bool {
        self.mandatory.is_empty() && self.skippable.is_empty()
    }
}

/// policy.go `MaximumAllowedMinorVersionUpgradeSkew` / `...DowngradeSkew`.
const MAX_UPGRADE_SKEW: u32 = 1;
const MAX_DOWNGRADE_SKEW: u32 = 1;

/// policy.go `MaximumAllowedMinorVersionKubeletSkew`: 1 through kubeadm 1.28, 3 since 1.29
/// (kubernetes PR #120825, following KEP-3935).
pub fn max_kubelet_skew(kubeadm: &KubeVersion) -> u32 {
    if kubeadm.minor >= 29 { 3 } else { 1 }
}

/// cmd/kubeadm/app/phases/upgrade/policy.go `EnforceVersionPolicies`, rule by rule.
/// `kubelets` is None when the kubelet versions could not be read.
pub fn enforce_version_policies(
    cluster: &KubeVersion,
    kubeadm: &KubeVersion,
    target: &KubeVersion,
    target_str: &str,
    kubelets: Option<&[String]>,
    allow_experimental: bool,
    allow_rc: bool,
) -> PolicyErrors {
    let mut e = PolicyErrors::default();
    let pre = target.is_prerelease();
    let mandatory_unless_pre = |e: &mut PolicyErrors, msg: String| {
        if pre {
            e.skippable.push(msg)
        } else {
            e.mandatory.push(msg)
        }
    };
    // constants.MinimumControlPlaneVersion: one minor below kubeadm's own. Upstream formats the
    // cluster version into this message, so do we.
    let minimum = KubeVersion::new(kubeadm.major, kubeadm.minor.saturating_sub(1), 0);
    if target < &minimum {
        e.mandatory.push(format!(
            "Specified version to upgrade to \"{target_str}\" is equal to or lower than the minimum supported version \"{cluster}\". Please specify a higher version to upgrade to"
        ));
    }
    if target.minor > cluster.minor + MAX_UPGRADE_SKEW {
        mandatory_unless_pre(
            &mut e,
            format!(
                "Specified version to upgrade to \"{target_str}\" is too high; kubeadm can upgrade only {MAX_UPGRADE_SKEW} minor version at a time"
            ),
        );
    }
    if target.minor + MAX_DOWNGRADE_SKEW < cluster.minor {
        mandatory_unless_pre(
            &mut e,
            format!(
                "Specified version to downgrade to \"{target_str}\" is too low; kubeadm can downgrade only {MAX_DOWNGRADE_SKEW} minor version at a time"
            ),
        );
    }
    if kubeadm < target {
        if target.minor > kubeadm.minor {
            mandatory_unless_pre(
                &mut e,
                format!(
                    "Specified version to upgrade to \"{target_str}\" is at least one minor release higher than the kubeadm minor release ({} > {}). Such an upgrade is not supported",
                    target.minor, kubeadm.minor
                ),
            );
        } else {
            e.skippable.push(format!(
                "Specified version to upgrade to \"{target_str}\" is higher than the kubeadm version \"{kubeadm}\". Upgrade kubeadm first using the tool you used to install kubeadm"
            ));
        }
    }
    if kubeadm.major > target.major || kubeadm.minor > target.minor {
        e.skippable.push(format!(
            "Kubeadm version {kubeadm} can only be used to upgrade to Kubernetes version {}.{}",
            kubeadm.major, kubeadm.minor
        ));
    }
    if pre && !allow_experimental && !(target.pre.starts_with("rc") && allow_rc) {
        e.skippable.push(format!(
            "Specified version to upgrade to \"{target_str}\" is an unstable version and such upgrades weren't allowed via setting the --allow-*-upgrades flags"
        ));
    }
    match kubelets {
        None => e
            .skippable
            .push("Unable to fetch kubelet version".to_string()),
        Some(list) => {
            let skew = max_kubelet_skew(kubeadm);
            let mut too_old: Vec<String> = list
                .iter()
                .filter(|v| KubeVersion::parse(v).is_some_and(|k| target.minor > k.minor + skew))
                .cloned()
                .collect();
            too_old.sort();
            too_old.dedup();
            if !too_old.is_empty() {
                e.skippable.push(format!(
                    "There are kubelets in this cluster that are too old that have these versions [{}]",
                    too_old.join(" ")
                ));
            }
        }
    }
    e
}

/// cmd/kubeadm/app/util/error.go `FormatErrMsg`.
fn format_errs(errs: &[String]) -> String {
    errs.iter().map(|e| format!("\t- {e}\n")).collect()
}

/// The error text `kubeadm upgrade apply` ends with (cmd/kubeadm/app/cmd/upgrade/apply.go,
/// phases/upgrade/apply/preflight.go), or the `--force` notice on stdout.
fn policy_verdict(
    errs: &PolicyErrors,
    force: bool,
    kubeadm: &KubeVersion,
) -> Result<String, String> {
    // 1.32 made apply a phased workflow and dropped the "--" from "--version argument".
    let (arg, prefix) = if kubeadm.minor >= 32 {
        ("the version argument", "error execution phase preflight: ")
    } else {
        ("the --version argument", "[upgrade/version] FATAL: ")
    };
    if !errs.mandatory.is_empty() {
        return Err(format!(
            "{prefix}{arg} is invalid due to these fatal errors:\n\n{}\nPlease fix the misalignments highlighted above and try upgrading again\n",
            format_errs(&errs.mandatory)
        ));
    }
    if !errs.skippable.is_empty() {
        if !force {
            return Err(format!(
                "{prefix}{arg} is invalid due to these errors:\n\n{}\nCan be bypassed if you pass the --force flag\n",
                format_errs(&errs.skippable)
            ));
        }
        return Ok(format!(
            "[upgrade/version] Found {} potential version compatibility errors but skipping since the --force flag is set: \n\n{}",
            errs.skippable.len(),
            format_errs(&errs.skippable)
        ));
    }
    Ok(String::new())
}

const STACK_HINT: &str = "To see the stack trace of this error execute with --v=5 or higher\n";

fn fail(mut out: ExecOutput, msg: String) -> ExecOutput {
    out.stderr.push_str(&msg);
    if !msg.ends_with('\n') {
        out.stderr.push('\n');
    }
    out.stderr.push_str(STACK_HINT);
    out.code = 1;
    out
}

pub fn kubeadm(host: &mut Host, ctx: &mut Ctx, args: &[String], stdin: &str) -> ExecOutput {
    let Some(kv) = host.kubeadm_version() else {
        return ExecOutput::fail(127, "sh: 1: kubeadm: not found\n");
    };
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match words.as_slice() {
        ["version", ..] => version(&kv, args),
        ["upgrade", "plan", rest @ ..] => plan(host, ctx, &kv, rest.first().copied()),
        ["upgrade", "apply", ..] => apply(host, ctx, &kv, args, stdin),
        ["upgrade", "node", ..] => node(host, ctx, &kv, args),
        ["certs", "check-expiration", ..] => {
            let now = ctx.now.parse().unwrap_or_else(|_| jiff::Timestamp::now());
            super::pki::check_expiration(
                &host.pki,
                now,
                flag_value(args, "--output", Some("-o")).as_deref(),
            )
        }
        ["upgrade"] | ["upgrade", ..] => ExecOutput::fail(
            1,
            "Error: unknown command for \"kubeadm upgrade\"\nAvailable Commands: apply, diff, node, plan\n",
        ),
        _ => ExecOutput::fail(
            1,
            "The lab's kubeadm knows: kubeadm version, kubeadm upgrade plan|apply|node, kubeadm certs check-expiration\n"
                .to_string(),
        ),
    }
}

fn flag_value(args: &[String], long: &str, short: Option<&str>) -> Option<String> {
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Some(v.to_string());
        }
        if a == long || Some(a.as_str()) == short {
            return args.get(i + 1).cloned();
        }
        if let Some(v) = short
            .and_then(|s| a.strip_prefix(s))
            .filter(|v| !v.is_empty() && !a.starts_with("--"))
        {
            return Some(v.trim_start_matches('=').to_string());
        }
    }
    None
}

fn has_flag(args: &[String], names: &[&str]) -> bool {
    args.iter().any(|a| {
        names
            .iter()
            .any(|n| a == n || a.strip_prefix(n).is_some_and(|r| r == "=true"))
    })
}

/// `kubeadm version [-o short|json|yaml]` (cmd/kubeadm/app/cmd/version.go).
fn version(kv: &KubeVersion, args: &[String]) -> ExecOutput {
    let info = json!({
        "major": kv.major.to_string(), "minor": kv.minor.to_string(), "gitVersion": kv.tag(),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc", "platform": "linux/amd64"
    });
    match flag_value(args, "--output", Some("-o")).as_deref() {
        Some("short") => ExecOutput::ok(format!("{kv}\n")),
        Some("json") => ExecOutput::ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({ "clientVersion": info })).unwrap_or_default()
        )),
        Some("yaml") => ExecOutput::ok(format!(
            "clientVersion:\n  buildDate: \"2026-01-01T00:00:00Z\"\n  compiler: gc\n  gitCommit: 0000000000000000000000000000000000000000\n  \
             gitTreeState: clean\n  gitVersion: {kv}\n  goVersion: go1.25.0\n  major: \"{}\"\n  minor: \"{}\"\n  platform: linux/amd64\n",
            kv.major, kv.minor
        )),
        Some(o) => ExecOutput::fail(1, format!("error: invalid output format: {o}\n")),
        None => ExecOutput::ok(format!(
            "kubeadm version: &version.Info{{Major:\"{}\", Minor:\"{}\", GitVersion:\"{kv}\", GitCommit:\"0000000000000000000000000000000000000000\", \
             GitTreeState:\"clean\", BuildDate:\"2026-01-01T00:00:00Z\", GoVersion:\"go1.25.0\", Compiler:\"gc\", Platform:\"linux/amd64\"}}\n",
            kv.major, kv.minor
        )),
    }
}

/// Without /etc/kubernetes/admin.conf (a worker), kubeadm cannot build a client.
fn require_admin_conf(host: &Host) -> Result<(), String> {
    if host.files.contains_key("/etc/kubernetes/admin.conf") {
        return Ok(());
    }
    Err("couldn't create a Kubernetes client from file \"/etc/kubernetes/admin.conf\": failed to load admin kubeconfig: \
         open /etc/kubernetes/admin.conf: no such file or directory\n"
        .to_string())
}

const READ_CONFIG: &str = "[upgrade] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n\
[upgrade] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n";

/// The newest release of a minor (what dl.k8s.io's stable-1.X.txt would say): the newest
/// version any repository publishes.
fn newest_in_minor(ctx: &Ctx, major: u32, minor: u32) -> Option<KubeVersion> {
    ctx.repos
        .versions((major, minor), PkgFormat::Deb)
        .into_iter()
        .map(|p| p.upstream)
        .filter(|v| !v.is_prerelease())
        .max()
}

/// `kubeadm upgrade plan` (1.31+ table layout with a NODE column).
/// With a version argument, kubeadm's offline version getter answers every "latest" lookup
/// with it (phases/upgrade/versiongetter.go `OfflineVersionGetter`).
fn plan(host: &mut Host, ctx: &mut Ctx, kv: &KubeVersion, version: Option<&str>) -> ExecOutput {
    let mut out = ExecOutput::ok(READ_CONFIG);
    if let Err(e) = require_admin_conf(host) {
        return fail(out, e);
    }
    let Some(cluster) = ctx.cluster.cluster_version() else {
        return fail(
            out,
            "[upgrade/versions] FATAL: Unable to fetch cluster version".into(),
        );
    };
    out.stdout.push_str(
        "[upgrade/preflight] Running preflight checks.\n[upgrade] Running cluster health checks\n",
    );
    out.stdout.push_str(&format!(
        "[upgrade] Fetching available versions to upgrade to\n[upgrade/versions] Cluster version: {cluster}\n[upgrade/versions] kubeadm version: {kv}\n"
    ));
    let mut options: Vec<(String, KubeVersion)> = Vec::new();
    if let Some(v) = version {
        let Some(target) = KubeVersion::parse(v) else {
            return fail(
                out,
                format!("unable to parse version \"{v}\": expected a version like v1.34.1"),
            );
        };
        if target > cluster {
            out.stdout
                .push_str(&format!("[upgrade/versions] Target version: {target}\n"));
            options.push(("the latest stable version".to_string(), target));
        }
    }
    if let Some(patch) = newest_in_minor(ctx, cluster.major, cluster.minor)
        .filter(|p| p > &cluster && version.is_none())
    {
        out.stdout.push_str(&format!(
            "[upgrade/versions] Latest version in the v{}.{} series: {patch}\n",
            cluster.major, cluster.minor
        ));
        options.push((
            format!(
                "the latest version in the v{}.{} series",
                cluster.major, cluster.minor
            ),
            patch,
        ));
    }
    if kv.minor > cluster.minor
        && version.is_none()
        && let Some(stable) = newest_in_minor(ctx, kv.major, kv.minor)
    {
        out.stdout
            .push_str(&format!("[upgrade/versions] Target version: {stable}\n"));
        options.push(("the latest stable version".to_string(), stable));
    }
    if options.is_empty() {
        out.stdout
            .push_str("\nAwesome, you're up-to-date! Enjoy!\n");
        return out;
    }
    let cps: Vec<&str> = ctx
        .cluster
        .nodes
        .iter()
        .filter(|n| n.control_plane)
        .map(|n| n.name.as_str())
        .collect();
    for (title, target) in options {
        let mut rows: Vec<[String; 4]> = Vec::new();
        for n in &ctx.cluster.nodes {
            rows.push([
                "kubelet".into(),
                n.name.clone(),
                n.kubelet_version.clone().unwrap_or_default(),
                target.tag(),
            ]);
        }
        out.stdout.push_str(
            "\nComponents that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':\n",
        );
        out.stdout.push_str(&table(&rows));
        let mut rows: Vec<[String; 4]> = Vec::new();
        for c in CONTROL_PLANE_COMPONENTS {
            for n in &cps {
                let cur = ctx.cluster.component_tag(c, n).unwrap_or("").to_string();
                rows.push([c.into(), n.to_string(), cur, target.tag()]);
            }
        }
        let proxy = ctx.cluster.kube_proxy_tag.clone().unwrap_or_default();
        rows.push([
            "kube-proxy".into(),
            String::new(),
            proxy.trim_start_matches('v').to_string(),
            target.tag(),
        ]);
        let dns = ctx
            .cluster
            .coredns_tag
            .clone()
            .unwrap_or_else(|| "v1.12.1".into());
        rows.push(["CoreDNS".into(), String::new(), dns.clone(), dns]);
        // The etcd target is the version kubeadm pins for the target release, the one apply
        // installs (cmd/kubeadm/app/phases/upgrade/compute.go getSuggestedEtcdVersion).
        let etcd_target = crate::sim::kubelet::control_plane_images(&target.tag())
            .into_iter()
            .find(|(c, _)| c == "etcd")
            .and_then(|(_, img)| img.rsplit_once(':').map(|(_, t)| t.to_string()))
            .unwrap_or_default();
        for n in &cps {
            let etcd = ctx
                .cluster
                .component_tag("etcd", n)
                .unwrap_or("")
                .to_string();
            rows.push(["etcd".into(), n.to_string(), etcd, etcd_target.clone()]);
        }
        out.stdout.push_str(&format!("\nUpgrade to {title}:\n\n"));
        out.stdout.push_str(&table(&rows));
        out.stdout.push_str(&format!(
            "\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply {target}\n\n"
        ));
        if &target > kv {
            out.stdout.push_str(&format!("Note: Before you can perform this upgrade, you have to update kubeadm to {target}.\n\n"));
        }
        out.stdout
            .push_str("_____________________________________________________________________\n");
    }
    out
}

fn table(rows: &[[String; 4]]) -> String {
    let head = ["COMPONENT", "NODE", "CURRENT", "TARGET"];
    let mut w = head.map(str::len);
    for r in rows {
        for i in 0..4 {
            w[i] = w[i].max(r[i].len());
        }
    }
    let line = |cells: [&str; 4]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 3 {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            } else {
                s.push_str(c);
            }
        }
        format!("{}\n", s.trim_end())
    };
    let mut out = line(head);
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

/// Rewrite this node's control-plane manifests to `target`, backing up the ones that change
/// (phases/upgrade/staticpods.go). Returns the log lines.
fn upgrade_static_pods(host: &mut Host, ctx: &mut Ctx, target: &KubeVersion) -> String {
    let stamp = ctx.stamp();
    let backup = format!("{KUBEADM_TMP_DIR}/kubeadm-backup-manifests-{stamp}");
    let etcd_backup = format!("{KUBEADM_TMP_DIR}/kubeadm-backup-etcd-{stamp}");
    host.dirs.insert(backup.clone());
    host.dirs.insert(etcd_backup.clone());
    let mut log = format!(
        "[upgrade/staticpods] Writing new Static Pod manifests to \"{KUBEADM_TMP_DIR}/kubeadm-upgraded-manifests-{stamp}\"\n"
    );
    let moved = |host: &mut Host, c: &str, image: String, log: &mut String| {
        let path = format!("{MANIFESTS_DIR}/{c}.yaml");
        if let Some(old) = host.files.get(&path).cloned() {
            host.files.insert(format!("{backup}/{c}.yaml"), old);
        }
        host.files
            .insert(path.clone(), static_pod_manifest(c, &image));
        log.push_str(&format!(
            "[upgrade/staticpods] Moving new manifest to \"{path}\" and backing up old manifest to \"{backup}/{c}.yaml\"\n\
             [upgrade/staticpods] Waiting for the kubelet to restart the component\n\
             [upgrade/staticpods] Component \"{c}\" upgraded successfully!\n"
        ));
    };
    // etcd follows the version kubeadm pins for the target minor (constants.go
    // SupportedEtcdVersion; the lab keeps that table once, in the simulation), never down
    // (staticpods.go performEtcdStaticPodUpgrade).
    log.push_str("[upgrade/staticpods] Preparing for \"etcd\" upgrade\n");
    let desired = crate::sim::kubelet::control_plane_images(&target.tag())
        .into_iter()
        .find(|(c, _)| c == "etcd")
        .and_then(|(_, img)| img.rsplit_once(':').map(|(_, t)| t.to_string()));
    let current = host.static_pod_tag("etcd");
    let mut etcd_upgraded = None;
    match (desired, current) {
        (Some(d), Some(c)) if etcd_version(&d) > etcd_version(&c) => {
            host.dirs.insert(format!("{etcd_backup}/etcd/member"));
            log.push_str(&format!(
                "[upgrade/staticpods] Backing up etcd data to \"{etcd_backup}/etcd\"\n"
            ));
            moved(host, "etcd", format!("registry.k8s.io/etcd:{d}"), &mut log);
            etcd_upgraded = Some(d);
        }
        (Some(d), Some(c)) if etcd_version(&d) < etcd_version(&c) => log.push_str(&format!(
            "[upgrade/etcd] Non fatal issue encountered during upgrade: the desired etcd version \"{d}\" is older than the currently installed \"{c}\". Skipping etcd upgrade\n"
        )),
        _ => log.push_str(
            "[upgrade/staticpods] Current and new manifests of etcd are equal, skipping upgrade\n",
        ),
    }
    for c in CONTROL_PLANE_COMPONENTS {
        log.push_str(&format!(
            "[upgrade/staticpods] Preparing for \"{c}\" upgrade\n"
        ));
        if host.static_pod_version(c).as_ref() == Some(target) {
            log.push_str(&format!(
                "[upgrade/staticpods] Current and new manifests of {c} are equal, skipping upgrade\n"
            ));
            continue;
        }
        moved(host, c, format!("registry.k8s.io/{c}:{target}"), &mut log);
    }
    if let Ok(now) = ctx.now.parse() {
        super::pki::renew_on_upgrade(&mut host.pki, now);
        log.push_str(
            "[upgrade/staticpods] Renewing the certificates of the control-plane components\n",
        );
    }
    ctx.effect(Effect::StaticPods {
        node: host.node.clone(),
        tag: target.tag(),
        etcd: etcd_upgraded,
    });
    log
}

/// `3.6.4-0` → (3, 6, 4, 0) for ordering etcd image tags.
fn etcd_version(tag: &str) -> (u32, u32, u32, u32) {
    let (core, rev) = tag
        .trim_start_matches('v')
        .split_once('-')
        .unwrap_or((tag, "0"));
    let mut it = core.split('.').map(|p| p.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        rev.parse().unwrap_or(0),
    )
}

/// Write the kubelet config for the new version, backing up the old one
/// (phases/upgrade/postupgrade.go `WriteKubeletConfigFiles`).
fn upgrade_kubelet_config(host: &mut Host, ctx: &Ctx, target: &KubeVersion) -> String {
    let dir = format!("{KUBEADM_TMP_DIR}/kubeadm-kubelet-config-{}", ctx.stamp());
    if let Some(old) = host.files.get(KUBELET_CONFIG).cloned() {
        host.files.insert(format!("{dir}/config.yaml"), old.clone());
        let mut new: String = old
            .lines()
            .filter(|l| !l.starts_with("# kubeadm upgraded"))
            .map(|l| format!("{l}\n"))
            .collect();
        new.push_str(&format!(
            "# kubeadm upgraded this configuration for {target}\n"
        ));
        host.files.insert(KUBELET_CONFIG.to_string(), new);
    }
    format!(
        "[upgrade] Backing up kubelet config file to {dir}/config.yaml\n\
         [kubelet-start] Writing kubelet configuration to file \"{KUBELET_CONFIG}\"\n\
         [upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n"
    )
}

/// CoreDNS and kube-proxy follow only once every control-plane instance runs the new version
/// (since v1.28; phases/upgrade/postupgrade.go `PerformAddonsUpgrade`).
fn upgrade_addons(host: &Host, ctx: &mut Ctx, target: &KubeVersion) -> String {
    let pending = ctx.cluster.unupgraded_control_planes(target, &host.node);
    if !pending.is_empty() {
        return format!(
            "[upgrade/addons] Skipping upgrade of addons because control plane instances [{}] have not been upgraded\n",
            pending.join(" ")
        );
    }
    ctx.effect(Effect::KubeProxy { tag: target.tag() });
    "[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy\n"
        .to_string()
}

/// The outcome of the `CreateJob` health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCheck {
    /// The Job's pod schedules and completes.
    Completes,
    /// No node where the pod can schedule, and this kubeadm skips the check with a warning.
    Skipped(String),
    /// The Job does not complete within the check's timeout.
    Fails(String),
}

/// kubeadm's `CreateJob` health check (cmd/kubeadm/app/phases/upgrade/health.go
/// `createJob`): an `upgrade-health-check` Job in kube-system whose pod (tolerating only the
/// control-plane NoSchedule taints) must complete within 15 s. With no node where the pod
/// can schedule (a single control plane, drained):
/// * up to 1.29 the pod stays Pending and the check passes anyway: the deferred Job deletion
///   overwrote the error with nil (kubernetes/kubeadm#3050);
/// * 1.30.0 fails the check (the regression reported in kubernetes/kubeadm#3050);
/// * from 1.30.1 (kubernetes/kubernetes#124503, cherry-picked as #124570) kubeadm first
///   looks for such a node and, finding none, warns and skips the check.
pub fn create_job_check(kubeadm: &KubeVersion, nodes: &[super::cluster::NodeView]) -> JobCheck {
    if nodes.iter().any(|n| n.job_schedulable) {
        return JobCheck::Completes;
    }
    let (minor, patch) = (kubeadm.minor, kubeadm.patch);
    if kubeadm.major == 1 && minor == 30 && patch == 0 {
        JobCheck::Fails(
            "Job \"upgrade-health-check\" in the namespace \"kube-system\" did not complete in 15s: no condition of type Complete"
                .into(),
        )
    } else if kubeadm.major == 1 && minor < 30 {
        JobCheck::Completes
    } else {
        JobCheck::Skipped(
            "could not find any nodes where the upgrade-health-check Job's Pod can schedule; skipping this check".into(),
        )
    }
}

/// `kubeadm upgrade apply VERSION [--yes] [--dry-run] [--force]` (cmd/kubeadm/app/cmd/upgrade/apply.go).
fn apply(
    host: &mut Host,
    ctx: &mut Ctx,
    kv: &KubeVersion,
    args: &[String],
    stdin: &str,
) -> ExecOutput {
    let yes = has_flag(args, &["--yes", "-y"]);
    let dry_run = has_flag(args, &["--dry-run"]);
    let force = has_flag(args, &["--force", "-f"]);
    let allow_exp = has_flag(args, &["--allow-experimental-upgrades"]);
    let allow_rc = has_flag(args, &["--allow-release-candidate-upgrades"]);
    let ignore = flag_value(args, "--ignore-preflight-errors", None)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let positional: Vec<&String> = {
        let mut v = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if matches!(
                a.as_str(),
                "--config"
                    | "--ignore-preflight-errors"
                    | "--kubeconfig"
                    | "--patches"
                    | "-v"
                    | "--v"
            ) {
                i += 2;
                continue;
            }
            if !a.starts_with('-') {
                v.push(a);
            }
            i += 1;
        }
        v
    };
    let Some(target_str) = positional.get(2).map(|s| s.to_string()) else {
        return fail(
            ExecOutput::default(),
            "missing one or more required arguments. Required arguments: [version]".into(),
        );
    };
    let mut out = ExecOutput::ok(READ_CONFIG);
    if let Err(e) = require_admin_conf(host) {
        return fail(out, e);
    }
    out.stdout.push_str(
        "[upgrade/preflight] Running preflight checks\n[upgrade] Running cluster health checks\n",
    );
    match create_job_check(kv, &ctx.cluster.nodes) {
        JobCheck::Completes => {}
        JobCheck::Skipped(msg) => out
            .stdout
            .push_str(&format!("\t[WARNING CreateJob]: {msg}\n")),
        JobCheck::Fails(msg) => {
            if ignore.contains("createjob") || ignore.contains("all") {
                out.stdout
                    .push_str(&format!("\t[WARNING CreateJob]: {msg}\n"));
            } else {
                return fail(
                    out,
                    format!(
                        "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n\t[ERROR CreateJob]: {msg}\n\
                         [preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
                    ),
                );
            }
        }
    }
    // phases/upgrade/health.go controlPlaneNodesReady.
    let not_ready: Vec<String> = ctx
        .cluster
        .nodes
        .iter()
        .filter(|n| n.control_plane && !n.ready)
        .map(|n| n.name.clone())
        .collect();
    if !not_ready.is_empty() {
        let msg = format!(
            "there are NotReady control-planes in the cluster: [{}]",
            not_ready.join(" ")
        );
        if ignore.contains("controlplanenodesready") || ignore.contains("all") {
            out.stdout
                .push_str(&format!("\t[WARNING ControlPlaneNodesReady]: {msg}\n"));
        } else {
            return fail(
                out,
                format!(
                    "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n\t[ERROR ControlPlaneNodesReady]: {msg}\n\
                     [preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`"
                ),
            );
        }
    }
    let Some(target) = KubeVersion::parse(&target_str) else {
        return fail(
            out,
            format!(
                "[upgrade/version] FATAL: unable to parse version \"{target_str}\": expected a version like v1.34.1"
            ),
        );
    };
    let target_str = if target_str.starts_with('v') {
        target_str
    } else {
        format!("v{target_str}")
    };
    out.stdout.push_str(&format!(
        "[upgrade/version] You have chosen to upgrade the cluster version to \"{target_str}\"\n"
    ));
    let Some(cluster) = ctx.cluster.cluster_version() else {
        return fail(out, "[upgrade/version] FATAL: the version argument is invalid due to these fatal errors:\n\n\t- Unable to fetch cluster version\n".into());
    };
    out.stdout.push_str(&format!(
        "[upgrade/versions] Cluster version: {cluster}\n[upgrade/versions] kubeadm version: {kv}\n"
    ));
    let kubelets: Vec<String> = ctx
        .cluster
        .nodes
        .iter()
        .filter_map(|n| n.kubelet_version.clone())
        .collect();
    let errs = enforce_version_policies(
        &cluster,
        kv,
        &target,
        &target_str,
        Some(&kubelets),
        allow_exp,
        allow_rc,
    );
    match policy_verdict(&errs, force, kv) {
        Err(msg) => return fail(out, msg),
        Ok(notice) => out.stdout.push_str(&notice),
    }
    if !yes && !dry_run && !force {
        out.stdout
            .push_str("[upgrade] Are you sure you want to proceed? [y/N]: ");
        if !stdin.trim_start().to_ascii_lowercase().starts_with('y') {
            out.stdout.push('\n');
            return fail(
                out,
                "won't proceed; the user didn't answer (Y|y) in order to continue".into(),
            );
        }
        out.stdout.push('\n');
    }
    if dry_run {
        out.stdout.push_str(&format!(
            "[upgrade/control-plane] Upgrading your static Pod-hosted control plane to version \"{target_str}\" (timeout: 5m0s)...\n\
             [dryrun] Would write the new manifests of kube-apiserver, kube-controller-manager and kube-scheduler to \"{MANIFESTS_DIR}\"\n\
             [dryrun] Would upload the new ClusterConfiguration to the \"kubeadm-config\" ConfigMap\n\
             [dryrun] Finished dryrunning successfully!\n"
        ));
        return out;
    }
    out.stdout.push_str(&format!(
        "[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster\n\
         [upgrade/control-plane] Upgrading your static Pod-hosted control plane to version \"{target_str}\" (timeout: 5m0s)...\n"
    ));
    out.stdout
        .push_str(&upgrade_static_pods(host, ctx, &target));
    out.stdout.push_str("[upgrade/control-plane] The control plane instance for this node was successfully upgraded!\n");
    ctx.effect(Effect::ClusterVersion {
        version: target.tag(),
    });
    out.stdout.push_str(
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace\n\
         [upload-config] Storing the configuration used in ConfigMap \"kubelet-config\" in the \"kube-system\" Namespace\n",
    );
    out.stdout
        .push_str(&upgrade_kubelet_config(host, ctx, &target));
    out.stdout.push_str(
        "[upgrade/bootstrap-token] Configuring bootstrap token and cluster-info RBAC rules\n",
    );
    out.stdout.push_str(&upgrade_addons(host, ctx, &target));
    out.stdout.push_str(&format!(
        "\n[upgrade] SUCCESS! A control plane node of your cluster was upgraded to \"{target_str}\".\n\n\
         [upgrade] Now please proceed with upgrading the rest of the nodes by following the right order.\n"
    ));
    out
}

/// `kubeadm upgrade node` (cmd/kubeadm/app/cmd/upgrade/node.go and phases/upgrade/node/*):
/// the version comes from the cluster's ClusterConfiguration, not from an argument.
fn node(host: &mut Host, ctx: &mut Ctx, kv: &KubeVersion, args: &[String]) -> ExecOutput {
    let dry_run = has_flag(args, &["--dry-run"]);
    let mut out = ExecOutput::ok(READ_CONFIG);
    let Some(target) = ctx.cluster.config_version() else {
        return fail(
            out,
            "unable to fetch the kubeadm-config ConfigMap: the cluster version is unknown".into(),
        );
    };
    out.stdout
        .push_str("[upgrade/preflight] Running pre-flight checks\n");
    // preflight/checks.go KubernetesVersionCheck: a warning, not an error.
    if target.minor > kv.minor {
        out.stdout.push_str(&format!(
            "\t[WARNING KubernetesVersion]: Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. \
             Kubernetes version: {}. Kubeadm version: {}.{}.x\n",
            target.plain(),
            kv.major,
            kv.minor
        ));
    }
    if !host.control_plane {
        out.stdout.push_str(
            "[upgrade/preflight] Skipping prepull. Not a control plane node.\n\
             [upgrade/control-plane] Skipping phase. Not a control plane node.\n\
             [upgrade/kubeconfig] Skipping phase. Not a control plane node.\n",
        );
        if dry_run {
            out.stdout
                .push_str("[dryrun] Would back up and rewrite /var/lib/kubelet/config.yaml\n");
            return out;
        }
        out.stdout
            .push_str(&upgrade_kubelet_config(host, ctx, &target));
        out.stdout.push_str(
            "[upgrade/addon] Skipping the addon/coredns phase. Not a control plane node.\n\
             [upgrade/addon] Skipping the addon/kube-proxy phase. Not a control plane node.\n\
             [upgrade] The configuration for this node was successfully updated!\n\
             [upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.\n",
        );
        return out;
    }
    out.stdout.push_str(&format!(
        "[upgrade/preflight] Pulling images required for setting up a Kubernetes cluster\n\
         [upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version \"{target}\"...\n"
    ));
    if dry_run {
        out.stdout
            .push_str("[dryrun] Finished dryrunning successfully!\n");
        return out;
    }
    out.stdout
        .push_str(&upgrade_static_pods(host, ctx, &target));
    out.stdout.push_str("[upgrade/control-plane] The control plane instance for this node was successfully upgraded!\n");
    out.stdout
        .push_str(&upgrade_kubelet_config(host, ctx, &target));
    out.stdout.push_str(&upgrade_addons(host, ctx, &target));
    out.stdout.push_str(
        "[upgrade] The configuration for this node was successfully updated!\n\
         [upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    fn check(cluster: &str, kubeadm: &str, target: &str, kubelets: &[&str]) -> PolicyErrors {
        let k: Vec<String> = kubelets.iter().map(|s| s.to_string()).collect();
        enforce_version_policies(
            &v(cluster),
            &v(kubeadm),
            &v(target),
            target,
            Some(&k),
            false,
            false,
        )
    }

    #[test]
    fn a_one_minor_upgrade_with_matching_kubeadm_passes() {
        assert!(check("v1.33.4", "v1.34.1", "v1.34.1", &["v1.33.4", "v1.31.0"]).is_empty());
        // A patch upgrade, and a re-apply at the current version (recovery), too.
        assert!(check("v1.34.0", "v1.34.1", "v1.34.1", &["v1.34.0"]).is_empty());
        assert!(check("v1.34.1", "v1.34.1", "v1.34.1", &["v1.34.1"]).is_empty());
    }

    #[test]
    fn two_minors_up_is_fatal() {
        let e = check("v1.32.4", "v1.34.1", "v1.34.1", &["v1.32.4"]);
        assert_eq!(
            e.mandatory,
            [
                "Specified version to upgrade to \"v1.34.1\" is too high; kubeadm can upgrade only 1 minor version at a time"
            ]
        );
        assert!(e.skippable.is_empty());
    }

    #[test]
    fn an_older_kubeadm_minor_is_fatal_and_an_older_patch_skippable() {
        let e = check("v1.33.4", "v1.33.4", "v1.34.1", &[]);
        assert_eq!(
            e.mandatory,
            [
                "Specified version to upgrade to \"v1.34.1\" is at least one minor release higher than the kubeadm minor release (34 > 33). Such an upgrade is not supported"
            ]
        );
        let e = check("v1.34.0", "v1.34.0", "v1.34.2", &[]);
        assert!(e.mandatory.is_empty());
        assert_eq!(
            e.skippable,
            [
                "Specified version to upgrade to \"v1.34.2\" is higher than the kubeadm version \"v1.34.0\". Upgrade kubeadm first using the tool you used to install kubeadm"
            ]
        );
    }

    #[test]
    fn a_newer_kubeadm_minor_is_skippable() {
        let e = check("v1.33.4", "v1.34.1", "v1.33.5", &[]);
        assert!(e.mandatory.is_empty());
        assert_eq!(
            e.skippable,
            ["Kubeadm version v1.34.1 can only be used to upgrade to Kubernetes version 1.34"]
        );
    }

    #[test]
    fn downgrades_and_the_minimum_version() {
        let e = check("v1.34.1", "v1.34.1", "v1.32.0", &[]);
        assert!(e.mandatory.iter().any(|m| {
            m.contains("is too low; kubeadm can downgrade only 1 minor version at a time")
        }));
        assert!(e.mandatory.iter().any(|m| {
            m.contains("is equal to or lower than the minimum supported version \"v1.34.1\"")
        }));
    }

    #[test]
    fn kubelets_too_old_follow_the_skew_of_the_kubeadm_release() {
        // kubeadm 1.29+: kubelets may be 3 minors older than the target.
        let e = check(
            "v1.33.4",
            "v1.34.1",
            "v1.34.1",
            &["v1.30.9", "v1.31.0", "v1.30.2"],
        );
        assert_eq!(
            e.skippable,
            [
                "There are kubelets in this cluster that are too old that have these versions [v1.30.2 v1.30.9]"
            ]
        );
        // kubeadm 1.28 and older: only 1.
        let e = check("v1.27.4", "v1.28.1", "v1.28.1", &["v1.26.3", "v1.27.4"]);
        assert_eq!(
            e.skippable,
            [
                "There are kubelets in this cluster that are too old that have these versions [v1.26.3]"
            ]
        );
        let e = enforce_version_policies(
            &v("v1.33.4"),
            &v("v1.34.1"),
            &v("v1.34.1"),
            "v1.34.1",
            None,
            false,
            false,
        );
        assert_eq!(e.skippable, ["Unable to fetch kubelet version"]);
    }

    #[test]
    fn prereleases_need_the_allow_flags_and_soften_the_skew_rules() {
        let e = check("v1.33.4", "v1.35.0-rc.1", "v1.35.0-rc.1", &[]);
        assert!(e.mandatory.is_empty(), "{e:?}");
        assert!(e.skippable.iter().any(|m| m.contains("is too high")));
        assert!(e.skippable.iter().any(|m| m.contains("unstable version")));
        let e = enforce_version_policies(
            &v("v1.34.4"),
            &v("v1.35.0-rc.1"),
            &v("v1.35.0-rc.1"),
            "v1.35.0-rc.1",
            Some(&[]),
            false,
            true,
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn the_create_job_check_follows_the_kubeadm_release() {
        use crate::nodeshell::cluster::NodeView;
        let node = |fits: bool| NodeView {
            name: "cp".into(),
            kubelet_version: Some("v1.30.0".into()),
            control_plane: true,
            ready: true,
            job_schedulable: fits,
        };
        // a node where the Job's pod fits: every release completes the Job
        for k in ["1.29.4", "1.30.0", "1.30.1", "1.35.2"] {
            assert_eq!(
                create_job_check(&v(k), &[node(true)]),
                JobCheck::Completes,
                "{k}"
            );
        }
        // a single control plane, drained (kubernetes/kubeadm#3050)
        assert_eq!(
            create_job_check(&v("1.29.4"), &[node(false)]),
            JobCheck::Completes
        );
        assert!(matches!(
            create_job_check(&v("1.30.0"), &[node(false)]),
            JobCheck::Fails(m) if m.contains("did not complete in 15s")
        ));
        for k in ["1.30.1", "1.31.0", "1.35.2"] {
            assert!(
                matches!(
                    create_job_check(&v(k), &[node(false)]),
                    JobCheck::Skipped(_)
                ),
                "{k}"
            );
        }
    }

    #[test]
    fn verdicts_read_like_kubeadm() {
        let e = check("v1.32.4", "v1.34.1", "v1.34.1", &[]);
        let msg = policy_verdict(&e, true, &v("v1.34.1")).unwrap_err();
        assert!(msg.starts_with("error execution phase preflight: the version argument is invalid due to these fatal errors:\n\n\t- Specified version"), "{msg}");
        assert!(
            msg.contains("Please fix the misalignments highlighted above and try upgrading again")
        );
        let e = check("v1.30.0", "v1.30.0", "v1.30.2", &[]);
        let msg = policy_verdict(&e, false, &v("v1.30.0")).unwrap_err();
        assert!(
            msg.starts_with(
                "[upgrade/version] FATAL: the --version argument is invalid due to these errors:"
            ),
            "{msg}"
        );
        assert!(msg.ends_with("Can be bypassed if you pass the --force flag\n"));
        let notice = policy_verdict(&e, true, &v("v1.30.0")).unwrap();
        assert!(notice.starts_with("[upgrade/version] Found 1 potential version compatibility errors but skipping since the --force flag is set"));
    }
}
