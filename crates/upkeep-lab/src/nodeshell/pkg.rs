//! The package managers of a simulated node: apt (`apt-get update|install`, `apt`,
//! `apt-mark`, `apt-cache madison`, `dpkg --configure -a`, `dpkg-query -W`) and dnf / yum /
//! DNF5 (`install`, `list`, `rpm -qa --qf`), the verbs upgrade-node, the kubeadm document and
//! the practice list use (crate README, "Commands"), for the
//! Kubernetes packages of the configured pkgs.k8s.io repository. Messages and exit codes are
//! the tools' own (apt exits 100 on errors, dnf 1, DNF5 2 on a bad argument).

use super::host::{Host, OsFamily};
use super::interp::Ctx;
use super::repo::{self, K8S_PACKAGES, Minor, PkgFormat, YUM_REPO_ID};
use super::version::{PkgVersion, glob_match, is_glob};
use crate::exec::ExecOutput;

pub fn run(host: &mut Host, ctx: &mut Ctx, cmd: &str, args: &[String], stdin: &str) -> ExecOutput {
    match cmd {
        "apt-get" => apt_get(host, ctx, args, stdin),
        "apt" => apt(host, ctx, args, stdin),
        "apt-mark" => apt_mark(host, args),
        "apt-cache" => apt_cache(host, ctx, args),
        "dpkg" => dpkg(args),
        "dpkg-query" => dpkg_query(host, args),
        "rpm" => rpm(host, args),
        _ => dnf(host, ctx, cmd, args, stdin),
    }
}

// ---------------------------------------------------------------------------------------------
// apt

const APT_PREAMBLE: &str =
    "Reading package lists...\nBuilding dependency tree...\nReading state information...\n";

/// The versions apt knows from its package lists (what the last `apt-get update` fetched).
fn apt_available(host: &Host, ctx: &Ctx) -> Vec<PkgVersion> {
    apt_versions(ctx, host.apt_lists)
}

fn apt_versions(ctx: &Ctx, lists: Option<Minor>) -> Vec<PkgVersion> {
    lists
        .map(|m| ctx.repos.versions(m, PkgFormat::Deb))
        .unwrap_or_default()
}

/// The configuration apt reads and the directory it keeps its lists in, from `-o NAME=VALUE`
/// (apt.conf(5): `Dir::Etc::SourceList`, `Dir::Etc::SourceParts`, `Dir::State::Lists`; the
/// cache options are accepted and, like the binary caches themselves, not modelled).
#[derive(Debug, Default)]
struct AptDirs {
    source_list: Option<String>,
    /// `Dir::Etc::SourceParts=-`: sources.list.d is not read.
    no_source_parts: bool,
    lists: Option<String>,
}

impl AptDirs {
    fn option(&mut self, kv: &str) {
        let Some((k, v)) = kv.split_once('=') else {
            return;
        };
        match k.to_ascii_lowercase().as_str() {
            "dir::etc::sourcelist" => self.source_list = Some(v.to_string()),
            "dir::etc::sourceparts" => self.no_source_parts = v == "-" || v.is_empty(),
            "dir::state::lists" => self.lists = Some(v.trim_end_matches('/').to_string()),
            _ => {}
        }
    }

    /// The words of a command line that are not `-o` options.
    fn parse(args: &[String]) -> (AptDirs, Vec<String>) {
        let mut dirs = AptDirs::default();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if a == "-o" || a == "--option" {
                if let Some(v) = args.get(i + 1) {
                    dirs.option(v);
                }
                i += 2;
                continue;
            }
            if let Some(v) = a.strip_prefix("--option=").or_else(|| a.strip_prefix("-o")) {
                dirs.option(v);
            } else {
                rest.push(args[i].clone());
            }
            i += 1;
        }
        (dirs, rest)
    }

    /// The minor of the lists apt reads: the default directory's state, or the list file
    /// `apt-get update` left in another directory (named after the source URI, as apt-pkg's
    /// `URItoFileName` does).
    fn lists_minor(&self, host: &Host) -> Option<Minor> {
        let Some(dir) = &self.lists else {
            return host.apt_lists;
        };
        let prefix = format!("{dir}/");
        host.files.keys().find_map(|k| {
            let name = k.strip_prefix(&prefix)?;
            let v = name
                .strip_prefix("pkgs.k8s.io_core:_stable:_v")?
                .strip_suffix("_deb_Packages")?;
            let (a, b) = v.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
    }
}

fn apt_lists_file(dir: &str, m: Minor) -> String {
    format!(
        "{dir}/pkgs.k8s.io_core:_stable:_v{}.{}_deb_Packages",
        m.0, m.1
    )
}

/// The candidate: the highest version in the lists, or the installed one if it is higher.
fn apt_candidate(host: &Host, ctx: &Ctx, pkg: &str) -> Option<PkgVersion> {
    let best = apt_available(host, ctx).into_iter().max();
    match (best, host.installed.get(pkg).cloned()) {
        (Some(b), Some(i)) => Some(b.max(i)),
        (b, i) => b.or(i),
    }
}

fn repo_origin(minor: Minor) -> String {
    format!(
        "isv:kubernetes:core:stable:v{}.{}:pkgs.k8s.io [amd64]",
        minor.0, minor.1
    )
}

fn apt_url(minor: Minor) -> String {
    repo::repo_url(minor, PkgFormat::Deb)
        .trim_end_matches('/')
        .to_string()
}

fn apt_get(host: &mut Host, ctx: &mut Ctx, args: &[String], stdin: &str) -> ExecOutput {
    let (dirs, args) = AptDirs::parse(args);
    let args = args.as_slice();
    let mut yes = false;
    let mut allow_held = false;
    let mut allow_down = false;
    let mut simulate = false;
    let mut words: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-y" | "--yes" | "--assume-yes" | "-qy" | "-yq" | "-yqq" | "-qqy" => yes = true,
            "--allow-change-held-packages" => allow_held = true,
            "--allow-downgrades" => allow_down = true,
            "-s" | "--simulate" | "--dry-run" | "--just-print" | "--no-act" => simulate = true,
            "-o" | "-c" => i += 1,
            _ if a.starts_with("-o") || a.starts_with("--option") => {}
            _ if a.starts_with('-') => {
                if !a.starts_with("--") && a.contains('y') {
                    yes = true;
                }
            }
            _ => words.push(a),
        }
        i += 1;
    }
    let Some((&verb, pkgs)) = words.split_first() else {
        return ExecOutput::fail(100, "E: Invalid operation \n");
    };
    match verb {
        "update" => apt_update(host, ctx, &dirs),
        "install" => {
            let opts = InstallOpts {
                yes,
                allow_held,
                allow_down,
                simulate,
            };
            apt_install(host, ctx, pkgs, &opts, stdin)
        }
        v => ExecOutput::fail(100, format!("E: Invalid operation {v}\n")),
    }
}

