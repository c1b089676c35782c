//! The rustyline helper of the interactive shell: completion, validation and hints.
//!
//! Completion offers meta-commands after a leading `\`, table names after meta-commands that
//! take one, and SQL keywords, table names and column names elsewhere; the shell refreshes the
//! names ([`Names`]) before each prompt. Validation keeps reading lines until the input ends
//! at a statement boundary (a `;` outside strings and comments, or a meta-command line) and
//! then checks the SQL with DataFusion's parser: a syntax error is shown under the input,
//! which stays in the editor to be fixed. Hints come from the history.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::command::COMMANDS;
use crate::split::{Piece, split};

/// Most completion candidates offered at once.
pub const COMPLETIONS_MAX: usize = 200;

/// Names known to the completer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Table names.
    pub tables: Vec<String>,
    /// Column names of those tables (deduplicated).
    pub columns: Vec<String>,
}

/// The rustyline helper.
pub struct StrataHelper {
    names: Arc<RwLock<Names>>,
    hinter: HistoryHinter,
}

impl StrataHelper {
    /// A helper completing from `names`.
    pub fn new(names: Arc<RwLock<Names>>) -> Self {
        StrataHelper {
            names,
            hinter: HistoryHinter::new(),
        }
    }

    /// Candidates for the word ending at `pos` in `line`: (start of the word, candidates).
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '\\')
            .last()
            .map_or(pos, |(i, _)| i);
        let word = &before[start..];
        if word.is_empty() {
            return (pos, Vec::new());
        }
        let mut out: Vec<String> = Vec::new();
        if word.starts_with('\\') {
            out.extend(
                COMMANDS
                    .iter()
                    .map(|(name, _, _)| name.to_string())
                    .filter(|name| name.starts_with(word)),
            );
            return (start, out);
        }
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let lower = word.to_lowercase();
        let matches = |s: &String| s.to_lowercase().starts_with(&lower);
        let current_line = before[..start]
            .rsplit('\n')
            .next()
            .unwrap_or("")
            .trim_start();
        let table_only = ["\\d ", "\\flush ", "\\compact "]
            .iter()
            .any(|c| current_line.starts_with(c));
        out.extend(names.tables.iter().filter(|s| matches(s)).cloned());
        if !table_only {
            out.extend(names.columns.iter().filter(|s| matches(s)).cloned());
            let upper = word.to_uppercase();
            let lowercase_word = word.chars().any(|c| c.is_lowercase());
            out.extend(
                ALL_KEYWORDS
                    .iter()
                    .filter(|k| k.starts_with(&upper))
                    .map(|k| {
                        if lowercase_word {
                            k.to_lowercase()
                        } else {
                            k.to_string()
                        }
                    }),
            );
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.clone()));
        out.truncate(COMPLETIONS_MAX);
        (start, out)
    }
}

impl Completer for StrataHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.candidates(line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for StrataHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        // Only the rest of the current line: a hint spanning lines would push the screen.
        let hint = self.hinter.hint(line, pos, ctx)?;
        let first = hint.split('\n').next().unwrap_or_default();
        (!first.is_empty()).then(|| first.to_string())
    }
}

impl Highlighter for StrataHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        // Dim, so that a hint is not mistaken for typed text.
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

impl Validator for StrataHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(validate_input(ctx.input()))
    }
}

impl Helper for StrataHelper {}

/// Validation of one input buffer (see the module doc).
pub fn validate_input(input: &str) -> ValidationResult {
    let s = split(input);
    if !s.is_complete() {
        return ValidationResult::Incomplete;
    }
    for piece in &s.pieces {
        if let Piece::Sql { text, .. } = piece
            && let Err(e) = DFParser::parse_sql(text)
        {
            return ValidationResult::Invalid(Some(format!(
                "\n  Error: {}",
                crate::exec::error_line(&e)
            )));
        }
    }
    ValidationResult::Valid(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> StrataHelper {
        StrataHelper::new(Arc::new(RwLock::new(Names {
            tables: vec!["events".into(), "zebra_stats".into()],
            columns: vec!["event_id".into(), "user_id".into()],
        })))
    }

    #[test]
    fn completes_tables_columns_keywords_and_commands() {
        let h = helper();
        let line = "SELECT * FROM zeb";
        assert_eq!(
            h.candidates(line, line.len()),
            (14, vec!["zebra_stats".to_string()])
        );
        let line = "select us";
        let (start, c) = h.candidates(line, line.len());
        assert_eq!(start, 7);
        assert!(
            c.contains(&"user_id".to_string()) && c.contains(&"using".to_string()),
            "{c:?}"
        );
        let line = "SEL";
        assert!(h.candidates(line, 3).1.contains(&"SELECT".to_string()));
        let (start, c) = h.candidates("\\d", 2);
        assert_eq!(start, 0);
        assert!(
            c.contains(&"\\dt".to_string()) && c.contains(&"\\demo".to_string()),
            "{c:?}"
        );
        // Only tables after a command that takes one.
        let line = "\\d e";
        assert_eq!(h.candidates(line, line.len()).1, vec!["events".to_string()]);
        // Nothing for an empty word.
        assert!(h.candidates("SELECT ", 7).1.is_empty());
    }

    #[test]
    fn validation_waits_for_the_end_of_a_statement() {
        assert!(matches!(
            validate_input("SELECT 1"),
            ValidationResult::Incomplete
        ));
        assert!(matches!(
            validate_input("SELECT 'a;"),
            ValidationResult::Incomplete
        ));
        assert!(matches!(
            validate_input("SELECT 1\n;"),
            ValidationResult::Valid(None)
        ));
        assert!(matches!(
            validate_input("\\dt"),
            ValidationResult::Valid(None)
        ));
        assert!(matches!(validate_input(""), ValidationResult::Valid(None)));
        match validate_input("SELEC 1;") {
            ValidationResult::Invalid(Some(m)) => assert!(m.contains("Error: "), "{m}"),
            _ => panic!("a syntax error is invalid"),
        }
    }
}
