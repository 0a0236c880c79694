//! The LogQL parser: recursive descent over the lexer's tokens, with binary operators by
//! precedence climbing. Keywords are recognised only where the grammar expects them, so labels
//! may be named like keywords (`unwrap duration`, `by (json)`).

use tripod_storage::labels::{MatchOp, Matcher};

use super::ast::*;
use super::lexer::{ParseError, Position, Token, tokenize};

/// Parses a whole query.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut parser = TokenParser { tokens: tokenize(input)?, at: 0 };
    let expr = if matches!(parser.peek(), Token::LeftBrace) {
        Expr::Log(parser.log_expr()?)
    } else {
        Expr::Metric(parser.binary(0)?)
    };
    if !matches!(parser.peek(), Token::End) {
        return Err(parser.unexpected("end of query"));
    }
    Ok(expr)
}

/// Parses a stream selector alone (`{a="b", c=~"d"}`), as the series and labels endpoints take.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, ParseError> {
    let mut parser = TokenParser { tokens: tokenize(input)?, at: 0 };
    let matchers = parser.selector()?;
    if !matches!(parser.peek(), Token::End) {
        return Err(parser.unexpected("end of selector"));
    }
    Ok(matchers)
}

struct TokenParser {
    tokens: Vec<(Token, Position)>,
    at: usize,
}

