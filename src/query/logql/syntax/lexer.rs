//! LogQL tokens: the lexer turns a query into tokens, each with the line and column where it
//! starts, so that every parse error can name its position.

use std::fmt;

/// A token's kind and its text where the text matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A name: label names, keywords, function names. Keywords are recognised by the parser,
    /// where they are expected, so that a label may be called `by` or `json`.
    Ident(String),
    /// A double-quoted (Go escapes) or back-quoted (raw) string, unescaped.
    Str(String),
    /// A plain number.
    Number(f64),
    /// A duration such as `5m`, `1h30m`, `250ms` or `1.5s`, in nanoseconds, with its text.
    Duration {
        ns: i64,
        text: String,
    },
    /// A byte size such as `20MB` or `1.5KiB`, in bytes, with its text.
    Bytes {
        bytes: f64,
        text: String,
    },
    LeftBrace,
    RightBrace,
    LeftParen,
    RightParen,
    LeftBracket,
    RightBracket,
    Comma,
    /// `|`
    Pipe,
    /// `|=`
    PipeEqual,
    /// `|~`
    PipeMatch,
    /// `|>`
    PipePattern,
    /// `!>`
    NotPattern,
    /// `=`
    Equal,
    /// `==`
    EqualEqual,
    /// `!=`
    NotEqual,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    /// A parser flag: `--strict`, `--keep-empty`.
    Flag(String),
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Token::Ident(name) => return f.write_str(name),
            Token::Str(text) => return write!(f, "{text:?}"),
            Token::Number(value) => return write!(f, "{value}"),
            Token::Duration { text, .. } | Token::Bytes { text, .. } => return f.write_str(text),
            Token::Flag(flag) => return write!(f, "--{flag}"),
            Token::LeftBrace => "{",
            Token::RightBrace => "}",
            Token::LeftParen => "(",
            Token::RightParen => ")",
            Token::LeftBracket => "[",
            Token::RightBracket => "]",
            Token::Comma => ",",
            Token::Pipe => "|",
            Token::PipeEqual => "|=",
            Token::PipeMatch => "|~",
            Token::PipePattern => "|>",
            Token::NotPattern => "!>",
            Token::Equal => "=",
            Token::EqualEqual => "==",
            Token::NotEqual => "!=",
            Token::Match => "=~",
            Token::NotMatch => "!~",
            Token::Greater => ">",
            Token::GreaterEqual => ">=",
            Token::Less => "<",
            Token::LessEqual => "<=",
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

/// Where a token starts: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A LogQL syntax error, worded as Loki words them: `parse error at line 1, col 16: ...`.
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

