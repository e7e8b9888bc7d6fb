//! The command interpreter of a simulated node: argv (or an `sh -c` script) in, stdout,
//! stderr and an exit code out, with the node's [`Host`] state changed and the cluster
//! [`Effect`]s recorded. Pure: no I/O, no clock (the time is passed in).
//!
//! Commands: `sh`/`bash -c`, `sudo`, `nsenter ... --`, `env`, `true`, `false`, `exit`, `export`,
//! `set -e|-o pipefail`, `trap`, `test`, `echo`, `cat`, `tee`, `sed`, `grep`, `ls`, `mkdir`,
//! `cp`, `rm`, `systemctl`, `curl`/`gpg` for the repository key, the package managers
//! ([`super::pkg`]) and kubeadm ([`super::kubeadm`]).
//!
//! Keep only what is exercised: each command is sent by `kubectl upgrade-node` (its recipes and
//! probe), typed by the kubeadm document's manual sequence (both run against real nodes by the
//! conformance suite in `crates/kubectl-upgrade-node/tests/realnode.rs`), or on the practice
//! list; the table of which is which is in the crate README ("Node shells", "Commands").
//! Anything else answers as an unknown command does (exit 127).

use regex::Regex;

use super::cluster::{ClusterView, Effect};
use super::host::Host;
use super::repo::Repos;
use super::script::{self, Connector, ErrTo};
use super::{kubeadm, pkg};
use crate::exec::ExecOutput;

/// Everything a command may read besides the host, and what it changed in the cluster.
pub struct Ctx<'a> {
    pub repos: &'a Repos,
    pub cluster: ClusterView,
    pub effects: Vec<Effect>,
    /// Now, RFC 3339 (`2026-11-22T03:55:28Z`), for backup directory names and dates.
    pub now: String,
    errexit: bool,
    pipefail: bool,
    exit: Option<i32>,
    /// Shell variables set by `NAME=value` / `export NAME=value` during one command.
    vars: std::collections::BTreeMap<String, String>,
    /// `$?`
    last_code: i32,
    /// `trap ACTION EXIT`: run when the shell ends.
    exit_trap: Option<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(repos: &'a Repos, cluster: ClusterView, now: impl Into<String>) -> Self {
        Ctx {
            repos,
            cluster,
            effects: Vec::new(),
            now: now.into(),
            errexit: false,
            pipefail: false,
            exit: None,
            vars: Default::default(),
            last_code: 0,
            exit_trap: None,
        }
    }

    /// Record a cluster change and keep the snapshot in step.
    pub fn effect(&mut self, e: Effect) {
        self.cluster.apply(&e);
        self.effects.push(e);
    }

    /// A shell variable: set ones, then the environment a root login has.
    fn var(&self, name: &str) -> Option<String> {
        if name == "?" {
            return Some(self.last_code.to_string());
        }
        self.vars.get(name).cloned().or_else(|| {
            Some(
                match name {
                    "HOME" => "/root",
                    "USER" | "LOGNAME" => "root",
                    "PATH" => "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "SHELL" => "/bin/sh",
                    _ => return None,
                }
                .to_string(),
            )
        })
    }

    /// `2026-11-22-03-55-28`, kubeadm's backup directory suffix.
    pub fn stamp(&self) -> String {
        self.now
            .chars()
            .take(19)
            .map(|c| if c == 'T' || c == ':' { '-' } else { c })
            .collect()
    }
}

