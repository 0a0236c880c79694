//! TraceQL tokens: the lexer turns a query into tokens, each with the line and column where it
//! starts, so that every parse error can name its position.
//!
//! Attribute references are recognised here, whole: `.x`, `span.x`, `resource."a b".c`,
//! `span:name`. As in Tempo, an attribute name runs until whitespace or one of
//! `{ } ( ) = ~ ! < > & | ^ ,`, so `.http.status-code` and `.a+b` are names; arithmetic on
//! attributes needs spaces (`.a + 1`).

use std::fmt;

/// Where a token starts: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A TraceQL syntax or type error: `parse error at line 1, col 12: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: Position,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at line {}, col {}: {}", self.position.line, self.position.column, self.message)
    }
}

impl std::error::Error for ParseError {}

pub(crate) fn error(position: Position, message: impl Into<String>) -> ParseError {
    ParseError { position, message: message.into() }
}

/// The scope written before an attribute name (`span.`, `resource.`, ...) or an intrinsic
/// (`span:`, `trace:`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeWord {
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
    Trace,
}

impl ScopeWord {
    fn from_word(word: &str) -> Option<ScopeWord> {
        Some(match word {
            "span" => ScopeWord::Span,
            "resource" => ScopeWord::Resource,
            "event" => ScopeWord::Event,
            "link" => ScopeWord::Link,
            "instrumentation" => ScopeWord::Instrumentation,
            "trace" => ScopeWord::Trace,
            _ => return None,
        })
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            ScopeWord::Span => "span",
            ScopeWord::Resource => "resource",
            ScopeWord::Event => "event",
            ScopeWord::Link => "link",
            ScopeWord::Instrumentation => "instrumentation",
            ScopeWord::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A bare word: keywords, unscoped intrinsics, function names.
    Ident(String),
    /// `.name` (scope `None`) or `scope.name`; quoted parts already unquoted.
    Attribute {
        scope: Option<ScopeWord>,
        name: String,
    },
    /// `scope:name`, such as `span:duration` or `trace:rootService`.
    ScopedIntrinsic {
        scope: ScopeWord,
        name: String,
    },
    /// A double-quoted (escapes) or back-quoted (raw) string, unescaped.
    Str(String),
    Int(i64),
    Float(f64),
    /// A duration such as `100ms`, `1.5s` or `1h30m`, in nanoseconds, with its text.
    Duration {
        ns: i64,
        text: String,
    },
    LeftBrace,
    RightBrace,
    LeftParen,
    RightParen,
    Comma,
    /// `|`
    Pipe,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `!`
    Not,
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Match,
    /// `!~`: a negated regex match, or between spansets the not-sibling operator.
    NotMatch,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    /// `>>`
    Descendant,
    /// `<<`
    Ancestor,
    /// `~`
    Tilde,
    /// `!>`
    NotChild,
    /// `!>>`
    NotDescendant,
    /// `!<`
    NotParent,
    /// `!<<`
    NotAncestor,
    /// `&>`
    UnionChild,
    /// `&>>`
    UnionDescendant,
    /// `&<`
    UnionParent,
    /// `&<<`
    UnionAncestor,
    /// `&~`
    UnionSibling,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Token::Ident(name) => return f.write_str(name),
            Token::Attribute { scope: Some(scope), name } => return write!(f, "{}.{name}", scope.word()),
            Token::Attribute { scope: None, name } => return write!(f, ".{name}"),
            Token::ScopedIntrinsic { scope, name } => return write!(f, "{}:{name}", scope.word()),
            Token::Str(text) => return write!(f, "{text:?}"),
            Token::Int(value) => return write!(f, "{value}"),
            Token::Float(value) => return write!(f, "{value}"),
            Token::Duration { text, .. } => return f.write_str(text),
            Token::LeftBrace => "{",
            Token::RightBrace => "}",
            Token::LeftParen => "(",
            Token::RightParen => ")",
            Token::Comma => ",",
            Token::Pipe => "|",
            Token::And => "&&",
            Token::Or => "||",
            Token::Not => "!",
            Token::Equal => "=",
            Token::NotEqual => "!=",
            Token::Match => "=~",
            Token::NotMatch => "!~",
            Token::Greater => ">",
            Token::GreaterEqual => ">=",
            Token::Less => "<",
            Token::LessEqual => "<=",
            Token::Descendant => ">>",
            Token::Ancestor => "<<",
            Token::Tilde => "~",
            Token::NotChild => "!>",
            Token::NotDescendant => "!>>",
            Token::NotParent => "!<",
            Token::NotAncestor => "!<<",
            Token::UnionChild => "&>",
            Token::UnionDescendant => "&>>",
            Token::UnionParent => "&<",
            Token::UnionAncestor => "&<<",
            Token::UnionSibling => "&~",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::Caret => "^",
            Token::End => "end of query",
        };
        f.write_str(text)
    }
}

