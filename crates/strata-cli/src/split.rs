//! Splitting scripts into statements and meta-commands.
//!
//! A script is SQL statements ended by `;` plus meta-commands: a `\` that starts a statement
//! runs to the end of its line. Semicolons inside single-quoted strings, double-quoted
//! identifiers, dollar-quoted strings (`$$ ... $$`, `$tag$ ... $tag$`), `--` line comments and
//! (nested) `/* */` block comments do not end a statement, following the tokenizer that
//! DataFusion's `DFParser` uses. Comments before a statement are dropped; comments inside one
//! are kept for the parser. Invariant: every piece carries the 1-based line of its first
//! character so that errors in files can point at it.

/// One unit of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One SQL statement, without its `;`.
    Sql {
        /// The statement text.
        text: String,
        /// Line of the script it starts on (1-based).
        line: usize,
    },
    /// A meta-command line, starting with `\`, without a trailing `;`.
    Meta {
        /// The command text, including the backslash.
        text: String,
        /// Line of the script it is on (1-based).
        line: usize,
    },
}

impl Piece {
    /// The line the piece starts on.
    pub fn line(&self) -> usize {
        match self {
            Piece::Sql { line, .. } | Piece::Meta { line, .. } => *line,
        }
    }
}

/// The result of splitting a script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// Complete statements and meta-commands, in order.
    pub pieces: Vec<Piece>,
    /// Text after the last `;` that is not only whitespace and comments: a statement without
    /// its terminator (run at the end of a script, awaited in the REPL).
    pub rest: Option<Piece>,
    /// What was still open at the end of the input (a quoted string or a block comment).
    pub open: Option<&'static str>,
}

impl Split {
    /// True when the input ends at a statement boundary: nothing unterminated and nothing open.
    pub fn is_complete(&self) -> bool {
        self.rest.is_none() && self.open.is_none()
    }