/// Run one command line (argv) on a host. `stdin` feeds the command (empty for none).
pub fn run(host: &mut Host, ctx: &mut Ctx, argv: &[String], stdin: &str) -> ExecOutput {
    host.history
        .push(shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" ")));
    let out = run_argv(host, ctx, argv, stdin);
    ctx.exit = None;
    ctx.vars.clear();
    ctx.last_code = 0;
    out
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Strip the wrappers that only change privileges or namespaces on a real host.
fn strip_prefixes(argv: &[String]) -> Result<&[String], ExecOutput> {
    let mut a = argv;
    loop {
        let Some(first) = a.first() else { return Ok(a) };
        match basename(first) {
            "sudo" => {
                let mut i = 1;
                while i < a.len() && a[i].starts_with('-') {
                    // sudo -u USER / -g GROUP take a value.
                    if matches!(a[i].as_str(), "-u" | "-g" | "-C" | "-h" | "-p" | "-U") {
                        i += 1;
                    }
                    if a[i] == "--" {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                a = &a[i.min(a.len())..];
            }
            "nsenter" => {
                // nsenter [options] [--] program: everything up to "--" or the first word that
                // is neither an option nor an option's value.
                let mut i = 1;
                while i < a.len() {
                    let w = a[i].as_str();
                    if w == "--" {
                        i += 1;
                        break;
                    }
                    if !w.starts_with('-') {
                        break;
                    }
                    // "-t 1" / "--target 1": options that take a separate value.
                    if matches!(
                        w,
                        "-t" | "--target" | "-S" | "--setuid" | "-G" | "--setgid" | "-w" | "-r"
                    ) {
                        i += 1;
                    }
                    i += 1;
                }
                a = &a[i.min(a.len())..];
            }
            "env" => {
                let mut i = 1;
                while i < a.len() && (a[i].contains('=') || a[i].starts_with('-')) {
                    i += 1;
                }
                a = &a[i..];
            }
            _ => return Ok(a),
        }
    }
}

fn run_argv(host: &mut Host, ctx: &mut Ctx, argv: &[String], stdin: &str) -> ExecOutput {
    let argv = match strip_prefixes(argv) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Some(first) = argv.first() else {
        return ExecOutput::ok("");
    };
    let name = basename(first).to_string();
    let mut words: Vec<String> = argv.to_vec();
    words[0] = name.clone();
    if let Some(f) = host.take_fault(&words) {
        let msg = f.message.unwrap_or_else(|| {
            format!(
                "{}: failed (fault injected by the lab on node {})",
                f.fail, host.node
            )
        });
        let msg = if msg.ends_with('\n') {
            msg
        } else {
            format!("{msg}\n")
        };
        return ExecOutput::fail(f.code.unwrap_or(1), msg);
    }
    let args = &words[1..];
    match name.as_str() {
        "sh" | "bash" | "dash" => shell(host, ctx, &name, args, stdin),
        "true" | ":" => ExecOutput::ok(""),
        "test" => test(host, args),
        "[" => match args.split_last() {
            Some((last, rest)) if last == "]" => test(host, rest),
            _ => ExecOutput::fail(2, "sh: 1: [: missing ]\n"),
        },
        "false" => ExecOutput::fail(1, ""),
        "exit" => {
            let code = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
            ctx.exit = Some(code);
            ExecOutput {
                code,
                ..Default::default()
            }
        }
        "set" => {
            let mut i = 0;
            while i < args.len() {
                match args[i].as_str() {
                    "-o" | "+o" => {
                        if args.get(i + 1).map(String::as_str) == Some("pipefail") {
                            ctx.pipefail = args[i] == "-o";
                        } else if args.get(i + 1).map(String::as_str) == Some("errexit") {
                            ctx.errexit = args[i] == "-o";
                        }
                        i += 1;
                    }
                    flags if flags.starts_with('-') => ctx.errexit |= flags.contains('e'),
                    flags if flags.starts_with('+') && flags.contains('e') => ctx.errexit = false,
                    _ => {}
                }
                i += 1;
            }
            ExecOutput::ok("")
        }
        "export" | "readonly" | "local" => {
            for a in args {
                if let Some((k, v)) = assignment(a) {
                    ctx.vars.insert(k.to_string(), v.to_string());
                }
            }
            ExecOutput::ok("")
        }
        "trap" => trap(ctx, args),
        "cp" => cp(host, args),
        "echo" => echo(args),
        "cat" => cat(host, args, stdin),
        "tee" => tee(host, args, stdin),
        "sed" => sed(host, args, stdin),
        "grep" | "egrep" => grep(host, &name, args, stdin),
        "ls" => ls(host, args),
        "mkdir" => mkdir(host, args),
        "rm" => rm(host, args),
        "systemctl" => systemctl(host, ctx, args),
        "curl" => curl(args),
        "gpg" => gpg(host, args, stdin),
        "kubeadm" => kubeadm::kubeadm(host, ctx, args, stdin),
        n if host.family.has_command(n) => pkg::run(host, ctx, n, args, stdin),
        _ => not_found(&name),
    }
}

/// `test EXPR` (POSIX test; dash's builtin): string `=` / `!=`, integer `-eq` / `-ne`,
/// `-n` / `-z`, and `-e` / `-f` / `-d` on the host's files; `!` negates. Status 0 true,
/// 1 false, 2 for an expression it cannot read.
fn test(host: &Host, args: &[String]) -> ExecOutput {
    let (negate, args) = match args.split_first() {
        Some((first, rest)) if first == "!" => (true, rest),
        _ => (false, args),
    };
    let int = |a: &str| a.trim().parse::<i64>().ok();
    let truth = match args {
        [] => Some(false),
        [one] => Some(!one.is_empty()),
        [op, a] => match op.as_str() {
            "-n" => Some(!a.is_empty()),
            "-z" => Some(a.is_empty()),
            "-e" => Some(host.files.contains_key(a.as_str()) || host.is_dir(a)),
            "-f" => Some(host.files.contains_key(a.as_str())),
            "-d" => Some(host.is_dir(a)),
            _ => None,
        },
        [a, op, b] => match op.as_str() {
            "=" => Some(a == b),
            "!=" => Some(a != b),
            "-eq" => int(a).zip(int(b)).map(|(x, y)| x == y),
            "-ne" => int(a).zip(int(b)).map(|(x, y)| x != y),
            _ => None,
        },
        _ => None,
    };
    match truth {
        Some(t) if t != negate => ExecOutput::ok(""),
        Some(_) => ExecOutput::fail(1, ""),
        None => ExecOutput::fail(
            2,
            format!("sh: 1: test: {}: unexpected operator\n", args.join(" ")),
        ),
    }
}

fn not_found(name: &str) -> ExecOutput {
    ExecOutput::fail(127, format!("sh: 1: {name}: not found\n"))
}

/// `sh [-eux] [-o pipefail] -c SCRIPT [name [args]]`, or the script on stdin.
fn shell(host: &mut Host, ctx: &mut Ctx, name: &str, args: &[String], stdin: &str) -> ExecOutput {
    let (saved_e, saved_p) = (ctx.errexit, ctx.pipefail);
    let mut script_src: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-o" || a == "+o" {
            if args.get(i + 1).map(String::as_str) == Some("pipefail") {
                ctx.pipefail = a == "-o";
            }
            i += 2;
            continue;
        }
        if let Some(flags) = a
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && !f.starts_with('-'))
        {
            ctx.errexit |= flags.contains('e');
            if flags.contains('c') {
                match args.get(i + 1) {
                    Some(src) => script_src = Some(src.clone()),
                    None => {
                        return ExecOutput::fail(
                            2,
                            format!("{name}: -c: option requires an argument\n"),
                        );
                    }
                }
                break;
            }
            i += 1;
            continue;
        }
        if a == "--login" || a == "--norc" || a == "--noprofile" {
            i += 1;
            continue;
        }
        // A script file: the lab has none.
        return ExecOutput::fail(127, format!("{name}: 0: cannot open {a}: No such file\n"));
    }
    // With -c the commands read stdin; without, stdin is the script itself.
    let (src, cmd_stdin) = match script_src {
        Some(src) => (src, stdin),
        None => (stdin.to_string(), ""),
    };
    let saved_trap = ctx.exit_trap.take();
    let mut out = run_script(host, ctx, &src, cmd_stdin);
    // The EXIT trap runs when the shell ends, by `exit` or by its last command, and keeps
    // the shell's exit status (POSIX trap; dash trap.c exitshell). The lab delivers no
    // signals, so traps on HUP/INT/TERM never run.
    if let Some(action) = ctx.exit_trap.take() {
        ctx.exit = None;
        let (e, p) = (ctx.errexit, ctx.pipefail);
        let t = run_script(host, ctx, &action, "");
        (ctx.errexit, ctx.pipefail) = (e, p);
        out.stdout.push_str(&t.stdout);
        out.stderr.push_str(&t.stderr);
    }
    ctx.exit_trap = saved_trap;
    ctx.errexit = saved_e;
    ctx.pipefail = saved_p;
    ctx.exit = None;
    out
}

