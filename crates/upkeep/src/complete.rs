//! Shell completion, generated from each plugin's clap definition.
//!
//! kubectl (1.26+) completes `kubectl PLUGIN ...` by running
//! `kubectl_complete-PLUGIN` from PATH with the words typed after the plugin
//! name, the last one being the word under the cursor (kubectl
//! `pkg/cmd/cmd.go` and kubernetes/kubernetes#105867). It reads Cobra's
//! `__complete` answer: one candidate a line, optionally `candidate<TAB>help`,
//! then a `:DIRECTIVE` line (spf13/cobra `completions.go`,
//! `ShellCompDirective`). [`decide`] is the pure part: which words, from the
//! clap definition alone; [`run_kubectl_complete`] adds what only the cluster
//! knows (node names), with the connection flags already typed on the line.
//!
//! `PLUGIN completion bash|zsh|fish` prints a script for using a binary
//! directly (clap_complete); [`intercept`] handles it before normal parsing.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::{Arg, ArgAction, Args, Command, FromArgMatches};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::connect::KubeFlags;
use crate::skew::calendar::Calendar;

/// Cobra's `ShellCompDirective` bits (spf13/cobra `completions.go`).
pub mod directive {
    /// An error occurred; completions should be ignored.
    pub const ERROR: u32 = 1;
    /// Do not add a space after the completion.
    pub const NO_SPACE: u32 = 2;
    /// Do not fall back to file completion when there are no candidates.
    pub const NO_FILE_COMP: u32 = 4;
    /// Keep the candidates in the order given.
    pub const KEEP_ORDER: u32 = 32;
    /// Let the shell complete file names.
    pub const DEFAULT: u32 = 0;
}

/// A value only the world outside the clap definition knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    /// Node names from the cluster.
    Nodes,
    /// Kubernetes minors from the release calendar.
    Versions,
    /// Context names from the kubeconfig.
    Contexts,
}

/// What to answer: fixed candidates, plus at most one dynamic source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `(word, help)` pairs already filtered by the typed prefix.
    pub candidates: Vec<(String, String)>,
    pub dynamic: Option<Dynamic>,
    /// The typed prefix the dynamic values must start with, and what to put
    /// before each (`--to=` when the user typed `--to=v1.3`).
    pub prefix: String,
    pub lead: String,
    pub directive: u32,
}

/// Which dynamic source serves an argument, by its value name: one naming
/// convention across the plugins (`NODE`, `VERSION`, `--context NAME`).
fn dynamic_for(arg: &Arg) -> Option<Dynamic> {
    if arg.get_id() == "context" {
        return Some(Dynamic::Contexts);
    }
    let names = arg.get_value_names().unwrap_or_default();
    match names.first().map(|n| n.as_str()) {
        Some("NODE") | Some("NODES") => Some(Dynamic::Nodes),
        Some("VERSION") => Some(Dynamic::Versions),
        _ => None,
    }
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
        && arg.get_num_args().is_none_or(|n| n.takes_values())
}

fn help_of(arg: &Arg) -> String {
    arg.get_help()
        .map(|h| h.to_string())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Flags of `cmd`, including global ones propagated from its parents.
fn flags<'a>(cmd: &'a Command, parents: &[&'a Command]) -> Vec<&'a Arg> {
    let mut out: Vec<&Arg> = cmd.get_arguments().filter(|a| !a.is_positional()).collect();
    for p in parents {
        for a in p
            .get_arguments()
            .filter(|a| a.is_global_set() && !a.is_positional())
        {
            if !out.iter().any(|b| b.get_id() == a.get_id()) {
                out.push(a);
            }
        }
    }
    out.retain(|a| !a.is_hide_set());
    out
}

fn find_long<'a>(flags: &[&'a Arg], name: &str) -> Option<&'a Arg> {
    flags.iter().copied().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })
}

fn find_short<'a>(flags: &[&'a Arg], c: char) -> Option<&'a Arg> {
    flags.iter().copied().find(|a| a.get_short() == Some(c))
}

