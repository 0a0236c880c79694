//! The template tree: the parser turns items into nodes the way Go's `text/template/parse` does
//! (the same grammar, the same checks at parse time: unknown functions, undefined variables,
//! misplaced `{{else}}`/`{{end}}`/`{{break}}`), resolving each function name to its
//! [`Function`] and each variable to its slot on the evaluator's variable stack.

use std::fmt;

use regex::Regex;

use super::functions::{self, Function};
use super::lexer::{Item, ItemKind, Keyword};
use super::value::{parse_go_float, parse_go_int, parse_go_uint};
use super::{MAX_NESTING_DEPTH, Position, TemplateError};

/// One node of a template.
#[derive(Debug)]
pub(super) enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless it declares or assigns variables.
    Action(Pipe),
    /// `{{if}}`; `{{else if}}` is an `If` alone in the else list.
    If(Box<Branch>),
    /// `{{with}}`; `{{else with}}` is a `With` alone in the else list.
    With(Box<Branch>),
    Range(Box<Branch>),
    Break,
    Continue,
    /// `{{template "name" pipeline}}`.
    Template {
        name: String,
        pipe: Option<Pipe>,
        position: Position,
    },
}

/// The parts of `if`, `with` and `range`.
#[derive(Debug)]
pub(super) struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Vec<Node>,
}

/// A pipeline, with the variables it declares or assigns.
#[derive(Debug)]
pub(super) struct Pipe {
    pub position: Position,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    /// The variables' slots on the variable stack.
    pub declarations: Vec<usize>,
    pub commands: Vec<Command>,
}

/// One stage of a pipeline: a function and its arguments, or a single value.
#[derive(Debug)]
pub(super) struct Command {
    pub position: Position,
    pub args: Vec<Arg>,
    /// The regular expression of `count`, `regexReplaceAll` and `regexReplaceAllLiteral` when
    /// it is written as a literal, compiled once here instead of once per entry.
    pub regex: Option<Regex>,
}

/// An operand.
#[derive(Debug)]
pub(super) enum Arg {
    Function(Function),
    Dot,
    Nil,
    Bool(bool),
    Number(Box<Number>),
    Str(String),
    /// `.a.b`: fields of dot.
    Field(Vec<String>),
    /// `$x` or `$x.a.b`.
    Variable {
        name: String,
        slot: usize,
        fields: Vec<String>,
    },
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
    /// `(pipeline).a` or `function.a`.
    Chain {
        base: Box<Arg>,
        fields: Vec<String>,
    },
}

/// A number constant with the readings Go allows it.
#[derive(Debug)]
pub(super) struct Number {
    pub text: String,
    /// Its value as an integer, when it is one.
    pub int: Option<i64>,
    /// Its value as a float, when it has one.
    pub float: Option<f64>,
    /// An integer too big for `int` but fitting `uint64`: an error when used.
    pub unsigned_only: bool,
    /// Written as a float (`.`, exponent): Go gives it the type float64.
    pub float_syntax: bool,
    /// An imaginary constant: Go's complex numbers, which no function here takes.
    pub complex: bool,
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Function(function) => f.write_str(function.name()),
            Arg::Dot => f.write_str("."),
            Arg::Nil => f.write_str("nil"),
            Arg::Bool(value) => write!(f, "{value}"),
            Arg::Number(number) => f.write_str(&number.text),
            Arg::Str(text) => write!(f, "{text:?}"),
            Arg::Field(fields) => {
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
            Arg::Variable { name, fields, .. } => {
                f.write_str(name)?;
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
            Arg::Pipe(_) => f.write_str("(pipeline)"),
            Arg::Chain { base, fields } => {
                write!(f, "{base}")?;
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
        }
    }
}

impl Arg {
    /// The operand quoted, for error messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Arg::Str(text) => format!("{text:?}"),
            other => format!("{:?}", other.to_string()),
        }
    }
}

/// A parsed template: its nodes and its named templates.
pub(super) struct Parsed {
    pub root: Vec<Node>,
    pub named: Vec<(String, Vec<Node>)>,
}

pub(super) fn parse(items: Vec<Item>) -> Result<Parsed, TemplateError> {
    let mut parser =
        Parser { items, at: 0, variables: vec!["$".to_string()], range_depth: 0, depth: 0, named: Vec::new() };
    let (root, end) = parser.list(true)?;
    match end {
        ListEnd::Eof => {}
        ListEnd::End(position) => return Err(TemplateError::new(position, "unexpected {{end}}")),
        ListEnd::Else(position) => return Err(TemplateError::new(position, "unexpected {{else}}")),
    }
    Ok(Parsed { root, named: parser.named })
}

