//! The TraceQL parser: recursive descent over the lexer's tokens, with precedence climbing for
//! spanset operators, field expressions and pipeline arithmetic. Types are checked as the tree
//! is built (comparing a status with a number, a regex on a duration, arithmetic on strings are
//! errors at their position); what only a span can tell (an attribute's type) is left to the
//! evaluator.
//!
//! Precedence, loosest first. Between spansets: `|` (pipeline), `||`, `&&`, then the structural
//! operators (`>`, `>>`, `<`, `<<`, `~`, their `!` and `&` forms), all left-associative. Inside a
//! filter: `||`, `&&`, comparisons, `+ -`, `* / %`, `^` (right-associative), unary `!` and `-`.

use regex::Regex;
use tripod_storage::traces::{SpanKind, StatusCode};

use super::ast::{
    Aggregate, ArithmeticOp, AttrScope, CompareOp, Field, FieldExpr, Filter, Intrinsic, Query, ScalarExpr, SpansetExpr,
    SpansetOp, Stage, Static, ValueType,
};
use super::lexer::{ParseError, Position, ScopeWord, Token, error, tokenize};

/// The largest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 128 * 1024;

/// How deeply expressions may nest (parentheses, unary operators), and how many binary
/// operators and stages a query may have, so that no input can exhaust the stack of the parser,
/// the evaluator or the printer.
const MAX_DEPTH: usize = 64;
const MAX_OPERATORS: usize = 512;

/// TraceQL metrics functions: a query using one is valid TraceQL that a search refuses.
const METRICS_FUNCTIONS: [&str; 11] = [
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
    "topk",
    "bottomk",
];

/// Parses a TraceQL query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(error(
            Position { line: 1, column: 1 },
            format!("query is {} bytes long, more than the limit of {MAX_QUERY_BYTES}", query.len()),
        ));
    }
    let tokens = tokenize(query)?;
    let mut parser = Parser { tokens, at: 0, depth: 0, operators: 0 };
    let root = parser.pipeline()?;
    let hints = parser.hints()?;
    let (token, position) = parser.peek_with_position();
    if *token != Token::End {
        return Err(error(position, format!("syntax error: unexpected {token}")));
    }
    Ok(Query { root, hints })
}

/// A parsed field expression with its static type and where it starts.
struct Typed {
    expr: FieldExpr,
    value_type: ValueType,
    position: Position,
}

impl Typed {
    /// A bare attribute: usable as a boolean (`{ span.cache.hit }` means `= true`).
    fn is_attribute(&self) -> bool {
        matches!(self.expr, FieldExpr::Field(Field::Attribute { .. }))
    }
}