/// Run a script's text.
pub fn run_script(host: &mut Host, ctx: &mut Ctx, src: &str, stdin: &str) -> ExecOutput {
    let parsed = match script::parse(src) {
        Ok(s) => s,
        Err(e) => return ExecOutput::fail(2, format!("sh: 1: {e}\n")),
    };
    let mut out = ExecOutput::default();
    let mut prev = Connector::Seq;
    let mut last = 0;
    for (pipeline, conn) in &parsed.items {
        let go = match prev {
            Connector::And => last == 0,
            Connector::Or => last != 0,
            Connector::Seq => true,
        };
        if go {
            let r = run_pipeline(host, ctx, pipeline, stdin);
            out.stdout.push_str(&r.stdout);
            out.stderr.push_str(&r.stderr);
            last = r.code;
            ctx.last_code = last;
            if ctx.exit.is_some() {
                break;
            }
        }
        prev = *conn;
        // errexit: a failing and-or list (not a failing left side of && or ||) ends the script.
        if *conn == Connector::Seq && ctx.errexit && last != 0 {
            break;
        }
    }
    out.code = ctx.exit.unwrap_or(last);
    out
}

fn run_pipeline(host: &mut Host, ctx: &mut Ctx, p: &script::Pipeline, stdin: &str) -> ExecOutput {
    let mut input = stdin.to_string();
    let mut out = ExecOutput::default();
    let mut worst = 0;
    let n = p.commands.len();
    for (i, c) in p.commands.iter().enumerate() {
        let cmd_in = if let Some(h) = &c.heredoc {
            h.clone()
        } else if let Some(path) = &c.stdin_from {
            match read_file(host, path) {
                Ok(t) => t,
                Err(e) => {
                    out.stderr
                        .push_str(&format!("sh: 1: cannot open {path}: {e}\n"));
                    out.code = 2;
                    return out;
                }
            }
        } else {
            std::mem::take(&mut input)
        };
        let argv = if c.raw_words.iter().any(|w| script::has_expansion(w)) {
            match script::expand_words(&c.raw_words, &|n| ctx.var(n)) {
                Ok(a) => a,
                Err(e) => {
                    out.stderr.push_str(&format!("sh: 1: {e}\n"));
                    out.code = 2;
                    return out;
                }
            }
        } else {
            c.argv.clone()
        };
        // Leading NAME=value words: alone they set shell variables; before a command they
        // only set its environment, which no lab command reads.
        let assignments = argv.iter().take_while(|w| assignment(w).is_some()).count();
        let mut r = if assignments == argv.len() {
            for w in &argv {
                if let Some((k, v)) = assignment(w) {
                    ctx.vars.insert(k.to_string(), v.to_string());
                }
            }
            ExecOutput::ok("")
        } else {
            run_argv(host, ctx, &argv[assignments..], &cmd_in)
        };
        if c.stdout_to_stderr {
            r.stderr.push_str(&std::mem::take(&mut r.stdout));
        }
        match &c.stderr_to {
            Some(ErrTo::Stdout) => {
                let e = std::mem::take(&mut r.stderr);
                r.stdout.push_str(&e);
            }
            Some(ErrTo::File { path, append }) => {
                let e = std::mem::take(&mut r.stderr);
                if let Err(msg) = write_file(host, path, &e, *append) {
                    out.stderr
                        .push_str(&format!("sh: 1: cannot create {path}: {msg}\n"));
                    r.code = 2;
                }
            }
            None => {}
        }
        if let Some((path, append)) = &c.stdout_to {
            let o = std::mem::take(&mut r.stdout);
            if let Err(msg) = write_file(host, path, &o, *append) {
                out.stderr
                    .push_str(&format!("sh: 1: cannot create {path}: {msg}\n"));
                r.code = 2;
            }
        }
        out.stderr.push_str(&r.stderr);
        if r.code != 0 {
            worst = r.code;
        }
        if i + 1 == n {
            out.stdout.push_str(&r.stdout);
            out.code = if ctx.pipefail && r.code == 0 {
                worst
            } else {
                r.code
            };
        } else {
            input = r.stdout;
        }
        if ctx.exit.is_some() {
            break;
        }
    }
    if p.negate {
        out.code = if out.code == 0 { 1 } else { 0 };
    }
    out
}