    /// Every piece including an unterminated last statement (for whole scripts).
    pub fn into_all(self) -> Vec<Piece> {
        let mut pieces = self.pieces;
        pieces.extend(self.rest);
        pieces
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    Quoted(char),
    Dollar(String),
    LineComment,
    BlockComment(usize),
}

/// Splits `script` into statements and meta-commands.
pub fn split(script: &str) -> Split {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Split::default();
    let mut state = State::Normal;
    let mut current = String::new();
    let mut start_line = 1;
    let mut line = 1;
    // True while the current statement has no significant character yet.
    let mut at_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match &state {
            State::Normal => {
                if c == '-' && next == Some('-') {
                    state = State::LineComment;
                    if !at_start {
                        current.push_str("--");
                    }
                    i += 2;
                    continue;
                }
                if c == '/' && next == Some('*') {
                    state = State::BlockComment(1);
                    if !at_start {
                        current.push_str("/*");
                    }
                    i += 2;
                    continue;
                }
                if at_start && c.is_whitespace() {
                    // Leading whitespace is not part of the statement.
                } else if at_start && c == '\\' {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '\n')
                        .map_or(chars.len(), |p| i + p);
                    let text: String = chars[i..end].iter().collect();
                    let text = text.trim().trim_end_matches(';').trim_end().to_string();
                    out.pieces.push(Piece::Meta { text, line });
                    i = end;
                    continue;
                } else if c == ';' {
                    let text = current.trim().to_string();
                    if !text.is_empty() {
                        out.pieces.push(Piece::Sql {
                            text,
                            line: start_line,
                        });
                    }
                    current.clear();
                    at_start = true;
                } else {
                    if at_start {
                        at_start = false;
                        start_line = line;
                    }
                    current.push(c);
                    if c == '\'' || c == '"' {
                        state = State::Quoted(c);
                    } else if c == '$'
                        && let Some(tag) = dollar_tag(&chars[i..])
                    {
                        current.extend(tag.chars().skip(1));
                        i += tag.chars().count();
                        state = State::Dollar(tag);
                        continue;
                    }
                }
            }
            State::Quoted(q) => {
                let q = *q;
                current.push(c);
                if c == q {
                    if next == Some(q) {
                        current.push(q);
                        i += 1;
                    } else {
                        state = State::Normal;
                    }
                }
            }
            State::Dollar(tag) => {
                let tag_len = tag.chars().count();
                if c == '$' && chars[i..].iter().take(tag_len).copied().eq(tag.chars()) {
                    current.push_str(tag);
                    i += tag_len;
                    state = State::Normal;
                    continue;
                }
                current.push(c);
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Normal;
                    if !at_start {
                        current.push(c);
                    }
                } else if !at_start {
                    current.push(c);
                }
            }
            State::BlockComment(depth) => {
                let depth = *depth;
                if c == '*' && next == Some('/') {
                    if !at_start {
                        current.push_str("*/");
                    }
                    state = if depth == 1 {
                        State::Normal
                    } else {
                        State::BlockComment(depth - 1)
                    };
                    i += 2;
                    continue;
                }
                if c == '/' && next == Some('*') {
                    if !at_start {
                        current.push_str("/*");
                    }
                    state = State::BlockComment(depth + 1);
                    i += 2;
                    continue;
                }
                if !at_start {
                    current.push(c);
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
        i += 1;
    }
    // Newlines skipped by the `continue` branches above are only inside meta-commands
    // (which stop before the newline) and multi-character tokens without newlines.
    out.open = match state {
        State::Quoted('\'') | State::Dollar(_) => Some("string"),
        State::Quoted(_) => Some("quoted identifier"),
        State::BlockComment(_) => Some("block comment"),
        State::Normal | State::LineComment => None,
    };
    let text = current.trim();
    if !text.is_empty() {
        out.rest = Some(Piece::Sql {
            text: text.to_string(),
            line: start_line,
        });
    }
    out
}

/// The dollar-quote tag starting at `chars[0] == '$'` (`$$` or `$name$`), if any.
fn dollar_tag(chars: &[char]) -> Option<String> {
    let end = chars[1..].iter().position(|&c| c == '$')? + 1;
    let name = &chars[1..end];
    let valid = name
        .iter()
        .enumerate()
        .all(|(i, c)| c.is_alphabetic() || *c == '_' || (i > 0 && c.is_ascii_digit()));
    valid.then(|| chars[..=end].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(text: &str, line: usize) -> Piece {
        Piece::Sql {
            text: text.into(),
            line,
        }
    }

    fn meta(text: &str, line: usize) -> Piece {
        Piece::Meta {
            text: text.into(),
            line,
        }
    }

    #[test]
    fn splits_at_semicolons_and_numbers_lines() {
        let s = split("SELECT 1;\n\nSELECT\n  2 ;  SELECT 3");
        assert_eq!(s.pieces, vec![sql("SELECT 1", 1), sql("SELECT\n  2", 3)]);
        assert_eq!(s.rest, Some(sql("SELECT 3", 4)));
        assert!(!s.is_complete());
        assert_eq!(s.into_all().len(), 3);
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_split() {
        let s =
            split("SELECT 'a;b', \"c;d\" -- e;f\nFROM t /* g; /* h; */ i; */ WHERE x = 'it''s;';");
        assert_eq!(s.pieces.len(), 1, "{s:?}");
        let Piece::Sql { text, .. } = &s.pieces[0] else {
            panic!()
        };
        assert!(text.starts_with("SELECT 'a;b', \"c;d\" -- e;f\nFROM t /* g;"));
        assert!(text.ends_with("WHERE x = 'it''s;'"));
        assert!(s.is_complete());
    }

    #[test]
    fn dollar_quotes_hide_semicolons() {
        let s = split("SELECT $$a;b$$; SELECT $x$ ; $$ ; $x$;");
        assert_eq!(
            s.pieces,
            vec![sql("SELECT $$a;b$$", 1), sql("SELECT $x$ ; $$ ; $x$", 1)]
        );
        // `$1` style placeholders are not quotes.
        assert_eq!(split("SELECT $1; SELECT 2;").pieces.len(), 2);
    }

    #[test]
    fn open_strings_and_comments_are_incomplete() {
        assert_eq!(split("SELECT 'abc;").open, Some("string"));
        assert_eq!(split("SELECT \"abc;").open, Some("quoted identifier"));
        assert_eq!(split("SELECT 1 /* ;").open, Some("block comment"));
        assert!(!split("SELECT 1 /* ; */").is_complete());
        assert!(split("SELECT 1 /* ; */;").is_complete());
    }

    #[test]
    fn comment_only_and_empty_input_are_complete() {
        for input in ["", "   \n", "-- nothing here", "/* a */ -- b\n;;"] {
            let s = split(input);
            assert!(s.is_complete(), "{input:?}: {s:?}");
            assert!(s.pieces.is_empty(), "{input:?}: {s:?}");
        }
    }

    #[test]
    fn leading_comments_are_dropped_inner_ones_kept() {
        let s = split("-- heading\n/* block */ SELECT 1 -- tail\n;");
        assert_eq!(s.pieces, vec![sql("SELECT 1 -- tail", 2)]);
    }

    #[test]
    fn meta_commands_take_their_line() {
        let s = split("\\dt\nSELECT 1;\n  \\d t;\n\\timing off\nSELECT\n\\x;");
        assert_eq!(
            s.pieces,
            vec![
                meta("\\dt", 1),
                sql("SELECT 1", 2),
                meta("\\d t", 3),
                meta("\\timing off", 4),
                sql("SELECT\n\\x", 5),
            ]
        );
        // A meta-command line is complete without a semicolon.
        assert!(split("\\q").is_complete());
        // After a statement on the same line.
        assert_eq!(
            split("SELECT 1; \\dt").pieces,
            vec![sql("SELECT 1", 1), meta("\\dt", 1)]
        );
    }
}