/// What stopped a list of nodes.
enum ListEnd {
    Eof,
    End(Position),
    Else(Position),
}

struct Parser {
    items: Vec<Item>,
    at: usize,
    /// Variable names in scope; a variable's slot is its index here, which is also its index on
    /// the evaluator's stack when the same point runs.
    variables: Vec<String>,
    /// How many `range` bodies enclose the current point (for `break` and `continue`).
    range_depth: usize,
    /// How deeply actions and parentheses nest here.
    depth: usize,
    named: Vec<(String, Vec<Node>)>,
}

impl Parser {
    fn peek(&self) -> &Item {
        // The lexer always ends the items with Eof, and `next` never moves past it.
        &self.items[self.at.min(self.items.len() - 1)]
    }

    fn next(&mut self) -> Item {
        let item = self.peek().clone();
        if self.at < self.items.len() - 1 {
            self.at += 1;
        }
        item
    }

    fn unexpected(item: &Item, context: &str) -> TemplateError {
        TemplateError::new(item.position, format!("unexpected {} in {context}", item.kind.describe()))
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<(), TemplateError> {
        let item = self.next();
        if item.kind == ItemKind::RightDelim { Ok(()) } else { Err(Parser::unexpected(&item, context)) }
    }

    fn enter(&mut self, position: Position) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(TemplateError::new(
                position,
                format!("template nests more than {MAX_NESTING_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    /// Nodes up to `{{end}}`, `{{else}}` or the end of the template.
    fn list(&mut self, top_level: bool) -> Result<(Vec<Node>, ListEnd), TemplateError> {
        let mut nodes = Vec::new();
        loop {
            let item = self.next();
            match item.kind {
                ItemKind::Eof => return Ok((nodes, ListEnd::Eof)),
                ItemKind::Text(text) => nodes.push(Node::Text(text)),
                ItemKind::LeftDelim => {
                    let keyword = match self.peek().kind {
                        ItemKind::Keyword(keyword) => Some(keyword),
                        _ => None,
                    };
                    match keyword {
                        Some(Keyword::End) => {
                            let end = self.next();
                            self.expect_right_delim("end")?;
                            return Ok((nodes, ListEnd::End(end.position)));
                        }
                        Some(Keyword::Else) => {
                            let position = self.next().position;
                            return Ok((nodes, ListEnd::Else(position)));
                        }
                        Some(Keyword::Define) => {
                            if !top_level || self.depth > 0 {
                                return Err(TemplateError::new(
                                    self.peek().position,
                                    "{{define}} is allowed only at the top level",
                                ));
                            }
                            self.next();
                            self.define()?;
                        }
                        _ => nodes.push(self.action()?),
                    }
                }
                _ => return Err(Parser::unexpected(&item, "input")),
            }
        }
    }

    /// An action after its `{{`, other than `end`, `else` and `define`.
    fn action(&mut self) -> Result<Node, TemplateError> {
        let item = self.peek().clone();
        match item.kind {
            ItemKind::Keyword(Keyword::If) => {
                self.next();
                self.control(Keyword::If, item.position)
            }
            ItemKind::Keyword(Keyword::With) => {
                self.next();
                self.control(Keyword::With, item.position)
            }
            ItemKind::Keyword(Keyword::Range) => {
                self.next();
                self.control(Keyword::Range, item.position)
            }
            ItemKind::Keyword(keyword @ (Keyword::Break | Keyword::Continue)) => {
                self.next();
                if self.range_depth == 0 {
                    let name = keyword.name();
                    return Err(TemplateError::new(item.position, format!("{{{{{name}}}}} outside {{{{range}}}}")));
                }
                self.expect_right_delim(keyword.name())?;
                Ok(if keyword == Keyword::Break { Node::Break } else { Node::Continue })
            }
            ItemKind::Keyword(Keyword::Template) => {
                self.next();
                self.template_call("template clause", item.position)
            }
            ItemKind::Keyword(Keyword::Block) => {
                self.next();
                self.block(item.position)
            }
            _ => Ok(Node::Action(self.pipeline("command", false)?)),
        }
    }

    /// `if`, `with` and `range`, after the keyword, up to and including `{{end}}`.
    fn control(&mut self, keyword: Keyword, position: Position) -> Result<Node, TemplateError> {
        self.enter(position)?;
        let scope = self.variables.len();
        let pipe = self.pipeline(keyword.name(), keyword == Keyword::Range)?;
        let after_pipeline = self.variables.len();
        if keyword == Keyword::Range {
            self.range_depth += 1;
        }
        let (list, end) = self.list(false)?;
        if keyword == Keyword::Range {
            self.range_depth -= 1;
        }
        self.variables.truncate(after_pipeline);
        let else_list = match end {
            ListEnd::Eof => {
                return Err(TemplateError::new(position, format!("unexpected EOF in {{{{{}}}}}", keyword.name())));
            }
            ListEnd::End(_) => Vec::new(),
            ListEnd::Else(else_position) => {
                let chained = match self.peek().kind {
                    ItemKind::Keyword(next @ (Keyword::If | Keyword::With)) => Some(next),
                    _ => None,
                };
                match chained {
                    // `{{else if ...}}` is `{{else}}{{if ...}}...{{end}}`, sharing the `{{end}}`.
                    Some(next) if next == keyword => {
                        let chained_position = self.next().position;
                        vec![self.control(next, chained_position)?]
                    }
                    Some(next) => {
                        return Err(TemplateError::new(
                            else_position,
                            format!("{{{{else {}}}}} inside {{{{{}}}}}", next.name(), keyword.name()),
                        ));
                    }
                    None => {
                        self.expect_right_delim("else")?;
                        let (else_list, end) = self.list(false)?;
                        match end {
                            ListEnd::End(_) => {}
                            ListEnd::Else(position) => {
                                return Err(TemplateError::new(position, "expected end; found {{else}}"));
                            }
                            ListEnd::Eof => {
                                return Err(TemplateError::new(
                                    position,
                                    format!("unexpected EOF in {{{{{}}}}}", keyword.name()),
                                ));
                            }
                        }
                        self.variables.truncate(after_pipeline);
                        else_list
                    }
                }
            }
        };
        self.variables.truncate(scope);
        self.depth -= 1;
        let branch = Box::new(Branch { pipe, list, else_list });
        Ok(match keyword {
            Keyword::If => Node::If(branch),
            Keyword::With => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    /// `{{template "name"}}` or `{{template "name" pipeline}}`, after the keyword.
    fn template_call(&mut self, context: &str, position: Position) -> Result<Node, TemplateError> {
        let item = self.next();
        let ItemKind::Str(name) = item.kind else {
            return Err(Parser::unexpected(&item, context));
        };
        let pipe = if self.peek().kind == ItemKind::RightDelim {
            self.next();
            None
        } else {
            Some(self.pipeline(context, false)?)
        };
        Ok(Node::Template { name, pipe, position })
    }

    /// `{{define "name"}}...{{end}}`, after the keyword.
    fn define(&mut self) -> Result<(), TemplateError> {
        let item = self.next();
        let ItemKind::Str(name) = item.kind else {
            return Err(Parser::unexpected(&item, "define clause"));
        };
        self.expect_right_delim("define clause")?;
        let body = self.named_body(item.position)?;
        self.add_named(name, body, item.position)
    }

    /// `{{block "name" pipeline}}...{{end}}`: defines the template and calls it here.
    fn block(&mut self, position: Position) -> Result<Node, TemplateError> {
        let Node::Template { name, pipe, position } = self.template_call("block clause", position)? else {
            return Err(TemplateError::new(position, "malformed block clause"));
        };
        let body = self.named_body(position)?;
        self.add_named(name.clone(), body, position)?;
        Ok(Node::Template { name, pipe, position })
    }

    /// The body of a named template, with its own variables (only `$`).
    fn named_body(&mut self, position: Position) -> Result<Vec<Node>, TemplateError> {
        let outer_variables = std::mem::replace(&mut self.variables, vec!["$".to_string()]);
        let outer_range_depth = std::mem::replace(&mut self.range_depth, 0);
        self.enter(position)?;
        let (body, end) = self.list(false)?;
        self.depth -= 1;
        self.variables = outer_variables;
        self.range_depth = outer_range_depth;
        match end {
            ListEnd::End(_) => Ok(body),
            ListEnd::Else(position) => Err(TemplateError::new(position, "unexpected {{else}}")),
            ListEnd::Eof => Err(TemplateError::new(position, "unexpected EOF in {{define}}")),
        }
    }

    fn add_named(&mut self, name: String, body: Vec<Node>, position: Position) -> Result<(), TemplateError> {
        let is_empty =
            |nodes: &[Node]| nodes.iter().all(|node| matches!(node, Node::Text(text) if text.trim().is_empty()));
        match self.named.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, existing_body)) => {
                if is_empty(&body) {
                    return Ok(());
                }
                if !is_empty(existing_body) {
                    return Err(TemplateError::new(position, format!("template {name:?} defined twice")));
                }
                *existing_body = body;
            }
            None => self.named.push((name, body)),
        }
        Ok(())
    }

    /// A pipeline up to `}}` (or `)` when `context` is a parenthesized pipeline), with the
    /// variables it declares. Declared variables come into scope after the pipeline, as they
    /// do when it runs.
    fn pipeline(&mut self, context: &str, is_range: bool) -> Result<Pipe, TemplateError> {
        let position = self.peek().position;
        let parenthesized = context == "parenthesized pipeline";
        let mut declared: Vec<(String, Position)> = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, and in a range `$i, $e :=`.
        while let ItemKind::Variable(name) = self.peek().kind.clone() {
            let variable_position = self.peek().position;
            let following = self.items.get(self.at + 1).map(|item| item.kind.clone());
            match following {
                Some(ItemKind::Declare | ItemKind::Assign) => {
                    self.next();
                    is_assign = self.next().kind == ItemKind::Assign;
                    declared.push((name, variable_position));
                    break;
                }
                Some(ItemKind::Comma) if is_range && declared.is_empty() => {
                    self.next();
                    self.next();
                    declared.push((name, variable_position));
                    if !matches!(self.peek().kind, ItemKind::Variable(_)) {
                        return Err(TemplateError::new(self.peek().position, "range can only initialize variables"));
                    }
                }
                Some(ItemKind::Comma) => {
                    return Err(TemplateError::new(variable_position, format!("too many declarations in {context}")));
                }
                _ => {
                    if !declared.is_empty() {
                        return Err(TemplateError::new(variable_position, "expected := or = after range variables"));
                    }
                    break;
                }
            }
        }
        if parenthesized && !declared.is_empty() {
            return Err(TemplateError::new(position, "variables cannot be declared in a parenthesized pipeline"));
        }
        let end = if parenthesized { ItemKind::RightParen } else { ItemKind::RightDelim };
        let mut commands = Vec::new();
        loop {
            let item = self.peek().clone();
            if item.kind == end {
                self.next();
                break;
            }
            match item.kind {
                ItemKind::Bool(_)
                | ItemKind::Char(_)
                | ItemKind::Dot
                | ItemKind::Field(_)
                | ItemKind::Identifier(_)
                | ItemKind::Number(_)
                | ItemKind::Nil
                | ItemKind::Str(_)
                | ItemKind::Variable(_)
                | ItemKind::LeftParen => {
                    let (command, piped) = self.command()?;
                    commands.push(command);
                    if piped && self.peek().kind == end {
                        return Err(TemplateError::new(self.peek().position, "missing command after |"));
                    }
                }
                _ => return Err(Parser::unexpected(&item, context)),
            }
        }
        if commands.is_empty() {
            return Err(TemplateError::new(position, format!("missing value for {context}")));
        }
        for (stage, command) in commands.iter().enumerate().skip(1) {
            if matches!(command.args[0], Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_)) {
                return Err(TemplateError::new(
                    command.position,
                    format!("non executable command in pipeline stage {}", stage + 1),
                ));
            }
        }
        let mut declarations = Vec::with_capacity(declared.len());
        for (name, variable_position) in declared {
            if is_assign {
                declarations.push(self.variable_slot(&name, variable_position)?);
            } else {
                declarations.push(self.variables.len());
                self.variables.push(name);
            }
        }
        Ok(Pipe { position, is_assign, declarations, commands })
    }

    fn variable_slot(&self, name: &str, position: Position) -> Result<usize, TemplateError> {
        self.variables
            .iter()
            .rposition(|known| known == name)
            .ok_or_else(|| TemplateError::new(position, format!("undefined variable {name:?}")))
    }

    /// One command: operands separated by space, ended by `|` (consumed; the flag says so),
    /// `}}` or `)` (left for the pipeline).
    fn command(&mut self) -> Result<(Command, bool), TemplateError> {
        let position = self.peek().position;
        let mut args = Vec::new();
        let piped = loop {
            let operand = self.operand()?;
            args.push(operand);
            let item = self.peek().clone();
            match item.kind {
                ItemKind::RightDelim | ItemKind::RightParen => break false,
                ItemKind::Pipe => {
                    self.next();
                    break true;
                }
                _ if item.space_before => continue,
                _ => return Err(Parser::unexpected(&item, "operand")),
            }
        };
        let regex = match (args.first(), args.get(1)) {
            (Some(Arg::Function(function)), Some(Arg::Str(pattern))) if function.takes_regex() => {
                Some(functions::compile_regex(pattern).map_err(|message| TemplateError::new(position, message))?)
            }
            _ => None,
        };
        Ok((Command { position, args, regex }, piped))
    }

    /// A term and the fields chained to it.
    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let item = self.peek().clone();
        let term = self.term()?;
        let mut fields = Vec::new();
        while let ItemKind::Field(name) = &self.peek().kind {
            if self.peek().space_before {
                break;
            }
            fields.push(name.clone());
            self.next();
        }
        if fields.is_empty() {
            return Ok(term);
        }
        match term {
            Arg::Field(mut first) => {
                first.extend(fields);
                Ok(Arg::Field(first))
            }
            Arg::Variable { name, slot, fields: mut first } => {
                first.extend(fields);
                Ok(Arg::Variable { name, slot, fields: first })
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                Err(TemplateError::new(item.position, format!("unexpected . after term {}", item.kind.describe())))
            }
            base => Ok(Arg::Chain { base: Box::new(base), fields }),
        }
    }

    fn term(&mut self) -> Result<Arg, TemplateError> {
        let item = self.next();
        Ok(match item.kind {
            ItemKind::Identifier(name) => match functions::lookup(&name) {
                Some(function) => Arg::Function(function),
                None => return Err(TemplateError::new(item.position, format!("function {name:?} not defined"))),
            },
            ItemKind::Dot => Arg::Dot,
            ItemKind::Nil => Arg::Nil,
            ItemKind::Variable(name) => {
                let slot = self.variable_slot(&name, item.position)?;
                Arg::Variable { name, slot, fields: Vec::new() }
            }
            ItemKind::Field(name) => Arg::Field(vec![name]),
            ItemKind::Bool(value) => Arg::Bool(value),
            ItemKind::Str(text) => Arg::Str(text),
            ItemKind::Char(c) => Arg::Number(Box::new(Number {
                text: format!("{c:?}"),
                int: Some(i64::from(u32::from(c))),
                float: Some(f64::from(u32::from(c))),
                unsigned_only: false,
                float_syntax: false,
                complex: false,
            })),
            ItemKind::Number(text) => Arg::Number(Box::new(number(&text, item.position)?)),
            ItemKind::LeftParen => {
                self.enter(item.position)?;
                let pipe = self.pipeline("parenthesized pipeline", false)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(pipe))
            }
            _ => return Err(Parser::unexpected(&item, "operand")),
        })
    }
}

/// A number constant as Go reads it: integer first (with base prefixes), then float.
fn number(text: &str, position: Position) -> Result<Number, TemplateError> {
    let mut number = Number {
        text: text.to_string(),
        int: None,
        float: None,
        unsigned_only: false,
        float_syntax: false,
        complex: false,
    };
    if let Some(imaginary) = text.strip_suffix('i') {
        if parse_go_float(imaginary).is_some() {
            number.complex = true;
            return Ok(number);
        }
        return Err(TemplateError::new(position, format!("illegal number syntax: {text:?}")));
    }
    let is_hex =
        text.trim_start_matches(['+', '-']).starts_with("0x") || text.trim_start_matches(['+', '-']).starts_with("0X");
    number.float_syntax = text.contains(['.', 'p', 'P']) || (!is_hex && text.contains(['e', 'E']));
    if let Some(int) = parse_go_int(text) {
        number.int = Some(int);
        number.float = Some(int as f64);
    } else if let Some(unsigned) = parse_go_uint(text) {
        number.unsigned_only = true;
        number.float = Some(unsigned as f64);
    } else if let Some(float) = parse_go_float(text) {
        if !number.float_syntax {
            return Err(TemplateError::new(position, format!("integer overflow: {text:?}")));
        }
        number.float = Some(float);
        if float.fract() == 0.0 && float.abs() < 9.2e18 {
            number.int = Some(float as i64);
        }
    } else {
        return Err(TemplateError::new(position, format!("illegal number syntax: {text:?}")));
    }
    Ok(number)
}