/// `NAME=value` with a valid shell name.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (k, v) = word.split_once('=')?;
    let mut chars = k.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some((k, v))
}

/// Read a file (`/dev/null` reads empty).
pub fn read_file(host: &Host, path: &str) -> Result<String, &'static str> {
    if path == "/dev/null" {
        return Ok(String::new());
    }
    if let Some(t) = host.files.get(path) {
        return Ok(t.clone());
    }
    if host.is_dir(path) {
        Err("Is a directory")
    } else {
        Err("No such file or directory")
    }
}

/// Write or append a file; the directory must exist.
pub fn write_file(
    host: &mut Host,
    path: &str,
    text: &str,
    append: bool,
) -> Result<(), &'static str> {
    if path == "/dev/null" || path == "/dev/stdout" || path == "/dev/stderr" {
        return Ok(());
    }
    if host.is_dir(path) {
        return Err("Is a directory");
    }
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    if !host.is_dir(parent) {
        return Err("Directory nonexistent");
    }
    let entry = host.files.entry(path.to_string()).or_default();
    if !append {
        entry.clear();
    }
    entry.push_str(text);
    Ok(())
}

fn echo(args: &[String]) -> ExecOutput {
    let mut newline = true;
    let mut words = args;
    while let Some(f) = words.first() {
        match f.as_str() {
            "-n" => newline = false,
            "-e" | "-E" => {}
            _ => break,
        }
        words = &words[1..];
    }
    let mut s = words.join(" ");
    // dash's echo interprets backslash escapes.
    s = s.replace("\\n", "\n").replace("\\t", "\t");
    if newline {
        s.push('\n');
    }
    ExecOutput::ok(s)
}

fn cat(host: &Host, args: &[String], stdin: &str) -> ExecOutput {
    let files: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') || a.as_str() == "-")
        .collect();
    if files.is_empty() {
        return ExecOutput::ok(stdin);
    }
    let mut out = ExecOutput::default();
    for f in files {
        if f == "-" {
            out.stdout.push_str(stdin);
            continue;
        }
        match read_file(host, f) {
            Ok(t) => out.stdout.push_str(&t),
            Err(e) => {
                out.stderr.push_str(&format!("cat: {f}: {e}\n"));
                out.code = 1;
            }
        }
    }
    out
}

fn tee(host: &mut Host, args: &[String], stdin: &str) -> ExecOutput {
    let append = args.iter().any(|a| a == "-a" || a == "--append");
    let mut out = ExecOutput::ok(stdin);
    for f in args.iter().filter(|a| !a.starts_with('-')) {
        if let Err(e) = write_file(host, f, stdin, append) {
            out.stderr.push_str(&format!("tee: {f}: {e}\n"));
            out.code = 1;
        }
    }
    out
}

/// One sed command: `s/RE/REPL/FLAGS` or `/RE/d`.
enum SedCmd {
    Subst {
        re: Regex,
        repl: String,
        global: bool,
    },
    Delete {
        re: Regex,
    },
}

