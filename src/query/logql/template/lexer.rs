//! Template items: the lexer splits a template into text and the words of its `{{ }}` actions,
//! each with the line and column where it starts. Trim markers (`{{- `, ` -}}`) are applied
//! here, comments are dropped here, and string and character literals are unquoted here.

use super::{Position, TemplateError};

/// One word of a template.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ItemKind {
    /// Text outside actions, after trimming.
    Text(String),
    /// `{{`: an action starts.
    LeftDelim,
    /// `}}`: an action ends.
    RightDelim,
    /// A name: a function.
    Identifier(String),
    /// `.name`, without the dot.
    Field(String),
    /// `$name` or `$`, with the dollar.
    Variable(String),
    /// `.` alone.
    Dot,
    /// A quoted or raw string, unquoted.
    Str(String),
    /// A character constant such as `'a'`, as its code point.
    Char(char),
    /// A number, as written.
    Number(String),
    Bool(bool),
    Nil,
    Keyword(Keyword),
    /// `|`
    Pipe,
    LeftParen,
    RightParen,
    /// `:=`
    Declare,
    /// `=`
    Assign,
    /// `,` (between the two variables of a `range`).
    Comma,
    Eof,
}

/// The words that start or end a control action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

impl Keyword {
    pub(super) fn name(self) -> &'static str {
        match self {
            Keyword::Block => "block",
            Keyword::Break => "break",
            Keyword::Continue => "continue",
            Keyword::Define => "define",
            Keyword::Else => "else",
            Keyword::End => "end",
            Keyword::If => "if",
            Keyword::Range => "range",
            Keyword::Template => "template",
            Keyword::With => "with",
        }
    }
}

/// An item and where it is.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub kind: ItemKind,
    pub position: Position,
    /// Whether white space separates this item from the previous one: operands must be
    /// separated, field chains (`$x.a`) must not be.
    pub space_before: bool,
}

impl ItemKind {
    /// How the item reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            ItemKind::Text(text) => format!("text {text:?}"),
            ItemKind::LeftDelim => "\"{{\"".to_string(),
            ItemKind::RightDelim => "\"}}\"".to_string(),
            ItemKind::Identifier(name) => format!("{name:?}"),
            ItemKind::Field(name) => format!("\".{name}\""),
            ItemKind::Variable(name) => format!("{name:?}"),
            ItemKind::Dot => "\".\"".to_string(),
            ItemKind::Str(text) => format!("{text:?}"),
            ItemKind::Char(c) => format!("'{c}'"),
            ItemKind::Number(text) => format!("{text:?}"),
            ItemKind::Bool(value) => format!("\"{value}\""),
            ItemKind::Nil => "\"nil\"".to_string(),
            ItemKind::Keyword(keyword) => format!("<{}>", keyword.name()),
            ItemKind::Pipe => "\"|\"".to_string(),
            ItemKind::LeftParen => "\"(\"".to_string(),
            ItemKind::RightParen => "\")\"".to_string(),
            ItemKind::Declare => "\":=\"".to_string(),
            ItemKind::Assign => "\"=\"".to_string(),
            ItemKind::Comma => "\",\"".to_string(),
            ItemKind::Eof => "end of template".to_string(),
        }
    }
}

/// The white space that trim markers remove and that separates words in actions.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Turns byte offsets into line and column, moving forward through the text.
struct Positions<'t> {
    text: &'t str,
    /// The offset `line` and `column` describe.
    offset: usize,
    line: usize,
    column: usize,
}

impl Positions<'_> {
    fn at(&mut self, offset: usize) -> Position {
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
            self.column = 1;
        }
        for c in self.text[self.offset..offset].chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = offset;
        Position { line: self.line, column: self.column }
    }
}

/// Splits a template into items; the last one is [`ItemKind::Eof`].
pub(super) fn lex(text: &str) -> Result<Vec<Item>, TemplateError> {
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        at: 0,
        items: Vec::new(),
        positions: Positions { text, offset: 0, line: 1, column: 1 },
        trim_next_text: false,
    };
    lexer.run()?;
    Ok(lexer.items)
}

struct Lexer<'t> {
    text: &'t str,
    bytes: &'t [u8],
    /// The byte offset being looked at.
    at: usize,
    items: Vec<Item>,
    positions: Positions<'t>,
    /// Set by ` -}}`: the next text loses its leading white space.
    trim_next_text: bool,
}