fn apt_update(host: &mut Host, ctx: &Ctx, dirs: &AptDirs) -> ExecOutput {
    // The sources: the SourceList file (the lab models no /etc/apt/sources.list), then
    // sources.list.d unless SourceParts is off. A missing SourceList file reads as empty.
    let mut text: Option<String> = dirs
        .source_list
        .as_ref()
        .map(|f| host.files.get(f).cloned().unwrap_or_default());
    if !dirs.no_source_parts
        && let Some(t) = host.files.get(repo::APT_LIST_PATH)
    {
        text.get_or_insert_with(String::new).push_str(t);
    }
    let list_path = dirs
        .source_list
        .clone()
        .unwrap_or_else(|| repo::APT_LIST_PATH.to_string());
    // apt-pkg acquire.cc: the lists directory needs its partial/ subdirectory.
    if let Some(d) = &dirs.lists
        && !host.is_dir(&format!("{d}/partial"))
    {
        return ExecOutput::fail(
            100,
            format!(
                "E: List directory {d}/partial is missing. - Acquire (2: No such file or directory)\n"
            ),
        );
    }
    let set = |host: &mut Host, m: Option<Minor>| match &dirs.lists {
        None => host.apt_lists = m,
        Some(d) => {
            let prefix = format!("{d}/");
            host.files
                .retain(|k, _| !k.starts_with(&prefix) || k.ends_with("/lock"));
            if let Some(m) = m {
                host.files.insert(apt_lists_file(d, m), String::new());
            }
        }
    };
    match text {
        None => {
            set(host, None);
            ExecOutput::ok("Reading package lists...\n")
        }
        Some(text) => match repo::parse_apt_list(&text) {
            Some(m) if !ctx.repos.exists(m) => {
                // apt-pkg: a source without a Release file is disabled (its lists go away).
                set(host, None);
                let url = apt_url(m);
                // As apt 2.6 answers a 404: InRelease ignored, Release an error.
                ExecOutput {
                    stdout: format!(
                        "Ign:1 {url}  InRelease\nErr:2 {url}  Release\n  404  Not Found\nReading package lists...\n"
                    ),
                    stderr: format!(
                        "E: The repository '{url}  Release' does not have a Release file.\n"
                    ),
                    code: 100,
                }
            }
            Some(m) => {
                set(host, Some(m));
                let url = apt_url(m);
                ExecOutput::ok(format!(
                    "Get:1 {url}  InRelease [1,227 B]\nGet:2 {url}  Packages [6,051 B]\nFetched 7,278 B in 1s (7,278 B/s)\nReading package lists...\n"
                ))
            }
            None if text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) =>
            {
                set(host, None);
                ExecOutput::ok("Reading package lists...\n")
            }
            None => ExecOutput::fail(
                100,
                format!(
                    "E: Malformed entry 1 in list file {list_path} (Component)\nE: The list of sources could not be read.\n",
                ),
            ),
        },
    }
}

struct InstallOpts {
    yes: bool,
    allow_held: bool,
    allow_down: bool,
    simulate: bool,
}