/// POSIX basic regular expression to the regex crate's syntax: in a BRE `\( \) \{ \} \+ \?
/// \|` are the operators and the bare characters are literals (GNU sed).
fn bre_to_regex(bre: &str) -> String {
    let mut out = String::new();
    let mut chars = bre.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(o @ ('(' | ')' | '{' | '}' | '+' | '?' | '|')) => out.push(o),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push_str("\\\\"),
            },
            '(' | ')' | '{' | '}' | '+' | '?' | '|' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn parse_sed(expr: &str, extended: bool) -> Result<SedCmd, String> {
    let compile = |re: &str| -> Result<Regex, String> {
        let re = if extended {
            re.to_string()
        } else {
            bre_to_regex(re)
        };
        Regex::new(&re).map_err(|_| {
            format!(
                "sed: -e expression #1, char {}: Invalid regular expression",
                expr.len()
            )
        })
    };
    let split = |body: &str, delim: char| -> Vec<String> {
        let mut parts = vec![String::new()];
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    if n != delim {
                        parts.last_mut().unwrap().push('\\');
                    }
                    parts.last_mut().unwrap().push(n);
                }
            } else if c == delim {
                parts.push(String::new());
            } else {
                parts.last_mut().unwrap().push(c);
            }
        }
        parts
    };
    let e = expr.trim();
    if let Some(rest) = e.strip_prefix('s') {
        let delim = rest
            .chars()
            .next()
            .ok_or("sed: -e expression #1, char 1: unterminated `s' command")?;
        let parts = split(&rest[delim.len_utf8()..], delim);
        if parts.len() < 3 {
            return Err(format!(
                "sed: -e expression #1, char {}: unterminated `s' command",
                e.len()
            ));
        }
        let flags = &parts[2];
        if let Some(bad) = flags
            .chars()
            .find(|c| !matches!(c, 'g' | 'I' | 'i' | '1'..='9'))
        {
            return Err(format!(
                "sed: -e expression #1, char {}: unknown option to `s'",
                e.len() - flags.len() + flags.find(bad).unwrap_or(0) + 1
            ));
        }
        let mut re_src = parts[0].clone();
        if flags.contains('I') || flags.contains('i') {
            re_src = format!("(?i){re_src}");
        }
        // sed's replacement: & is the match, \1..\9 the groups.
        let mut repl = String::new();
        let mut chars = parts[1].chars();
        while let Some(c) = chars.next() {
            match c {
                '&' => repl.push_str("${0}"),
                '\\' => match chars.next() {
                    Some(d @ '0'..='9') => repl.push_str(&format!("${{{d}}}")),
                    Some('n') => repl.push('\n'),
                    Some('&') => repl.push('&'),
                    Some(o) => repl.push(o),
                    None => {}
                },
                '$' => repl.push_str("$$"),
                _ => repl.push(c),
            }
        }
        return Ok(SedCmd::Subst {
            re: compile(&re_src)?,
            repl,
            global: flags.contains('g'),
        });
    }
    if let Some(body) = e.strip_prefix('/').and_then(|r| r.strip_suffix("/d")) {
        return Ok(SedCmd::Delete { re: compile(body)? });
    }
    Err(format!(
        "sed: -e expression #1, char 1: unknown command: `{}'",
        e.chars().next().unwrap_or(' ')
    ))
}

fn sed(host: &mut Host, args: &[String], stdin: &str) -> ExecOutput {
    let mut in_place = false;
    let mut extended = false;
    let mut exprs: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-e" | "--expression" => {
                if let Some(x) = args.get(i + 1) {
                    exprs.push(x.clone());
                }
                i += 1;
            }
            "-E" | "-r" | "--regexp-extended" => extended = true,
            "--in-place" => in_place = true,
            _ if a.starts_with("-i") => in_place = true,
            _ if a.starts_with("--expression=") => {
                exprs.push(a["--expression=".len()..].to_string())
            }
            _ if a.starts_with('-') && a.len() > 1 => {
                if a.contains('i') {
                    in_place = true;
                }
                if a.contains('E') || a.contains('r') {
                    extended = true;
                }
            }
            _ => {
                if exprs.is_empty() && files.is_empty() && !args[..i].iter().any(|p| p == "-e") {
                    exprs.push(a.to_string());
                } else {
                    files.push(a.to_string());
                }
            }
        }
        i += 1;
    }
    if exprs.is_empty() {
        return ExecOutput::fail(
            1,
            "Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...\n",
        );
    }
    let mut cmds = Vec::new();
    for e in exprs
        .iter()
        .flat_map(|e| e.split(';').map(str::to_string).collect::<Vec<_>>())
    {
        if e.trim().is_empty() {
            continue;
        }
        match parse_sed(&e, extended) {
            Ok(c) => cmds.push(c),
            Err(msg) => return ExecOutput::fail(1, format!("{msg}\n")),
        }
    }
    let apply = |text: &str| -> String {
        let mut out = String::new();
        for line in text.split_inclusive('\n') {
            let (body, nl) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            let mut cur = body.to_string();
            let mut deleted = false;
            for c in &cmds {
                match c {
                    SedCmd::Subst { re, repl, global } => {
                        cur = if *global {
                            re.replace_all(&cur, repl.as_str()).into_owned()
                        } else {
                            re.replace(&cur, repl.as_str()).into_owned()
                        };
                    }
                    SedCmd::Delete { re } => {
                        if re.is_match(&cur) {
                            deleted = true;
                            break;
                        }
                    }
                }
            }
            if !deleted {
                out.push_str(&cur);
                out.push_str(nl);
            }
        }
        out
    };
    if files.is_empty() {
        if in_place {
            return ExecOutput::fail(1, "sed: no input files\n");
        }
        return ExecOutput::ok(apply(stdin));
    }
    let mut out = ExecOutput::default();
    for f in &files {
        match read_file(host, f) {
            Ok(t) => {
                let new = apply(&t);
                if in_place {
                    host.files.insert(f.clone(), new);
                } else {
                    out.stdout.push_str(&new);
                }
            }
            Err(e) => {
                out.stderr.push_str(&format!("sed: can't read {f}: {e}\n"));
                out.code = 2;
            }
        }
    }
    out
}

