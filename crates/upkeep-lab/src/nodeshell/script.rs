//! `sh -c` scripts: and-or lists (`&&`, `||`, `;`, newlines), pipelines (`|`), redirections
//! (`>`, `>>`, `<`, `2>`, `2>&1`, `>&2`), here-documents (`<<EOF`, `<<'EOF'`, `<<-EOF`),
//! comments and backslash-newline continuations, as POSIX sh (dash) reads them.
//!
//! A small scanner finds the operators outside quotes; the words between them are split by
//! `shlex`, which owns quoting and escapes. Parameter expansion covers `$NAME`, `${NAME}` and
//! `$?` in command words (outside single quotes, at run time, [`expand_words`]); no globbing of
//! file names, subshells or command substitution: those words pass through literally.

/// How an and-or list continues after a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// `&&`: run the next one only if this one succeeded.
    And,
    /// `||`: run the next one only if this one failed.
    Or,
    /// `;`, newline or end: always run the next one.
    Seq,
}

/// Where a command's stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrTo {
    Stdout,
    File { path: String, append: bool },
}

/// One simple command with its redirections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<String>,
    /// The same words as written (quotes intact), for parameter expansion at run time.
    pub raw_words: Vec<String>,
    /// `> file` / `>> file`.
    pub stdout_to: Option<(String, bool)>,
    /// `>&2`: stdout goes to stderr.
    pub stdout_to_stderr: bool,
    pub stderr_to: Option<ErrTo>,
    /// `< file`.
    pub stdin_from: Option<String>,
    /// A here-document's body.
    pub heredoc: Option<String>,
}

/// Commands joined by `|`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    pub commands: Vec<Command>,
    /// `! cmd`
    pub negate: bool,
}

/// A whole script: pipelines with the connector that follows each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub items: Vec<(Pipeline, Connector)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Raw text between operators (quotes intact).
    Raw(String),
    Op(&'static str),
    /// `<<` / `<<-` with its delimiter word (unquoted) and the body, filled in at the newline.
    Heredoc {
        delim: String,
        strip_tabs: bool,
        body: Option<String>,
    },
}