/// apt-get install (apt-pkg cmdline/apt-get.cc and apt-private/private-install.cc).
fn apt_install(
    host: &mut Host,
    ctx: &mut Ctx,
    specs: &[&str],
    o: &InstallOpts,
    stdin: &str,
) -> ExecOutput {
    let mut out = ExecOutput::ok(APT_PREAMBLE);
    let available = apt_available(host, ctx);
    let mut changes: Vec<(String, PkgVersion)> = Vec::new();
    let mut errors = String::new();
    for spec in specs {
        let (name, want) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (*spec, None),
        };
        if !K8S_PACKAGES.contains(&name) {
            errors.push_str(&format!("E: Unable to locate package {name}\n"));
            continue;
        }
        let mut known = available.clone();
        if let Some(i) = host.installed.get(name)
            && !known.contains(i)
        {
            known.push(i.clone());
        }
        let chosen = match want {
            None => apt_candidate(host, ctx, name),
            Some(v) => {
                let hit = known
                    .iter()
                    .filter(|k| {
                        if is_glob(v) {
                            glob_match(v, &k.to_string())
                        } else {
                            k.to_string() == v
                        }
                    })
                    .max()
                    .cloned();
                if let (Some(h), true) = (&hit, is_glob(v)) {
                    let origin = host
                        .apt_lists
                        .map(repo_origin)
                        .unwrap_or_else(|| "now [amd64]".to_string());
                    out.stdout
                        .push_str(&format!("Selected version '{h}' ({origin}) for '{name}'\n"));
                }
                if hit.is_none() {
                    errors.push_str(&format!("E: Version '{v}' for '{name}' was not found\n"));
                    continue;
                }
                hit
            }
        };
        let Some(chosen) = chosen else {
            errors.push_str(&format!(
                "E: Package '{name}' has no installation candidate\n"
            ));
            continue;
        };
        if host.installed.get(name) == Some(&chosen) {
            out.stdout.push_str(&format!(
                "{name} is already the newest version ({chosen}).\n"
            ));
            continue;
        }
        changes.retain(|(p, _)| p != name);
        changes.push((name.to_string(), chosen));
    }
    if !errors.is_empty() {
        out.stderr = errors;
        out.code = 100;
        return out;
    }
    let held: Vec<&str> = changes
        .iter()
        .filter(|(p, _)| host.holds.contains(p))
        .map(|(p, _)| p.as_str())
        .collect();
    let upgrades: Vec<&str> = changes
        .iter()
        .filter(|(p, v)| host.installed.get(p).is_some_and(|i| v > i))
        .map(|(p, _)| p.as_str())
        .collect();
    let downgrades: Vec<&str> = changes
        .iter()
        .filter(|(p, v)| host.installed.get(p).is_some_and(|i| v < i))
        .map(|(p, _)| p.as_str())
        .collect();
    let new: Vec<&str> = changes
        .iter()
        .filter(|(p, _)| !host.installed.contains_key(p))
        .map(|(p, _)| p.as_str())
        .collect();
    // The resolver removes an installed package whose exact dependency the new versions break,
    // and -y does not ask about it: only essential packages stop -y (apt-private
    // private-install.cc InstallPackages). Seen on a real Debian 12 node: a site package
    // depending on `kubeadm (= 1.34.3-1.1)` is removed by `apt-get install -y kubeadm=1.35.2-*`.
    let removing: Vec<String> = host
        .site_packages
        .iter()
        .filter(|s| !s.broken_by(&changes).is_empty())
        .map(|s| s.name.clone())
        .collect();
    if !removing.is_empty() {
        out.stdout.push_str(&format!(
            "The following packages will be REMOVED:\n  {}\n",
            removing.join(" ")
        ));
    }
    if !held.is_empty() {
        out.stdout.push_str(&format!(
            "The following held packages will be changed:\n  {}\n",
            held.join(" ")
        ));
    }
    if !new.is_empty() {
        out.stdout.push_str(&format!(
            "The following NEW packages will be installed:\n  {}\n",
            new.join(" ")
        ));
    }
    if !upgrades.is_empty() {
        out.stdout.push_str(&format!(
            "The following packages will be upgraded:\n  {}\n",
            upgrades.join(" ")
        ));
    }
    if !downgrades.is_empty() {
        out.stdout.push_str(&format!(
            "The following packages will be DOWNGRADED:\n  {}\n",
            downgrades.join(" ")
        ));
    }
    out.stdout.push_str(&format!(
        "{} upgraded, {} newly installed, {} downgraded, {} to remove and 0 not upgraded.\n",
        upgrades.len(),
        new.len(),
        downgrades.len(),
        removing.len(),
    ));
    if changes.is_empty() {
        return out;
    }
    // apt-private/private-install.cc: the -y safety checks.
    if !held.is_empty() && !o.allow_held && o.yes {
        out.stderr.push_str(
            "E: Held packages were changed and -y was used without --allow-change-held-packages.\n",
        );
        out.code = 100;
        return out;
    }
    if !downgrades.is_empty() && !o.allow_down && o.yes {
        out.stderr
            .push_str("E: Packages were downgraded and -y was used without --allow-downgrades.\n");
        out.code = 100;
        return out;
    }
    if o.simulate {
        for s in host
            .site_packages
            .iter()
            .filter(|s| removing.contains(&s.name))
        {
            out.stdout
                .push_str(&format!("Remv {} [{}]\n", s.name, s.version));
        }
        for (p, v) in &changes {
            out.stdout.push_str(&format!(
                "Inst {p} [{}] ({v} {})\n",
                host.installed
                    .get(p)
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                host.apt_lists.map(repo_origin).unwrap_or_default()
            ));
        }
        return out;
    }
    if !o.yes {
        out.stdout.push_str("Do you want to continue? [Y/n] ");
        if !stdin.trim_start().to_ascii_lowercase().starts_with('y') {
            out.stdout.push_str("Abort.\n");
            out.code = 1;
            return out;
        }
        out.stdout.push('\n');
    }
    let url = host.apt_lists.map(apt_url).unwrap_or_default();
    for (n, (p, v)) in changes.iter().enumerate() {
        out.stdout
            .push_str(&format!("Get:{} {url}  {p} {v} [11.2 MB]\n", n + 1));
    }
    // The total is what was fetched: 11.2 MB a package (apt-pkg acquire.cc, "Fetched %sB in
    // %s (%sB/s)").
    let fetched = format!("{:.1} MB", 11.2 * changes.len() as f64);
    out.stdout.push_str(&format!(
        "Fetched {fetched} in 1s ({fetched}/s)\n(Reading database ... 74321 files and directories currently installed.)\n"
    ));
    for s in host
        .site_packages
        .iter()
        .filter(|s| removing.contains(&s.name))
    {
        out.stdout
            .push_str(&format!("Removing {} ({}) ...\n", s.name, s.version));
    }
    host.site_packages.retain(|s| !removing.contains(&s.name));
    for (p, v) in &changes {
        out.stdout
            .push_str(&format!("Preparing to unpack .../{p}_{v}_amd64.deb ...\n"));
        match host.installed.get(p) {
            Some(old) => out
                .stdout
                .push_str(&format!("Unpacking {p} ({v}) over ({old}) ...\n")),
            None => out.stdout.push_str(&format!("Unpacking {p} ({v}) ...\n")),
        }
    }
    for (p, v) in changes {
        out.stdout.push_str(&format!("Setting up {p} ({v}) ...\n"));
        if p == "kubelet" {
            host.units_changed = true;
        }
        host.installed.insert(p, v);
    }
    out
}

