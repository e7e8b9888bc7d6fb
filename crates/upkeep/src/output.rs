//! One printer for all output: data on stdout (a human table, JSON or YAML),
//! progress, warnings and prompts on stderr. Colour and progress bars appear
//! only on a terminal; `NO_COLOR` is honoured through anstream.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// `-o/--output`: the formats every plugin offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people, with a one-line summary
    #[default]
    Table,
    /// JSON with a stable, documented schema
    Json,
    /// The same document as YAML
    Yaml,
}

/// `--dry-run`, in kubectl's form: a bare flag, `client` or `server` show
/// the plan and stop; `none` (kubectl's default) acts. As with kubectl, a
/// mode needs the `=` (`--dry-run=client`), so `--dry-run node01` leaves the
/// node name alone.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DryRun {
    /// Show the plan and stop; nothing is changed ("client", "server" and a bare flag all mean this)
    #[arg(
        id = "dry_run",
        long = "dry-run",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client",
        value_parser = ["none", "client", "server"]
    )]
    mode: Option<String>,
}

impl DryRun {
    /// Whether to stop after showing the plan.
    pub fn enabled(&self) -> bool {
        self.mode.as_deref().is_some_and(|m| m != "none")
    }
}

/// Exit codes shared by every plugin.
///
/// 0: done (or nothing violates); 1: refused or a violation found; 2: could
/// not do it (connection, permission, timeout, failure midway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Refused,
    Error,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Refused => 1,
            Outcome::Error => 2,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o.code())
    }
}

/// Writes results to stdout and everything else to stderr.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: OutputFormat,
    /// Suppress progress and notes (stdout is unaffected).
    pub quiet: bool,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            quiet: false,
        }
    }

    /// Prints a result: `human` renders the table form, JSON and YAML
    /// serialise `value` itself so that machine output never depends on
    /// how the table looks.
    pub fn result<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            OutputFormat::Table => human(),
            OutputFormat::Json => {
                let mut s =
                    serde_json::to_string_pretty(value).context("could not encode the result")?;
                s.push('\n');
                s
            }
            OutputFormat::Yaml => {
                serde_saphyr::to_string(value).context("could not encode the result")?
            }
        };
        write_stdout(&text)
    }

    /// Text for people on stdout, as it is (plans, reports).
    pub fn text(&self, text: &str) -> anyhow::Result<()> {
        write_stdout(text)
    }

    /// A refusal on stderr, always shown, worded the same in every plugin:
    /// `refused: ...`. The caller exits 1: nothing was changed.
    pub fn refuse(&self, message: impl AsRef<str>) {
        let mut err = anstream::stderr();
        let _ = writeln!(err, "refused: {}", message.as_ref());
    }

    /// A note for people on stderr (hidden with `quiet`).
    pub fn note(&self, message: impl AsRef<str>) {
        if !self.quiet {
            let mut err = anstream::stderr();
            let _ = writeln!(err, "{}", message.as_ref());
        }
    }

    /// A warning on stderr, always shown.
    pub fn warn(&self, message: impl AsRef<str>) {
        let mut err = anstream::stderr();
        let _ = writeln!(err, "warning: {}", message.as_ref());
    }

    /// An error on stderr, always shown: `error: ...`, as kubectl prints them.
    pub fn error(&self, message: impl AsRef<str>) {
        let mut err = anstream::stderr();
        let _ = writeln!(err, "error: {}", message.as_ref());
    }

    /// Text for people on stderr as it is, always shown (a plan before its
    /// question, a prompt). stderr is locked only while writing.
    pub fn show(&self, text: &str) -> std::io::Result<()> {
        let mut err = anstream::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    }

    /// A progress bar on stderr, hidden when stderr is not a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.draw_target());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }

    /// A spinner on stderr, hidden when stderr is not a terminal.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.draw_target());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static"));
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    fn draw_target(&self) -> ProgressDrawTarget {
        if self.quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}

/// A table in the house style: no borders, like kubectl's own listings.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    t
}

/// Renders a table without the trailing spaces comfy-table pads lines with.
pub fn render(table: &Table) -> String {
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = anstream::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("could not write to stdout"),
    }
}

/// Asks a yes/no question on the terminal. With `assume_yes` it does not ask;
/// without a terminal it never prompts and refuses instead, naming `--yes`.
pub fn confirm(question: &str, assume_yes: bool) -> anyhow::Result<bool> {
    if assume_yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        anyhow::bail!("not asking without a terminal: re-run with --yes to proceed");
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .context("could not read the answer")
}