fn grep(host: &Host, name: &str, args: &[String], stdin: &str) -> ExecOutput {
    let (mut ignore_case, mut invert, mut quiet, mut count, mut fixed) =
        (false, false, false, false, false);
    let mut extended = name == "egrep";
    let mut pattern: Option<String> = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "-e" {
            pattern = args.get(i + 1).cloned();
            i += 2;
            continue;
        }
        if a.starts_with('-') && a.len() > 1 && !a.starts_with("--") {
            for f in a[1..].chars() {
                match f {
                    'i' => ignore_case = true,
                    'v' => invert = true,
                    'q' | 's' => quiet |= f == 'q',
                    'c' => count = true,
                    'E' => extended = true,
                    'F' => fixed = true,
                    _ => {}
                }
            }
        } else if a.starts_with("--") {
            // long options are accepted and ignored
        } else if pattern.is_none() {
            pattern = Some(a.to_string());
        } else {
            files.push(a.to_string());
        }
        i += 1;
    }
    let Some(pat) = pattern else {
        return ExecOutput::fail(2, "Usage: grep [OPTION]... PATTERNS [FILE]...\n");
    };
    let src = if fixed {
        regex::escape(&pat)
    } else if extended {
        pat.clone()
    } else {
        bre_to_regex(&pat)
    };
    let src = if ignore_case {
        format!("(?i){src}")
    } else {
        src
    };
    let Ok(re) = Regex::new(&src) else {
        return ExecOutput::fail(2, "grep: Invalid regular expression\n");
    };
    let mut inputs: Vec<(String, String)> = Vec::new();
    let mut out = ExecOutput::default();
    if files.is_empty() {
        inputs.push((String::new(), stdin.to_string()));
    }
    for f in &files {
        match read_file(host, f) {
            Ok(t) => inputs.push((f.clone(), t)),
            Err(e) => {
                out.stderr.push_str(&format!("grep: {f}: {e}\n"));
                out.code = 2;
            }
        }
    }
    let multi = inputs.len() > 1;
    let mut hits = 0;
    for (fname, text) in &inputs {
        for line in text.lines() {
            if re.is_match(line) != invert {
                hits += 1;
                if !quiet && !count {
                    if multi {
                        out.stdout.push_str(&format!("{fname}:"));
                    }
                    out.stdout.push_str(line);
                    out.stdout.push('\n');
                }
            }
        }
    }
    if count {
        out.stdout.push_str(&format!("{hits}\n"));
    }
    if out.code == 0 {
        out.code = if hits > 0 { 0 } else { 1 };
    }
    out
}

fn ls(host: &Host, args: &[String]) -> ExecOutput {
    let long = args
        .iter()
        .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('l'));
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let cwd = "/root".to_string();
    let paths = if paths.is_empty() { vec![&cwd] } else { paths };
    let mut out = ExecOutput::default();
    let multi = paths.len() > 1;
    let fmt = |name: &str, dir: bool, size: usize| -> String {
        if long {
            let kind = if dir { "drwxr-xr-x" } else { "-rw-r--r--" };
            format!("{kind} 1 root root {size:>5} {name}\n")
        } else {
            format!("{name}\n")
        }
    };
    for p in paths {
        if let Some(t) = host.files.get(p.as_str()) {
            out.stdout.push_str(&fmt(p, false, t.len()));
        } else if host.is_dir(p) {
            if multi {
                out.stdout.push_str(&format!("{p}:\n"));
            }
            let base = p.trim_end_matches('/');
            for child in host.list_dir(p) {
                let full = format!("{base}/{child}");
                let size = host.files.get(&full).map(String::len).unwrap_or(4096);
                out.stdout
                    .push_str(&fmt(&child, !host.files.contains_key(&full), size));
            }
        } else {
            out.stderr.push_str(&format!(
                "ls: cannot access '{p}': No such file or directory\n"
            ));
            out.code = 2;
        }
    }
    out
}