fn apt(host: &mut Host, ctx: &mut Ctx, args: &[String], stdin: &str) -> ExecOutput {
    const WARN: &str =
        "\nWARNING: apt does not have a stable CLI interface. Use with caution in scripts.\n\n";
    let verb = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
        .unwrap_or("");
    let mut out = match verb {
        "madison" => apt_cache(host, ctx, args),
        _ => apt_get(host, ctx, args, stdin),
    };
    out.stderr = format!("{WARN}{}", out.stderr);
    out
}

fn apt_cache(host: &Host, ctx: &Ctx, args: &[String]) -> ExecOutput {
    let (dirs, args) = AptDirs::parse(args);
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let Some((&verb, pkgs)) = words.split_first() else {
        return ExecOutput::fail(100, "E: No operation specified\n");
    };
    let minor = dirs.lists_minor(host);
    let available = apt_versions(ctx, minor);
    let url = minor.map(apt_url).unwrap_or_default();
    let mut out = ExecOutput::default();
    match verb {
        "madison" => {
            for p in pkgs {
                if !K8S_PACKAGES.contains(p) {
                    out.stderr
                        .push_str(&format!("N: Unable to locate package {p}\n"));
                    continue;
                }
                for v in available.iter().rev() {
                    out.stdout
                        .push_str(&format!("{p:>10} | {v} | {url}  Packages\n"));
                }
            }
        }
        v => {
            out.stderr.push_str(&format!("E: Invalid operation {v}\n"));
            out.code = 100;
        }
    }
    out
}

fn apt_mark(host: &mut Host, args: &[String]) -> ExecOutput {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let Some((&verb, pkgs)) = words.split_first() else {
        return ExecOutput::fail(100, "E: No operation specified\n");
    };
    let mut out = ExecOutput::default();
    match verb {
        "hold" | "unhold" => {
            if pkgs.is_empty() {
                return ExecOutput::fail(100, "E: No packages found\n");
            }
            for p in pkgs {
                if !K8S_PACKAGES.contains(p) && !host.installed.contains_key(*p) {
                    out.stderr
                        .push_str(&format!("E: Unable to locate package {p}\n"));
                    out.code = 100;
                    continue;
                }
                let line = match (verb, host.holds.contains(*p)) {
                    ("hold", true) => format!("{p} was already set on hold.\n"),
                    ("hold", false) => {
                        host.holds.insert(p.to_string());
                        format!("{p} set on hold.\n")
                    }
                    (_, true) => {
                        host.holds.remove(*p);
                        format!("Canceled hold on {p}.\n")
                    }
                    (_, false) => format!("{p} was already not on hold.\n"),
                };
                out.stdout.push_str(&line);
            }
        }
        "showhold" => {
            for p in host
                .holds
                .iter()
                .filter(|p| pkgs.is_empty() || pkgs.contains(&p.as_str()))
            {
                out.stdout.push_str(&format!("{p}\n"));
            }
        }
        v => {
            out.stderr.push_str(&format!("E: Invalid operation {v}\n"));
            out.code = 100;
        }
    }
    out
}

fn dpkg(args: &[String]) -> ExecOutput {
    // A simulated package is always fully configured: `--configure -a|--pending` finds
    // nothing pending and `--audit` nothing to report, and both print nothing then, as
    // dpkg(1) does (dpkg src/main/packages.c packages, src/main/enquiry.c audit).
    let has = |w: &str| args.iter().any(|a| a == w);
    if has("--configure") && (has("-a") || has("--pending")) || has("--audit") || has("-C") {
        return ExecOutput::ok("");
    }
    // Other actions (`-l`, `-s`, `-i`) are neither sent by upgrade-node nor typed in the
    // kubeadm upgrade document: refused rather than half simulated.
    ExecOutput::fail(
        2,
        "dpkg: error: the lab's dpkg answers only --configure -a and --audit\n",
    )
}