/// Scan into raw chunks and operators; read here-document bodies.
fn scan(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut raw = String::new();
    let mut i = 0;
    let flush = |raw: &mut String, toks: &mut Vec<Tok>| {
        if !raw.trim().is_empty() {
            toks.push(Tok::Raw(std::mem::take(raw)));
        } else {
            raw.clear();
        }
    };
    // Index into `toks` of here-documents still waiting for their body.
    let mut pending: Vec<usize> = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        let at_word_start = raw.is_empty() || raw.ends_with(char::is_whitespace);
        match c {
            '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or("Unterminated quoted string")?;
                raw.extend(&chars[i..=i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err("Unterminated quoted string".into());
                }
                raw.extend(&chars[i..=j]);
                i = j + 1;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\\' => {
                raw.extend(chars.get(i..(i + 2).min(chars.len())).unwrap_or(&[]));
                i += 2;
            }
            '#' if at_word_start => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\n' => {
                flush(&mut raw, &mut toks);
                toks.push(Tok::Op("\n"));
                i += 1;
                // Here-document bodies follow the line that named them.
                for idx in std::mem::take(&mut pending) {
                    let Tok::Heredoc {
                        delim, strip_tabs, ..
                    } = toks[idx].clone()
                    else {
                        continue;
                    };
                    let mut body = String::new();
                    let mut found = false;
                    while i < chars.len() {
                        let end = chars[i..]
                            .iter()
                            .position(|&x| x == '\n')
                            .map(|p| i + p)
                            .unwrap_or(chars.len());
                        let mut line: String = chars[i..end].iter().collect();
                        i = (end + 1).min(chars.len().max(end + 1));
                        if strip_tabs {
                            line = line.trim_start_matches('\t').to_string();
                        }
                        if line == delim {
                            found = true;
                            break;
                        }
                        body.push_str(&line);
                        body.push('\n');
                    }
                    // dash accepts a missing delimiter at the end of input.
                    let _ = found;
                    if let Tok::Heredoc { body: b, .. } = &mut toks[idx] {
                        *b = Some(body);
                    }
                }
            }
            '&' | '|' | ';' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                // A lone fd digit right before > or < belongs to the operator: 2>, 2>>, 2>&1.
                let mut fd2 = false;
                if (c == '>') && raw.ends_with('2') {
                    let before = &raw[..raw.len() - 1];
                    if before.is_empty() || before.ends_with(char::is_whitespace) {
                        raw.pop();
                        fd2 = true;
                    }
                }
                // "1>" is plain ">" when the 1 stands alone.
                if c == '>' && raw.ends_with('1') {
                    let before = &raw[..raw.len() - 1];
                    if before.is_empty() || before.ends_with(char::is_whitespace) {
                        raw.pop();
                    }
                }
                flush(&mut raw, &mut toks);
                let (op, len): (&'static str, usize) = match (c, next, fd2) {
                    ('>', Some('&'), true) if chars.get(i + 2) == Some(&'1') => ("2>&1", 3),
                    ('>', Some('>'), true) => ("2>>", 2),
                    ('>', _, true) => ("2>", 1),
                    ('>', Some('&'), false) if chars.get(i + 2) == Some(&'2') => (">&2", 3),
                    ('>', Some('&'), false) if chars.get(i + 2) == Some(&'1') => ("", 3),
                    ('>', Some('>'), _) => (">>", 2),
                    ('>', Some('|'), _) => (">", 2),
                    ('>', _, _) => (">", 1),
                    ('<', Some('<'), _) if chars.get(i + 2) == Some(&'-') => ("<<-", 3),
                    ('<', Some('<'), _) => ("<<", 2),
                    ('<', _, _) => ("<", 1),
                    ('&', Some('&'), _) => ("&&", 2),
                    ('&', Some('>'), _) => ("&>", 2),
                    ('&', _, _) => (";", 1),
                    ('|', Some('|'), _) => ("||", 2),
                    ('|', _, _) => ("|", 1),
                    (';', Some(';'), _) => return Err("Syntax error: \";;\" unexpected".into()),
                    _ => (";", 1),
                };
                i += len;
                if op.is_empty() {
                    continue;
                }
                if op == "<<" || op == "<<-" {
                    // The delimiter word follows (quotes removed).
                    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                        i += 1;
                    }
                    let start = i;
                    let mut quote: Option<char> = None;
                    while i < chars.len() {
                        let ch = chars[i];
                        match quote {
                            Some(q) if ch == q => quote = None,
                            Some(_) => {}
                            None if ch == '\'' || ch == '"' => quote = Some(ch),
                            None if ch.is_whitespace() || "&|;<>".contains(ch) => break,
                            None => {}
                        }
                        i += 1;
                    }
                    let word: String = chars[start..i]
                        .iter()
                        .filter(|&&c| c != '\'' && c != '"' && c != '\\')
                        .collect();
                    if word.is_empty() {
                        return Err("Syntax error: newline unexpected".into());
                    }
                    pending.push(toks.len());
                    toks.push(Tok::Heredoc {
                        delim: word,
                        strip_tabs: op == "<<-",
                        body: None,
                    });
                } else {
                    toks.push(Tok::Op(op));
                }
            }
            _ => {
                raw.push(c);
                i += 1;
            }
        }
    }
    flush(&mut raw, &mut toks);
    if !pending.is_empty() {
        // A here-document on the last line without a body: empty body.
        for idx in pending {
            if let Tok::Heredoc { body, .. } = &mut toks[idx] {
                *body = Some(String::new());
            }
        }
    }
    Ok(toks)
}

/// Split a raw chunk into words at unquoted whitespace, keeping quotes and escapes, so
/// that each word can be expanded and then unquoted on its own (one word per shlex word).
fn split_raw_words(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            None => {
                started = true;
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '\'' || c == '"' {
                    quote = Some(c);
                }
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// Whether a raw word has a `$` that expansion would replace (not inside single quotes).
pub fn has_expansion(raw: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut chars = raw.chars().peekable();
    let starts_name = |n: &char| n.is_ascii_alphabetic() || matches!(n, '_' | '{' | '?');
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (Some('"'), '"') => quote = None,
            (_, '\\') => {
                chars.next();
            }
            (_, '$') if chars.peek().is_some_and(starts_name) => return true,
            _ => {}
        }
    }
    false
}

