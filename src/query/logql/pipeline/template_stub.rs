//! Stand-in for the template engine while it is written: only `{{.name}}` and `{{ .name }}`.

use std::fmt;

#[derive(Debug)]
pub struct Template(Vec<Piece>);

#[derive(Debug)]
enum Piece {
    Text(String),
    Label(String),
}

#[derive(Debug)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct TemplateData<'a> {
    pub labels: &'a [(&'a str, &'a str)],
    pub line: &'a str,
    pub timestamp_ns: i64,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            pieces.push(Piece::Text(rest[..open].to_string()));
            let close = rest[open..].find("}}").ok_or_else(|| TemplateError("unclosed action".into()))? + open;
            let inner = rest[open + 2..close].trim();
            let name = inner.strip_prefix('.').ok_or_else(|| TemplateError(format!("unsupported action {inner}")))?;
            pieces.push(Piece::Label(name.to_string()));
            rest = &rest[close + 2..];
        }
        pieces.push(Piece::Text(rest.to_string()));
        Ok(Template(pieces))
    }

    pub fn render(&self, data: &TemplateData<'_>, out: &mut String) -> Result<(), TemplateError> {
        let _ = (data.line, data.timestamp_ns);
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Label(name) => {
                    if let Some((_, value)) = data.labels.iter().find(|(n, _)| n == name) {
                        out.push_str(value);
                    }
                }
            }
        }
        Ok(())
    }
}