/// `dpkg-query -W [-f FORMAT] [PACKAGE...]` (dpkg-query(1) --show): one line per package by
/// name, `${Field}` from its status record (unknown fields empty), `\n` / `\t` escapes. The
/// default format is `${binary:Package}\t${Version}\n`.
fn dpkg_query(host: &Host, args: &[String]) -> ExecOutput {
    let mut format = "${binary:Package}\t${Version}\n".to_string();
    let mut show = false;
    let mut pats = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-W" | "--show" => show = true,
            "-f" | "--showformat" => {
                format = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            _ if a.starts_with("--showformat=") => format = a["--showformat=".len()..].to_string(),
            _ if a.starts_with('-') => {}
            _ => pats.push(a),
        }
        i += 1;
    }
    if !show {
        return ExecOutput::fail(2, "dpkg-query: error: need an action option\n");
    }
    let format = format.replace("\\n", "\n").replace("\\t", "\t");
    let mut rows: Vec<(String, String, String, String)> = host
        .installed
        .iter()
        .map(|(p, v)| {
            let status = if host.holds.contains(p) {
                "hold"
            } else {
                "install"
            };
            (p.clone(), v.to_string(), status.to_string(), String::new())
        })
        .collect();
    for s in &host.site_packages {
        let depends = s
            .requires
            .iter()
            .map(|(p, v)| format!("{p} (= {v})"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push((s.name.clone(), s.version.clone(), "install".into(), depends));
    }
    rows.sort();
    let mut out = ExecOutput::default();
    let mut unmatched: Vec<&str> = pats.clone();
    for (p, v, want, depends) in rows {
        if !pats.is_empty() && !pats.iter().any(|pat| glob_match(pat, &p)) {
            continue;
        }
        unmatched.retain(|pat| !glob_match(pat, &p));
        let mut line = String::new();
        let mut rest = format.as_str();
        while let Some(start) = rest.find("${") {
            line.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            let field = &rest[start + 2..start + end];
            line.push_str(&match field {
                "Package" | "binary:Package" => p.clone(),
                "Version" => v.clone(),
                "db:Status-Status" => "installed".into(),
                "db:Status-Want" => want.clone(),
                "db:Status-Abbrev" => format!("{}i  ", &want[..1]),
                "Status" => format!("{want} ok installed"),
                "Depends" => depends.clone(),
                "Architecture" => "amd64".into(),
                _ => String::new(),
            });
            rest = &rest[start + end + 1..];
        }
        line.push_str(rest);
        out.stdout.push_str(&line);
    }
    for pat in unmatched {
        out.stderr
            .push_str(&format!("dpkg-query: no packages found matching {pat}\n"));
        out.code = 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// dnf / yum / DNF5

fn rpm_name(p: &str, v: &PkgVersion) -> String {
    format!("{p}-{v}.x86_64")
}

/// One installed package as rpm's query format sees it: name, version, release, Requires.
struct RpmHeader {
    name: String,
    version: String,
    release: String,
    /// (name, depflags, version) of each Requires entry.
    requires: Vec<(String, String, String)>,
}

fn rpm_headers(host: &Host) -> Vec<RpmHeader> {
    let mut out: Vec<RpmHeader> = host
        .installed
        .iter()
        .map(|(p, v)| RpmHeader {
            name: p.clone(),
            version: v.upstream.plain(),
            release: v.revision.clone(),
            requires: Vec::new(),
        })
        .collect();
    for s in &host.site_packages {
        out.push(RpmHeader {
            name: s.name.clone(),
            version: s.version.clone(),
            release: "1".into(),
            requires: s
                .requires
                .iter()
                .map(|(p, v)| (p.clone(), "=".to_string(), v.to_string()))
                .collect(),
        });
    }
    out
}

/// rpm's query format (rpm(8) "Query formats"; rpm lib/headerfmt.c): `%{TAG}`,
/// `%{=TAG}` (a scalar repeated inside an array), `%{TAG:depflags}`, `[...]` iterating the
/// Requires array, and `\n` / `\t` escapes. Tags the lab does not model print `(none)`,
/// as rpm prints an absent tag.
fn rpm_format(fmt: &str, h: &RpmHeader) -> String {
    let fmt = fmt.replace("\\n", "\n").replace("\\t", "\t");
    let tag = |name: &str, i: Option<usize>| -> String {
        let name = name.trim_start_matches('=');
        let (name, _format) = name.split_once(':').unwrap_or((name, ""));
        let req = |k: usize| {
            i.and_then(|i| h.requires.get(i))
                .map(|r| match k {
                    0 => r.0.clone(),
                    1 => r.1.clone(),
                    _ => r.2.clone(),
                })
                .unwrap_or_default()
        };
        match name.to_ascii_uppercase().as_str() {
            "NAME" => h.name.clone(),
            "VERSION" => h.version.clone(),
            "RELEASE" => h.release.clone(),
            "ARCH" => "x86_64".into(),
            "REQUIRENAME" => req(0),
            "REQUIREFLAGS" => req(1),
            "REQUIREVERSION" => req(2),
            _ => "(none)".into(),
        }
    };
    let expand = |text: &str, i: Option<usize>| -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            out.push_str(&tag(&rest[start + 2..start + end], i));
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    };
    let mut out = String::new();
    let mut rest = fmt.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&expand(&rest[..open], None));
        let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
        let body = &rest[open + 1..close];
        for i in 0..h.requires.len() {
            out.push_str(&expand(body, Some(i)));
        }
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(&expand(rest, None));
    out
}

fn rpm(host: &Host, args: &[String]) -> ExecOutput {
    let q = args.iter().any(|a| a.starts_with('-') && a.contains('q'));
    if !q {
        return ExecOutput::fail(1, "rpm: no operation specified\n");
    }
    let all = args.iter().any(|a| a == "-qa" || a == "-a" || a == "--all");
    let qf = args
        .iter()
        .position(|a| a == "--qf" || a == "--queryformat")
        .and_then(|i| args.get(i + 1));
    let mut out = ExecOutput::default();
    if all {
        for h in rpm_headers(host) {
            match qf {
                Some(f) => out.stdout.push_str(&rpm_format(f, &h)),
                None => out
                    .stdout
                    .push_str(&format!("{}-{}-{}.x86_64\n", h.name, h.version, h.release)),
            }
        }
        return out;
    }
    for p in args
        .iter()
        .filter(|a| !a.starts_with('-') && Some(*a) != qf)
    {
        match host.installed.get(p.as_str()) {
            Some(v) => out.stdout.push_str(&format!("{}\n", rpm_name(p, v))),
            None => {
                out.stdout
                    .push_str(&format!("package {p} is not installed\n"));
                out.code = 1;
            }
        }
    }
    out
}

/// A package name with one of its versions.
type NamedVersion = (String, PkgVersion);

struct DnfOpts {
    yes: bool,
    disable_excludes: bool,
    showduplicates: bool,
    /// `--setopt=reposdir=DIR`: the `.repo` files are read from DIR instead of
    /// /etc/yum.repos.d (dnf.conf(5) `reposdir`). `cachedir` is accepted, not modelled.
    reposdir: Option<String>,
}

/// The `kubernetes` repository as dnf sees it: in /etc/yum.repos.d, or in `reposdir`.
fn yum_repo(host: &Host, reposdir: Option<&str>) -> Option<repo::YumRepo> {
    let Some(dir) = reposdir else {
        return host.yum_repo();
    };
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    host.files
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(&prefix)
                .is_some_and(|n| !n.contains('/') && n.ends_with(".repo"))
        })
        .flat_map(|(_, t)| repo::parse_yum_repo(t))
        .find(|r| r.id == YUM_REPO_ID)
}