struct Parser {
    tokens: Vec<(Token, Position)>,
    at: usize,
    depth: usize,
    operators: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)].0
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].0
    }

    fn position(&self) -> Position {
        self.tokens[self.at.min(self.tokens.len() - 1)].1
    }

    fn peek_with_position(&self) -> (&Token, Position) {
        let (token, position) = &self.tokens[self.at.min(self.tokens.len() - 1)];
        (token, *position)
    }

    fn advance(&mut self) -> (Token, Position) {
        let item = self.tokens[self.at.min(self.tokens.len() - 1)].clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        item
    }

    fn expect(&mut self, wanted: &Token, context: &str) -> Result<Position, ParseError> {
        let (token, position) = self.peek_with_position();
        if token == wanted {
            self.advance();
            Ok(position)
        } else {
            Err(error(position, format!("syntax error: unexpected {token}, expected {wanted} {context}")))
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Ident(name) if name == word)
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(self.position(), format!("query nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Counts one binary operator or pipeline stage.
    fn operator(&mut self) -> Result<(), ParseError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(error(self.position(), format!("query has more than {MAX_OPERATORS} operators")));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Spansets and pipelines

    fn pipeline(&mut self) -> Result<SpansetExpr, ParseError> {
        self.enter()?;
        let source = self.spanset_binary(0)?;
        let mut stages = Vec::new();
        while *self.peek() == Token::Pipe {
            self.advance();
            self.operator()?;
            stages.push(self.stage()?);
        }
        self.leave();
        if stages.is_empty() { Ok(source) } else { Ok(SpansetExpr::Pipeline { source: Box::new(source), stages }) }
    }

    fn spanset_op(token: &Token) -> Option<(SpansetOp, u8)> {
        Some(match token {
            Token::Or => (SpansetOp::Or, 1),
            Token::And => (SpansetOp::And, 2),
            Token::Greater => (SpansetOp::Child, 3),
            Token::Descendant => (SpansetOp::Descendant, 3),
            Token::Less => (SpansetOp::Parent, 3),
            Token::Ancestor => (SpansetOp::Ancestor, 3),
            Token::Tilde => (SpansetOp::Sibling, 3),
            Token::NotChild => (SpansetOp::NotChild, 3),
            Token::NotDescendant => (SpansetOp::NotDescendant, 3),
            Token::NotParent => (SpansetOp::NotParent, 3),
            Token::NotAncestor => (SpansetOp::NotAncestor, 3),
            Token::NotMatch => (SpansetOp::NotSibling, 3),
            Token::UnionChild => (SpansetOp::UnionChild, 3),
            Token::UnionDescendant => (SpansetOp::UnionDescendant, 3),
            Token::UnionParent => (SpansetOp::UnionParent, 3),
            Token::UnionAncestor => (SpansetOp::UnionAncestor, 3),
            Token::UnionSibling => (SpansetOp::UnionSibling, 3),
            _ => return None,
        })
    }

    fn spanset_binary(&mut self, min_precedence: u8) -> Result<SpansetExpr, ParseError> {
        let mut left = self.spanset_primary()?;
        while let Some((op, precedence)) = Self::spanset_op(self.peek()) {
            if precedence <= min_precedence {
                break;
            }
            self.advance();
            self.operator()?;
            self.enter()?;
            let right = self.spanset_binary(precedence)?;
            self.leave();
            left = SpansetExpr::Binary { op, left: Box::new(left), right: Box::new(right) };
        }
        Ok(left)
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, ParseError> {
        let (token, position) = self.peek_with_position();
        match token {
            Token::LeftBrace => Ok(SpansetExpr::Filter(self.filter()?)),
            Token::LeftParen => {
                self.advance();
                let inner = self.pipeline()?;
                self.expect(&Token::RightParen, "to close the parenthesis")?;
                Ok(inner)
            }
            Token::Ident(word) if is_aggregate(word) || METRICS_FUNCTIONS.contains(&word.as_str()) => Err(error(
                position,
                format!("syntax error: {word}() must follow a spanset and a pipe, as in {{ }} | {word}(...)"),
            )),
            other => {
                Err(error(position, format!("syntax error: unexpected {other}, expected a spanset filter {{ ... }}")))
            }
        }
    }

    /// `{ }` or `{ expr }`.
    fn filter(&mut self) -> Result<Filter, ParseError> {
        self.expect(&Token::LeftBrace, "to open a spanset filter")?;
        if *self.peek() == Token::RightBrace {
            self.advance();
            return Ok(Filter { expr: None });
        }
        let body = self.field_or()?;
        let expr = self.boolean(body, "a spanset filter")?;
        self.expect(&Token::RightBrace, "to close the spanset filter")?;
        Ok(Filter { expr: Some(expr) })
    }

    /// A field expression used as a condition: booleans as they are, a bare attribute as
    /// `attribute = true`, anything else refused.
    fn boolean(&self, typed: Typed, context: &str) -> Result<FieldExpr, ParseError> {
        if typed.value_type == ValueType::Bool {
            return Ok(typed.expr);
        }
        if typed.is_attribute() {
            return Ok(FieldExpr::Compare {
                op: CompareOp::Eq,
                left: Box::new(typed.expr),
                right: Box::new(FieldExpr::Literal(Static::Bool(true))),
            });
        }
        Err(error(
            typed.position,
            format!("{context} needs a boolean expression, {} is {}", typed.expr, typed.value_type.describe()),
        ))
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let (token, position) = self.peek_with_position();
        match token {
            Token::LeftBrace => Ok(Stage::Filter(self.filter()?)),
            Token::Ident(word) if word == "by" => {
                self.advance();
                self.expect(&Token::LeftParen, "after by")?;
                let typed = self.field_or()?;
                if typed.value_type == ValueType::Nil {
                    return Err(error(typed.position, "by() needs a field or an expression, not nil"));
                }
                if *self.peek() == Token::Comma {
                    return Err(error(self.position(), "by() takes one expression"));
                }
                self.expect(&Token::RightParen, "to close by(")?;
                Ok(Stage::By(typed.expr))
            }
            Token::Ident(word) if word == "select" => {
                self.advance();
                self.expect(&Token::LeftParen, "after select")?;
                let mut fields = Vec::new();
                loop {
                    let typed = self.field_or()?;
                    if !matches!(typed.expr, FieldExpr::Field(_)) {
                        return Err(error(
                            typed.position,
                            format!("select() takes attributes and intrinsics, not {}", typed.expr),
                        ));
                    }
                    fields.push(typed.expr);
                    if *self.peek() == Token::Comma {
                        self.advance();
                        continue;
                    }
                    break;
                }
                self.expect(&Token::RightParen, "to close select(")?;
                Ok(Stage::Select(fields))
            }
            Token::Ident(word) if word == "coalesce" => {
                self.advance();
                self.expect(&Token::LeftParen, "after coalesce")?;
                self.expect(&Token::RightParen, "coalesce() takes no arguments")?;
                Ok(Stage::Coalesce)
            }
            Token::Ident(word) if METRICS_FUNCTIONS.contains(&word.as_str()) => {
                let name = word.clone();
                self.advance();
                self.skip_balanced(&name)?;
                if self.is_ident("by") && *self.peek_at(1) == Token::LeftParen {
                    self.advance();
                    self.skip_balanced("by")?;
                }
                Ok(Stage::Metrics(name))
            }
            _ => {
                let left = self.scalar_additive()?;
                let (token, op_position) = self.peek_with_position();
                let op = match token {
                    Token::Equal => CompareOp::Eq,
                    Token::NotEqual => CompareOp::Ne,
                    Token::Greater => CompareOp::Gt,
                    Token::GreaterEqual => CompareOp::Ge,
                    Token::Less => CompareOp::Lt,
                    Token::LessEqual => CompareOp::Le,
                    other => {
                        return Err(error(
                            op_position,
                            format!("syntax error: unexpected {other}, expected a comparison after {left}"),
                        ));
                    }
                };
                self.advance();
                let right = self.scalar_additive()?;
                if !has_aggregate(&left) && !has_aggregate(&right) {
                    return Err(error(
                        position,
                        "a pipeline comparison needs an aggregate: count(), avg(), min(), max() or sum()",
                    ));
                }
                Ok(Stage::ScalarFilter { left, op, right })
            }
        }
    }

    /// Skips `( ... )` with nested parentheses (the arguments of a refused metrics function).
    fn skip_balanced(&mut self, name: &str) -> Result<(), ParseError> {
        self.expect(&Token::LeftParen, &format!("after {name}"))?;
        let mut depth = 1;
        while depth > 0 {
            let (token, position) = self.advance();
            match token {
                Token::LeftParen => depth += 1,
                Token::RightParen => depth -= 1,
                Token::End => return Err(error(position, format!("syntax error: unclosed parenthesis of {name}("))),
                _ => {}
            }
        }
        Ok(())
    }

    fn hints(&mut self) -> Result<Vec<(String, Static)>, ParseError> {
        if !self.is_ident("with") {
            return Ok(Vec::new());
        }
        self.advance();
        self.expect(&Token::LeftParen, "after with")?;
        let mut hints = Vec::new();
        loop {
            let (token, position) = self.advance();
            let Token::Ident(name) = token else {
                return Err(error(position, format!("syntax error: unexpected {token}, expected a hint name")));
            };
            self.expect(&Token::Equal, "after the hint name")?;
            let typed = self.field_unary()?;
            let FieldExpr::Literal(value) = typed.expr else {
                return Err(error(typed.position, "a hint's value must be a literal"));
            };
            hints.push((name, value));
            if *self.peek() == Token::Comma {
                self.advance();
                continue;
            }
            break;
        }
        self.expect(&Token::RightParen, "to close with(")?;
        Ok(hints)
    }

    // ---------------------------------------------------------------------------------------
    // Pipeline arithmetic

    fn scalar_additive(&mut self) -> Result<ScalarExpr, ParseError> {
        let mut left = self.scalar_multiplicative()?;
        loop {
            let op = match self.peek() {
                Token::Plus => ArithmeticOp::Add,
                Token::Minus => ArithmeticOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            self.operator()?;
            let right = self.scalar_multiplicative()?;
            left = ScalarExpr::Arithmetic { op, left: Box::new(left), right: Box::new(right) };
        }
    }

    fn scalar_multiplicative(&mut self) -> Result<ScalarExpr, ParseError> {
        let mut left = self.scalar_power()?;
        loop {
            let op = match self.peek() {
                Token::Star => ArithmeticOp::Mul,
                Token::Slash => ArithmeticOp::Div,
                Token::Percent => ArithmeticOp::Mod,
                _ => return Ok(left),
            };
            self.advance();
            self.operator()?;
            let right = self.scalar_power()?;
            left = ScalarExpr::Arithmetic { op, left: Box::new(left), right: Box::new(right) };
        }
    }

    fn scalar_power(&mut self) -> Result<ScalarExpr, ParseError> {
        let base = self.scalar_unary()?;
        if *self.peek() != Token::Caret {
            return Ok(base);
        }
        self.advance();
        self.enter()?;
        let exponent = self.scalar_power()?;
        self.leave();
        Ok(ScalarExpr::Arithmetic { op: ArithmeticOp::Pow, left: Box::new(base), right: Box::new(exponent) })
    }

    fn scalar_unary(&mut self) -> Result<ScalarExpr, ParseError> {
        if *self.peek() == Token::Minus {
            self.advance();
            self.enter()?;
            let inner = self.scalar_unary()?;
            self.leave();
            return Ok(match inner {
                ScalarExpr::Literal(value) => ScalarExpr::Literal(negate_static(value)),
                other => ScalarExpr::Arithmetic {
                    op: ArithmeticOp::Sub,
                    left: Box::new(ScalarExpr::Literal(Static::Int(0))),
                    right: Box::new(other),
                },
            });
        }
        self.scalar_primary()
    }

    fn scalar_primary(&mut self) -> Result<ScalarExpr, ParseError> {
        let (token, position) = self.peek_with_position();
        match token.clone() {
            Token::LeftParen => {
                self.advance();
                self.enter()?;
                let inner = self.scalar_additive()?;
                self.leave();
                self.expect(&Token::RightParen, "to close the parenthesis")?;
                Ok(inner)
            }
            Token::Int(value) => {
                self.advance();
                Ok(ScalarExpr::Literal(Static::Int(value)))
            }
            Token::Float(value) => {
                self.advance();
                Ok(ScalarExpr::Literal(Static::Float(value)))
            }
            Token::Duration { ns, .. } => {
                self.advance();
                Ok(ScalarExpr::Literal(Static::Duration(ns)))
            }
            Token::Ident(word) if word == "minInt" || word == "maxInt" => {
                self.advance();
                Ok(ScalarExpr::Literal(Static::Int(if word == "minInt" { i64::MIN } else { i64::MAX })))
            }
            Token::Ident(word) if is_aggregate(&word) => {
                self.advance();
                self.expect(&Token::LeftParen, &format!("after {word}"))?;
                let function = match word.as_str() {
                    "count" => Aggregate::Count,
                    "avg" => Aggregate::Avg,
                    "min" => Aggregate::Min,
                    "max" => Aggregate::Max,
                    _ => Aggregate::Sum,
                };
                if function == Aggregate::Count {
                    self.expect(&Token::RightParen, "count() takes no arguments")?;
                    return Ok(ScalarExpr::Aggregate { function, field: None });
                }
                if *self.peek() == Token::RightParen {
                    return Err(error(self.position(), format!("{word}() needs a field, as in {word}(duration)")));
                }
                let typed = self.field_additive()?;
                if !(typed.value_type.is_numeric() || typed.value_type == ValueType::Any) {
                    return Err(error(
                        typed.position,
                        format!("{word}() needs a number, {} is {}", typed.expr, typed.value_type.describe()),
                    ));
                }
                self.expect(&Token::RightParen, &format!("to close {word}("))?;
                Ok(ScalarExpr::Aggregate { function, field: Some(typed.expr) })
            }
            Token::Str(_) => Err(error(position, "a pipeline comparison compares numbers, not strings")),
            Token::Ident(word) => Err(error(
                position,
                format!(
                    "syntax error: unexpected identifier {word}, expected a pipeline stage (by, select, coalesce, \
                     an aggregate comparison or a filter)"
                ),
            )),
            other => Err(error(
                position,
                format!(
                    "syntax error: unexpected {other}, expected a pipeline stage (by, select, coalesce, an aggregate comparison or a filter)"
                ),
            )),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Field expressions

    fn field_or(&mut self) -> Result<Typed, ParseError> {
        self.enter()?;
        let mut left = self.field_and()?;
        while *self.peek() == Token::Or {
            self.advance();
            self.operator()?;
            let right = self.field_and()?;
            let position = left.position;
            let l = self.boolean(left, "||")?;
            let r = self.boolean(right, "||")?;
            left = Typed { expr: FieldExpr::Or(Box::new(l), Box::new(r)), value_type: ValueType::Bool, position };
        }
        self.leave();
        Ok(left)
    }

    fn field_and(&mut self) -> Result<Typed, ParseError> {
        let mut left = self.field_comparison()?;
        while *self.peek() == Token::And {
            self.advance();
            self.operator()?;
            let right = self.field_comparison()?;
            let position = left.position;
            let l = self.boolean(left, "&&")?;
            let r = self.boolean(right, "&&")?;
            left = Typed { expr: FieldExpr::And(Box::new(l), Box::new(r)), value_type: ValueType::Bool, position };
        }
        Ok(left)
    }

    fn field_comparison(&mut self) -> Result<Typed, ParseError> {
        let left = self.field_additive()?;
        let (token, op_position) = self.peek_with_position();
        let op = match token {
            Token::Equal => CompareOp::Eq,
            Token::NotEqual => CompareOp::Ne,
            Token::Greater => CompareOp::Gt,
            Token::GreaterEqual => CompareOp::Ge,
            Token::Less => CompareOp::Lt,
            Token::LessEqual => CompareOp::Le,
            Token::Match | Token::NotMatch => {
                let negated = *token == Token::NotMatch;
                self.advance();
                return self.regex(left, negated, op_position);
            }
            _ => return Ok(left),
        };
        self.advance();
        self.operator()?;
        let right = self.field_additive()?;
        check_comparison(&left, op, &right, op_position)?;
        let position = left.position;
        let (left_expr, right_expr) = normalise_ids(left.expr, right.expr);
        let expr = FieldExpr::Compare { op, left: Box::new(left_expr), right: Box::new(right_expr) };
        if matches!(self.peek(), Token::Equal | Token::NotEqual | Token::Match | Token::NotMatch)
            || matches!(self.peek(), Token::Greater | Token::GreaterEqual | Token::Less | Token::LessEqual)
        {
            return Err(error(self.position(), "comparisons do not chain; use && between them"));
        }
        Ok(Typed { expr, value_type: ValueType::Bool, position })
    }

    fn regex(&mut self, left: Typed, negated: bool, op_position: Position) -> Result<Typed, ParseError> {
        if !matches!(left.value_type, ValueType::String | ValueType::Any) {
            return Err(error(
                op_position,
                format!("regular expressions match strings, {} is {}", left.expr, left.value_type.describe()),
            ));
        }
        let (token, position) = self.advance();
        let Token::Str(pattern) = token else {
            return Err(error(
                position,
                format!("syntax error: unexpected {token}, expected a regular expression string"),
            ));
        };
        let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|problem| {
            error(position, format!("invalid regular expression {pattern:?}: {}", first_line(&problem.to_string())))
        })?;
        Ok(Typed {
            expr: FieldExpr::Regex { negated, left: Box::new(left.expr), pattern, regex },
            value_type: ValueType::Bool,
            position: left.position,
        })
    }

    fn field_additive(&mut self) -> Result<Typed, ParseError> {
        let mut left = self.field_multiplicative()?;
        loop {
            let op = match self.peek() {
                Token::Plus => ArithmeticOp::Add,
                Token::Minus => ArithmeticOp::Sub,
                _ => return Ok(left),
            };
            let op_position = self.position();
            self.advance();
            self.operator()?;
            let right = self.field_multiplicative()?;
            left = arithmetic(op, left, right, op_position)?;
        }
    }

    fn field_multiplicative(&mut self) -> Result<Typed, ParseError> {
        let mut left = self.field_power()?;
        loop {
            let op = match self.peek() {
                Token::Star => ArithmeticOp::Mul,
                Token::Slash => ArithmeticOp::Div,
                Token::Percent => ArithmeticOp::Mod,
                _ => return Ok(left),
            };
            let op_position = self.position();
            self.advance();
            self.operator()?;
            let right = self.field_power()?;
            left = arithmetic(op, left, right, op_position)?;
        }
    }

    fn field_power(&mut self) -> Result<Typed, ParseError> {
        let base = self.field_unary()?;
        if *self.peek() != Token::Caret {
            return Ok(base);
        }
        let op_position = self.position();
        self.advance();
        self.enter()?;
        let exponent = self.field_power()?;
        self.leave();
        arithmetic(ArithmeticOp::Pow, base, exponent, op_position)
    }

    fn field_unary(&mut self) -> Result<Typed, ParseError> {
        let (token, position) = self.peek_with_position();
        match token {
            Token::Not => {
                self.advance();
                self.enter()?;
                let inner = self.field_unary()?;
                self.leave();
                let inner = self.boolean(inner, "!")?;
                Ok(Typed { expr: FieldExpr::Not(Box::new(inner)), value_type: ValueType::Bool, position })
            }
            Token::Minus => {
                self.advance();
                self.enter()?;
                let inner = self.field_unary()?;
                self.leave();
                if !(inner.value_type.is_numeric() || inner.value_type == ValueType::Any) {
                    return Err(error(
                        position,
                        format!("unary minus needs a number, {} is {}", inner.expr, inner.value_type.describe()),
                    ));
                }
                let expr = match inner.expr {
                    FieldExpr::Literal(value) => FieldExpr::Literal(negate_static(value)),
                    other => FieldExpr::Negate(Box::new(other)),
                };
                Ok(Typed { expr, value_type: inner.value_type, position })
            }
            _ => self.field_primary(),
        }
    }

    fn field_primary(&mut self) -> Result<Typed, ParseError> {
        let (token, position) = self.advance();
        let literal = |value: Static| {
            let value_type = value.value_type();
            Ok(Typed { expr: FieldExpr::Literal(value), value_type, position })
        };
        match token {
            Token::LeftParen => {
                let inner = self.field_or()?;
                self.expect(&Token::RightParen, "to close the parenthesis")?;
                Ok(Typed { position, ..inner })
            }
            Token::Str(text) => literal(Static::String(text)),
            Token::Int(value) => literal(Static::Int(value)),
            Token::Float(value) => literal(Static::Float(value)),
            Token::Duration { ns, .. } => literal(Static::Duration(ns)),
            Token::Attribute { scope, name } => {
                let scope = match scope {
                    None => AttrScope::Unscoped,
                    Some(ScopeWord::Span) => AttrScope::Span,
                    Some(ScopeWord::Resource) => AttrScope::Resource,
                    Some(ScopeWord::Event) => AttrScope::Event,
                    Some(ScopeWord::Link) => AttrScope::Link,
                    Some(ScopeWord::Instrumentation) => AttrScope::Instrumentation,
                    Some(ScopeWord::Trace) => {
                        return Err(error(
                            position,
                            "the trace scope has intrinsics only (trace:id, trace:duration, trace:rootName, \
                             trace:rootService), no attributes",
                        ));
                    }
                };
                Ok(Typed {
                    expr: FieldExpr::Field(Field::Attribute { scope, name }),
                    value_type: ValueType::Any,
                    position,
                })
            }
            Token::ScopedIntrinsic { scope, name } => {
                let Some(intrinsic) = Intrinsic::from_scoped(scope.word(), &name) else {
                    return Err(error(position, format!("unknown intrinsic {}:{name}", scope.word())));
                };
                Ok(Typed {
                    expr: FieldExpr::Field(Field::Intrinsic(intrinsic)),
                    value_type: intrinsic.value_type(),
                    position,
                })
            }
            Token::Ident(word) => {
                if let Some(value) = keyword_literal(&word) {
                    return literal(value);
                }
                if let Some(intrinsic) = Intrinsic::from_word(&word) {
                    return Ok(Typed {
                        expr: FieldExpr::Field(Field::Intrinsic(intrinsic)),
                        value_type: intrinsic.value_type(),
                        position,
                    });
                }
                Err(error(
                    position,
                    format!(
                        "syntax error: unexpected identifier {word}; attributes start with a dot (.{word}) or a \
                         scope (span.{word}, resource.{word})"
                    ),
                ))
            }
            Token::End => Err(error(position, "syntax error: unexpected end of query, expected a value")),
            other => Err(error(
                position,
                format!("syntax error: unexpected {other}, expected a value, an attribute or an intrinsic"),
            )),
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|line| !line.trim().is_empty()).unwrap_or(text).trim()
}

fn is_aggregate(word: &str) -> bool {
    matches!(word, "count" | "avg" | "min" | "max" | "sum")
}

fn has_aggregate(expr: &ScalarExpr) -> bool {
    match expr {
        ScalarExpr::Aggregate { .. } => true,
        ScalarExpr::Literal(_) => false,
        ScalarExpr::Arithmetic { left, right, .. } => has_aggregate(left) || has_aggregate(right),
    }
}

/// The literal a keyword stands for.
fn keyword_literal(word: &str) -> Option<Static> {
    Some(match word {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "nil" => Static::Nil,
        "ok" => Static::Status(StatusCode::Ok),
        "error" => Static::Status(StatusCode::Error),
        "unset" => Static::Status(StatusCode::Unset),
        "server" => Static::Kind(SpanKind::Server),
        "client" => Static::Kind(SpanKind::Client),
        "producer" => Static::Kind(SpanKind::Producer),
        "consumer" => Static::Kind(SpanKind::Consumer),
        "internal" => Static::Kind(SpanKind::Internal),
        "unspecified" => Static::Kind(SpanKind::Unspecified),
        "minInt" => Static::Int(i64::MIN),
        "maxInt" => Static::Int(i64::MAX),
        _ => return None,
    })
}

fn negate_static(value: Static) -> Static {
    match value {
        Static::Int(n) => Static::Int(n.wrapping_neg()),
        Static::Float(n) => Static::Float(-n),
        Static::Duration(n) => Static::Duration(n.wrapping_neg()),
        other => other,
    }
}

/// Whether two operands may be compared with `op`; the error names the problem otherwise.
fn check_comparison(left: &Typed, op: CompareOp, right: &Typed, at: Position) -> Result<(), ParseError> {
    let (l, r) = (left.value_type, right.value_type);
    let ordering = !matches!(op, CompareOp::Eq | CompareOp::Ne);
    if l == ValueType::Nil || r == ValueType::Nil {
        if ordering {
            return Err(error(at, format!("nil can only be compared with = or !=, not {}", op.symbol())));
        }
        if l == ValueType::Nil && r == ValueType::Nil {
            return Err(error(at, "comparing nil with nil"));
        }
        return Ok(());
    }
    if ordering {
        for side in [left, right] {
            let plural = match side.value_type {
                ValueType::Bool => "booleans",
                ValueType::Status => "statuses",
                ValueType::Kind => "span kinds",
                _ => continue,
            };
            return Err(error(at, format!("{plural} cannot be ordered with {}, use = or !=", op.symbol())));
        }
    }
    if l == ValueType::Any || r == ValueType::Any || l == r || (l.is_numeric() && r.is_numeric()) {
        return Ok(());
    }
    Err(error(at, format!("cannot compare {} ({}) with {} ({})", left.expr, l.describe(), right.expr, r.describe())))
}

/// IDs compare as lower-case hex of their full width: `trace:id = "ABC"` means
/// `"00…0abc"`.
fn normalise_ids(left: FieldExpr, right: FieldExpr) -> (FieldExpr, FieldExpr) {
    fn width(expr: &FieldExpr) -> Option<usize> {
        match expr {
            FieldExpr::Field(Field::Intrinsic(intrinsic)) => intrinsic.id_width(),
            _ => None,
        }
    }
    fn pad(expr: FieldExpr, width: usize) -> FieldExpr {
        match expr {
            FieldExpr::Literal(Static::String(text)) if text.len() <= width => {
                FieldExpr::Literal(Static::String(format!("{:0>width$}", text.to_ascii_lowercase())))
            }
            other => other,
        }
    }
    match (width(&left), width(&right)) {
        (Some(w), None) => (left, pad(right, w)),
        (None, Some(w)) => (pad(left, w), right),
        _ => (left, right),
    }
}

/// Types an arithmetic expression.
fn arithmetic(op: ArithmeticOp, left: Typed, right: Typed, at: Position) -> Result<Typed, ParseError> {
    for side in [&left, &right] {
        if !(side.value_type.is_numeric() || side.value_type == ValueType::Any) {
            return Err(error(
                at,
                format!("{} needs numbers, {} is {}", op.symbol(), side.expr, side.value_type.describe()),
            ));
        }
    }
    let (l, r) = (left.value_type, right.value_type);
    let value_type = if l == ValueType::Any || r == ValueType::Any {
        ValueType::Any
    } else if l == ValueType::Duration || r == ValueType::Duration {
        ValueType::Duration
    } else if l == ValueType::Float || r == ValueType::Float || matches!(op, ArithmeticOp::Div | ArithmeticOp::Pow) {
        ValueType::Float
    } else {
        ValueType::Int
    };
    let position = left.position;
    Ok(Typed {
        expr: FieldExpr::Arithmetic { op, left: Box::new(left.expr), right: Box::new(right.expr) },
        value_type,
        position,
    })
}