/// Splits a query into tokens; the last one is [`Token::End`].
pub(crate) fn tokenize(input: &str) -> Result<Vec<(Token, Position)>, ParseError> {
    let mut lexer = Lexer { chars: input.chars().collect(), at: 0, line: 1, column: 1 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_space();
        let position = lexer.position();
        let Some(c) = lexer.peek(0) else {
            tokens.push((Token::End, position));
            return Ok(tokens);
        };
        let next = lexer.peek(1);
        let after = lexer.peek(2);
        let token = match c {
            '{' => lexer.take(1, Token::LeftBrace),
            '}' => lexer.take(1, Token::RightBrace),
            '(' => lexer.take(1, Token::LeftParen),
            ')' => lexer.take(1, Token::RightParen),
            ',' => lexer.take(1, Token::Comma),
            '+' => lexer.take(1, Token::Plus),
            '-' => lexer.take(1, Token::Minus),
            '*' => lexer.take(1, Token::Star),
            '/' => lexer.take(1, Token::Slash),
            '%' => lexer.take(1, Token::Percent),
            '^' => lexer.take(1, Token::Caret),
            '~' => lexer.take(1, Token::Tilde),
            '|' if next == Some('|') => lexer.take(2, Token::Or),
            '|' => lexer.take(1, Token::Pipe),
            '&' => match (next, after) {
                (Some('&'), _) => lexer.take(2, Token::And),
                (Some('>'), Some('>')) => lexer.take(3, Token::UnionDescendant),
                (Some('>'), _) => lexer.take(2, Token::UnionChild),
                (Some('<'), Some('<')) => lexer.take(3, Token::UnionAncestor),
                (Some('<'), _) => lexer.take(2, Token::UnionParent),
                (Some('~'), _) => lexer.take(2, Token::UnionSibling),
                _ => return Err(error(position, "syntax error: unexpected &, expected && or a union operator")),
            },
            '!' => match (next, after) {
                (Some('='), _) => lexer.take(2, Token::NotEqual),
                (Some('~'), _) => lexer.take(2, Token::NotMatch),
                (Some('>'), Some('>')) => lexer.take(3, Token::NotDescendant),
                (Some('>'), _) => lexer.take(2, Token::NotChild),
                (Some('<'), Some('<')) => lexer.take(3, Token::NotAncestor),
                (Some('<'), _) => lexer.take(2, Token::NotParent),
                _ => lexer.take(1, Token::Not),
            },
            '=' => match next {
                Some('~') => lexer.take(2, Token::Match),
                Some('=') => return Err(error(position, "syntax error: unexpected ==, use = for equality")),
                _ => lexer.take(1, Token::Equal),
            },
            '>' => match next {
                Some('=') => lexer.take(2, Token::GreaterEqual),
                Some('>') => lexer.take(2, Token::Descendant),
                _ => lexer.take(1, Token::Greater),
            },
            '<' => match next {
                Some('=') => lexer.take(2, Token::LessEqual),
                Some('<') => lexer.take(2, Token::Ancestor),
                _ => lexer.take(1, Token::Less),
            },
            '"' => Token::Str(lexer.quoted(position)?),
            '`' => Token::Str(lexer.raw(position)?),
            '.' => {
                lexer.bump();
                Token::Attribute { scope: None, name: lexer.attribute_name(position)? }
            }
            c if c.is_ascii_digit() => lexer.number(position)?,
            c if c.is_alphabetic() || c == '_' => lexer.word(position)?,
            other => return Err(error(position, format!("syntax error: unexpected character {other:?}"))),
        };
        tokens.push((token, position));
    }
}

