//! Snapshots of what a user reads: a plugin's output is compared whole, after
//! [`normalize`] has replaced only what differs from run to run. The README
//! transcripts test goes through the same [`normalize`].
//!
//! ```text
//! upkeep_testkit::assert_output!(&lab, "refused_bare_pod", stdout(&out));
//! ```
//!
//! The snapshots live in `tests/snapshots/` beside the test file. Review a changed
//! one with `cargo insta review`, or read the `.snap.new` file written beside it;
//! `INSTA_UPDATE=always` rewrites them. Under `CI=true` a mismatch fails and
//! nothing is written.

use std::path::Path;

use regex::Regex;

pub use insta;

/// `assert_output!(&lab, "name", text)`: `text`, normalized (the lab's directory
/// shown as `[LAB]`), against the snapshot `name`. Without a lab:
/// `assert_output!("name", text)`.
#[macro_export]
macro_rules! assert_output {
    ($lab:expr, $name:expr, $text:expr $(,)?) => {{
        let _s = $crate::snapshot::settings().bind_to_scope();
        $crate::snapshot::insta::assert_snapshot!(
            $name,
            $crate::snapshot::normalize(Some($lab.dir()), &$text)
        );
    }};
    ($name:expr, $text:expr $(,)?) => {{
        let _s = $crate::snapshot::settings().bind_to_scope();
        $crate::snapshot::insta::assert_snapshot!($name, $crate::snapshot::normalize(None, &$text));
    }};
}

/// Snapshot names without the module prefix, and no expression in the file.
pub fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

