//! Go `text/template` for LogQL's `line_format` and `label_format`: a template is parsed once per
//! query ([`Template::parse`]) and rendered once per log entry ([`Template::render`]) over the
//! entry's labels, its line (`__line__`) and its timestamp (`__timestamp__`).
//!
//! The language is Go's: text and `{{ }}` actions with `{{-`/`-}}` trimming and `{{/* */}}`
//! comments, pipelines (`.a | lower | trunc 5`, the piped value being the last argument),
//! variables (`$x := ...`, `$x = ...`, `$`), `if`/`else if`/`else`, `with`, `range` (with
//! `break` and `continue`), `define`/`template`/`block`, and Go's built-in functions (`and`,
//! `or`, `not`, `eq`..`ge`, `len`, `index`, `slice`, `print`, `printf`, `println`, `html`, `js`,
//! `urlquery`). The functions are the ones Loki documents for its templates (sprig's string,
//! math and date functions, `__line__`, `__timestamp__`, `unixToTime`, `alignLeft`, ...), plus
//! `split` (a separator and a string to a list, for `range`).
//!
//! Behaviour follows Loki where it is visible to users: a missing label is the empty string,
//! numbers held in strings convert the way sprig converts them (an unparsable string is 0),
//! `date` and `toDate` use the server's local zone, which Tripod takes to be UTC, and layouts
//! are Go's reference-time layouts. Errors at render time belong to one entry (the pipeline sets
//! `__error__="TemplateFormatErr"` and keeps the line); errors at parse time reject the query.
//!
//! Layout: [`lexer`] (items with positions), [`parse`] (the tree), [`exec`] (the evaluator and
//! Go's built-ins), [`functions`] (the function table and Loki's functions), [`value`] (values,
//! truth, conversions), [`printf`] (Go's `fmt` verbs), [`time`] (Go times, layouts, durations),
//! [`decimal`] (the exact decimal arithmetic of `addf` and friends).

mod decimal;
mod exec;
mod functions;
mod lexer;
mod parse;
mod printf;
mod time;
mod value;

use std::fmt;

/// The most bytes a render may produce, and the most any one string value may hold: a template
/// like `{{ repeat 1000000000 "x" }}` fails instead of exhausting memory.
pub const MAX_RENDERED_BYTES: usize = 4 << 20;

/// The most commands and loop iterations one render may evaluate, so that `{{ range 1000000000 }}`
/// ends with an error rather than holding a query thread.
pub const MAX_RENDER_STEPS: u64 = 1_000_000;

/// How deeply actions, parentheses and `{{template}}` calls may nest.
pub const MAX_NESTING_DEPTH: usize = 100;

/// The most bytes of strings (and list elements, counted at 32 bytes each) the functions of one
/// render may produce in all, which bounds what variables can hold.
pub const MAX_PRODUCED_BYTES: usize = 16 * MAX_RENDERED_BYTES;

/// The most elements `split` may produce.
pub const MAX_LIST_ITEMS: usize = 1 << 18;

/// The longest document `fromJson` reads.
pub const MAX_JSON_BYTES: usize = 1 << 20;

/// A parsed template, ready to render many entries. It holds no per-render state, so one
/// template serves every thread of a query.
#[derive(Debug)]
pub struct Template {
    /// The top-level nodes.
    root: Vec<parse::Node>,
    /// Templates named by `{{define}}` and `{{block}}`, for `{{template}}`.
    named: Vec<(String, Vec<parse::Node>)>,
}

/// What one entry gives a template.
pub struct TemplateData<'a> {
    /// The entry's labels, sorted by name (each name once); `.name` looks a label up here.
    pub labels: &'a [(&'a str, &'a str)],
    /// The log line, for `__line__`.
    pub line: &'a str,
    /// The entry's timestamp in nanoseconds since the Unix epoch, for `__timestamp__`.
    pub timestamp_ns: i64,
}

/// Where in the template text something is: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A template that does not parse, or a render that fails; the message is lowercase and names
/// the problem, the position is where in the template it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub position: Position,
    pub message: String,
}

impl TemplateError {
    fn new(position: Position, message: impl Into<String>) -> TemplateError {
        TemplateError { position, message: message.into() }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: line {}, col {}: {}", self.position.line, self.position.column, self.message)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses a template; the error names the problem and where it is.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let items = lexer::lex(text)?;
        let parsed = parse::parse(items)?;
        Ok(Template { root: parsed.root, named: parsed.named })
    }

    /// Renders the template for one entry, appending to `out`. On error `out` may hold part of
    /// the output; the caller decides what to keep.
    pub fn render(&self, data: &TemplateData<'_>, out: &mut String) -> Result<(), TemplateError> {
        exec::render(self, data.labels, data.line, data.timestamp_ns, out)
    }

    /// Whether the template is plain text with no actions (the pipeline can skip rendering).
    pub fn is_plain_text(&self) -> bool {
        self.named.is_empty() && self.root.iter().all(|node| matches!(node, parse::Node::Text(_)))
    }
}

#[cfg(test)]
mod tests;