/// Splits a query into tokens; the last one is [`Token::End`].
pub fn tokenize(input: &str) -> Result<Vec<(Token, Position)>, ParseError> {
    let mut lexer = Lexer { chars: input.chars().collect(), at: 0, line: 1, column: 1 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_space_and_comments();
        let position = lexer.position();
        let Some(c) = lexer.peek(0) else {
            tokens.push((Token::End, position));
            return Ok(tokens);
        };
        let token = match c {
            '{' => lexer.single(Token::LeftBrace),
            '}' => lexer.single(Token::RightBrace),
            '(' => lexer.single(Token::LeftParen),
            ')' => lexer.single(Token::RightParen),
            '[' => lexer.single(Token::LeftBracket),
            ']' => lexer.single(Token::RightBracket),
            ',' => lexer.single(Token::Comma),
            '+' => lexer.single(Token::Plus),
            '*' => lexer.single(Token::Star),
            '/' => lexer.single(Token::Slash),
            '%' => lexer.single(Token::Percent),
            '^' => lexer.single(Token::Caret),
            '|' => match lexer.peek(1) {
                Some('=') => lexer.double(Token::PipeEqual),
                Some('~') => lexer.double(Token::PipeMatch),
                Some('>') => lexer.double(Token::PipePattern),
                _ => lexer.single(Token::Pipe),
            },
            '!' => match lexer.peek(1) {
                Some('=') => lexer.double(Token::NotEqual),
                Some('~') => lexer.double(Token::NotMatch),
                Some('>') => lexer.double(Token::NotPattern),
                _ => return Err(error(position, "syntax error: unexpected character '!'".into())),
            },
            '=' => match lexer.peek(1) {
                Some('=') => lexer.double(Token::EqualEqual),
                Some('~') => lexer.double(Token::Match),
                _ => lexer.single(Token::Equal),
            },
            '>' => match lexer.peek(1) {
                Some('=') => lexer.double(Token::GreaterEqual),
                _ => lexer.single(Token::Greater),
            },
            '<' => match lexer.peek(1) {
                Some('=') => lexer.double(Token::LessEqual),
                _ => lexer.single(Token::Less),
            },
            '-' => {
                if lexer.peek(1) == Some('-') && lexer.peek(2).is_some_and(|c| c.is_ascii_alphabetic()) {
                    lexer.at += 2;
                    lexer.column += 2;
                    let name = lexer.take_while(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    Token::Flag(name)
                } else {
                    lexer.single(Token::Minus)
                }
            }
            '"' => Token::Str(lexer.quoted(position)?),
            '`' => Token::Str(lexer.raw(position)?),
            c if c.is_ascii_digit() || (c == '.' && lexer.peek(1).is_some_and(|d| d.is_ascii_digit())) => {
                lexer.number(position)?
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                Token::Ident(lexer.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
            }
            other => return Err(error(position, format!("syntax error: unexpected character {other:?}"))),
        };
        tokens.push((token, position));
    }
}

fn error(position: Position, message: String) -> ParseError {
    ParseError { position, message }
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

    fn single(&mut self, token: Token) -> Token {
        self.bump();
        token
    }

    fn double(&mut self, token: Token) -> Token {
        self.bump();
        self.bump();
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

    fn skip_space_and_comments(&mut self) {
        while let Some(c) = self.peek(0) {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// A double-quoted string with Go's escapes.
    fn quoted(&mut self, start: Position) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(error(start, "syntax error: unterminated string".into()));
            };
            match c {
                '"' => return Ok(out),
                '\n' => return Err(error(start, "syntax error: newline in string".into())),
                '\\' => {
                    let escape_at = self.position();
                    let Some(escaped) = self.bump() else {
                        return Err(error(start, "syntax error: unterminated string".into()));
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
                                let digit = self.bump().and_then(|c| c.to_digit(8));
                                let Some(digit) = digit else {
                                    return Err(error(
                                        escape_at,
                                        "syntax error: invalid octal escape in string".into(),
                                    ));
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
                return Err(error(at, "syntax error: invalid hex escape in string".into()));
            };
            value = value * 16 + digit;
        }
        char::from_u32(value).ok_or_else(|| error(at, "syntax error: escape is not a valid character".into()))
    }

    /// A back-quoted raw string: no escapes.
    fn raw(&mut self, start: Position) -> Result<String, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('`') => return Ok(out),
                Some(c) => out.push(c),
                None => return Err(error(start, "syntax error: unterminated raw string".into())),
            }
        }
    }

    /// A number, or a duration or byte size when units follow the digits.
    fn number(&mut self, start: Position) -> Result<Token, ParseError> {
        let mut text = self.take_while(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
        // An exponent's sign: `1e-3`.
        if (text.ends_with('e') || text.ends_with('E'))
            && matches!(self.peek(0), Some('+' | '-'))
            && self.peek(1).is_some_and(|c| c.is_ascii_digit())
            && !text.starts_with("0x")
        {
            text.push(self.bump().unwrap_or('+'));
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
        }
        if let Some(value) = parse_number(&text) {
            return Ok(Token::Number(value));
        }
        if let Some(ns) = parse_go_duration(&text) {
            return Ok(Token::Duration { ns, text });
        }
        if let Some(bytes) = parse_bytes(&text) {
            return Ok(Token::Bytes { bytes, text });
        }
        Err(error(start, format!("syntax error: invalid number, duration or byte size {text:?}")))
    }
}

fn parse_number(text: &str) -> Option<f64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if text.chars().any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    text.parse().ok()
}

/// Go's `time.ParseDuration` units, plus Prometheus's `d`, `w` and `y` (ranges use them).
const DURATION_UNITS: [(&str, f64); 11] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("μs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
    ("d", 86_400e9),
    ("w", 604_800e9),
    ("y", 31_536_000e9),
];

/// A duration as Go and Prometheus write them: one or more `<number><unit>` terms (`1h30m`,
/// `1.5s`, `250ms`, `7d`). In nanoseconds; `None` if it is not one or does not fit.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let (_, scale) = DURATION_UNITS.iter().find(|(name, _)| *name == unit)?;
        total += number * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total < i64::MAX as f64).then_some(total as i64)
}