/// `trap ACTION SIGNAL...` (`-` or an empty action resets): only EXIT (or 0) is kept.
fn trap(ctx: &mut Ctx, args: &[String]) -> ExecOutput {
    let Some((action, sigs)) = args.split_first() else {
        return ExecOutput::ok("");
    };
    if sigs.iter().any(|s| s == "EXIT" || s == "0") {
        ctx.exit_trap = (action != "-" && !action.is_empty()).then(|| action.clone());
    }
    ExecOutput::ok("")
}

/// `cp [-p|-a|-f] SRC DST` for one file; DST may be a directory.
fn cp(host: &mut Host, args: &[String]) -> ExecOutput {
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let [src, dst] = paths.as_slice() else {
        return ExecOutput::fail(1, "cp: missing destination file operand\n");
    };
    let text = match read_file(host, src) {
        Ok(t) => t,
        Err("Is a directory") => {
            return ExecOutput::fail(
                1,
                format!("cp: -r not specified; omitting directory '{src}'\n"),
            );
        }
        Err(_) => {
            return ExecOutput::fail(
                1,
                format!("cp: cannot stat '{src}': No such file or directory\n"),
            );
        }
    };
    let dst = if host.is_dir(dst) {
        format!("{}/{}", dst.trim_end_matches('/'), basename(src))
    } else {
        dst.to_string()
    };
    match write_file(host, &dst, &text, false) {
        Ok(()) => ExecOutput::ok(""),
        Err(e) => ExecOutput::fail(1, format!("cp: cannot create regular file '{dst}': {e}\n")),
    }
}

fn mkdir(host: &mut Host, args: &[String]) -> ExecOutput {
    let parents = args.iter().any(|a| a == "-p" || a == "--parents");
    let mut out = ExecOutput::default();
    for d in args.iter().filter(|a| !a.starts_with('-')) {
        let d = d.trim_end_matches('/');
        let parent = d.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        if host.files.contains_key(d) || (host.is_dir(d) && !parents) {
            out.stderr.push_str(&format!(
                "mkdir: cannot create directory '{d}': File exists\n"
            ));
            out.code = 1;
        } else if !parents && !host.is_dir(parent) {
            out.stderr.push_str(&format!(
                "mkdir: cannot create directory '{d}': No such file or directory\n"
            ));
            out.code = 1;
        } else {
            host.dirs.insert(d.to_string());
        }
    }
    out
}

fn rm(host: &mut Host, args: &[String]) -> ExecOutput {
    let flags: String = args
        .iter()
        .filter(|a| a.starts_with('-'))
        .flat_map(|a| a.chars())
        .collect();
    let (recursive, force) = (
        flags.contains('r') || flags.contains('R'),
        flags.contains('f'),
    );
    let mut out = ExecOutput::default();
    for p in args.iter().filter(|a| !a.starts_with('-')) {
        let p = p.trim_end_matches('/');
        if host.files.remove(p).is_some() {
            continue;
        }
        if host.is_dir(p) {
            if !recursive {
                out.stderr
                    .push_str(&format!("rm: cannot remove '{p}': Is a directory\n"));
                out.code = 1;
                continue;
            }
            let prefix = format!("{p}/");
            host.files.retain(|k, _| !k.starts_with(&prefix));
            host.dirs.retain(|k| k != p && !k.starts_with(&prefix));
        } else if !force {
            out.stderr.push_str(&format!(
                "rm: cannot remove '{p}': No such file or directory\n"
            ));
            out.code = 1;
        }
    }
    out
}