/// Candidates for the value of `arg`, typed so far as `prefix`.
fn values_of(arg: &Arg, prefix: &str, lead: &str) -> Decision {
    let fixed: Vec<(String, String)> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set() && v.get_name().starts_with(prefix))
        .map(|v| {
            (
                format!("{lead}{}", v.get_name()),
                v.get_help().map(|h| h.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let dynamic = dynamic_for(arg);
    // The calendar's minors come newest first; shells would sort them.
    let order = if dynamic == Some(Dynamic::Versions) {
        directive::KEEP_ORDER
    } else {
        0
    };
    let file_like = matches!(
        arg.get_value_hint(),
        clap::ValueHint::FilePath | clap::ValueHint::AnyPath | clap::ValueHint::DirPath
    ) || arg
        .get_value_names()
        .and_then(|n| {
            n.first()
                .map(|n| n.as_str() == "PATH" || n.as_str() == "FILE" || n.as_str() == "DIR")
        })
        .unwrap_or(false);
    let directive = if file_like && fixed.is_empty() && dynamic.is_none() {
        directive::DEFAULT
    } else {
        directive::NO_FILE_COMP | order
    };
    Decision {
        candidates: fixed,
        dynamic,
        prefix: prefix.to_string(),
        lead: lead.to_string(),
        directive,
    }
}

/// Decides the completion of `words` (the last is the word under the cursor)
/// from the clap definition alone.
pub fn decide(root: &Command, words: &[String]) -> Decision {
    let (current, typed) = match words.split_last() {
        Some((c, t)) => (c.as_str(), t),
        None => ("", &[][..]),
    };
    let mut cmd = root;
    let mut parents: Vec<&Command> = Vec::new();
    let mut positionals_seen = 0usize;
    let mut pending_value: Option<&Arg> = None;
    let mut after_dashdash = false;
    for w in typed {
        if pending_value.take().is_some() {
            continue;
        }
        if after_dashdash {
            positionals_seen += 1;
            continue;
        }
        if w == "--" {
            after_dashdash = true;
            continue;
        }
        let fl = flags(cmd, &parents);
        if let Some(long) = w.strip_prefix("--") {
            if !long.contains('=')
                && let Some(arg) = find_long(&fl, long)
                && takes_value(arg)
            {
                pending_value = Some(arg);
            }
            continue;
        }
        if let Some(shorts) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-o` expects its value next; `-ojson` or `-yo json` carry it inline or after.
            if let Some(last) = shorts.chars().last()
                && let Some(arg) = find_short(&fl, last)
                && takes_value(arg)
                && shorts.len() == 1
            {
                pending_value = Some(arg);
            }
            continue;
        }
        if positionals_seen == 0
            && let Some(sub) = cmd.find_subcommand(w)
        {
            parents.push(cmd);
            cmd = sub;
            continue;
        }
        positionals_seen += 1;
    }
    if let Some(arg) = pending_value {
        return values_of(arg, current, "");
    }
    let fl = flags(cmd, &parents);
    if !after_dashdash && current.starts_with('-') {
        if let Some((name, value)) = current.strip_prefix("--").and_then(|c| c.split_once('='))
            && let Some(arg) = find_long(&fl, name)
        {
            return values_of(arg, value, &format!("--{name}="));
        }
        let mut out = Vec::new();
        for a in &fl {
            if let Some(l) = a.get_long() {
                let word = format!("--{l}");
                if word.starts_with(current) {
                    out.push((word, help_of(a)));
                }
            }
            if let Some(s) = a.get_short() {
                let word = format!("-{s}");
                if word.starts_with(current) && current.len() <= 2 {
                    out.push((word, help_of(a)));
                }
            }
        }
        for (word, help) in [("--help", "Print help"), ("-h", "Print help")] {
            if word.starts_with(current) && !out.iter().any(|(w, _)| w == word) {
                out.push((word.to_string(), help.to_string()));
            }
        }
        return Decision {
            candidates: out,
            dynamic: None,
            prefix: current.to_string(),
            lead: String::new(),
            directive: directive::NO_FILE_COMP,
        };
    }
    let mut out = Vec::new();
    if positionals_seen == 0 && !after_dashdash {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name().starts_with(current) && sub.get_name() != "help" {
                out.push((
                    sub.get_name().to_string(),
                    sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
                ));
            }
        }
    }
    let positional = cmd
        .get_positionals()
        .filter(|a| !a.is_hide_set())
        .nth(positionals_seen)
        .or_else(|| {
            cmd.get_positionals()
                .last()
                .filter(|a| matches!(a.get_action(), ArgAction::Append))
        });
    if let Some(arg) = positional {
        let mut d = values_of(arg, current, "");
        out.append(&mut d.candidates);
        d.candidates = out;
        return d;
    }
    Decision {
        candidates: out,
        dynamic: None,
        prefix: current.to_string(),
        lead: String::new(),
        directive: directive::NO_FILE_COMP,
    }
}

/// The connection flags typed so far (`--kubeconfig`, `--context`, ...),
/// parsed by the one definition in [`KubeFlags`]; others are ignored.
pub fn typed_kube_flags(words: &[String]) -> KubeFlags {
    let probe = KubeFlags::augment_args(Command::new("probe"));
    let known: Vec<(Option<String>, Option<char>, bool)> = probe
        .get_arguments()
        .map(|a| {
            (
                a.get_long().map(str::to_string),
                a.get_short(),
                takes_value(a),
            )
        })
        .collect();
    let mut kept: Vec<String> = vec!["probe".into()];
    let typed = words.split_last().map(|(_, t)| t).unwrap_or_default();
    let mut i = 0;
    while i < typed.len() {
        let w = &typed[i];
        let (name, inline) = match w.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, _)) => (Some(n.to_string()), true),
                None => (Some(rest.to_string()), false),
            },
            None => (None, false),
        };
        let short = w
            .strip_prefix('-')
            .filter(|s| s.len() == 1 && !w.starts_with("--"));
        let hit = known.iter().find(|(l, s, _)| {
            (name.is_some() && l.as_deref() == name.as_deref())
                || (short.is_some() && s.map(|c| c.to_string()).as_deref() == short)
        });
        if let Some((_, _, takes)) = hit {
            kept.push(w.clone());
            if *takes && !inline && i + 1 < typed.len() {
                kept.push(typed[i + 1].clone());
                i += 1;
            }
        }
        i += 1;
    }
    probe
        .try_get_matches_from(&kept)
        .ok()
        .and_then(|m| KubeFlags::from_arg_matches(&m).ok())
        .unwrap_or_else(|| {
            let m = KubeFlags::augment_args(Command::new("probe")).get_matches_from(["probe"]);
            KubeFlags::from_arg_matches(&m).expect("defaults parse")
        })
}

/// The minors of the embedded release calendar, newest first.
pub fn calendar_versions() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Calendar::embedded()
        .releases
        .iter()
        .rev()
        .map(|r| (r.minor.to_string(), format!("released {}", r.released)))
        .collect();
    out.dedup();
    out
}

async fn node_names(flags: &KubeFlags) -> anyhow::Result<Vec<(String, String)>> {
    let conn = flags.connect().await?;
    let nodes: Api<Node> = Api::all(conn.client);
    let list = nodes.list_metadata(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .map(|n| (n, String::new()))
        .collect())
}

fn context_names(flags: &KubeFlags) -> Vec<(String, String)> {
    let kc = match &flags.kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p),
        None => kube::config::Kubeconfig::read(),
    };
    kc.map(|kc| {
        kc.contexts
            .into_iter()
            .map(|c| (c.name, String::new()))
            .collect()
    })
    .unwrap_or_default()
}

/// Resolves a decision's dynamic part. Completion must never hang a shell:
/// the cluster gets a few seconds, and a failure yields no node names.
pub async fn resolve(
    decision: &Decision,
    words: &[String],
) -> (Vec<(String, String)>, Option<String>) {
    let mut out = decision.candidates.clone();
    let mut problem = None;
    let extra = match decision.dynamic {
        None => Vec::new(),
        Some(Dynamic::Versions) => calendar_versions(),
        Some(Dynamic::Contexts) => context_names(&typed_kube_flags(words)),
        Some(Dynamic::Nodes) => {
            let flags = typed_kube_flags(words);
            match tokio::time::timeout(Duration::from_secs(5), node_names(&flags)).await {
                Ok(Ok(names)) => names,
                Ok(Err(e)) => {
                    problem = Some(format!("could not list nodes: {e:#}"));
                    Vec::new()
                }
                Err(_) => {
                    problem = Some("listing nodes took longer than 5s".into());
                    Vec::new()
                }
            }
        }
    };
    for (word, help) in extra {
        if word.starts_with(&decision.prefix) {
            out.push((format!("{}{word}", decision.lead), help));
        }
    }
    (out, problem)
}

/// Cobra's `__complete` answer.
pub fn render(candidates: &[(String, String)], directive: u32) -> String {
    let mut s = String::new();
    for (word, help) in candidates {
        s.push_str(word);
        if !help.is_empty() {
            s.push('\t');
            s.push_str(help);
        }
        s.push('\n');
    }
    s.push_str(&format!(":{directive}\n"));
    s
}

/// The whole of a `kubectl_complete-PLUGIN` binary: answers for the words
/// after the program name, as Cobra's `__complete` does.
pub fn run_kubectl_complete(root: Command) -> std::process::ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    answer(root, &words)
}

fn answer(root: Command, words: &[String]) -> std::process::ExitCode {
    let words: Vec<String> = if words.is_empty() {
        vec![String::new()]
    } else {
        words.to_vec()
    };
    let decision = decide(&root, &words);
    let (candidates, problem) = if decision.dynamic.is_some() {
        // A thread of its own: callers may already be inside a runtime.
        let (d, w) = (decision.clone(), words.clone());
        std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(resolve(&d, &w)),
                Err(e) => (d.candidates.clone(), Some(e.to_string())),
            }
        })
        .join()
        .unwrap_or_else(|_| {
            (
                decision.candidates.clone(),
                Some("completion failed".into()),
            )
        })
    } else {
        (decision.candidates.clone(), None)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render(&candidates, decision.directive).as_bytes());
    let mut err = std::io::stderr().lock();
    if let Some(p) = problem {
        // Cobra writes its own diagnostics to stderr; shells do not show them.
        let _ = writeln!(err, "[Error] {p}");
    }
    let _ = writeln!(
        err,
        "Completion ended with directive: {}",
        decision.directive
    );
    std::process::ExitCode::SUCCESS
}

/// Handles `PLUGIN completion bash|zsh|fish` (a script for the binary used
/// directly) and `PLUGIN __complete WORDS...` (Cobra's protocol, so the
/// usual `kubectl PLUGIN __complete` wrapper works too). Returns `None` when
/// the command line is neither, for normal parsing to go on.
pub fn intercept(root: impl FnOnce() -> Command) -> Option<std::process::ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str());
    match first {
        Some("__complete") => {
            let words: Vec<String> = args[2..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            Some(answer(root(), &words))
        }
        // Exactly `completion SHELL`: a node named "completion" stays drainable.
        Some("completion") if args.len() == 3 => {
            let shell = args[2].to_string_lossy();
            let mut cmd = root();
            let bin = cmd.get_name().to_string();
            let mut out = std::io::stdout().lock();
            let shell = match shell.as_ref() {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                "fish" => clap_complete::Shell::Fish,
                other => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "error: unknown shell '{other}' for completion: use bash, zsh or fish"
                    );
                    return Some(std::process::ExitCode::from(2));
                }
            };
            // Into a buffer first: clap_complete panics on a write error, and a
            // reader that stops early (`| head`) is a broken pipe, not a failure.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, bin, &mut script);
            let _ = out.write_all(&script);
            Some(std::process::ExitCode::SUCCESS)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "kubectl-demo")]
    struct Demo {
        #[arg(value_name = "NODE")]
        node: Option<String>,
        #[arg(short = 'o', long, value_parser = ["table", "json", "yaml"])]
        output: Option<String>,
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        kube: KubeFlags,
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    fn names(d: &Decision) -> Vec<&str> {
        d.candidates.iter().map(|(w, _)| w.as_str()).collect()
    }

    #[test]
    fn the_node_positional_asks_the_cluster() {
        let d = decide(&Demo::command_for_test(), &words(&[""]));
        assert_eq!(d.dynamic, Some(Dynamic::Nodes));
        assert_eq!(d.directive, directive::NO_FILE_COMP);
    }

    #[test]
    fn flag_values_come_from_the_definition() {
        let d = decide(&Demo::command_for_test(), &words(&["node01", "-o", "j"]));
        assert_eq!(names(&d), ["json"]);
        let d = decide(&Demo::command_for_test(), &words(&["--output=y"]));
        assert_eq!(names(&d), ["--output=yaml"]);
        let d = decide(&Demo::command_for_test(), &words(&["--to", "v1.3"]));
        assert_eq!(d.dynamic, Some(Dynamic::Versions));
        assert_eq!(d.prefix, "v1.3");
    }

    #[test]
    fn flags_are_listed_with_their_help() {
        let d = decide(&Demo::command_for_test(), &words(&["--ye"]));
        assert_eq!(names(&d), ["--yes"]);
        let d = decide(&Demo::command_for_test(), &words(&["--kubec"]));
        assert_eq!(names(&d), ["--kubeconfig"]);
    }

    #[test]
    fn a_path_flag_falls_back_to_file_completion() {
        let d = decide(&Demo::command_for_test(), &words(&["--kubeconfig", ""]));
        assert_eq!(d.directive, directive::DEFAULT);
        assert!(d.candidates.is_empty());
    }

    #[test]
    fn typed_connection_flags_are_picked_out() {
        let f = typed_kube_flags(&words(&[
            "-o",
            "json",
            "--kubeconfig",
            "/k",
            "--context=lab",
            "--yes",
            "",
        ]));
        assert_eq!(f.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(f.context.as_deref(), Some("lab"));
    }

    #[test]
    fn the_answer_is_cobras_format() {
        let text = render(
            &[
                ("node01".into(), String::new()),
                ("json".into(), "as JSON".into()),
            ],
            4,
        );
        assert_eq!(text, "node01\njson\tas JSON\n:4\n");
    }

    #[test]
    fn the_calendar_offers_minors_newest_first() {
        let v = calendar_versions();
        assert!(v.len() > 10);
        let first: crate::version::MinorVersion = v[0].0.parse().unwrap();
        let last: crate::version::MinorVersion = v[v.len() - 1].0.parse().unwrap();
        assert!(first > last);
    }

    impl Demo {
        fn command_for_test() -> Command {
            <Demo as clap::CommandFactory>::command()
        }
    }
}