impl TokenParser {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let index = (self.at + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].0
    }

    fn position(&self) -> Position {
        self.tokens[self.at.min(self.tokens.len() - 1)].1
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn error_here(&self, message: String) -> ParseError {
        ParseError { position: self.position(), message }
    }

    fn unexpected(&self, expecting: &str) -> ParseError {
        let found = match self.peek() {
            Token::End => "end of query".to_string(),
            Token::Ident(name) => format!("identifier {name}"),
            Token::Str(text) => format!("string {text:?}"),
            other => other.to_string(),
        };
        self.error_here(format!("syntax error: unexpected {found}, expecting {expecting}"))
    }

    fn expect(&mut self, token: Token, expecting: &str) -> Result<(), ParseError> {
        if *self.peek() == token {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(expecting))
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Ident(name) if name == keyword)
    }

    fn ident(&mut self, expecting: &str) -> Result<String, ParseError> {
        match self.peek() {
            Token::Ident(name) => {
                let name = name.clone();
                self.next();
                Ok(name)
            }
            _ => Err(self.unexpected(expecting)),
        }
    }

    fn string(&mut self, expecting: &str) -> Result<String, ParseError> {
        match self.peek() {
            Token::Str(text) => {
                let text = text.clone();
                self.next();
                Ok(text)
            }
            _ => Err(self.unexpected(expecting)),
        }
    }

    fn number(&mut self, expecting: &str) -> Result<f64, ParseError> {
        let negative = if matches!(self.peek(), Token::Minus) && matches!(self.peek_at(1), Token::Number(_)) {
            self.next();
            true
        } else {
            false
        };
        match self.peek() {
            Token::Number(value) => {
                let value = *value;
                self.next();
                Ok(if negative { -value } else { value })
            }
            _ => Err(self.unexpected(expecting)),
        }
    }

    fn duration(&mut self, expecting: &str) -> Result<i64, ParseError> {
        match self.peek() {
            Token::Duration { ns, .. } => {
                let ns = *ns;
                self.next();
                Ok(ns)
            }
            // A bare `0` or integer is not a duration in LogQL ranges.
            _ => Err(self.unexpected(expecting)),
        }
    }

    // ---- log queries ----

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let start = self.position();
        self.expect(Token::LeftBrace, "{")?;
        let mut matchers = Vec::new();
        if !matches!(self.peek(), Token::RightBrace) {
            loop {
                let name = self.ident("label name")?;
                let op = match self.peek() {
                    Token::Equal => MatchOp::Equal,
                    Token::NotEqual => MatchOp::NotEqual,
                    Token::Match => MatchOp::RegexMatch,
                    Token::NotMatch => MatchOp::RegexNoMatch,
                    _ => return Err(self.unexpected("= or != or =~ or !~")),
                };
                self.next();
                let value_position = self.position();
                let value = self.string("quoted label value")?;
                let matcher = Matcher::new(op, name, value)
                    .map_err(|error| ParseError { position: value_position, message: error.to_string() })?;
                matchers.push(matcher);
                match self.peek() {
                    Token::Comma => {
                        self.next();
                    }
                    Token::RightBrace => break,
                    _ => return Err(self.unexpected(", or }")),
                }
            }
        }
        self.expect(Token::RightBrace, "}")?;
        if matchers.iter().all(|matcher| matcher.matches("")) {
            return Err(ParseError {
                position: start,
                message: "queries require at least one matcher that does not match the empty string, \
                          e.g. app=~\".+\" rather than app=~\".*\""
                    .into(),
            });
        }
        Ok(matchers)
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let mut stages = Vec::new();
        self.stages(&mut stages)?;
        Ok(LogExpr { matchers, stages })
    }

    /// Pipeline stages until something that is not one.
    fn stages(&mut self, stages: &mut Vec<Stage>) -> Result<(), ParseError> {
        loop {
            let op = match self.peek() {
                Token::PipeEqual => LineFilterOp::Contains,
                Token::NotEqual => LineFilterOp::NotContains,
                Token::PipeMatch => LineFilterOp::Matches,
                Token::NotMatch => LineFilterOp::NotMatches,
                Token::PipePattern => LineFilterOp::Pattern,
                Token::NotPattern => LineFilterOp::NotPattern,
                Token::Pipe => {
                    self.next();
                    stages.push(self.pipe_stage()?);
                    continue;
                }
                _ => return Ok(()),
            };
            self.next();
            stages.push(Stage::LineFilter(self.line_filter(op)?));
        }
    }

    fn filter_value(&mut self, op: LineFilterOp) -> Result<FilterValue, ParseError> {
        let position = self.position();
        if self.is_keyword("ip") && matches!(self.peek_at(1), Token::LeftParen) {
            if matches!(
                op,
                LineFilterOp::Matches | LineFilterOp::NotMatches | LineFilterOp::Pattern | LineFilterOp::NotPattern
            ) {
                return Err(self.error_here("syntax error: ip() can only be used with |= and !=".into()));
            }
            self.next();
            self.next();
            let pattern = self.string("quoted ip address, range or CIDR")?;
            self.expect(Token::RightParen, ")")?;
            validate_ip_pattern(&pattern).map_err(|message| ParseError { position, message })?;
            return Ok(FilterValue::Ip(pattern));
        }
        let text = self.string("quoted string or ip(...)")?;
        if matches!(op, LineFilterOp::Matches | LineFilterOp::NotMatches) {
            regex::Regex::new(&text).map_err(|error| ParseError {
                position,
                message: format!("invalid regular expression {text:?}: {}", first_line(&error.to_string())),
            })?;
        }
        if matches!(op, LineFilterOp::Pattern | LineFilterOp::NotPattern) && text.is_empty() {
            return Err(ParseError { position, message: "pattern filter must not be empty".into() });
        }
        Ok(FilterValue::Text(text))
    }

    fn line_filter(&mut self, op: LineFilterOp) -> Result<LineFilter, ParseError> {
        let mut values = vec![self.filter_value(op)?];
        while self.is_keyword("or") && matches!(self.peek_at(1), Token::Str(_) | Token::Ident(_)) {
            // `or` followed by a string or ip(...) continues this filter.
            if let Token::Ident(name) = self.peek_at(1)
                && name != "ip"
            {
                break;
            }
            self.next();
            values.push(self.filter_value(op)?);
        }
        Ok(LineFilter { op, values })
    }

    fn pipe_stage(&mut self) -> Result<Stage, ParseError> {
        if matches!(self.peek(), Token::LeftParen) {
            return Ok(Stage::LabelFilter(self.label_filter_or()?));
        }
        let Token::Ident(keyword) = self.peek().clone() else {
            return Err(self.unexpected("a parser, formatter or label filter after |"));
        };
        // A keyword followed by a comparison is a label filter on a label of that name.
        let is_filter = matches!(
            self.peek_at(1),
            Token::Equal
                | Token::EqualEqual
                | Token::NotEqual
                | Token::Match
                | Token::NotMatch
                | Token::Greater
                | Token::GreaterEqual
                | Token::Less
                | Token::LessEqual
        );
        if is_filter {
            return Ok(Stage::LabelFilter(self.label_filter_or()?));
        }
        let stage = match keyword.as_str() {
            "json" => {
                self.next();
                Stage::Parser(Parser::Json(self.extraction_params()?))
            }
            "logfmt" => {
                self.next();
                let (mut strict, mut keep_empty) = (false, false);
                while let Token::Flag(flag) = self.peek().clone() {
                    match flag.as_str() {
                        "strict" => strict = true,
                        "keep-empty" => keep_empty = true,
                        other => {
                            return Err(self.error_here(format!(
                                "syntax error: unknown logfmt flag --{other}, expecting --strict or --keep-empty"
                            )));
                        }
                    }
                    self.next();
                }
                Stage::Parser(Parser::Logfmt { strict, keep_empty, params: self.extraction_params()? })
            }
            "regexp" => {
                self.next();
                let position = self.position();
                let regex = self.string("quoted regular expression")?;
                let compiled = regex::Regex::new(&regex).map_err(|error| ParseError {
                    position,
                    message: format!("invalid regular expression {regex:?}: {}", first_line(&error.to_string())),
                })?;
                if compiled.capture_names().flatten().next().is_none() {
                    return Err(ParseError {
                        position,
                        message: "at least one named capture must be supplied in the regexp parser".into(),
                    });
                }
                Stage::Parser(Parser::Regexp(regex))
            }
            "pattern" => {
                self.next();
                let position = self.position();
                let pattern = self.string("quoted pattern")?;
                if !pattern.contains('<') {
                    return Err(ParseError {
                        position,
                        message: "pattern must contain at least one capture such as <name>".into(),
                    });
                }
                Stage::Parser(Parser::Pattern(pattern))
            }
            "unpack" => {
                self.next();
                Stage::Parser(Parser::Unpack)
            }
            "line_format" => {
                self.next();
                Stage::LineFormat(self.string("quoted template")?)
            }
            "label_format" => {
                self.next();
                let mut formats = Vec::new();
                loop {
                    let dst = self.ident("label name")?;
                    self.expect(Token::Equal, "=")?;
                    match self.peek().clone() {
                        Token::Str(template) => {
                            self.next();
                            formats.push(LabelFormat::Template { dst, template });
                        }
                        Token::Ident(src) => {
                            self.next();
                            formats.push(LabelFormat::Rename { dst, src });
                        }
                        _ => return Err(self.unexpected("quoted template or label name")),
                    }
                    if !matches!(self.peek(), Token::Comma) {
                        break;
                    }
                    self.next();
                }
                Stage::LabelFormat(formats)
            }
            "drop" | "keep" => {
                self.next();
                let specs = self.label_specs()?;
                if keyword == "drop" { Stage::Drop(specs) } else { Stage::Keep(specs) }
            }
            "decolorize" => {
                self.next();
                Stage::Decolorize
            }
            "unwrap" => {
                self.next();
                let conversion = match self.peek() {
                    Token::Ident(name) if matches!(self.peek_at(1), Token::LeftParen) => match name.as_str() {
                        "duration" | "duration_seconds" => Some(Conversion::Duration),
                        "bytes" => Some(Conversion::Bytes),
                        other => {
                            return Err(self.error_here(format!(
                                "syntax error: unknown unwrap conversion {other}, expecting duration, duration_seconds or bytes"
                            )));
                        }
                    },
                    _ => None,
                };
                match conversion {
                    Some(conversion) => {
                        self.next();
                        self.next();
                        let label = self.ident("label name")?;
                        self.expect(Token::RightParen, ")")?;
                        Stage::Unwrap(Unwrap { label, conversion })
                    }
                    None => Stage::Unwrap(Unwrap { label: self.ident("label name")?, conversion: Conversion::Plain }),
                }
            }
            _ => Stage::LabelFilter(self.label_filter_or()?),
        };
        Ok(stage)
    }

    /// `name="expression", ...` after `json` or `logfmt`.
    fn extraction_params(&mut self) -> Result<Vec<(String, String)>, ParseError> {
        let mut params = Vec::new();
        while matches!(self.peek(), Token::Ident(_)) && matches!(self.peek_at(1), Token::Equal) {
            let name = self.ident("label name")?;
            self.next();
            let expression = match self.peek().clone() {
                Token::Str(expression) => {
                    self.next();
                    expression
                }
                // `json status` shorthand is not LogQL; a bare name after `=` neither.
                _ => return Err(self.unexpected("quoted expression")),
            };
            params.push((name, expression));
            if !matches!(self.peek(), Token::Comma) {
                break;
            }
            self.next();
        }
        Ok(params)
    }

    fn label_specs(&mut self) -> Result<Vec<LabelSpec>, ParseError> {
        let mut specs = Vec::new();
        loop {
            let name = self.ident("label name")?;
            let op = match self.peek() {
                Token::Equal => Some(MatchOp::Equal),
                Token::NotEqual => Some(MatchOp::NotEqual),
                Token::Match => Some(MatchOp::RegexMatch),
                Token::NotMatch => Some(MatchOp::RegexNoMatch),
                _ => None,
            };
            let matcher = match op {
                Some(op) => {
                    self.next();
                    let position = self.position();
                    let value = self.string("quoted label value")?;
                    Some(
                        Matcher::new(op, name.clone(), value)
                            .map_err(|error| ParseError { position, message: error.to_string() })?,
                    )
                }
                None => None,
            };
            specs.push(LabelSpec { name, matcher });
            if !matches!(self.peek(), Token::Comma) {
                return Ok(specs);
            }
            self.next();
        }
    }

    fn label_filter_or(&mut self) -> Result<LabelFilterExpr, ParseError> {
        let mut left = self.label_filter_and()?;
        while self.is_keyword("or") {
            self.next();
            let right = self.label_filter_and()?;
            left = LabelFilterExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilterExpr, ParseError> {
        let mut left = self.label_filter_primary()?;
        loop {
            if self.is_keyword("and") || matches!(self.peek(), Token::Comma) {
                self.next();
            } else if matches!(self.peek(), Token::Ident(name) if name != "or")
                && matches!(
                    self.peek_at(1),
                    Token::Equal
                        | Token::EqualEqual
                        | Token::NotEqual
                        | Token::Match
                        | Token::NotMatch
                        | Token::Greater
                        | Token::GreaterEqual
                        | Token::Less
                        | Token::LessEqual
                )
            {
                // Filters side by side, separated by a space, are joined by `and`.
            } else {
                return Ok(left);
            }
            let right = self.label_filter_primary()?;
            left = LabelFilterExpr::And(Box::new(left), Box::new(right));
        }
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilterExpr, ParseError> {
        if matches!(self.peek(), Token::LeftParen) {
            self.next();
            let inner = self.label_filter_or()?;
            self.expect(Token::RightParen, ")")?;
            return Ok(inner);
        }
        let name = self.ident("label filter")?;
        let op_position = self.position();
        let compare = match self.peek() {
            Token::Equal | Token::EqualEqual => Some(CompareOp::Equal),
            Token::NotEqual => Some(CompareOp::NotEqual),
            Token::Greater => Some(CompareOp::Greater),
            Token::GreaterEqual => Some(CompareOp::GreaterEqual),
            Token::Less => Some(CompareOp::Less),
            Token::LessEqual => Some(CompareOp::LessEqual),
            Token::Match | Token::NotMatch => None,
            _ => return Err(self.unexpected("= or != or =~ or !~ or a comparison")),
        };
        let op = self.next();
        let value_position = self.position();
        let filter = match (self.peek().clone(), compare) {
            (Token::Str(value), _) => {
                self.next();
                let match_op = match op {
                    Token::Equal | Token::EqualEqual => MatchOp::Equal,
                    Token::NotEqual => MatchOp::NotEqual,
                    Token::Match => MatchOp::RegexMatch,
                    Token::NotMatch => MatchOp::RegexNoMatch,
                    other => {
                        return Err(ParseError {
                            position: op_position,
                            message: format!("syntax error: {other} cannot compare with a string, use a number"),
                        });
                    }
                };
                let matcher = Matcher::new(match_op, name, value)
                    .map_err(|error| ParseError { position: value_position, message: error.to_string() })?;
                LabelFilter::Match(matcher)
            }
            (Token::Ident(function), Some(op @ (CompareOp::Equal | CompareOp::NotEqual)))
                if function == "ip" && matches!(self.peek_at(1), Token::LeftParen) =>
            {
                self.next();
                self.next();
                let pattern = self.string("quoted ip address, range or CIDR")?;
                self.expect(Token::RightParen, ")")?;
                validate_ip_pattern(&pattern).map_err(|message| ParseError { position: value_position, message })?;
                LabelFilter::Ip { name, negated: op == CompareOp::NotEqual, pattern }
            }
            (Token::Number(_) | Token::Minus, Some(op)) => {
                let value = self.number("number")?;
                LabelFilter::Number { name, op, value }
            }
            (Token::Duration { ns, text }, Some(op)) => {
                self.next();
                LabelFilter::Duration { name, op, seconds: ns as f64 / 1e9, text }
            }
            (Token::Bytes { bytes, text }, Some(op)) => {
                self.next();
                LabelFilter::Bytes { name, op, bytes, text }
            }
            (_, None) => return Err(self.unexpected("quoted regular expression")),
            _ => return Err(self.unexpected("quoted string, number, duration, byte size or ip(...)")),
        };
        Ok(LabelFilterExpr::Leaf(filter))
    }

    // ---- metric queries ----

    fn binary_op(&self) -> Option<BinaryOp> {
        Some(match self.peek() {
            Token::Plus => BinaryOp::Add,
            Token::Minus => BinaryOp::Sub,
            Token::Star => BinaryOp::Mul,
            Token::Slash => BinaryOp::Div,
            Token::Percent => BinaryOp::Mod,
            Token::Caret => BinaryOp::Pow,
            Token::EqualEqual => BinaryOp::Compare(CompareOp::Equal),
            Token::NotEqual => BinaryOp::Compare(CompareOp::NotEqual),
            Token::Greater => BinaryOp::Compare(CompareOp::Greater),
            Token::GreaterEqual => BinaryOp::Compare(CompareOp::GreaterEqual),
            Token::Less => BinaryOp::Compare(CompareOp::Less),
            Token::LessEqual => BinaryOp::Compare(CompareOp::LessEqual),
            Token::Ident(name) if name == "and" => BinaryOp::And,
            Token::Ident(name) if name == "or" => BinaryOp::Or,
            Token::Ident(name) if name == "unless" => BinaryOp::Unless,
            _ => return None,
        })
    }

    fn binary(&mut self, min_precedence: u8) -> Result<MetricExpr, ParseError> {
        let mut left = self.unary()?;
        while let Some(op) = self.binary_op() {
            let precedence = op.precedence();
            if precedence < min_precedence {
                break;
            }
            let op_position = self.position();
            self.next();
            let return_bool = if self.is_keyword("bool") {
                if !matches!(op, BinaryOp::Compare(_)) {
                    return Err(
                        self.error_here("syntax error: bool modifier can only be used on comparison operators".into())
                    );
                }
                self.next();
                true
            } else {
                false
            };
            let matching = self.vector_matching(op)?;
            // `^` is right-associative; the rest bind to the left.
            let next_min = if op == BinaryOp::Pow { precedence } else { precedence + 1 };
            let right = self.binary(next_min)?;
            let left_is_scalar = is_scalar(&left);
            let right_is_scalar = is_scalar(&right);
            if op.is_set_operator() && (left_is_scalar || right_is_scalar) {
                return Err(ParseError {
                    position: op_position,
                    message: format!("set operator {} not allowed in binary scalar expression", op.symbol()),
                });
            }
            if matches!(op, BinaryOp::Compare(_)) && left_is_scalar && right_is_scalar && !return_bool {
                return Err(ParseError {
                    position: op_position,
                    message: "comparisons between scalars must use bool modifier".into(),
                });
            }
            left = MetricExpr::Binary { op, return_bool, matching, left: Box::new(left), right: Box::new(right) };
        }
        Ok(left)
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Token::LeftParen, "(")?;
        let mut labels = Vec::new();
        if !matches!(self.peek(), Token::RightParen) {
            loop {
                labels.push(self.ident("label name")?);
                if !matches!(self.peek(), Token::Comma) {
                    break;
                }
                self.next();
            }
        }
        self.expect(Token::RightParen, ", or )")?;
        Ok(labels)
    }

    fn vector_matching(&mut self, op: BinaryOp) -> Result<VectorMatching, ParseError> {
        let mut matching = VectorMatching::default();
        if self.is_keyword("on") || self.is_keyword("ignoring") {
            matching.on = Some(self.is_keyword("on"));
            self.next();
            matching.labels = self.label_list()?;
            if self.is_keyword("group_left") || self.is_keyword("group_right") {
                if op.is_set_operator() {
                    return Err(
                        self.error_here(format!("syntax error: no grouping allowed for {} operation", op.symbol()))
                    );
                }
                matching.group_left = Some(self.is_keyword("group_left"));
                self.next();
                if matches!(self.peek(), Token::LeftParen) {
                    matching.include = self.label_list()?;
                }
            }
        }
        Ok(matching)
    }

    fn unary(&mut self) -> Result<MetricExpr, ParseError> {
        match self.peek() {
            Token::Minus | Token::Plus => {
                let negative = matches!(self.peek(), Token::Minus);
                self.next();
                let inner = self.unary()?;
                Ok(match inner {
                    MetricExpr::Literal(value) => MetricExpr::Literal(if negative { -value } else { value }),
                    other if negative => MetricExpr::Binary {
                        op: BinaryOp::Mul,
                        return_bool: false,
                        matching: VectorMatching::default(),
                        left: Box::new(MetricExpr::Literal(-1.0)),
                        right: Box::new(other),
                    },
                    other => other,
                })
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<MetricExpr, ParseError> {
        match self.peek().clone() {
            Token::Number(value) => {
                self.next();
                Ok(MetricExpr::Literal(value))
            }
            Token::LeftParen => {
                self.next();
                let inner = self.binary(0)?;
                self.expect(Token::RightParen, ")")?;
                Ok(inner)
            }
            Token::Ident(name) => {
                if let Some(op) = RangeOp::from_name(&name) {
                    self.next();
                    return self.range_aggregation(op);
                }
                if let Some(op) = VectorOp::from_name(&name) {
                    self.next();
                    return self.vector_aggregation(op);
                }
                match name.as_str() {
                    "vector" => {
                        self.next();
                        self.expect(Token::LeftParen, "(")?;
                        let value = self.number("number")?;
                        self.expect(Token::RightParen, ")")?;
                        Ok(MetricExpr::Vector1(value))
                    }
                    "label_replace" => {
                        self.next();
                        self.expect(Token::LeftParen, "(")?;
                        let expr = self.binary(0)?;
                        let mut strings = Vec::with_capacity(4);
                        for _ in 0..4 {
                            self.expect(Token::Comma, ",")?;
                            strings.push((self.position(), self.string("quoted string")?));
                        }
                        self.expect(Token::RightParen, ")")?;
                        let (regex_position, regex) = strings.pop().unwrap_or_default();
                        regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|error| ParseError {
                            position: regex_position,
                            message: format!("invalid regular expression {regex:?} in label_replace: {}", first_line(&error.to_string())),
                        })?;
                        let (_, src) = strings.pop().unwrap_or_default();
                        let (_, replacement) = strings.pop().unwrap_or_default();
                        let (dst_position, dst) = strings.pop().unwrap_or_default();
                        if !is_label_name(&dst) {
                            return Err(ParseError {
                                position: dst_position,
                                message: format!("invalid destination label name in label_replace: {dst:?}"),
                            });
                        }
                        Ok(MetricExpr::LabelReplace { expr: Box::new(expr), dst, replacement, src, regex })
                    }
                    _ => Err(self.error_here(format!("syntax error: unexpected identifier {name}, expecting a function or aggregation"))),
                }
            }
            Token::LeftBrace => Err(self.error_here(
                "syntax error: a log query cannot be used here: wrap it in a range aggregation such as count_over_time({...}[5m])".into(),
            )),
            _ => Err(self.unexpected("a number, a function or an aggregation")),
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.is_keyword("by") || self.is_keyword("without") {
            let without = self.is_keyword("without");
            self.next();
            let labels = self.label_list()?;
            return Ok(Some(Grouping { without, labels }));
        }
        Ok(None)
    }

    fn range_aggregation(&mut self, op: RangeOp) -> Result<MetricExpr, ParseError> {
        let start = self.tokens[self.at.saturating_sub(1)].1;
        self.expect(Token::LeftParen, "(")?;
        let parameter = if op == RangeOp::QuantileOverTime {
            let value = self.number("quantile")?;
            self.expect(Token::Comma, ",")?;
            Some(value)
        } else {
            None
        };
        let range = self.log_range()?;
        self.expect(Token::RightParen, ")")?;
        let grouping = self.grouping()?;
        if op.needs_unwrap() && range.unwrap_stage().is_none() {
            return Err(ParseError {
                position: start,
                message: format!("invalid aggregation {} without unwrap", op.name()),
            });
        }
        if !op.allows_unwrap() && range.unwrap_stage().is_some() {
            return Err(ParseError {
                position: start,
                message: format!("invalid aggregation {} with unwrap", op.name()),
            });
        }
        if grouping.is_some() && range.unwrap_stage().is_none() {
            return Err(ParseError {
                position: start,
                message: format!("grouping not allowed for {} aggregation", op.name()),
            });
        }
        Ok(MetricExpr::Range { op, parameter, range, grouping })
    }

    /// `{...} | stages [5m] offset 1h`, `{...}[5m] | stages`, or `({...} | stages)[5m]`.
    fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let log = if matches!(self.peek(), Token::LeftParen) {
            self.next();
            let log = self.log_expr()?;
            self.expect(Token::RightParen, ")")?;
            log
        } else if matches!(self.peek(), Token::LeftBrace) {
            self.log_expr()?
        } else {
            return Err(self.unexpected("a log query with a range, such as {app=\"x\"}[5m]"));
        };
        let mut log = log;
        self.expect(Token::LeftBracket, "a pipeline stage or a range such as [5m]")?;
        let range_position = self.position();
        let range_ns = self.duration("range duration such as 5m")?;
        if range_ns <= 0 {
            return Err(ParseError { position: range_position, message: "range must be above zero".into() });
        }
        self.expect(Token::RightBracket, "]")?;
        let mut offset_ns = 0;
        if self.is_keyword("offset") {
            self.next();
            offset_ns = self.duration("offset duration")?;
        }
        // Stages may also follow the range.
        self.stages(&mut log.stages)?;
        if offset_ns == 0 && self.is_keyword("offset") {
            self.next();
            offset_ns = self.duration("offset duration")?;
        }
        let unwraps = log.stages.iter().filter(|stage| matches!(stage, Stage::Unwrap(_))).count();
        if unwraps > 1 {
            return Err(ParseError { position: range_position, message: "only one unwrap is allowed".into() });
        }
        Ok(LogRange { log, range_ns, offset_ns })
    }

    fn vector_aggregation(&mut self, op: VectorOp) -> Result<MetricExpr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect(Token::LeftParen, "(")?;
        let parameter = if op.takes_parameter() {
            let position = self.position();
            let value = self.number("parameter")?;
            if value.fract() != 0.0 || value < 1.0 {
                return Err(ParseError {
                    position,
                    message: format!("invalid parameter for {}: k must be a positive integer", op.name()),
                });
            }
            self.expect(Token::Comma, ",")?;
            Some(value)
        } else {
            None
        };
        let expr = self.binary(0)?;
        self.expect(Token::RightParen, ")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        if is_scalar(&expr) {
            return Err(self.error_here(format!("syntax error: {} needs a vector, not a number", op.name())));
        }
        Ok(MetricExpr::Vector { op, parameter, grouping, expr: Box::new(expr) })
    }
}

/// A number literal, or arithmetic on number literals only.
fn is_scalar(expr: &MetricExpr) -> bool {
    match expr {
        MetricExpr::Literal(_) => true,
        MetricExpr::Binary { left, right, .. } => is_scalar(left) && is_scalar(right),
        _ => false,
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn first_line(text: &str) -> String {
    text.lines().rfind(|line| !line.trim().is_empty()).unwrap_or(text).trim().to_string()
}

/// Checks an `ip(...)` argument: an address, a range `a-b`, or a CIDR block.
fn validate_ip_pattern(pattern: &str) -> Result<(), String> {
    let valid = if let Some((address, bits)) = pattern.split_once('/') {
        let address: Option<std::net::IpAddr> = address.trim().parse().ok();
        let bits: Option<u8> = bits.trim().parse().ok();
        matches!(
            (address, bits),
            (Some(std::net::IpAddr::V4(_)), Some(0..=32)) | (Some(std::net::IpAddr::V6(_)), Some(0..=128))
        )
    } else if let Some((from, to)) = pattern.split_once('-') {
        let from: Option<std::net::IpAddr> = from.trim().parse().ok();
        let to: Option<std::net::IpAddr> = to.trim().parse().ok();
        matches!((from, to), (Some(a), Some(b)) if a.is_ipv4() == b.is_ipv4())
    } else {
        pattern.trim().parse::<std::net::IpAddr>().is_ok()
    };
    if valid {
        Ok(())
    } else {
        Err(format!("invalid ip pattern {pattern:?}: expecting an address, a range a-b or a CIDR block"))
    }
}