/// `systemctl` for the kubelet unit (systemd's own wording).
fn systemctl(host: &mut Host, ctx: &mut Ctx, args: &[String]) -> ExecOutput {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let Some(&verb) = words.first() else {
        return ExecOutput::ok(
            "  UNIT                LOAD   ACTIVE SUB     DESCRIPTION\n  kubelet.service     loaded active running kubelet: The Kubernetes Node Agent\n",
        );
    };
    let units: Vec<String> = words[1..]
        .iter()
        .map(|u| u.trim_end_matches(".service").to_string())
        .collect();
    let known = |u: &str| u == "kubelet";
    if verb == "daemon-reload" {
        host.units_changed = false;
        return ExecOutput::ok("");
    }
    if units.is_empty() {
        return ExecOutput::fail(1, "Too few arguments.\n");
    }
    let mut out = ExecOutput::default();
    for u in &units {
        if !known(u) {
            let msg = match verb {
                "status" => format!("Unit {u}.service could not be found.\n"),
                "is-active" => {
                    out.stdout.push_str("inactive\n");
                    String::new()
                }
                v => format!("Failed to {v} {u}.service: Unit {u}.service not found.\n"),
            };
            out.stderr.push_str(&msg);
            out.code = if matches!(verb, "status" | "is-active") {
                4
            } else {
                5
            };
            if verb == "is-active" {
                out.code = 3;
            }
            continue;
        }
        let warn_reload = || {
            "Warning: The unit file, source configuration file or drop-ins of kubelet.service changed on disk. \
             Run 'systemctl daemon-reload' to reload units.\n"
                .to_string()
        };
        match verb {
            "restart" | "start" => {
                if host.units_changed {
                    out.stderr.push_str(&warn_reload());
                }
                if verb == "start" && host.kubelet_active {
                    continue;
                }
                // The kubelet restarts with the installed binary and reports its version.
                let Some(installed) = host.installed.get("kubelet").map(|p| p.upstream.clone())
                else {
                    out.stderr.push_str(&format!(
                        "Failed to {verb} kubelet.service: Unit kubelet.service not found.\n"
                    ));
                    out.code = 5;
                    continue;
                };
                let was_active = host.kubelet_active;
                host.kubelet_running = installed.clone();
                host.kubelet_active = true;
                ctx.effect(Effect::KubeletVersion {
                    node: host.node.clone(),
                    version: installed.tag(),
                });
                if !was_active {
                    ctx.effect(Effect::KubeletService {
                        node: host.node.clone(),
                        running: true,
                    });
                }
            }
            "stop" => {
                if host.kubelet_active {
                    host.kubelet_active = false;
                    // No heartbeats from now on: the node goes NotReady/Unknown after the
                    // node-monitor grace period, as a real one does.
                    ctx.effect(Effect::KubeletService {
                        node: host.node.clone(),
                        running: false,
                    });
                }
            }
            "enable" => {}
            "is-active" => {
                out.stdout.push_str(if host.kubelet_active {
                    "active\n"
                } else {
                    "inactive\n"
                });
                if !host.kubelet_active {
                    out.code = 3;
                }
            }
            "status" => {
                let state = if host.kubelet_active {
                    format!("active (running) since {}", ctx.now)
                } else {
                    format!("inactive (dead) since {}", ctx.now)
                };
                out.stdout.push_str(&format!(
                    "● kubelet.service - kubelet: The Kubernetes Node Agent\n     \
                     Loaded: loaded (/usr/lib/systemd/system/kubelet.service; enabled; preset: enabled)\n    \
                     Drop-In: /usr/lib/systemd/system/kubelet.service.d\n             └─10-kubeadm.conf\n     \
                     Active: {state}\n       Docs: https://kubernetes.io/docs/\n   Main PID: 4242 (kubelet)\n\n\
                     {node} kubelet[4242]: I0000 kubelet version: {ver}\n",
                    node = host.node,
                    ver = host.kubelet_running.tag(),
                ));
                if host.units_changed {
                    out.stdout.push_str(&format!("\n{}", warn_reload()));
                }
                if !host.kubelet_active {
                    out.code = 3;
                }
            }
            v => {
                out.stderr
                    .push_str(&format!("Unknown command verb '{v}'.\n"));
                out.code = 1;
            }
        }
    }
    out
}

/// `curl -fsSL <repo>/Release.key` (and `repomd.xml.key`): the repository signing key.
fn curl(args: &[String]) -> ExecOutput {
    let Some(url) = args.iter().find(|a| a.starts_with("http")) else {
        return ExecOutput::fail(
            2,
            "curl: try 'curl --help' or 'curl --manual' for more information\n",
        );
    };
    if url.contains("/core:/stable:/v")
        && (url.ends_with("Release.key") || url.ends_with("repomd.xml.key"))
    {
        return ExecOutput::ok(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n(lab repository signing key)\n-----END PGP PUBLIC KEY BLOCK-----\n",
        );
    }
    let host = url
        .split("//")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or(url);
    ExecOutput::fail(6, format!("curl: (6) Could not resolve host: {host}\n"))
}

/// `gpg --dearmor -o FILE` (the keyring step of the repository setup).
fn gpg(host: &mut Host, args: &[String], stdin: &str) -> ExecOutput {
    let out_file = args
        .windows(2)
        .find(|w| w[0] == "-o" || w[0] == "--output")
        .map(|w| w[1].clone());
    let yes = args.iter().any(|a| a == "--yes" || a == "--batch");
    let Some(f) = out_file else {
        return ExecOutput::ok(stdin);
    };
    if host.files.contains_key(&f) && !yes {
        return ExecOutput::fail(
            2,
            format!(
                "File '{f}' exists. Overwrite? (y/N) gpg: signal Interrupt caught ... exiting\n"
            ),
        );
    }
    match write_file(host, &f, "(binary OpenPGP keyring)\n", false) {
        Ok(()) => ExecOutput::ok(""),
        Err(e) => ExecOutput::fail(2, format!("gpg: can't create '{f}': {e}\n")),
    }
}