/// Expand `$NAME`, `${NAME}` and `$?` in raw words (POSIX sh 2.6.2), then remove quotes and
/// split the unquoted results into fields (2.6.5), as dash does. Unset names expand to "".
pub fn expand_words(
    raw: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for w in raw {
        let mut text = String::new();
        let mut quote: Option<char> = None;
        let mut chars = w.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some('\''), '\'') => {
                    quote = None;
                    text.push(c);
                }
                (Some('\''), _) => text.push(c),
                (_, '\\') => {
                    text.push(c);
                    if let Some(n) = chars.next() {
                        text.push(n);
                    }
                }
                (None, '\'') | (None, '"') => {
                    quote = Some(c);
                    text.push(c);
                }
                (Some('"'), '"') => {
                    quote = None;
                    text.push(c);
                }
                (q, '$') => {
                    let name: String = match chars.peek() {
                        Some('{') => {
                            chars.next();
                            let n: String = chars.by_ref().take_while(|&x| x != '}').collect();
                            n
                        }
                        Some('?') => {
                            chars.next();
                            "?".to_string()
                        }
                        Some(x) if x.is_ascii_alphabetic() || *x == '_' => {
                            let mut n = String::new();
                            while let Some(&x) = chars.peek() {
                                if x.is_ascii_alphanumeric() || x == '_' {
                                    n.push(x);
                                    chars.next();
                                } else {
                                    break;
                                }
                            }
                            n
                        }
                        _ => {
                            text.push('$');
                            continue;
                        }
                    };
                    let value = lookup(&name).unwrap_or_default();
                    for v in value.chars() {
                        // Quote what the value holds so that only unquoted whitespace splits it.
                        let special = if q == Some('"') {
                            "\\\"$`"
                        } else {
                            "\\'\"$`;&|<>()"
                        };
                        if special.contains(v) {
                            text.push('\\');
                        }
                        text.push(v);
                    }
                }
                _ => text.push(c),
            }
        }
        out.extend(words(&text)?);
    }
    Ok(out)
}

fn words(raw: &str) -> Result<Vec<String>, String> {
    shlex::split(raw).ok_or_else(|| "Unterminated quoted string".to_string())
}

