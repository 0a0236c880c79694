//! LogQL: the lexer, parser and syntax tree ([`syntax`]); the log pipeline and the evaluator are
//! built on them.

pub mod eval;
pub mod pipeline;
pub mod syntax;
pub mod template;

#[cfg(test)]
mod golden;
