//! Label selectors parsed as the API server parses them, so a selector the
//! server would reject is rejected here, before anything changes.
//!
//! Written from kubernetes/apimachinery `pkg/labels/selector.go` (`Parse`,
//! `Lexer.Lex`, `Parser.parse`, `parseRequirement`, `parseValues`,
//! `parseExactValue`, `NewRequirement`) and `pkg/util/validation/validation.go`
//! (`IsQualifiedName`, `IsValidLabelValue`); the error texts follow theirs.

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// Sorted and without duplicates (a set upstream).
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Ident(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Token {
    fn literal(&self) -> String {
        match self {
            Token::End => String::new(),
            Token::Ident(s) => s.clone(),
            Token::ClosedPar => ")".into(),
            Token::Comma => ",".into(),
            Token::Not => "!".into(),
            Token::DoubleEquals => "==".into(),
            Token::Equals => "=".into(),
            Token::GreaterThan => ">".into(),
            Token::In => "in".into(),
            Token::LessThan => "<".into(),
            Token::NotEquals => "!=".into(),
            Token::NotIn => "notin".into(),
            Token::OpenPar => "(".into(),
        }
    }
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::Not,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The lexer: whitespace separates; a run of special symbols is the longest
/// operator it starts with; anything else up to a symbol or space is a word.
fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            out.push(Token::End);
            return out;
        }
        if special(b[i]) {
            let start = i;
            let mut best: Option<(Token, usize)> = None;
            while i < b.len() && special(b[i]) {
                i += 1;
                match keyword(&s[start..i]) {
                    Some(t) => best = Some((t, i)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            // Every single symbol is an operator, so a run always starts with one.
            let (t, end) = best.expect("a symbol is an operator");
            i = end;
            out.push(t);
        } else {
            let start = i;
            while i < b.len() && !special(b[i]) && !space(b[i]) {
                i += 1;
            }
            let word = &s[start..i];
            out.push(keyword(word).unwrap_or_else(|| Token::Ident(word.to_string())));
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    /// In value position `in` and `notin` are plain words (`x in (in)`).
    fn as_value(t: Token) -> Token {
        match t {
            Token::In => Token::Ident("in".into()),
            Token::NotIn => Token::Ident("notin".into()),
            t => t,
        }
    }

    fn peek(&self, values: bool) -> Token {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        if values { Self::as_value(t) } else { t }
    }

    fn next(&mut self, values: bool) -> Token {
        let t = self.peek(values);
        self.pos += 1;
        t
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, String> {
        let mut out = Vec::new();
        loop {
            match self.peek(true) {
                Token::Ident(_) | Token::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    out.push(r);
                    match self.next(true) {
                        Token::End => return Ok(out),
                        Token::Comma => {
                            let t = self.peek(true);
                            if !matches!(t, Token::Ident(_) | Token::Not) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ));
                        }
                    }
                }
                Token::End => return Ok(out),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut not = false;
        let mut t = self.next(true);
        if t == Token::Not {
            not = true;
            t = self.next(true);
        }
        let Token::Ident(key) = t else {
            return Err(format!("found '{}', expected: identifier", t.literal()));
        };
        qualified_name(&key)?;
        // `!key` takes no operator: whatever follows it is the selector's
        // next token (so `!a=b` fails at the `=`).
        if not || matches!(self.peek(true), Token::End | Token::Comma) {
            let op = if not { Op::DoesNotExist } else { Op::Exists };
            return Ok(Requirement {
                key,
                op,
                values: Vec::new(),
            });
        }
        let op = match self.next(false) {
            Token::In => Op::In,
            Token::Equals | Token::DoubleEquals => Op::Equals,
            Token::GreaterThan => Op::GreaterThan,
            Token::LessThan => Op::LessThan,
            Token::NotIn => Op::NotIn,
            Token::NotEquals => Op::NotEquals,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ));
            }
        };
        let mut values = match op {
            Op::In | Op::NotIn => self.set()?,
            _ => vec![self.exact()?],
        };
        values.sort();
        values.dedup();
        for v in &values {
            label_value(v).map_err(|e| format!("values[{v:?}]: Invalid value: {v:?}: {e}"))?;
        }
        if matches!(op, Op::GreaterThan | Op::LessThan) && values[0].parse::<i64>().is_err() {
            return Err(format!(
                "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                values[0]
            ));
        }
        Ok(Requirement { key, op, values })
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        let t = self.next(true);
        if t != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        match self.peek(true) {
            Token::Ident(_) | Token::Comma => {
                let s = self.list()?;
                let t = self.next(true);
                if t != Token::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", t.literal()));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.next(true);
                Ok(vec![String::new()])
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    /// `a,b`, with empty values where commas meet (`(,a)`, `(a,,b)`, `(a,)`).
    fn list(&mut self) -> Result<Vec<String>, String> {
        let mut s = Vec::new();
        loop {
            match self.next(true) {
                Token::Ident(v) => {
                    s.push(v);
                    match self.peek(true) {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(s),
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.literal())),
                    }
                }
                Token::Comma => {
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    match self.peek(true) {
                        Token::ClosedPar => {
                            s.push(String::new());
                            return Ok(s);
                        }
                        Token::Comma => {
                            self.next(true);
                            s.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn exact(&mut self) -> Result<String, String> {
        if matches!(self.peek(true), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        match self.next(true) {
            Token::Ident(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

/// Parses a selector (`-l`, `--pod-selector`), requirements in the order
/// written; the empty selector selects everything.
pub fn parse(text: &str) -> Result<Vec<Requirement>, String> {
    // Upstream then sorts by key for a deterministic String(); the order
    // does not change what matches, so the order written is kept.
    Parser {
        tokens: lex(text),
        pos: 0,
    }
    .selector()
}

const NAME_MAX: usize = 63;

fn name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= NAME_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// `IsQualifiedName`: `[prefix/]name`, the prefix a DNS subdomain.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(format!(
            "key: Invalid value: {key:?}: a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
    }
    if let Some(p) = prefix
        && !dns1123_subdomain(p)
    {
        return Err(format!(
            "key: Invalid value: {key:?}: prefix part must be a lowercase DNS subdomain (e.g. 'example.com')"
        ));
    }
    if !name_part(name) {
        return Err(format!(
            "key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', start and end with an alphanumeric character, at most 63 characters"
        ));
    }
    Ok(())
}

/// `IsValidLabelValue`: empty, or a name part.
fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || name_part(v) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_api_server_accepts() {
        for ok in [
            "",
            "app=web",
            "app==web,tier!=db",
            "zone in (a, b),gpu,!spot",
            "x in (foo,,baz),y,z notin ()",
            "node-role.kubernetes.io/control-plane",
            "!node-role.kubernetes.io/control-plane",
            "kubernetes.io/hostname in (node02)",
            "a=",
            "n>3,m<10",
            "v in (in)",
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}: {:?}", parse(ok));
        }
    }

    #[test]
    fn what_the_api_server_rejects() {
        for (bad, says) in [
            (
                "==bad",
                "found '==', expected: !, identifier, or 'end of string'",
            ),
            ("a in (b", "expected: ',' or ')'"),
            ("a in b", "expected: '('"),
            ("a=b=c", "expected: ',' or 'end of string'"),
            ("a,", "identifier after ','"),
            ("a b", "expected: in, notin"),
            ("-a=b", "name part"),
            ("a=-b", "a valid label"),
            ("n>x", "must be an integer"),
            ("Example.com/a=b", "prefix part"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn requirements_keep_their_order_and_values_are_sets() {
        let r = parse("b in (y,x,x),a").unwrap();
        assert_eq!(r[1].key, "a");
        assert_eq!(r[1].op, Op::Exists);
        assert_eq!(r[0].values, ["x", "y"]);
    }
}