/// Runs a plugin's main future and turns its result into an exit code:
/// errors print as `error: ...` with their context chain (API errors as
/// kubectl prints them, with what to do) and exit 2.
pub fn finish(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let mut stderr = anstream::stderr();
            let _ = write!(stderr, "{}", describe(&err));
            Outcome::Error.into()
        }
    }
}

/// An error for people. A Kubernetes API error reads as kubectl's
/// (kubernetes/kubectl `pkg/cmd/util/helpers.go` `StandardErrorMessage`:
/// `Error from server (Reason): message`), followed by what the plugin was
/// doing and what to do about it; never as a debug dump of the Status. A
/// server that could not be reached is said once, with what to check.
pub fn describe(err: &anyhow::Error) -> String {
    let mut context: Vec<String> = Vec::new();
    for e in err.chain() {
        let status = match e.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(s.as_ref()),
            _ => e.downcast_ref::<kube::core::Status>(),
        };
        if let Some(s) = status {
            let mut out = server_error(s);
            out.push('\n');
            if !context.is_empty() {
                out.push_str(&format!("  while: {}\n", context.join(": ")));
            }
            out.push_str(&format!("  fix: {}\n", fix_for(s)));
            return out;
        }
        let text = e.to_string();
        // kube's ServiceError prints its source, which the chain then yields again.
        if !context.last().is_some_and(|prev| prev.ends_with(&text)) {
            context.push(text);
        }
    }
    let mut out = format!("error: {}\n", context.join(": "));
    if let Some(fix) = transport_fix(err) {
        out.push_str(&format!("  fix: {fix}\n"));
    }
    out
}

/// What to check when no answer came back from the API server at all (a kube
/// client error: etcd's or a node's transport is another server).
fn transport_fix(err: &anyhow::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error as Tls};
    if !err.chain().any(|e| e.is::<kube::Error>()) {
        return None;
    }
    err.chain().find_map(|e| {
        let io = e.downcast_ref::<std::io::Error>();
        // A failed handshake comes as rustls's error inside an io::Error (tokio-rustls),
        // inside another (hyper-rustls `HttpsConnector::call`); io::Error's source skips them.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut tls = None;
        while let Some(cur) = inner {
            if let Some(t) = cur.downcast_ref::<Tls>() {
                tls = Some(t);
                break;
            }
            inner = cur
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as _);
        }
        match (io.map(std::io::Error::kind), tls) {
            // kubectl: "The connection to the server ... was refused - did you specify
            // the right host or port?"
            (Some(std::io::ErrorKind::ConnectionRefused), _) => Some(
                "nothing listens at that address: check the server of the context \
                 (`kubectl config view --minify`, or --server) and that the API server is up",
            ),
            (_, Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer))) => Some(
                "the server's certificate is not signed by a CA this client trusts: give the \
                 cluster's CA (certificate-authority-data in the kubeconfig, or \
                 --certificate-authority)",
            ),
            (_, Some(Tls::InvalidCertificate(_))) => Some(
                "the server's certificate was not accepted: check that --server (or the \
                 kubeconfig's server) is the address the certificate names, and the cluster's CA",
            ),
            _ => None,
        }
    })
}

/// A client error on one line: an API error as kubectl prints it (see [`describe`]),
/// any other error as its message.
pub fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => server_error(s),
        other => other.to_string(),
    }
}

fn server_error(s: &kube::core::Status) -> String {
    if s.reason == "Unauthorized" || s.code == 401 {
        let why = if s.message.is_empty() {
            "Unauthorized"
        } else {
            &s.message
        };
        return format!("error: You must be logged in to the server ({why})");
    }
    if s.reason.is_empty() {
        format!("Error from server: {}", s.message)
    } else {
        format!("Error from server ({}): {}", s.reason, s.message)
    }
}