impl<'t> Lexer<'t> {
    fn error(&mut self, offset: usize, message: impl Into<String>) -> TemplateError {
        TemplateError::new(self.positions.at(offset), message)
    }

    fn push(&mut self, kind: ItemKind, offset: usize, space_before: bool) {
        let position = self.positions.at(offset);
        self.items.push(Item { kind, position, space_before });
    }

    fn rest(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    /// Whether ` -}}` starts at the current offset.
    fn at_right_trim(&self) -> bool {
        let rest = self.rest();
        rest.len() >= 4 && is_space(rest[0]) && rest[1] == b'-' && rest[2..].starts_with(b"}}")
    }

    fn run(&mut self) -> Result<(), TemplateError> {
        loop {
            let text_start = self.at;
            let delim = self.text[self.at..].find("{{").map(|found| self.at + found);
            let text_end = delim.unwrap_or(self.bytes.len());
            let left_trim = delim
                .is_some_and(|d| self.bytes.len() > d + 3 && self.bytes[d + 2] == b'-' && is_space(self.bytes[d + 3]));
            let mut begin = text_start;
            let mut end = text_end;
            if std::mem::take(&mut self.trim_next_text) {
                begin = end - self.text[begin..end].trim_start_matches([' ', '\t', '\r', '\n']).len();
            }
            if left_trim {
                end = begin + self.text[begin..end].trim_end_matches([' ', '\t', '\r', '\n']).len();
            }
            if begin < end {
                self.push(ItemKind::Text(self.text[begin..end].to_string()), begin, false);
            }
            let Some(delim) = delim else {
                self.push(ItemKind::Eof, self.bytes.len(), false);
                return Ok(());
            };
            self.at = delim + if left_trim { 4 } else { 2 };
            if self.rest().starts_with(b"/*") {
                self.comment(delim)?;
                continue;
            }
            self.push(ItemKind::LeftDelim, delim, false);
            self.action(delim)?;
        }
    }

    /// A `{{/* ... */}}` comment, dropped; it must close right before the delimiter.
    fn comment(&mut self, delim: usize) -> Result<(), TemplateError> {
        let body = self.at + 2;
        let Some(end) = self.text[body..].find("*/") else {
            return Err(self.error(delim, "unclosed comment"));
        };
        self.at = body + end + 2;
        if self.at_right_trim() {
            self.at += 4;
            self.trim_next_text = true;
            Ok(())
        } else if self.rest().starts_with(b"}}") {
            self.at += 2;
            Ok(())
        } else {
            Err(self.error(delim, "comment ends before closing delimiter"))
        }
    }

    /// The words of one action, up to and including its `}}`.
    fn action(&mut self, delim: usize) -> Result<(), TemplateError> {
        let mut paren_depth = 0usize;
        let mut space_before = true;
        loop {
            if self.at_right_trim() || self.rest().starts_with(b"}}") {
                if paren_depth > 0 {
                    return Err(self.error(self.at, "unclosed left paren"));
                }
                let trim = self.at_right_trim();
                let offset = if trim { self.at + 2 } else { self.at };
                self.push(ItemKind::RightDelim, offset, space_before || trim);
                self.at += if trim { 4 } else { 2 };
                self.trim_next_text = trim;
                return Ok(());
            }
            let Some(c) = self.text[self.at..].chars().next() else {
                return Err(self.error(delim, "unclosed action"));
            };
            let start = self.at;
            let kind = match c {
                ' ' | '\t' | '\r' | '\n' => {
                    self.at += 1;
                    space_before = true;
                    continue;
                }
                '=' => {
                    self.at += 1;
                    ItemKind::Assign
                }
                ':' => {
                    if self.rest().get(1) != Some(&b'=') {
                        return Err(self.error(start, "expected :="));
                    }
                    self.at += 2;
                    ItemKind::Declare
                }
                '|' => {
                    self.at += 1;
                    ItemKind::Pipe
                }
                ',' => {
                    self.at += 1;
                    ItemKind::Comma
                }
                '(' => {
                    self.at += 1;
                    paren_depth += 1;
                    ItemKind::LeftParen
                }
                ')' => {
                    if paren_depth == 0 {
                        return Err(self.error(start, "unexpected right paren"));
                    }
                    self.at += 1;
                    paren_depth -= 1;
                    ItemKind::RightParen
                }
                '"' => self.quoted(start)?,
                '`' => self.raw(start)?,
                '\'' => self.character(start)?,
                '$' => {
                    self.at += 1;
                    let name = self.word();
                    self.check_terminator(start)?;
                    ItemKind::Variable(format!("${name}"))
                }
                '.' if !self.rest().get(1).is_some_and(u8::is_ascii_digit) => {
                    self.at += 1;
                    let name = self.word();
                    self.check_terminator(start)?;
                    if name.is_empty() { ItemKind::Dot } else { ItemKind::Field(name.to_string()) }
                }
                '+' | '-' | '.' | '0'..='9' => self.number(start)?,
                c if c == '_' || c.is_alphabetic() => {
                    let word = self.word();
                    self.check_terminator(start)?;
                    match word {
                        "true" => ItemKind::Bool(true),
                        "false" => ItemKind::Bool(false),
                        "nil" => ItemKind::Nil,
                        "block" => ItemKind::Keyword(Keyword::Block),
                        "break" => ItemKind::Keyword(Keyword::Break),
                        "continue" => ItemKind::Keyword(Keyword::Continue),
                        "define" => ItemKind::Keyword(Keyword::Define),
                        "else" => ItemKind::Keyword(Keyword::Else),
                        "end" => ItemKind::Keyword(Keyword::End),
                        "if" => ItemKind::Keyword(Keyword::If),
                        "range" => ItemKind::Keyword(Keyword::Range),
                        "template" => ItemKind::Keyword(Keyword::Template),
                        "with" => ItemKind::Keyword(Keyword::With),
                        _ => ItemKind::Identifier(word.to_string()),
                    }
                }
                other => return Err(self.error(start, format!("unexpected {other:?} in action"))),
            };
            self.push(kind, start, space_before);
            space_before = false;
        }
    }

    /// Letters, digits and underscores from the current offset.
    fn word(&mut self) -> &'t str {
        let text: &'t str = self.text;
        let start = self.at;
        let length: usize = text[start..].chars().take_while(|&c| is_alphanumeric(c)).map(char::len_utf8).sum();
        self.at += length;
        &text[start..start + length]
    }

