//! The evaluator: walks a parsed template for one entry, as Go's `text/template` executes one
//! (dot, `$`, variables on a stack, pipelines passing their value as the last argument,
//! `and`/`or` short-circuiting, arguments checked against each function's Go signature), and
//! writes the output. Budgets on steps, depth and bytes keep a hostile template from holding a
//! thread or memory.

use super::functions::{self, CallContext, Function, Param};
use super::parse::{Arg, Branch, Command, Node, Pipe};
use super::printf;
use super::value::{self, Value};
use super::{
    MAX_NESTING_DEPTH, MAX_PRODUCED_BYTES, MAX_RENDER_STEPS, MAX_RENDERED_BYTES, Position, Template, TemplateError,
};

/// What a list of nodes asks of the enclosing `range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

/// The state of one render.
struct State<'r, 'o> {
    template: &'r Template,
    line: &'r str,
    timestamp_ns: i64,
    /// `$`: slot 0, the data of the template (or of the `{{template}}` call) being run.
    root: Value<'r>,
    /// The other variables in scope, in declaration order: slot `n` is at index `n - 1`.
    variables: Vec<Value<'r>>,
    /// Arguments of the calls being evaluated, so calls need no allocation of their own.
    arguments: Vec<Value<'r>>,
    out: &'o mut String,
    /// Commands and iterations evaluated so far, against [`MAX_RENDER_STEPS`].
    steps: u64,
    /// `{{template}}` calls in progress, against [`MAX_NESTING_DEPTH`].
    template_depth: usize,
    /// Bytes the functions have produced so far, against [`MAX_PRODUCED_BYTES`].
    produced_bytes: usize,
    /// Where the command being evaluated starts, for errors.
    position: Position,
}

pub(super) fn render<'r>(
    template: &'r Template,
    labels: &'r [(&'r str, &'r str)],
    line: &'r str,
    timestamp_ns: i64,
    out: &mut String,
) -> Result<(), TemplateError> {
    let data = Value::Labels(labels);
    let mut state = State {
        template,
        line,
        timestamp_ns,
        root: data.clone(),
        variables: Vec::new(),
        arguments: Vec::new(),
        out,
        steps: 0,
        template_depth: 0,
        produced_bytes: 0,
        position: Position { line: 1, column: 1 },
    };
    state.walk_list(&data, &template.root)?;
    Ok(())
}