/// Parse a script. Errors read like dash's (`Syntax error: "&&" unexpected`).
pub fn parse(src: &str) -> Result<Script, String> {
    let toks = scan(src)?;
    let mut script = Script::default();
    let mut pipeline = Pipeline::default();
    let mut cmd = Command::default();
    let mut cmd_has_content = false;
    let mut it = toks.into_iter().peekable();
    // Whether a connector/pipe needs a command to follow (newlines are then skipped).
    let mut need_more = false;

    fn finish_cmd(cmd: &mut Command, has: &mut bool, pipeline: &mut Pipeline) {
        if *has {
            pipeline.commands.push(std::mem::take(cmd));
        }
        *has = false;
    }

    while let Some(tok) = it.next() {
        match tok {
            Tok::Raw(r) => {
                let mut ws = words(&r)?;
                let mut raws = split_raw_words(&r);
                if !cmd_has_content
                    && pipeline.commands.is_empty()
                    && ws.first().map(String::as_str) == Some("!")
                {
                    pipeline.negate = true;
                    ws.remove(0);
                    raws.remove(0);
                }
                if !ws.is_empty() {
                    cmd.argv.extend(ws);
                    cmd.raw_words.extend(raws);
                    cmd_has_content = true;
                }
                need_more = false;
            }
            Tok::Heredoc { body, .. } => {
                cmd.heredoc = body;
                cmd_has_content = true;
            }
            Tok::Op(op @ (">" | ">>" | "<" | "2>" | "2>>" | "&>")) => {
                let Some(Tok::Raw(r)) = it.next() else {
                    return Err("Syntax error: newline unexpected".into());
                };
                let mut ws = words(&r)?;
                if ws.is_empty() {
                    return Err("Syntax error: newline unexpected".into());
                }
                let mut raws = split_raw_words(&r);
                if !raws.is_empty() {
                    raws.remove(0);
                }
                let target = ws.remove(0);
                match op {
                    ">" => cmd.stdout_to = Some((target, false)),
                    ">>" => cmd.stdout_to = Some((target, true)),
                    "<" => cmd.stdin_from = Some(target),
                    "2>" => {
                        cmd.stderr_to = Some(ErrTo::File {
                            path: target,
                            append: false,
                        })
                    }
                    "2>>" => {
                        cmd.stderr_to = Some(ErrTo::File {
                            path: target,
                            append: true,
                        })
                    }
                    _ => {
                        cmd.stdout_to = Some((target, false));
                        cmd.stderr_to = Some(ErrTo::Stdout);
                    }
                }
                cmd.argv.extend(ws);
                cmd.raw_words.extend(raws);
                cmd_has_content = true;
            }
            Tok::Op("2>&1") => {
                cmd.stderr_to = Some(ErrTo::Stdout);
            }
            Tok::Op(">&2") => {
                cmd.stdout_to_stderr = true;
            }
            Tok::Op("|") => {
                if !cmd_has_content {
                    return Err("Syntax error: \"|\" unexpected".into());
                }
                finish_cmd(&mut cmd, &mut cmd_has_content, &mut pipeline);
                need_more = true;
            }
            Tok::Op(op @ ("&&" | "||")) => {
                finish_cmd(&mut cmd, &mut cmd_has_content, &mut pipeline);
                if pipeline.commands.is_empty() {
                    return Err(format!("Syntax error: \"{op}\" unexpected"));
                }
                let conn = if op == "&&" {
                    Connector::And
                } else {
                    Connector::Or
                };
                script.items.push((std::mem::take(&mut pipeline), conn));
                need_more = true;
            }
            Tok::Op("\n") if need_more => {}
            Tok::Op(op) => {
                // ";" or newline
                finish_cmd(&mut cmd, &mut cmd_has_content, &mut pipeline);
                if pipeline.commands.is_empty() {
                    if op == ";" {
                        return Err("Syntax error: \";\" unexpected".into());
                    }
                    continue;
                }
                script
                    .items
                    .push((std::mem::take(&mut pipeline), Connector::Seq));
            }
        }
    }
    finish_cmd(&mut cmd, &mut cmd_has_content, &mut pipeline);
    if need_more && pipeline.commands.is_empty() {
        return Err("Syntax error: end of file unexpected".into());
    }
    if !pipeline.commands.is_empty() {
        script.items.push((pipeline, Connector::Seq));
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argvs(s: &Script) -> Vec<Vec<Vec<String>>> {
        s.items
            .iter()
            .map(|(p, _)| p.commands.iter().map(|c| c.argv.clone()).collect())
            .collect()
    }

    #[test]
    fn and_or_lists_and_quotes() {
        let s = parse("sudo apt-mark unhold kubeadm && sudo apt-get update && sudo apt-get install -y kubeadm='1.34.1-*' && sudo apt-mark hold kubeadm").unwrap();
        assert_eq!(s.items.len(), 4);
        assert!(s.items[..3].iter().all(|(_, c)| *c == Connector::And));
        assert_eq!(
            s.items[2].0.commands[0].argv,
            ["sudo", "apt-get", "install", "-y", "kubeadm=1.34.1-*"]
        );
        let s = parse("false || echo 'a && b'; echo \"c;d\"").unwrap();
        assert_eq!(
            argvs(&s),
            vec![
                vec![vec!["false"]],
                vec![vec!["echo", "a && b"]],
                vec![vec!["echo", "c;d"]]
            ]
        );
        assert_eq!(s.items[0].1, Connector::Or);
        assert_eq!(s.items[1].1, Connector::Seq);
    }

    #[test]
    fn continuations_comments_and_newlines() {
        let s = parse("apt-mark unhold kubeadm && \\\n  apt-get update &&\n  apt-get install -y kubeadm=1.34.1-1.1 # pin\n\nhostname\n").unwrap();
        assert_eq!(
            argvs(&s),
            vec![
                vec![vec!["apt-mark", "unhold", "kubeadm"]],
                vec![vec!["apt-get", "update"]],
                vec![vec!["apt-get", "install", "-y", "kubeadm=1.34.1-1.1"]],
                vec![vec!["hostname"]],
            ]
        );
    }

    #[test]
    fn pipes_and_redirections() {
        let s = parse("echo 'deb [signed-by=/k.gpg] https://x/v1.34/deb/ /' | sudo tee /etc/apt/sources.list.d/kubernetes.list >/dev/null 2>&1").unwrap();
        let p = &s.items[0].0;
        assert_eq!(p.commands.len(), 2);
        assert_eq!(
            p.commands[0].argv,
            ["echo", "deb [signed-by=/k.gpg] https://x/v1.34/deb/ /"]
        );
        assert_eq!(
            p.commands[1].argv,
            ["sudo", "tee", "/etc/apt/sources.list.d/kubernetes.list"]
        );
        assert_eq!(
            p.commands[1].stdout_to,
            Some(("/dev/null".to_string(), false))
        );
        assert_eq!(p.commands[1].stderr_to, Some(ErrTo::Stdout));
        let s = parse("echo a>f b; cat <f 2>/dev/null; echo x >> f").unwrap();
        let c = &s.items[0].0.commands[0];
        assert_eq!(
            (c.argv.clone(), c.stdout_to.clone()),
            (
                vec!["echo".into(), "a".into(), "b".into()],
                Some(("f".into(), false))
            )
        );
        assert_eq!(s.items[1].0.commands[0].stdin_from.as_deref(), Some("f"));
        assert_eq!(
            s.items[2].0.commands[0].stdout_to,
            Some(("f".to_string(), true))
        );
        // A quoted operator is a word.
        let s = parse("echo '>' \"|\" x").unwrap();
        assert_eq!(s.items[0].0.commands[0].argv, ["echo", ">", "|", "x"]);
    }

    #[test]
    fn here_documents() {
        let src = "cat <<EOF | sudo tee /etc/yum.repos.d/kubernetes.repo\n[kubernetes]\nbaseurl=https://x/v1.34/rpm/\nEOF\necho done\n";
        let s = parse(src).unwrap();
        assert_eq!(s.items.len(), 2);
        let c = &s.items[0].0.commands[0];
        assert_eq!(c.argv, ["cat"]);
        assert_eq!(
            c.heredoc.as_deref(),
            Some("[kubernetes]\nbaseurl=https://x/v1.34/rpm/\n")
        );
        assert_eq!(s.items[1].0.commands[0].argv, ["echo", "done"]);
        let s = parse("cat > /f <<-'END'\n\tline\n\tEND\n").unwrap();
        let c = &s.items[0].0.commands[0];
        assert_eq!(c.stdout_to, Some(("/f".into(), false)));
        assert_eq!(c.heredoc.as_deref(), Some("line\n"));
    }

    #[test]
    fn syntax_errors_read_like_dash() {
        assert_eq!(
            parse("&& ls").unwrap_err(),
            "Syntax error: \"&&\" unexpected"
        );
        assert_eq!(
            parse("ls &&").unwrap_err(),
            "Syntax error: end of file unexpected"
        );
        assert_eq!(parse("echo 'x").unwrap_err(), "Unterminated quoted string");
        assert_eq!(
            parse("ls >").unwrap_err(),
            "Syntax error: newline unexpected"
        );
        assert!(parse("").unwrap().items.is_empty());
    }

    #[test]
    fn parameter_expansion() {
        let vars = |n: &str| match n {
            "VER" => Some("1.35.2-1.1".to_string()),
            "TWO" => Some("a b".to_string()),
            "Q" => Some("it's".to_string()),
            "?" => Some("3".to_string()),
            _ => None,
        };
        let s = parse("apt-get install -y kubeadm=$VER kubelet=\"${VER}\" '$VER' $TWO \"$TWO\" $Q $NONE x$? \\$VER").unwrap();
        let c = &s.items[0].0.commands[0];
        assert!(c.raw_words.iter().any(|w| has_expansion(w)));
        assert_eq!(
            expand_words(&c.raw_words, &vars).unwrap(),
            [
                "apt-get",
                "install",
                "-y",
                "kubeadm=1.35.2-1.1",
                "kubelet=1.35.2-1.1",
                "$VER",
                "a",
                "b",
                "a b",
                "it's",
                "x3",
                "$VER"
            ]
        );
        assert!(!has_expansion("'$VER'"));
        assert!(!has_expansion("cost$"));
        assert!(has_expansion("\"it's $X\""));
    }

    #[test]
    fn negation() {
        let s = parse("! grep -q x /f").unwrap();
        assert!(s.items[0].0.negate);
        assert_eq!(s.items[0].0.commands[0].argv, ["grep", "-q", "x", "/f"]);
    }
}