/// dnf's view of one package version: visible, or hidden by the repository's `exclude=`.
fn dnf_available(host: &Host, ctx: &Ctx, o: &DnfOpts) -> (Vec<NamedVersion>, Vec<NamedVersion>) {
    let disable_excludes = o.disable_excludes;
    let Some(r) = yum_repo(host, o.reposdir.as_deref()).filter(|r| r.enabled) else {
        return (Vec::new(), Vec::new());
    };
    let Some(m) = r.minor else {
        return (Vec::new(), Vec::new());
    };
    let versions = ctx.repos.versions(m, PkgFormat::Rpm);
    let mut visible = Vec::new();
    let mut hidden = Vec::new();
    for p in K8S_PACKAGES {
        let excluded = !disable_excludes && r.exclude.iter().any(|x| glob_match(x, p));
        for v in &versions {
            if excluded {
                hidden.push((p.to_string(), v.clone()));
            } else {
                visible.push((p.to_string(), v.clone()));
            }
        }
    }
    (visible, hidden)
}

/// Does a dnf package spec (`kubeadm`, `kubeadm-1.34.1`, `kubeadm-1.34.1-*`, with globs) name
/// this package version? dnf tries NAME, NAME-VERSION, NAME-VERSION-RELEASE(.ARCH).
fn dnf_spec_matches(spec: &str, name: &str, v: &PkgVersion) -> bool {
    let nv = format!("{name}-{}", v.upstream.plain());
    let nvr = format!("{name}-{v}");
    [name.to_string(), nv, nvr.clone(), format!("{nvr}.x86_64")]
        .iter()
        .any(|c| glob_match(spec, c))
}

fn dnf(host: &mut Host, ctx: &mut Ctx, cmd: &str, args: &[String], stdin: &str) -> ExecOutput {
    let dnf5 = host.family == OsFamily::Dnf5;
    let mut o = DnfOpts {
        yes: false,
        disable_excludes: false,
        showduplicates: false,
        reposdir: None,
    };
    let mut words: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let value_of = |prefix: &str| a.strip_prefix(prefix).map(str::to_string);
        let disables = |v: &str| v == "all" || v == "*" || v == YUM_REPO_ID;
        match a {
            "-y" | "--assumeyes" => o.yes = true,
            "-q" | "--quiet" | "-C" | "--cacheonly" | "--refresh" | "--nogpgcheck" | "--best"
            | "--allowerasing" => {}
            "--showduplicates" => o.showduplicates = true,
            "--disableexcludes" | "--disableexcludes=" if !dnf5 => {
                o.disable_excludes |= args.get(i + 1).is_some_and(|v| disables(v));
                i += 1;
            }
            "--setopt" => {
                let v = args.get(i + 1).map(String::as_str).unwrap_or("");
                if let Some(v) = v.strip_prefix("disable_excludes=") {
                    o.disable_excludes |= disables(v);
                }
                if let Some(v) = v.strip_prefix("reposdir=") {
                    o.reposdir = Some(v.to_string());
                }
                i += 1;
            }
            _ if a.starts_with("--disableexcludes=") || a.starts_with("--disable-excludes=") => {
                if dnf5 {
                    // DNF5 dropped the option (dnf5-changes-from-dnf4(7)); only
                    // --setopt=disable_excludes remains.
                    let verb = words.first().copied().unwrap_or("");
                    return ExecOutput::fail(
                        2,
                        format!(
                            "Unknown argument \"{a}\" for command \"{verb}\". Add \"--help\" for more information about the arguments.\n"
                        ),
                    );
                }
                o.disable_excludes |= disables(
                    &value_of("--disableexcludes=")
                        .or_else(|| value_of("--disable-excludes="))
                        .unwrap_or_default(),
                );
            }
            _ if a.starts_with("--setopt=") => {
                let v = &a["--setopt=".len()..];
                if let Some(v) = v.strip_prefix("disable_excludes=") {
                    o.disable_excludes |= disables(v);
                }
                if let Some(v) = v.strip_prefix("reposdir=") {
                    o.reposdir = Some(v.to_string());
                }
            }
            _ if a.starts_with('-') => {
                if !a.starts_with("--") && a.contains('y') {
                    o.yes = true;
                }
            }
            _ => words.push(a),
        }
        i += 1;
    }
    let Some((&verb, specs)) = words.split_first() else {
        return ExecOutput::fail(1, format!("usage: {cmd} [options] COMMAND\n"));
    };
    let meta = if dnf5 {
        "Updating and loading repositories:\nRepositories loaded.\n".to_string()
    } else {
        // dnf/base.py fill_sack: the age of the metadata and its time, which
        // dnf.util.normalize_time prints with the locale's `%c` (en_US.UTF-8 here).
        let checked = ctx
            .now
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|_| jiff::Timestamp::now())
            - jiff::SignedDuration::from_secs(42);
        format!(
            "Last metadata expiration check: 0:00:42 ago on {}.\n",
            checked.strftime("%a %d %b %Y %I:%M:%S %p UTC")
        )
    };
    // dnf fetches metadata of enabled repositories first; a minor that has no repository
    // fails there (dnf/base.py, librepo).
    if let Some(m) = yum_repo(host, o.reposdir.as_deref())
        .filter(|r| r.enabled)
        .and_then(|r| r.minor)
        && !ctx.repos.exists(m)
        && matches!(verb, "install" | "list")
    {
        let url = repo::repo_url(m, PkgFormat::Rpm);
        return ExecOutput {
            stdout: String::new(),
            stderr: format!(
                "Errors during downloading metadata for repository '{YUM_REPO_ID}':\n  - Status code: 404 for {url}repodata/repomd.xml\n\
                 Error: Failed to download metadata for repo '{YUM_REPO_ID}': Cannot download repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried\n"
            ),
            code: 1,
        };
    }
    match verb {
        "install" => {
            let mut out = dnf_install(host, ctx, specs, &o, stdin);
            out.stdout = format!("{meta}{}", out.stdout);
            out
        }
        "list" => {
            let mut out = dnf_list(host, ctx, specs, &o, dnf5);
            if !dnf5 {
                out.stdout = format!("{meta}{}", out.stdout);
            }
            out
        }
        v => ExecOutput::fail(
            1,
            format!("No such command: {v}. Please use /usr/bin/{cmd} --help\n"),
        ),
    }
}