/// Whether a character can be part of an unquoted attribute name.
fn is_attribute_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(c, '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ',' | '"')
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn position(&self) -> Position {
        Position { line: self.line, column: self.column }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn take(&mut self, count: usize, token: Token) -> Token {
        for _ in 0..count {
            self.bump();
        }
        token
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(|&c| keep(c)) {
            out.push(c);
            self.bump();
        }
        out
    }

    fn skip_space(&mut self) {
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// An attribute name after its scope's dot: unquoted runs and `"quoted"` parts, as one name.
    fn attribute_name(&mut self, start: Position) -> Result<String, ParseError> {
        let mut name = String::new();
        loop {
            match self.peek(0) {
                Some('"') => {
                    let at = self.position();
                    name.push_str(&self.quoted_name(at)?);
                }
                Some(c) if is_attribute_char(c) => name.push_str(&self.take_while(is_attribute_char)),
                _ => break,
            }
        }
        if name.is_empty() {
            return Err(error(start, "syntax error: expected an attribute name after the dot"));
        }
        Ok(name)
    }

    /// A quoted part of an attribute name: only `\"` and `\\` are escapes.
    fn quoted_name(&mut self, start: Position) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    Some(other) => {
                        return Err(error(
                            start,
                            format!("syntax error: unknown escape \\{other} in a quoted attribute name"),
                        ));
                    }
                    None => break,
                },
                Some(c) => out.push(c),
                None => break,
            }
        }
        Err(error(start, "syntax error: unterminated quoted attribute name"))
    }

    /// A word: a keyword or function name, or the scope of an attribute (`span.x`) or of an
    /// intrinsic (`span:name`).
    fn word(&mut self, start: Position) -> Result<Token, ParseError> {
        let word = self.take_while(|c| c.is_alphanumeric() || c == '_');
        match self.peek(0) {
            Some('.') => {
                // `trace.x` is a token, refused by the parser: the trace scope has intrinsics only.
                let Some(scope) = ScopeWord::from_word(&word) else {
                    return Err(error(
                        start,
                        format!(
                            "syntax error: unknown attribute scope {word:?}, expected span, resource, event, link or \
                             instrumentation (or a leading dot for an unscoped attribute)"
                        ),
                    ));
                };
                self.bump();
                Ok(Token::Attribute { scope: Some(scope), name: self.attribute_name(start)? })
            }
            Some(':') => {
                let Some(scope) = ScopeWord::from_word(&word).filter(|scope| *scope != ScopeWord::Resource) else {
                    return Err(error(
                        start,
                        format!(
                            "syntax error: unknown intrinsic scope {word:?}, expected span, trace, event, link or \
                             instrumentation"
                        ),
                    ));
                };
                self.bump();
                let name = self.take_while(|c| c.is_alphanumeric() || c == '_');
                if name.is_empty() {
                    return Err(error(start, format!("syntax error: expected an intrinsic name after {word}:")));
                }
                Ok(Token::ScopedIntrinsic { scope, name })
            }
            _ => Ok(Token::Ident(word)),
        }
    }

    /// A double-quoted string with Go's escapes.
    fn quoted(&mut self, start: Position) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(error(start, "syntax error: unterminated string"));
            };
            match c {
                '"' => return Ok(out),
                '\n' => return Err(error(start, "syntax error: newline in string")),
                '\\' => {
                    let escape_at = self.position();
                    let Some(escaped) = self.bump() else {
                        return Err(error(start, "syntax error: unterminated string"));
                    };
                    match escaped {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        '\'' => out.push('\''),
                        'x' => out.push(self.hex_escape(2, escape_at)?),
                        'u' => out.push(self.hex_escape(4, escape_at)?),
                        'U' => out.push(self.hex_escape(8, escape_at)?),
                        '0'..='7' => {
                            let mut value = escaped.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                let Some(digit) = self.bump().and_then(|c| c.to_digit(8)) else {
                                    return Err(error(escape_at, "syntax error: invalid octal escape in string"));
                                };
                                value = value * 8 + digit;
                            }
                            out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
                        }
                        other => {
                            return Err(error(
                                escape_at,
                                format!("syntax error: unknown escape sequence \\{other} in string"),
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize, at: Position) -> Result<char, ParseError> {
        let mut value = 0u32;
        for _ in 0..digits {
            let Some(digit) = self.bump().and_then(|c| c.to_digit(16)) else {
                return Err(error(at, "syntax error: invalid hex escape in string"));
            };
            value = value * 16 + digit;
        }
        char::from_u32(value).ok_or_else(|| error(at, "syntax error: escape is not a valid character"))
    }

    /// A back-quoted raw string: no escapes.
    fn raw(&mut self, start: Position) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('`') => return Ok(out),
                Some(c) => out.push(c),
                None => return Err(error(start, "syntax error: unterminated raw string")),
            }
        }
    }

    /// An integer, a float (`1.5`, `2e3`), or a duration when a unit follows (`100ms`, `1h30m`).
    fn number(&mut self, start: Position) -> Result<Token, ParseError> {
        let mut text = self.take_while(|c| c.is_ascii_digit());
        let mut float = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            text.push('.');
            self.bump();
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
        }
        let exponent_digit_at = match self.peek(1) {
            Some('+' | '-') => 2,
            _ => 1,
        };
        if matches!(self.peek(0), Some('e' | 'E')) && self.peek(exponent_digit_at).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            for _ in 0..exponent_digit_at {
                text.push(self.bump().unwrap_or('e'));
            }
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
        }
        if self.peek(0).is_some_and(|c| c.is_alphabetic()) {
            // A duration: units and more number-unit pairs.
            text.push_str(&self.take_while(|c| c.is_alphanumeric() || c == '.'));
            return match parse_duration_ns(&text) {
                Some(ns) => Ok(Token::Duration { ns, text }),
                None => Err(error(
                    start,
                    format!("syntax error: invalid duration {text:?}, expected units ns, us, µs, ms, s, m or h"),
                )),
            };
        }
        if float {
            return text
                .parse()
                .map(Token::Float)
                .map_err(|_| error(start, format!("syntax error: invalid number {text:?}")));
        }
        text.parse().map(Token::Int).map_err(|_| error(start, format!("syntax error: integer {text} out of range")))
    }
}