/// What differs from run to run, and nothing else.
pub const FILTERS: &[(&str, &str)] = &[
    // The lab listens on a free port (ephemeral: 4 or 5 digits); a low port a
    // test names on purpose, such as 127.0.0.1:9 where nothing listens, stays.
    (r"127\.0\.0\.1:\d{4,5}\b", "127.0.0.1:[PORT]"),
    // Temporary directories.
    (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
    // Generated names: a ReplicaSet's pod-template hash and the random suffix of
    // generateName (both from the apiserver's alphabet: no vowels, no 0, 1, 3).
    (
        r"\b([a-z][a-z0-9-]*?)-([bcdfghjklmnpqrstvwxz2456789]{9,10}-)?[bcdfghjklmnpqrstvwxz2456789]{5}\b",
        "$1-[ID]",
    ),
    // kubeadm's backup and staging directories, named after the time of the upgrade
    // (cmd/kubeadm/app/phases/upgrade/staticpods.go, `2006-01-02-15-04-05`).
    (
        r"\b(kubeadm-[a-z-]+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\b",
        "$1-[TIME]",
    ),
    // Certificates the lab issues when it starts, valid for a number of days from then.
    (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "YYYY-MM-DD hh:mm UTC"),
    // The whole days left until such a date: 9 or 10 for a certificate issued to
    // run out in 10 days, by whether a second boundary passed since it was issued.
    (
        r"(expires on YYYY-MM-DD hh:mm UTC), in \d+ days\b",
        "$1, in [DAYS] days",
    ),
    // A time the API server stamped (RFC 3339), e.g. when the node controller tainted an
    // unreachable node: the lab's clock at that moment.
    (
        r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z\b",
        "[TIMESTAMP]",
    ),
    // The lab's clock as tools print it: kubectl describe (RFC 1123 with a numeric zone,
    // pkg/describe describe.go `time.RFC1123Z`) and dnf's metadata check (the `%c` of
    // en_US.UTF-8, dnf/util.py normalize_time).
    (
        r"\b[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\b",
        "[DATE]",
    ),
    (
        r"\b[A-Z][a-z]{2} \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [AP]M UTC\b",
        "[DATE]",
    ),
    // An Event's name: its object's name and a hex suffix (kubectl's recorder).
    (r"\.[0-9a-f]{16}\b", ".[EVENT]"),
    // How long a drain took.
    (r"\bin \d+(\.\d+)?(ms|s)\b", "in [DURATION]"),
    // Other measured times. Whole seconds stay: they are timeouts and grace
    // periods the user or the workload set.
    (r"\b\d+(\.\d+)?ms\b", "[ELAPSED]"),
    (r"\b\d+\.\d+s\b", "[ELAPSED]"),
    // The time a lock Lease has left: its duration less the time since its last
    // renewal, read when the run looks at it.
    (r"\b\d+ s left\b", "[N] s left"),
    (r"\bexpires in \d+ s\b", "expires in [N] s"),
    // When a restore ran, in the name of the copy it keeps (`etcd.yaml.before-restore-…`).
    (r"\b\d{8}T\d{6}Z\b", "[STAMP]"),
    // The random part of a temporary file's name (`.snap.db.AbC123.part`).
    (r"(\.[\w.-]+?)\.[A-Za-z0-9]{6}\.part\b", "$1.[RANDOM].part"),
];

/// Output that comes in whatever order concurrent work finishes: each maximal run of
/// consecutive lines matching one of these is compared as a set (sorted), as is a
/// comma-separated list of `pod@node` (where a workload's pods run now).
pub const UNORDERED: &[&str] = &[
    // Evictions run concurrently (`--concurrency`; kubectl drain: a goroutine per pod,
    // pkg/drain/drain.go evictPods), and deletions end in whichever poll sees them gone.
    r"^(evicting pod \S+( \(server dry run\))?|pod/\S+ (evicted|deleted))$",
    // Workloads become whole in the order their replacements turn Ready.
    r"^\S+/\S+/\S+: \d+/\d+ ready elsewhere",
    // upgrade-node's drain step: the same lines after `[node]`.
    r"^\[\S+\] +(evicting pod \S+|pod/\S+ evicted)$",
    r"^\[\S+\] +\S+/\S+/\S+: \d+/\d+ ready elsewhere",
];

/// `text` with each `(pattern, replacement)` applied in turn: [`FILTERS`], or a
/// test's own list for output only it produces.
pub fn replace(text: &str, filters: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (pattern, with) in filters {
        text = Regex::new(pattern)
            .expect("filter")
            .replace_all(&text, *with)
            .into_owned();
    }
    text
}

/// `text` with trailing blanks trimmed, `dir` (a lab's) shown as `[LAB]`, then
/// [`FILTERS`] applied and [`UNORDERED`] runs sorted.
pub fn normalize(dir: Option<&Path>, text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    if let Some(dir) = dir {
        let mut forms = vec![dir.to_path_buf()];
        forms.extend(dir.canonicalize().ok());
        for form in forms {
            text = text.replace(&*form.to_string_lossy(), "[LAB]");
        }
    }
    let text = replace(&text, FILTERS);
    // Items without commas: a greedy `\S+` would end an item with the list's comma.
    let placements = Regex::new(r"[^\s,]+@[^\s,]+(, [^\s,]+@[^\s,]+)+").expect("placements");
    let text = placements.replace_all(&text, |c: &regex::Captures| {
        let mut items: Vec<&str> = c[0].split(", ").collect();
        items.sort_unstable();
        items.join(", ")
    });
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for pattern in UNORDERED {
        let re = Regex::new(pattern).expect("unordered pattern");
        let mut i = 0;
        while i < lines.len() {
            let run = lines[i..].iter().take_while(|l| re.is_match(l)).count();
            lines[i..i + run].sort_unstable();
            i += run.max(1);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_varies_is_replaced() {
        let dir = Path::new("/tmp/.tmpAbC123");
        let got = normalize(
            Some(dir),
            "server https://127.0.0.1:40123 in /tmp/.tmpAbC123/kubeconfig  \n\
             pod/web-7c9d8f6b5b-x2k9q evicted\n\
             pod/api-5d4c8b7f9d-q8z7w evicted\n\
             node02 drained in 1.52s (grace 30s, probe 850ms)\n\
             no server at http://127.0.0.1:9/\n\
             certificate expires on 2026-12-15 00:00 UTC, in 9 days\n\
             web  b@node03, a@node03, c@node01\n\
             backed up to /etc/kubernetes/tmp/kubeadm-backup-etcd-2026-12-05-14-22-35/etcd\n\n",
        );
        assert_eq!(
            got,
            "server https://127.0.0.1:[PORT] in [LAB]/kubeconfig\n\
             pod/api-[ID] evicted\n\
             pod/web-[ID] evicted\n\
             node02 drained in [DURATION] (grace 30s, probe [ELAPSED])\n\
             no server at http://127.0.0.1:9/\n\
             certificate expires on YYYY-MM-DD hh:mm UTC, in [DAYS] days\n\
             web  a@node03, b@node03, c@node01\n\
             backed up to /etc/kubernetes/tmp/kubeadm-backup-etcd-[TIME]/etcd\n"
        );
    }

    #[test]
    fn an_api_timestamp_is_replaced_and_a_release_date_is_not() {
        assert_eq!(
            normalize(
                None,
                "tainted since 2026-12-05T13:51:35Z\nv1.35 released 2025-12-17\n\
                 CreationTimestamp:  Sat, 05 Dec 2026 14:16:25 +0000\n\
                 Last metadata expiration check: 0:00:42 ago on Sat 05 Dec 2026 02:20:11 PM UTC.\n"
            ),
            "tainted since [TIMESTAMP]\nv1.35 released 2025-12-17\n\
             CreationTimestamp:  [DATE]\n\
             Last metadata expiration check: 0:00:42 ago on [DATE].\n"
        );
    }
}