fn dnf_list(host: &Host, ctx: &Ctx, specs: &[&str], o: &DnfOpts, dnf5: bool) -> ExecOutput {
    let (visible, _) = dnf_available(host, ctx, o);
    let want = |name: &str, v: &PkgVersion| {
        specs.is_empty() || specs.iter().any(|s| dnf_spec_matches(s, name, v))
    };
    let line = |p: &str, v: &PkgVersion, repo: &str| {
        format!("{:<34}{:<36}{repo}\n", format!("{p}.x86_64"), v.to_string())
    };
    let mut installed = String::new();
    for (p, v) in &host.installed {
        if want(p, v) {
            installed.push_str(&line(p, v, if dnf5 { YUM_REPO_ID } else { "@kubernetes" }));
        }
    }
    let mut avail = String::new();
    for p in K8S_PACKAGES {
        let mut vs: Vec<&PkgVersion> = visible
            .iter()
            .filter(|(n, v)| n == p && want(p, v))
            .map(|(_, v)| v)
            .collect();
        vs.retain(|v| host.installed.get(p) != Some(*v));
        if !o.showduplicates {
            // Without --showduplicates only the newest version, and only if newer than installed.
            let newest = vs.iter().max().copied();
            vs = newest
                .into_iter()
                .filter(|v| host.installed.get(p).is_none_or(|i| *v > i))
                .collect();
        }
        for v in vs {
            avail.push_str(&line(p, v, YUM_REPO_ID));
        }
    }
    if installed.is_empty() && avail.is_empty() {
        return ExecOutput::fail(
            1,
            if dnf5 {
                "No matching packages to list\n"
            } else {
                "Error: No matching Packages to list\n"
            },
        );
    }
    let (ih, ah) = if dnf5 {
        ("Installed packages", "Available packages")
    } else {
        ("Installed Packages", "Available Packages")
    };
    let mut out = String::new();
    if !installed.is_empty() {
        out.push_str(&format!("{ih}\n{installed}"));
    }
    if !avail.is_empty() {
        if dnf5 && !installed.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{ah}\n{avail}"));
    }
    ExecOutput::ok(out)
}