fn fix_for(s: &kube::core::Status) -> String {
    let kind = s
        .details
        .as_ref()
        .map(|d| d.kind.clone())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "the resource".into());
    match s.code {
        401 => "the credentials of this context were refused: check them with `kubectl config view --minify` and log in again".into(),
        403 => "this user may not do that: see what it may do with `kubectl auth can-i --list`, or use a context with the rights (cluster-admin for maintenance)".into(),
        404 => format!("check the name: `kubectl get {kind}` lists what exists"),
        409 => "it changed while this ran: run the same command again".into(),
        400 | 422 => "the server rejected a value of this request: check the flags given".into(),
        429 => "the server asks to slow down: run the same command again in a moment".into(),
        c if c >= 500 => "the API server failed to answer: check its health (`kubectl get --raw /readyz`) and run the same command again".into(),
        _ => "run the same command again; if it persists, check the API server".into(),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Sets up logging on stderr: `RUST_LOG` wins, else only this project's own
/// warnings. Libraries' log lines (kube's client logs an ERROR for every
/// failed request it then returns) never reach a user: the error they
/// describe is reported once, by [`finish`].
///
/// `RUST_LOG` takes `target=level` directives (`kube=debug,upkeep=trace`), read
/// by `tracing_subscriber::filter::Targets`: the span and field filters of
/// `EnvFilter` would link a regex engine into every plugin for no user's need.
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_target("upkeep", LevelFilter::WARN));
    // Colour only on a terminal and never under NO_COLOR (no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_reads_like_kubectl() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            dry_run: DryRun,
            node: Option<String>,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(["p"].iter().chain(args)).unwrap();
        assert!(!parse(&[]).dry_run.enabled());
        assert!(parse(&["--dry-run"]).dry_run.enabled());
        assert!(parse(&["--dry-run=client"]).dry_run.enabled());
        assert!(parse(&["--dry-run=server"]).dry_run.enabled());
        assert!(!parse(&["--dry-run=none"]).dry_run.enabled());
        let bare = parse(&["--dry-run", "node01"]);
        assert!(bare.dry_run.enabled());
        assert_eq!(bare.node.as_deref(), Some("node01"));
        assert!(Cli::try_parse_from(["p", "--dry-run=maybe"]).is_err());
    }

    #[test]
    fn api_errors_read_as_kubectl_prints_them() {
        let status = kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code: 403,
            message: "nodes \"node02\" is forbidden: User \"dev\" cannot get resource \"nodes\""
                .into(),
            reason: "Forbidden".into(),
            ..Default::default()
        };
        let err = anyhow::Error::new(kube::Error::Api(Box::new(status)))
            .context("could not read node/node02");
        let text = describe(&err);
        assert!(
            text.starts_with(
                "Error from server (Forbidden): nodes \"node02\" is forbidden: User \"dev\""
            ),
            "{text}"
        );
        assert!(text.contains("while: could not read node/node02"), "{text}");
        assert!(text.contains("kubectl auth can-i --list"), "{text}");
        assert!(!text.contains("Status {"), "{text}");
        let plain = describe(&anyhow::anyhow!("boom").context("doing x"));
        assert_eq!(plain, "error: doing x: boom\n");
    }

    #[test]
    fn an_unreachable_server_is_said_once_with_what_to_check() {
        let service = |e: std::io::Error| {
            anyhow::Error::new(kube::Error::Service(Box::new(e))).context("could not get /version")
        };
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = describe(&service(refused));
        assert_eq!(
            text.lines().next().unwrap(),
            "error: could not get /version: ServiceError: connection refused"
        );
        assert!(
            text.contains("  fix: nothing listens at that address"),
            "{text}"
        );

        let tls = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let text = describe(&service(tls));
        assert!(text.contains("--certificate-authority"), "{text}");

        // Not the API server (an etcd endpoint, a node): no advice about kubeconfigs.
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let text = describe(&anyhow::Error::new(refused).context("could not reach etcd"));
        assert_eq!(text, "error: could not reach etcd: connection refused\n");
    }

    #[test]
    fn outcome_codes() {
        assert_eq!(Outcome::Ok.code(), 0);
        assert_eq!(Outcome::Refused.code(), 1);
        assert_eq!(Outcome::Error.code(), 2);
    }

    #[test]
    fn rendered_tables_have_no_trailing_spaces() {
        let mut t = table(["NAME", "VERSION"]);
        t.add_row(["a-long-name", "v1"]);
        t.add_row(["b", "v1.31.2"]);
        let text = render(&t);
        assert!(text.lines().all(|l| l == l.trim_end()));
        assert!(text.starts_with(" NAME") || text.starts_with("NAME"));
        assert_eq!(text.lines().count(), 3);
    }
}