    /// After a name comes white space, the end of the action, or punctuation.
    fn check_terminator(&mut self, start: usize) -> Result<(), TemplateError> {
        let rest = self.rest();
        match rest.first() {
            None => Ok(()),
            Some(&c) if is_space(c) || matches!(c, b'.' | b',' | b'|' | b':' | b')' | b'(' | b'=') => Ok(()),
            Some(_) if rest.starts_with(b"}}") => Ok(()),
            Some(_) => {
                let c = self.text[self.at..].chars().next().unwrap_or(' ');
                Err(self.error(start, format!("bad character {c:?}")))
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<ItemKind, TemplateError> {
        let accept = |lexer: &mut Self, set: &[u8]| -> bool {
            if lexer.rest().first().is_some_and(|c| set.contains(c)) {
                lexer.at += 1;
                true
            } else {
                false
            }
        };
        let accept_run = |lexer: &mut Self, set: &[u8]| {
            while lexer.rest().first().is_some_and(|c| set.contains(c)) {
                lexer.at += 1;
            }
        };
        accept(self, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        if accept(self, b"0") {
            if accept(self, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
            } else if accept(self, b"oO") {
                digits = b"01234567_";
            } else if accept(self, b"bB") {
                digits = b"01_";
            }
        }
        accept_run(self, digits);
        if accept(self, b".") {
            accept_run(self, digits);
        }
        if digits.len() == 11 && accept(self, b"eE") {
            accept(self, b"+-");
            accept_run(self, b"0123456789_");
        }
        if digits.len() == 23 && accept(self, b"pP") {
            accept(self, b"+-");
            accept_run(self, b"0123456789_");
        }
        accept(self, b"i");
        let text = &self.text[start..self.at];
        if self.text[self.at..].chars().next().is_some_and(is_alphanumeric) {
            let bad: String =
                self.text[start..].chars().take_while(|&c| is_alphanumeric(c) || "+-.".contains(c)).collect();
            return Err(self.error(start, format!("bad number syntax: {bad:?}")));
        }
        if text == "+" || text == "-" || text == "." {
            return Err(self.error(start, format!("bad number syntax: {text:?}")));
        }
        Ok(ItemKind::Number(text.to_string()))
    }

    /// A double-quoted string with Go's escapes.
    fn quoted(&mut self, start: usize) -> Result<ItemKind, TemplateError> {
        let mut bytes: Vec<u8> = Vec::new();
        let mut at = start + 1;
        loop {
            let Some(c) = self.text[at..].chars().next() else {
                return Err(self.error(start, "unterminated quoted string"));
            };
            match c {
                '"' => {
                    self.at = at + 1;
                    return Ok(ItemKind::Str(String::from_utf8_lossy(&bytes).into_owned()));
                }
                '\n' => return Err(self.error(start, "unterminated quoted string")),
                '\\' => {
                    let (consumed, decoded) = self.escape(at, '"')?;
                    decoded.write(&mut bytes);
                    at += consumed;
                }
                c => {
                    let mut buffer = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                    at += c.len_utf8();
                }
            }
        }
    }

    /// A back-quoted raw string; carriage returns are dropped, as Go drops them.
    fn raw(&mut self, start: usize) -> Result<ItemKind, TemplateError> {
        let Some(end) = self.text[start + 1..].find('`') else {
            return Err(self.error(start, "unterminated raw quoted string"));
        };
        let body = &self.text[start + 1..start + 1 + end];
        self.at = start + end + 2;
        Ok(ItemKind::Str(body.replace('\r', "")))
    }

    /// A character constant: one character or one escape between single quotes.
    fn character(&mut self, start: usize) -> Result<ItemKind, TemplateError> {
        let at = start + 1;
        let Some(c) = self.text[at..].chars().next() else {
            return Err(self.error(start, "unterminated character constant"));
        };
        let (consumed, value) = match c {
            '\n' => return Err(self.error(start, "unterminated character constant")),
            '\'' => return Err(self.error(start, "empty character constant")),
            '\\' => {
                let (consumed, decoded) = self.escape(at, '\'')?;
                let value = match decoded {
                    Escaped::Char(c) => c,
                    Escaped::Byte(b) => char::from(b),
                };
                (consumed, value)
            }
            c => (c.len_utf8(), c),
        };
        if self.bytes.get(at + consumed) != Some(&b'\'') {
            return Err(self.error(start, "malformed character constant"));
        }
        self.at = at + consumed + 1;
        Ok(ItemKind::Char(value))
    }

    /// One backslash escape at `at`; how many bytes it takes and what it means.
    fn escape(&mut self, at: usize, quote: char) -> Result<(usize, Escaped), TemplateError> {
        let Some(c) = self.text[at + 1..].chars().next() else {
            return Err(self.error(at, "unterminated escape"));
        };
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(c) = simple {
            return Ok((2, Escaped::Char(c)));
        }
        let hex = |lexer: &mut Self, digits: usize| -> Result<u32, TemplateError> {
            let text = lexer.text.get(at + 2..at + 2 + digits).unwrap_or("");
            if text.len() != digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(lexer.error(at, format!("invalid escape \\{c} in string")));
            }
            u32::from_str_radix(text, 16).map_err(|_| lexer.error(at, "invalid escape in string"))
        };
        match c {
            'x' => {
                let value = hex(self, 2)?;
                Ok((4, Escaped::Byte(value as u8)))
            }
            'u' | 'U' => {
                let digits = if c == 'u' { 4 } else { 8 };
                let value = hex(self, digits)?;
                match char::from_u32(value) {
                    Some(decoded) => Ok((2 + digits, Escaped::Char(decoded))),
                    None => Err(self.error(at, format!("invalid code point \\{c}{value:x} in string"))),
                }
            }
            '0'..='7' => {
                let text = self.text.get(at + 1..at + 4).unwrap_or("");
                if text.len() != 3 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(self.error(at, "invalid octal escape in string"));
                }
                let value = u32::from_str_radix(text, 8).map_err(|_| self.error(at, "invalid octal escape"))?;
                if value > 255 {
                    return Err(self.error(at, "octal escape value above 255 in string"));
                }
                Ok((4, Escaped::Byte(value as u8)))
            }
            other => Err(self.error(at, format!("invalid escape \\{other} in string"))),
        }
    }
}

/// What an escape stands for: a character, or a raw byte (`\xff`, `\377`).
enum Escaped {
    Char(char),
    Byte(u8),
}

impl Escaped {
    fn write(&self, bytes: &mut Vec<u8>) {
        match self {
            Escaped::Char(c) => {
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
            Escaped::Byte(b) => bytes.push(*b),
        }
    }
}