/// dnf install (dnf/cli/commands/install.py; "Unable to find a match" and the
/// exclude-filter message come from dnf/base.py).
fn dnf_install(
    host: &mut Host,
    ctx: &mut Ctx,
    specs: &[&str],
    o: &DnfOpts,
    stdin: &str,
) -> ExecOutput {
    let (visible, hidden) = dnf_available(host, ctx, o);
    let mut out = ExecOutput::default();
    let mut changes: Vec<(String, PkgVersion)> = Vec::new();
    let mut missing = Vec::new();
    for spec in specs {
        let mut matched = false;
        for p in K8S_PACKAGES {
            let best = visible
                .iter()
                .filter(|(n, v)| n == p && dnf_spec_matches(spec, p, v))
                .map(|(_, v)| v)
                .max();
            let installed_match = host
                .installed
                .get(p)
                .filter(|v| dnf_spec_matches(spec, p, v));
            match (best, installed_match) {
                (Some(b), _) => {
                    matched = true;
                    let cur = host.installed.get(p);
                    // A bare name of an installed package keeps it; a versioned spec moves it
                    // to that version.
                    let bare = glob_match(spec, p);
                    match cur {
                        Some(c) if c == b || bare => {
                            out.stdout.push_str(&format!(
                                "Package {} is already installed.\n",
                                rpm_name(p, c)
                            ));
                        }
                        _ => changes.push((p.to_string(), b.clone())),
                    }
                }
                (None, Some(i)) => {
                    matched = true;
                    out.stdout.push_str(&format!(
                        "Package {} is already installed.\n",
                        rpm_name(p, i)
                    ));
                }
                (None, None) => {}
            }
        }
        if !matched {
            missing.push(*spec);
        }
    }
    if !missing.is_empty() {
        for spec in &missing {
            let filtered = hidden.iter().any(|(n, v)| dnf_spec_matches(spec, n, v));
            if filtered {
                out.stdout.push_str(&format!(
                    "All matches were filtered out by exclude filtering for argument: {spec}\n"
                ));
            } else {
                out.stdout
                    .push_str(&format!("No match for argument: {spec}\n"));
            }
        }
        out.stderr.push_str(&format!(
            "Error: Unable to find a match: {}\n",
            missing.join(" ")
        ));
        out.code = 1;
        return out;
    }
    // libsolv's problem report for an installed package whose exact Requires the new version
    // breaks: dnf removes nothing without --allowerasing and exits 1 (seen on a real dnf 4.14
    // node, the same words).
    let broken: Vec<String> = host
        .site_packages
        .iter()
        .flat_map(|s| {
            s.broken_by(&changes).into_iter().map(move |(p, v)| {
                let old = s
                    .requires
                    .iter()
                    .find(|(rp, _)| rp == p)
                    .map(|(_, rv)| rv.to_string())
                    .unwrap_or_default();
                let site = format!("{}-{}.x86_64", s.name, s.shown_version(OsFamily::Dnf));
                format!(
                    " Problem: cannot install both {} and {}-{old}.x86_64\n  - package {site} requires {p} = {old}, but none of the providers can be installed\n  - conflicting requests\n  - problem with installed package {site}\n",
                    rpm_name(p, v),
                    p
                )
            })
        })
        .collect();
    if !broken.is_empty() {
        out.stderr = format!("Error: \n{}", broken.concat());
        out.stdout.push_str("(try to add '--allowerasing' to command line to replace conflicting packages or '--skip-broken' to skip uninstallable packages)\n");
        out.code = 1;
        return out;
    }
    if changes.is_empty() {
        out.stdout
            .push_str("Dependencies resolved.\nNothing to do.\nComplete!\n");
        return out;
    }
    out.stdout.push_str("Dependencies resolved.\n");
    out.stdout.push_str(&format!(
        "{}\n {:<17}{:<15}{:<25}{:<16}Size\n{}\n",
        "=".repeat(80),
        "Package",
        "Architecture",
        "Version",
        "Repository",
        "=".repeat(80)
    ));
    let section =
        |pred: &dyn Fn(&Option<&PkgVersion>, &PkgVersion) -> bool| -> Vec<(String, PkgVersion)> {
            changes
                .iter()
                .filter(|(p, v)| pred(&host.installed.get(p), v))
                .cloned()
                .collect()
        };
    let installing = section(&|i, _| i.is_none());
    let upgrading = section(&|i, v| i.is_some_and(|i| v > i));
    let downgrading = section(&|i, v| i.is_some_and(|i| v < i));
    for (title, list) in [
        ("Installing:", &installing),
        ("Upgrading:", &upgrading),
        ("Downgrading:", &downgrading),
    ] {
        if list.is_empty() {
            continue;
        }
        out.stdout.push_str(&format!("{title}\n"));
        for (p, v) in list.iter() {
            out.stdout.push_str(&format!(
                " {:<17}{:<15}{:<25}{:<16}11 M\n",
                p,
                "x86_64",
                v.to_string(),
                YUM_REPO_ID
            ));
        }
    }
    out.stdout
        .push_str(&format!("\nTransaction Summary\n{}\n", "=".repeat(80)));
    for (word, list) in [
        ("Install", &installing),
        ("Upgrade", &upgrading),
        ("Downgrade", &downgrading),
    ] {
        if !list.is_empty() {
            out.stdout.push_str(&format!(
                "{word}  {} Package{}\n",
                list.len(),
                if list.len() > 1 { "s" } else { "" }
            ));
        }
    }
    if !o.yes {
        out.stdout.push_str("\nIs this ok [y/N]: ");
        if !stdin.trim_start().to_ascii_lowercase().starts_with('y') {
            out.stdout.push_str("Operation aborted.\n");
            out.code = 1;
            return out;
        }
    }
    out.stdout.push_str("\nDownloading Packages:\nRunning transaction check\nTransaction check succeeded.\nRunning transaction test\nTransaction test succeeded.\nRunning transaction\n");
    for (p, v) in &changes {
        out.stdout
            .push_str(&format!("  Installing       : {:<40}\n", rpm_name(p, v)));
    }
    for (title, list) in [
        ("Installed:", &installing),
        ("Upgraded:", &upgrading),
        ("Downgraded:", &downgrading),
    ] {
        if !list.is_empty() {
            out.stdout.push_str(&format!("\n{title}\n"));
            for (p, v) in list.iter() {
                out.stdout.push_str(&format!("  {}\n", rpm_name(p, v)));
            }
        }
    }
    out.stdout.push_str("\nComplete!\n");
    for (p, v) in changes {
        if p == "kubelet" {
            host.units_changed = true;
        }
        host.installed.insert(p, v);
    }
    out
}