/// A byte size as Go's humanize package reads it: a number and an SI or IEC unit, case
/// insensitive (`20MB`, `1.5KiB`, `512b`).
pub fn parse_bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    if split == 0 {
        return None;
    }
    let number: f64 = text[..split].parse().ok()?;
    let unit = text[split..].to_ascii_lowercase();
    let scale = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" | "ki" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" | "mi" => 1_048_576.0,
        "g" | "gb" => 1e9,
        "gib" | "gi" => 1_073_741_824.0,
        "t" | "tb" => 1e12,
        "tib" | "ti" => 1_099_511_627_776.0,
        "p" | "pb" => 1e15,
        "pib" | "pi" => 1_125_899_906_842_624.0,
        "e" | "eb" => 1e18,
        "eib" | "ei" => 1_152_921_504_606_846_976.0,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<Token> {
        tokenize(input).unwrap().into_iter().map(|(token, _)| token).collect()
    }

    #[test]
    fn operators_and_literals() {
        assert_eq!(
            kinds(r#"{a="b\n"} |= `x\y` != "z" |~ "r" !~ "s" |> "<_>" !> "p""#),
            vec![
                Token::LeftBrace,
                Token::Ident("a".into()),
                Token::Equal,
                Token::Str("b\n".into()),
                Token::RightBrace,
                Token::PipeEqual,
                Token::Str("x\\y".into()),
                Token::NotEqual,
                Token::Str("z".into()),
                Token::PipeMatch,
                Token::Str("r".into()),
                Token::NotMatch,
                Token::Str("s".into()),
                Token::PipePattern,
                Token::Str("<_>".into()),
                Token::NotPattern,
                Token::Str("p".into()),
                Token::End,
            ]
        );
        assert_eq!(
            kinds("5m 1h30m 250ms 1.5s 20MB 1KiB 42 0.5 1e3 --strict"),
            vec![
                Token::Duration { ns: 300_000_000_000, text: "5m".into() },
                Token::Duration { ns: 5_400_000_000_000, text: "1h30m".into() },
                Token::Duration { ns: 250_000_000, text: "250ms".into() },
                Token::Duration { ns: 1_500_000_000, text: "1.5s".into() },
                Token::Bytes { bytes: 20e6, text: "20MB".into() },
                Token::Bytes { bytes: 1024.0, text: "1KiB".into() },
                Token::Number(42.0),
                Token::Number(0.5),
                Token::Number(1000.0),
                Token::Flag("strict".into()),
                Token::End,
            ]
        );
    }

    #[test]
    fn errors_name_the_position() {
        let error = tokenize("{a=\"b}").unwrap_err();
        assert_eq!(error.to_string(), "parse error at line 1, col 4: syntax error: unterminated string");
        let error = tokenize("{a=\"b\"}\n  ! x").unwrap_err();
        assert_eq!(error.position, Position { line: 2, column: 3 });
        assert!(tokenize(r#"{a="\q"}"#).unwrap_err().message.contains("unknown escape"));
        assert!(tokenize("12xyz").unwrap_err().message.contains("invalid number"));
    }
}
