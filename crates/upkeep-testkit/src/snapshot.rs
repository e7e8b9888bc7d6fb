//! Snapshot settings for the plugins' output: what a user reads is compared
//! whole (`insta::assert_snapshot!`), with only the parts that differ between
//! runs replaced.
//!
//! ```ignore
//! let _s = upkeep_testkit::snapshot::settings(&lab).bind_to_scope();
//! insta::assert_snapshot!("refused_bare_pod", stdout(&out));
//! ```
//!
//! Review a changed snapshot with `cargo insta review` or by reading the
//! `.snap.new` file beside it; `INSTA_UPDATE=always` rewrites them. Under
//! `CI=true` a mismatch fails and nothing is written.

use std::path::Path;

use crate::Lab;

/// Filters for every plugin's output: the lab's port and directory, temporary
/// paths, and elapsed times measured by the plugin (`1.23s`, `850ms`).
/// Whole-second figures are kept: they are timeouts and grace periods a user set.
pub fn settings(lab: &Lab) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    // Before the general temporary-path filter, which would match first.
    add_path(&mut s, lab.dir(), "[LAB]");
    common(&mut s);
    s
}

/// As [`settings`], for output that does not come from a lab.
pub fn base() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    common(&mut s);
    s
}

fn common(s: &mut insta::Settings) {
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    s.add_filter(r"localhost:\d+", "localhost:[PORT]");
    s.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    s.add_filter(r"\b\d+(\.\d+)?ms\b", "[ELAPSED]");
    s.add_filter(r"\b\d+\.\d+s\b", "[ELAPSED]");
}

/// Replaces `path` (and its canonical form) with `label` in snapshots.
pub fn add_path(s: &mut insta::Settings, path: &Path, label: &str) {
    let mut forms = vec![path.to_path_buf()];
    if let Ok(c) = path.canonicalize() {
        forms.push(c);
    }
    for p in forms {
        s.add_filter(&regex_escape(&p.to_string_lossy()), label);
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