/// Duration units as Go's `time.ParseDuration` knows them, in nanoseconds.
const DURATION_UNITS: [(&str, i64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration without sign (`300ms`, `1.5h`, `2h45m`) into nanoseconds; `None` when
/// malformed or out of range. Fractions are exact to the nanosecond.
pub(crate) fn parse_duration_ns(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (_, scale) = DURATION_UNITS.iter().find(|(name, _)| *name == unit)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut part = whole.checked_mul(*scale)?;
        if !fraction.is_empty() {
            if !fraction.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // The fraction scaled by the unit, digit by digit, truncated to whole nanoseconds.
            let mut place = *scale;
            let mut extra: i64 = 0;
            for digit in fraction.bytes() {
                place /= 10;
                if place == 0 {
                    break;
                }
                extra += i64::from(digit - b'0') * place;
            }
            part = part.checked_add(extra)?;
        }
        total = total.checked_add(part)?;
    }
    Some(total)
}

/// Formats nanoseconds as Go's `time.Duration.String` does (`1.5s`, `100ms`, `1h2m3s`, `0s`).
pub(crate) fn format_duration_ns(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let negative = ns < 0;
    let magnitude = ns.unsigned_abs();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if magnitude < 1_000_000_000 {
        // Below a second: the largest unit that keeps an integer part, with a decimal fraction.
        let (scale, unit) = if magnitude < 1_000 {
            (1, "ns")
        } else if magnitude < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        out.push_str(&decimal(magnitude, scale));
        out.push_str(unit);
        return out;
    }
    let hours = magnitude / 3_600_000_000_000;
    let minutes = magnitude / 60_000_000_000 % 60;
    let seconds_ns = magnitude % 60_000_000_000;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(seconds_ns, 1_000_000_000));
    out.push('s');
    out
}