impl<'r> State<'r, '_> {
    fn error(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::new(self.position, message)
    }

    fn step(&mut self) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_RENDER_STEPS {
            return Err(self.error(format!("template evaluation exceeded {MAX_RENDER_STEPS} steps")));
        }
        Ok(())
    }

    fn check_output(&self) -> Result<(), TemplateError> {
        if self.out.len() > MAX_RENDERED_BYTES {
            return Err(self.error(format!("template output exceeds {MAX_RENDERED_BYTES} bytes")));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value<'r>, nodes: &'r [Node]) -> Result<Flow, TemplateError> {
        for node in nodes {
            let flow = self.walk(dot, node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value<'r>, node: &'r Node) -> Result<Flow, TemplateError> {
        match node {
            Node::Text(text) => {
                self.out.push_str(text);
                self.check_output()?;
                Ok(Flow::Normal)
            }
            Node::Action(pipe) => {
                let value = self.eval_pipeline(dot, pipe)?;
                if pipe.declarations.is_empty() {
                    printf::write_template_value(self.out, &value);
                    self.check_output()?;
                }
                Ok(Flow::Normal)
            }
            Node::If(branch) => self.walk_if_or_with(dot, branch, false),
            Node::With(branch) => self.walk_if_or_with(dot, branch, true),
            Node::Range(branch) => self.walk_range(dot, branch),
            Node::Break => Ok(Flow::Break),
            Node::Continue => Ok(Flow::Continue),
            Node::Template { name, pipe, position } => {
                self.position = *position;
                let Some((_, body)) = self.template.named.iter().find(|(candidate, _)| candidate == name) else {
                    return Err(self.error(format!("no such template {name:?}")));
                };
                let value = match pipe {
                    Some(pipe) => self.eval_pipeline(dot, pipe)?,
                    None => Value::Nil,
                };
                self.template_depth += 1;
                if self.template_depth > MAX_NESTING_DEPTH {
                    return Err(self.error(format!("exceeded maximum template depth ({MAX_NESTING_DEPTH})")));
                }
                let outer_variables = std::mem::take(&mut self.variables);
                let outer_root = std::mem::replace(&mut self.root, value.clone());
                let result = self.walk_list(&value, body);
                self.variables = outer_variables;
                self.root = outer_root;
                self.template_depth -= 1;
                result?;
                Ok(Flow::Normal)
            }
        }
    }

    fn walk_if_or_with(&mut self, dot: &Value<'r>, branch: &'r Branch, is_with: bool) -> Result<Flow, TemplateError> {
        let mark = self.variables.len();
        let value = self.eval_pipeline(dot, &branch.pipe)?;
        let flow = if value.truth() {
            if is_with { self.walk_list(&value, &branch.list)? } else { self.walk_list(dot, &branch.list)? }
        } else {
            self.walk_list(dot, &branch.else_list)?
        };
        self.variables.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, dot: &Value<'r>, branch: &'r Branch) -> Result<Flow, TemplateError> {
        let mark = self.variables.len();
        let value = self.eval_pipeline(dot, &branch.pipe)?;
        let base = self.variables.len();
        let declarations = &branch.pipe.declarations;
        let mut ran = false;
        let mut iterate = |state: &mut Self, key: Value<'r>, element: Value<'r>| -> Result<bool, TemplateError> {
            state.step()?;
            ran = true;
            match declarations.as_slice() {
                [element_slot] => state.set_variable(*element_slot, element.clone()),
                [key_slot, element_slot] => {
                    state.set_variable(*key_slot, key);
                    state.set_variable(*element_slot, element.clone());
                }
                _ => {}
            }
            let flow = state.walk_list(&element, &branch.list)?;
            state.variables.truncate(base);
            Ok(flow == Flow::Break)
        };
        match &value {
            Value::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    if iterate(self, Value::Int(index as i64), item.clone())? {
                        break;
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries.iter() {
                    if iterate(self, Value::owned(key.clone()), item.clone())? {
                        break;
                    }
                }
            }
            Value::Labels(labels) => {
                for (name, label) in labels.iter() {
                    if iterate(self, Value::borrowed(name), Value::borrowed(label))? {
                        break;
                    }
                }
            }
            Value::Int(count) => {
                if declarations.len() > 1 {
                    self.position = branch.pipe.position;
                    return Err(self.error(format!("can't use {count} to iterate over more than one variable")));
                }
                for index in 0..*count {
                    if iterate(self, Value::Int(index), Value::Int(index))? {
                        break;
                    }
                }
            }
            Value::Nil => {}
            other => {
                self.position = branch.pipe.position;
                let mut shown = String::new();
                printf::write_plain(&mut shown, other);
                return Err(self.error(format!("range can't iterate over {shown:?}")));
            }
        }
        let flow = if ran { Flow::Normal } else { self.walk_list(dot, &branch.else_list)? };
        self.variables.truncate(mark);
        Ok(flow)
    }

    fn eval_pipeline(&mut self, dot: &Value<'r>, pipe: &'r Pipe) -> Result<Value<'r>, TemplateError> {
        let mut value: Option<Value<'r>> = None;
        for command in &pipe.commands {
            value = Some(self.eval_command(dot, command, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for &slot in &pipe.declarations {
            if pipe.is_assign {
                self.set_variable(slot, value.clone());
            } else {
                self.variables.push(value.clone());
            }
        }
        Ok(value)
    }

    fn eval_command(
        &mut self,
        dot: &Value<'r>,
        command: &'r Command,
        piped: Option<Value<'r>>,
    ) -> Result<Value<'r>, TemplateError> {
        self.step()?;
        self.position = command.position;
        let first = &command.args[0];
        let args = &command.args[1..];
        match first {
            Arg::Function(function) => {
                self.eval_call(dot, *function, command.position, command.regex.as_ref(), args, piped)
            }
            Arg::Field(fields) => self.eval_field_chain(dot, dot.clone(), fields, args, piped),
            Arg::Chain { base, fields } => {
                let receiver = self.eval_arg(dot, base, Param::Any)?;
                self.eval_field_chain(dot, receiver, fields, args, piped)
            }
            Arg::Variable { name, slot, fields } => {
                let value = self.variable(name, *slot)?;
                if fields.is_empty() {
                    self.not_a_function(first, args, &piped)?;
                    Ok(value)
                } else {
                    self.eval_field_chain(dot, value, fields, args, piped)
                }
            }
            Arg::Pipe(pipe) => {
                self.not_a_function(first, args, &piped)?;
                self.eval_pipeline(dot, pipe)
            }
            Arg::Nil => Err(self.error("nil is not a command")),
            Arg::Dot | Arg::Bool(_) | Arg::Number(_) | Arg::Str(_) => {
                self.not_a_function(first, args, &piped)?;
                self.eval_arg(dot, first, Param::Any)
            }
        }
    }

    fn not_a_function(&self, first: &Arg, args: &[Arg], piped: &Option<Value<'r>>) -> Result<(), TemplateError> {
        if !args.is_empty() || piped.is_some() {
            return Err(self.error(format!("can't give argument to non-function {}", first.describe())));
        }
        Ok(())
    }

    fn variable(&self, name: &str, slot: usize) -> Result<Value<'r>, TemplateError> {
        let value = match slot.checked_sub(1) {
            None => Some(&self.root),
            Some(index) => self.variables.get(index),
        };
        value.cloned().ok_or_else(|| self.error(format!("undefined variable: {name}")))
    }

    fn set_variable(&mut self, slot: usize, value: Value<'r>) {
        match slot.checked_sub(1) {
            None => self.root = value,
            Some(index) => {
                if let Some(variable) = self.variables.get_mut(index) {
                    *variable = value;
                }
            }
        }
    }

    /// `.a.b.c` on `receiver`; arguments go to the last field (a time method).
    fn eval_field_chain(
        &mut self,
        dot: &Value<'r>,
        receiver: Value<'r>,
        fields: &'r [String],
        args: &'r [Arg],
        piped: Option<Value<'r>>,
    ) -> Result<Value<'r>, TemplateError> {
        let Some((last, leading)) = fields.split_last() else {
            return Ok(receiver);
        };
        let mut receiver = receiver;
        for field in leading {
            receiver = self.eval_field(dot, &receiver, field, &[], None)?;
        }
        self.eval_field(dot, &receiver, last, args, piped)
    }

    fn eval_field(
        &mut self,
        dot: &Value<'r>,
        receiver: &Value<'r>,
        name: &str,
        args: &'r [Arg],
        piped: Option<Value<'r>>,
    ) -> Result<Value<'r>, TemplateError> {
        let has_args = !args.is_empty() || piped.is_some();
        match receiver {
            Value::Labels(labels) => {
                if has_args {
                    return Err(self.error(format!("{name} is not a method but has arguments")));
                }
                Ok(Value::borrowed(value::label(labels, name).unwrap_or("")))
            }
            Value::Map(entries) => {
                if has_args {
                    return Err(self.error(format!("{name} is not a method but has arguments")));
                }
                Ok(entries.get(name).cloned().unwrap_or(Value::Nil))
            }
            Value::Time(time) => {
                let params = functions::time_method_params(name);
                let given = args.len() + usize::from(piped.is_some());
                if given != params.len() && functions::time_method(time, name, &[]).is_some() {
                    return Err(
                        self.error(format!("wrong number of args for {name}: want {} got {given}", params.len()))
                    );
                }
                let mut values = Vec::with_capacity(given);
                for (index, arg) in args.iter().enumerate() {
                    values.push(self.eval_arg(dot, arg, params.get(index).copied().unwrap_or(Param::Any))?);
                }
                if let Some(piped) = piped {
                    values.push(self.validate(piped, params.last().copied().unwrap_or(Param::Any))?);
                }
                functions::time_method(time, name, &values)
                    .ok_or_else(|| self.error(format!("can't evaluate field {name} in type time.Time")))
            }
            Value::Nil => Err(self.error(format!("nil pointer evaluating interface {{}}.{name}"))),
            other => Err(self.error(format!("can't evaluate field {name} in type {}", other.type_name()))),
        }
    }

    fn eval_call(
        &mut self,
        dot: &Value<'r>,
        function: Function,
        position: Position,
        regex: Option<&'r regex::Regex>,
        args: &'r [Arg],
        piped: Option<Value<'r>>,
    ) -> Result<Value<'r>, TemplateError> {
        let name = function.name();
        let signature = function.signature();
        let given = args.len() + usize::from(piped.is_some());
        let wanted = signature.fixed.len();
        if signature.variadic.is_some() {
            if given < wanted {
                return Err(self.error(format!("wrong number of args for {name}: want at least {wanted} got {given}")));
            }
        } else if given != wanted {
            return Err(self.error(format!("wrong number of args for {name}: want {wanted} got {given}")));
        }
        if matches!(function, Function::And | Function::Or) {
            let is_or = function == Function::Or;
            let mut value = Value::Nil;
            for arg in args {
                value = self.eval_arg(dot, arg, Param::Any)?;
                if value.truth() == is_or {
                    return Ok(value);
                }
            }
            return Ok(piped.unwrap_or(value));
        }
        let base = self.arguments.len();
        for (index, arg) in args.iter().enumerate() {
            let value = self.eval_arg(dot, arg, signature.param(index));
            match value {
                Ok(value) => self.arguments.push(value),
                Err(error) => {
                    self.arguments.truncate(base);
                    return Err(error);
                }
            }
        }
        if let Some(piped) = piped {
            match self.validate(piped, signature.param(given - 1)) {
                Ok(value) => self.arguments.push(value),
                Err(error) => {
                    self.arguments.truncate(base);
                    return Err(error);
                }
            }
        }
        self.position = position;
        if function.formats_arguments() {
            let total: usize = self.arguments[base..].iter().map(|value| value.as_str().map_or(0, str::len)).sum();
            if total > MAX_RENDERED_BYTES {
                self.arguments.truncate(base);
                return Err(self.error(format!(
                    "error calling {name}: arguments of {total} bytes exceed the limit of {MAX_RENDERED_BYTES} bytes"
                )));
            }
        }
        let context = CallContext { line: self.line, timestamp_ns: self.timestamp_ns, regex };
        let result = functions::call(function, &self.arguments[base..], &context);
        self.arguments.truncate(base);
        let value = result.map_err(|message| self.error(format!("error calling {name}: {message}")))?;
        self.account(name, &value)?;
        Ok(value)
    }

    /// Counts what a function produced against the render's budget.
    fn account(&mut self, name: &str, value: &Value<'r>) -> Result<(), TemplateError> {
        let owned = |value: &Value<'r>| match value {
            Value::Str(std::borrow::Cow::Owned(text)) => text.len(),
            _ => 0,
        };
        let weight = match value {
            Value::Str(text) => {
                if text.len() > MAX_RENDERED_BYTES {
                    return Err(self.error(format!(
                        "error calling {name}: result of {} bytes exceeds the limit of {MAX_RENDERED_BYTES} bytes",
                        text.len()
                    )));
                }
                owned(value)
            }
            Value::List(items) => items.iter().map(|item| 32 + owned(item)).sum(),
            Value::Map(entries) => entries.iter().map(|(key, item)| 64 + key.len() + owned(item)).sum(),
            _ => 0,
        };
        self.produced_bytes = self.produced_bytes.saturating_add(weight);
        if self.produced_bytes > MAX_PRODUCED_BYTES {
            return Err(self.error(format!("template functions produced more than {MAX_PRODUCED_BYTES} bytes")));
        }
        Ok(())
    }

    /// An argument, evaluated and checked against the parameter's type.
    fn eval_arg(&mut self, dot: &Value<'r>, arg: &'r Arg, param: Param) -> Result<Value<'r>, TemplateError> {
        self.step()?;
        let value = match arg {
            Arg::Dot => dot.clone(),
            Arg::Nil => {
                if param == Param::Any {
                    return Ok(Value::Nil);
                }
                return Err(self.error(format!("cannot assign nil to {}", param.go_name())));
            }
            Arg::Field(fields) => self.eval_field_chain(dot, dot.clone(), fields, &[], None)?,
            Arg::Variable { name, slot, fields } => {
                let value = self.variable(name, *slot)?;
                self.eval_field_chain(dot, value, fields, &[], None)?
            }
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe)?,
            Arg::Function(function) => {
                let position = self.position;
                let value = self.eval_call(dot, *function, position, None, &[], None)?;
                self.position = position;
                value
            }
            Arg::Chain { base, fields } => {
                let receiver = self.eval_arg(dot, base, Param::Any)?;
                self.eval_field_chain(dot, receiver, fields, &[], None)?
            }
            Arg::Bool(value) => {
                if !matches!(param, Param::Any) {
                    return Err(self.error(format!("expected {}; found {value}", param.go_name())));
                }
                Value::Bool(*value)
            }
            Arg::Str(text) => {
                return match param {
                    Param::Any | Param::Str => Ok(Value::borrowed(text)),
                    Param::Int => Err(self.error(format!("expected integer; found {text:?}"))),
                    other => Err(self.error(format!("expected {}; found {text:?}", other.go_name()))),
                };
            }
            Arg::Number(number) => {
                if number.complex {
                    return Err(self.error(format!("complex number {} is not supported", number.text)));
                }
                return match param {
                    Param::Int => number.int.map(Value::Int).ok_or_else(|| {
                        if number.unsigned_only {
                            self.error(format!("{} overflows int", number.text))
                        } else {
                            self.error(format!("expected integer; found {}", number.text))
                        }
                    }),
                    Param::Float => number
                        .float
                        .map(Value::Float)
                        .ok_or_else(|| self.error(format!("expected float; found {}", number.text))),
                    Param::Any => {
                        if number.float_syntax {
                            Ok(Value::Float(number.float.unwrap_or(f64::NAN)))
                        } else if let Some(int) = number.int {
                            Ok(Value::Int(int))
                        } else {
                            Err(self.error(format!("{} overflows int", number.text)))
                        }
                    }
                    other => Err(self.error(format!("expected {}; found {}", other.go_name(), number.text))),
                };
            }
        };
        self.validate(value, param)
    }

    /// Checks a computed value against a parameter type (Go's `validateType`).
    fn validate(&self, value: Value<'r>, param: Param) -> Result<Value<'r>, TemplateError> {
        let fits = match param {
            Param::Any => true,
            Param::Str => matches!(value, Value::Str(_)),
            Param::Int => matches!(value, Value::Int(_)),
            Param::Float => matches!(value, Value::Float(_)),
            Param::Time => matches!(value, Value::Time(_)),
        };
        if fits {
            return Ok(value);
        }
        if matches!(value, Value::Nil) {
            return Err(self.error(format!("invalid value; expected {}", param.go_name())));
        }
        Err(self.error(format!("wrong type for value; expected {}; got {}", param.go_name(), value.type_name())))
    }
}
