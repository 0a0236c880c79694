//! LogQL syntax: [`lexer`] (tokens with positions), [`ast`] (the tree, printable as canonical
//! LogQL) and [`parser`] (tokens to tree, with errors that name line, column and problem).

pub mod ast;
pub mod lexer;
pub mod parser;

pub use ast::Expr;
pub use lexer::ParseError;
pub use parser::{parse, parse_selector};

#[cfg(test)]
mod tests;