/// `value / scale` in decimal, without trailing zeros in the fraction.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<Token> {
        tokenize(input).unwrap().into_iter().map(|(token, _)| token).collect()
    }

    #[test]
    fn attributes_are_whole_tokens() {
        assert_eq!(
            kinds(r#"{ .http.status-code = 1 && span."a b".c != resource.x }"#),
            vec![
                Token::LeftBrace,
                Token::Attribute { scope: None, name: "http.status-code".into() },
                Token::Equal,
                Token::Int(1),
                Token::And,
                Token::Attribute { scope: Some(ScopeWord::Span), name: "a b.c".into() },
                Token::NotEqual,
                Token::Attribute { scope: Some(ScopeWord::Resource), name: "x".into() },
                Token::RightBrace,
                Token::End,
            ]
        );
        assert_eq!(
            kinds("trace:rootService span:id"),
            vec![
                Token::ScopedIntrinsic { scope: ScopeWord::Trace, name: "rootService".into() },
                Token::ScopedIntrinsic { scope: ScopeWord::Span, name: "id".into() },
                Token::End,
            ]
        );
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds("> >> >= < << <= ~ !~ !> !>> !< !<< &> &>> &< &<< &~ =~ != ! | ||"),
            vec![
                Token::Greater,
                Token::Descendant,
                Token::GreaterEqual,
                Token::Less,
                Token::Ancestor,
                Token::LessEqual,
                Token::Tilde,
                Token::NotMatch,
                Token::NotChild,
                Token::NotDescendant,
                Token::NotParent,
                Token::NotAncestor,
                Token::UnionChild,
                Token::UnionDescendant,
                Token::UnionParent,
                Token::UnionAncestor,
                Token::UnionSibling,
                Token::Match,
                Token::NotEqual,
                Token::Not,
                Token::Pipe,
                Token::Or,
                Token::End,
            ]
        );
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(
            kinds("12 1.5 2e3 100ms 1.5s 1h30m 3us 4µs 7ns"),
            vec![
                Token::Int(12),
                Token::Float(1.5),
                Token::Float(2000.0),
                Token::Duration { ns: 100_000_000, text: "100ms".into() },
                Token::Duration { ns: 1_500_000_000, text: "1.5s".into() },
                Token::Duration { ns: 5_400_000_000_000, text: "1h30m".into() },
                Token::Duration { ns: 3_000, text: "3us".into() },
                Token::Duration { ns: 4_000, text: "4µs".into() },
                Token::Duration { ns: 7, text: "7ns".into() },
                Token::End,
            ]
        );
        assert!(tokenize("5parsecs").is_err());
        assert!(tokenize("99999999999999999999").is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(
            kinds(r#""a\"b\n\u00e9" `raw\n`"#),
            vec![Token::Str("a\"b\né".into()), Token::Str("raw\\n".into()), Token::End]
        );
        let error = tokenize("{ .a = \"open }").unwrap_err();
        assert_eq!(error.to_string(), "parse error at line 1, col 8: syntax error: unterminated string");
    }

    #[test]
    fn go_durations_print_like_go() {
        for (ns, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (15_000_000, "15ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000, "-2ms"),
        ] {
            assert_eq!(format_duration_ns(ns), text);
        }
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_duration_ns(".5ms"), Some(500_000));
        assert_eq!(parse_duration_ns("5"), None);
        assert_eq!(parse_duration_ns("5d"), None);
    }
}
