//! A small awk: patterns (BEGIN, END, expressions, /regex/), actions with
//! print/printf, assignments, associative arrays, if/for/while, and the
//! common string functions: the programs attackers pipe `ps` and
//! `/proc/cpuinfo` through. Every statement counts against a step budget.

use std::collections::BTreeMap;

/// An awk value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Num(f64),
    Str(String),
}

impl Value {
    fn num(&self) -> f64 {
        match self {
            Value::Num(n) => *n,
            Value::Str(s) => leading_number(s),
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Num(n) => fmt_num(*n),
            Value::Str(s) => s.clone(),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Num(n) => *n != 0.0,
            Value::Str(s) => !s.is_empty(),
        }
    }
}

fn leading_number(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    for (i, c) in t.char_indices() {
        if c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) || ((c == 'e' || c == 'E') && i > 0) {
            end = i + c.len_utf8();
        } else {
            break;
        }
    }
    let mut slice = &t[..end];
    while !slice.is_empty() && slice.parse::<f64>().is_err() {
        slice = &slice[..slice.len() - 1];
    }
    slice.parse().unwrap_or(0.0)
}

fn fmt_num(n: f64) -> String {
    if n == n.trunc() && n.abs() < 1e16 {
        format!("{}", n as i64)
    } else {
        // awk's OFMT %.6g.
        let s = format!("{n:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        if s.len() > 8 { format!("{:.6e}", n) } else { s }
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    Regex(String),
    Field(Box<Expr>),
    Var(String),
    Index(String, Box<Expr>),
    Assign(Box<Expr>, Option<char>, Box<Expr>),
    Incr(Box<Expr>, i8, bool),
    Binary(Box<Expr>, String, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    In(Box<Expr>, String),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Print(Vec<Expr>),
    Printf(Vec<Expr>),
    Expr(Expr),
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    While(Expr, Box<Stmt>),
    For(Option<Box<Stmt>>, Option<Expr>, Option<Box<Stmt>>, Box<Stmt>),
    ForIn(String, String, Box<Stmt>),
    Block(Vec<Stmt>),
    Next,
    Exit(Option<Expr>),
    Delete(String, Option<Expr>),
}

#[derive(Debug, Clone)]
enum Pattern {
    Begin,
    End,
    All,
    Expr(Expr),
}

/// A parsed program.
#[derive(Debug, Clone)]
pub(crate) struct Program(Vec<(Pattern, Option<Vec<Stmt>>)>);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Regex(String),
    Name(String),
    Func(String),
    Field,
    Op(String),
    Newline,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out: Vec<Tok> = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch == ' ' || ch == '\t' || (ch == '\\' && c.get(i + 1) == Some(&'\n')) {
            i += if ch == '\\' { 2 } else { 1 };
            continue;
        }
        if ch == '\n' || ch == ';' {
            out.push(Tok::Newline);
            i += 1;
            continue;
        }
        if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            let s: String = c[start..i].iter().collect();
            out.push(Tok::Num(s.parse().map_err(|_| s.clone())?));
            continue;
        }
        if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let s: String = c[start..i].iter().collect();
            if c.get(i) == Some(&'(') && !matches!(s.as_str(), "if" | "while" | "for" | "print" | "printf") {
                out.push(Tok::Func(s));
            } else {
                out.push(Tok::Name(s));
            }
            continue;
        }
        if ch == '"' {
            i += 1;
            let mut s = String::new();
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    i += 1;
                    let escaped = match c[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' => '\\',
                        '"' => '"',
                        '/' => '/',
                        other => {
                            s.push('\\');
                            other
                        }
                    };
                    s.push(escaped);
                } else {
                    s.push(c[i]);
                }
                i += 1;
            }
            if i >= c.len() {
                return Err("unterminated string".into());
            }
            i += 1;
            out.push(Tok::Str(s));
            continue;
        }
        if ch == '/' {
            let regex_ok = matches!(out.last(), None | Some(Tok::Newline) | Some(Tok::Op(_)))
                && !matches!(out.last(), Some(Tok::Op(o)) if o == ")" || o == "]");
            if regex_ok {
                i += 1;
                let mut s = String::new();
                while i < c.len() && c[i] != '/' {
                    if c[i] == '\\' && c.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    s.push(c[i]);
                    i += 1;
                }
                if i >= c.len() {
                    return Err("unterminated regex".into());
                }
                i += 1;
                out.push(Tok::Regex(s));
                continue;
            }
        }
        if ch == '$' {
            out.push(Tok::Field);
            i += 1;
            continue;
        }
        let two: String = c[i..(i + 2).min(c.len())].iter().collect();
        if [
            "==", "!=", "<=", ">=", "&&", "||", "++", "--", "+=", "-=", "*=", "/=", "%=", "!~", "^=",
        ]
        .contains(&two.as_str())
        {
            out.push(Tok::Op(two));
            i += 2;
            continue;
        }
        if "{}()[],<>=+-*/%!~?:^".contains(ch) {
            out.push(Tok::Op(ch.to_string()));
            i += 1;
            continue;
        }
        return Err(format!("{ch}"));
    }
    Ok(out)
}

struct Parser {
    t: Vec<Tok>,
    p: usize,
    depth: u32,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.p)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.p += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(format!("{:?}", self.peek()))
        }
    }

    fn skip_nl(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.p += 1;
        }
    }

    fn program(&mut self) -> Result<Program, String> {
        let mut items = Vec::new();
        loop {
            self.skip_nl();
            let Some(tok) = self.peek().cloned() else { break };
            let pattern = match tok {
                Tok::Name(n) if n == "BEGIN" => {
                    self.p += 1;
                    Pattern::Begin
                }
                Tok::Name(n) if n == "END" => {
                    self.p += 1;
                    Pattern::End
                }
                Tok::Op(o) if o == "{" => Pattern::All,
                _ => Pattern::Expr(self.expr()?),
            };
            let action = if self.is_op("{") { Some(self.block()?) } else { None };
            items.push((pattern, action));
        }
        Ok(Program(items))
    }

    fn block(&mut self) -> Result<Vec<Stmt>, String> {
        self.expect("{")?;
        let mut stmts = Vec::new();
        loop {
            self.skip_nl();
            if self.eat_op("}") {
                return Ok(stmts);
            }
            if self.peek().is_none() {
                return Err("end of program".into());
            }
            stmts.push(self.stmt()?);
        }
    }

    fn simple_or_block(&mut self) -> Result<Stmt, String> {
        self.skip_nl();
        if self.is_op("{") {
            Ok(Stmt::Block(self.block()?))
        } else {
            self.stmt()
        }
    }

    fn stmt(&mut self) -> Result<Stmt, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("nesting".into());
        }
        let r = self.stmt_inner();
        self.depth -= 1;
        r
    }

    fn stmt_inner(&mut self) -> Result<Stmt, String> {
        let tok = self.peek().cloned();
        match tok {
            Some(Tok::Op(o)) if o == "{" => Ok(Stmt::Block(self.block()?)),
            Some(Tok::Name(n)) => match n.as_str() {
                "print" | "printf" => {
                    self.p += 1;
                    let mut args = Vec::new();
                    let parens = self.is_op("(");
                    if !self.at_stmt_end() {
                        if parens {
                            self.p += 1;
                        }
                        args.push(self.expr_no_gt()?);
                        while self.eat_op(",") {
                            args.push(self.expr_no_gt()?);
                        }
                        if parens {
                            self.expect(")")?;
                        }
                    }
                    // Output redirection is accepted and ignored.
                    if self.eat_op(">") {
                        self.primary()?;
                    }
                    Ok(if n == "print" {
                        Stmt::Print(args)
                    } else {
                        Stmt::Printf(args)
                    })
                }
                "if" => {
                    self.p += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    let then = self.simple_or_block()?;
                    let save = self.p;
                    self.skip_nl();
                    if matches!(self.peek(), Some(Tok::Name(e)) if e == "else") {
                        self.p += 1;
                        let e = self.simple_or_block()?;
                        return Ok(Stmt::If(c, Box::new(then), Some(Box::new(e))));
                    }
                    self.p = save;
                    Ok(Stmt::If(c, Box::new(then), None))
                }
                "while" => {
                    self.p += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    Ok(Stmt::While(c, Box::new(self.simple_or_block()?)))
                }
                "for" => {
                    self.p += 1;
                    self.expect("(")?;
                    if let (Some(Tok::Name(k)), Some(Tok::Name(in_)), Some(Tok::Name(arr))) = (
                        self.t.get(self.p).cloned(),
                        self.t.get(self.p + 1).cloned(),
                        self.t.get(self.p + 2).cloned(),
                    ) && in_ == "in"
                    {
                        self.p += 3;
                        self.expect(")")?;
                        return Ok(Stmt::ForIn(k, arr, Box::new(self.simple_or_block()?)));
                    }
                    let init = if self.peek() == Some(&Tok::Newline) {
                        None
                    } else {
                        Some(Box::new(Stmt::Expr(self.expr()?)))
                    };
                    if self.peek() == Some(&Tok::Newline) {
                        self.p += 1;
                    }
                    let cond = if self.peek() == Some(&Tok::Newline) {
                        None
                    } else {
                        Some(self.expr()?)
                    };
                    if self.peek() == Some(&Tok::Newline) {
                        self.p += 1;
                    }
                    let step = if self.is_op(")") {
                        None
                    } else {
                        Some(Box::new(Stmt::Expr(self.expr()?)))
                    };
                    self.expect(")")?;
                    Ok(Stmt::For(init, cond, step, Box::new(self.simple_or_block()?)))
                }
                "next" => {
                    self.p += 1;
                    Ok(Stmt::Next)
                }
                "exit" => {
                    self.p += 1;
                    let e = if self.at_stmt_end() { None } else { Some(self.expr()?) };
                    Ok(Stmt::Exit(e))
                }
                "delete" => {
                    self.p += 1;
                    let Some(Tok::Name(arr)) = self.peek().cloned() else {
                        return Err("delete".into());
                    };
                    self.p += 1;
                    let idx = if self.eat_op("[") {
                        let e = self.expr()?;
                        self.expect("]")?;
                        Some(e)
                    } else {
                        None
                    };
                    Ok(Stmt::Delete(arr, idx))
                }
                _ => Ok(Stmt::Expr(self.expr()?)),
            },
            _ => Ok(Stmt::Expr(self.expr()?)),
        }
    }

    fn at_stmt_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Newline)) || self.is_op("}") || self.is_op(">")
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("nesting".into());
        }
        let r = self.ternary(true);
        self.depth -= 1;
        r
    }

    fn expr_no_gt(&mut self) -> Result<Expr, String> {
        self.ternary(false)
    }

    fn ternary(&mut self, gt: bool) -> Result<Expr, String> {
        let c = self.assign(gt)?;
        if self.eat_op("?") {
            let a = self.ternary(gt)?;
            self.expect(":")?;
            let b = self.ternary(gt)?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn assign(&mut self, gt: bool) -> Result<Expr, String> {
        let lhs = self.or(gt)?;
        for (op, kind) in [
            ("=", None),
            ("+=", Some('+')),
            ("-=", Some('-')),
            ("*=", Some('*')),
            ("/=", Some('/')),
            ("%=", Some('%')),
        ] {
            if self.is_op(op) && matches!(lhs, Expr::Var(_) | Expr::Field(_) | Expr::Index(..)) {
                self.p += 1;
                let rhs = self.ternary(gt)?;
                return Ok(Expr::Assign(Box::new(lhs), kind, Box::new(rhs)));
            }
        }
        Ok(lhs)
    }

    fn or(&mut self, gt: bool) -> Result<Expr, String> {
        let mut l = self.and(gt)?;
        while self.eat_op("||") {
            self.skip_nl();
            l = Expr::Binary(Box::new(l), "||".into(), Box::new(self.and(gt)?));
        }
        Ok(l)
    }

    fn and(&mut self, gt: bool) -> Result<Expr, String> {
        let mut l = self.in_(gt)?;
        while self.eat_op("&&") {
            self.skip_nl();
            l = Expr::Binary(Box::new(l), "&&".into(), Box::new(self.in_(gt)?));
        }
        Ok(l)
    }

    fn in_(&mut self, gt: bool) -> Result<Expr, String> {
        let l = self.matching(gt)?;
        if matches!(self.peek(), Some(Tok::Name(n)) if n == "in")
            && let Some(Tok::Name(arr)) = self.t.get(self.p + 1).cloned()
        {
            self.p += 2;
            return Ok(Expr::In(Box::new(l), arr));
        }
        Ok(l)
    }

    fn matching(&mut self, gt: bool) -> Result<Expr, String> {
        let mut l = self.compare(gt)?;
        while self.is_op("~") || self.is_op("!~") {
            let Some(Tok::Op(op)) = self.peek().cloned() else { break };
            self.p += 1;
            l = Expr::Binary(Box::new(l), op, Box::new(self.compare(gt)?));
        }
        Ok(l)
    }

    fn compare(&mut self, gt: bool) -> Result<Expr, String> {
        let l = self.concat()?;
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if op == ">" && !gt {
                continue;
            }
            if self.eat_op(op) {
                return Ok(Expr::Binary(Box::new(l), op.into(), Box::new(self.concat()?)));
            }
        }
        Ok(l)
    }

    fn concat(&mut self) -> Result<Expr, String> {
        let mut l = self.additive()?;
        loop {
            let starts = match self.peek() {
                Some(Tok::Num(_) | Tok::Str(_) | Tok::Name(_) | Tok::Func(_) | Tok::Field) => {
                    !matches!(self.peek(), Some(Tok::Name(n)) if n == "in")
                }
                Some(Tok::Op(o)) => o == "(" || o == "!",
                _ => false,
            };
            if !starts {
                return Ok(l);
            }
            l = Expr::Concat(Box::new(l), Box::new(self.additive()?));
        }
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut l = self.mult()?;
        while self.is_op("+") || self.is_op("-") {
            let Some(Tok::Op(op)) = self.peek().cloned() else { break };
            self.p += 1;
            l = Expr::Binary(Box::new(l), op, Box::new(self.mult()?));
        }
        Ok(l)
    }

    fn mult(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.is_op("*") || self.is_op("/") || self.is_op("%") {
            let Some(Tok::Op(op)) = self.peek().cloned() else { break };
            self.p += 1;
            l = Expr::Binary(Box::new(l), op, Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > 128 {
            return Err("nesting".into());
        }
        let r = if self.eat_op("!") {
            Ok(Expr::Not(Box::new(self.unary()?)))
        } else if self.eat_op("-") {
            Ok(Expr::Neg(Box::new(self.unary()?)))
        } else if self.eat_op("+") {
            self.unary()
        } else if self.eat_op("++") {
            Ok(Expr::Incr(Box::new(self.postfix()?), 1, true))
        } else if self.eat_op("--") {
            Ok(Expr::Incr(Box::new(self.postfix()?), -1, true))
        } else {
            self.power()
        };
        self.depth -= 1;
        r
    }

    fn power(&mut self) -> Result<Expr, String> {
        let l = self.postfix()?;
        if self.eat_op("^") {
            return Ok(Expr::Binary(Box::new(l), "^".into(), Box::new(self.unary()?)));
        }
        Ok(l)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let e = self.primary()?;
        if matches!(e, Expr::Var(_) | Expr::Field(_) | Expr::Index(..)) {
            if self.eat_op("++") {
                return Ok(Expr::Incr(Box::new(e), 1, false));
            }
            if self.eat_op("--") {
                return Ok(Expr::Incr(Box::new(e), -1, false));
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.peek().cloned().ok_or("end of program")?;
        self.p += 1;
        Ok(match tok {
            Tok::Num(n) => Expr::Num(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Regex(r) => Expr::Regex(r),
            Tok::Field => {
                self.depth += 1;
                if self.depth > 128 {
                    return Err("nesting".into());
                }
                let e = self.primary()?;
                self.depth -= 1;
                Expr::Field(Box::new(e))
            }
            Tok::Name(n) => {
                if self.eat_op("[") {
                    let mut idx = self.expr()?;
                    while self.eat_op(",") {
                        idx = Expr::Concat(
                            Box::new(Expr::Concat(Box::new(idx), Box::new(Expr::Str("\x1c".into())))),
                            Box::new(self.expr()?),
                        );
                    }
                    self.expect("]")?;
                    Expr::Index(n, Box::new(idx))
                } else {
                    Expr::Var(n)
                }
            }
            Tok::Func(f) => {
                self.expect("(")?;
                let mut args = Vec::new();
                if !self.is_op(")") {
                    args.push(self.expr()?);
                    while self.eat_op(",") {
                        args.push(self.expr()?);
                    }
                }
                self.expect(")")?;
                Expr::Call(f, args)
            }
            Tok::Op(o) if o == "(" => {
                let e = self.expr()?;
                self.expect(")")?;
                e
            }
            other => return Err(format!("{other:?}")),
        })
    }
}

/// Parses an awk program; the error names the token where it failed.
pub(crate) fn parse(src: &str) -> Result<Program, String> {
    let t = lex(src)?;
    Parser { t, p: 0, depth: 0 }.program()
}

enum Ctl {
    Next,
    Exit,
}

struct Machine<'a> {
    vars: BTreeMap<String, Value>,
    arrays: BTreeMap<String, BTreeMap<String, Value>>,
    fields: Vec<String>,
    fs: Option<String>,
    nr: usize,
    out: &'a mut Vec<u8>,
    max: usize,
    steps: u64,
    exit_code: i32,
}

impl Machine<'_> {
    fn set_record(&mut self, line: &str) {
        let mut f = vec![line.to_string()];
        match self.fs.as_deref() {
            None | Some(" ") => f.extend(line.split_whitespace().map(str::to_string)),
            Some(sep) if sep.chars().count() == 1 && sep != "|" && sep != "." => {
                f.extend(line.split(sep).map(str::to_string))
            }
            Some(sep) => match regex::Regex::new(sep) {
                Ok(r) => f.extend(r.split(line).map(str::to_string)),
                Err(_) => f.extend(line.split(sep).map(str::to_string)),
            },
        }
        if line.is_empty() {
            f.truncate(1);
        }
        self.fields = f;
    }

    fn rebuild(&mut self) {
        let ofs = self.vars.get("OFS").map_or(" ".to_string(), Value::text);
        self.fields[0] = self.fields[1..].join(&ofs);
    }

    fn get(&mut self, e: &Expr) -> Result<Value, Ctl> {
        self.steps = self.steps.saturating_sub(1);
        if self.steps == 0 {
            return Err(Ctl::Exit);
        }
        Ok(match e {
            Expr::Num(n) => Value::Num(*n),
            Expr::Str(s) => Value::Str(s.clone()),
            Expr::Regex(r) => Value::Num(f64::from(u8::from(regex_match(r, &self.fields[0])))),
            Expr::Field(i) => {
                let i = self.get(i)?.num().max(0.0) as usize;
                Value::Str(self.fields.get(i).cloned().unwrap_or_default())
            }
            Expr::Var(n) => match n.as_str() {
                "NR" | "FNR" => Value::Num(self.nr as f64),
                "NF" => Value::Num(self.fields.len().saturating_sub(1) as f64),
                _ => self.vars.get(n).cloned().unwrap_or(Value::Str(String::new())),
            },
            Expr::Index(a, i) => {
                let k = self.get(i)?.text();
                self.arrays
                    .get(a)
                    .and_then(|m| m.get(&k))
                    .cloned()
                    .unwrap_or(Value::Str(String::new()))
            }
            Expr::Assign(lhs, op, rhs) => {
                let r = self.get(rhs)?;
                let v = match op {
                    None => r,
                    Some(o) => Value::Num(arith(*o, self.get(lhs)?.num(), r.num())),
                };
                self.store(lhs, v.clone())?;
                v
            }
            Expr::Incr(lhs, d, pre) => {
                let old = self.get(lhs)?.num();
                let new = old + f64::from(*d);
                self.store(lhs, Value::Num(new))?;
                Value::Num(if *pre { new } else { old })
            }
            Expr::Binary(l, op, r) => {
                match op.as_str() {
                    "&&" => {
                        return Ok(Value::Num(f64::from(u8::from(
                            self.get(l)?.truthy() && self.get(r)?.truthy(),
                        ))));
                    }
                    "||" => {
                        return Ok(Value::Num(f64::from(u8::from(
                            self.get(l)?.truthy() || self.get(r)?.truthy(),
                        ))));
                    }
                    _ => {}
                }
                let a = self.get(l)?;
                if op == "~" || op == "!~" {
                    let pat = match &**r {
                        Expr::Regex(p) => p.clone(),
                        other => self.get(other)?.text(),
                    };
                    let m = regex_match(&pat, &a.text());
                    return Ok(Value::Num(f64::from(u8::from(m == (op == "~")))));
                }
                let b = self.get(r)?;
                match op.as_str() {
                    "+" | "-" | "*" | "/" | "%" | "^" => {
                        Value::Num(arith(op.chars().next().unwrap_or('+'), a.num(), b.num()))
                    }
                    _ => {
                        let numeric = is_numeric(&a) && is_numeric(&b);
                        let ord = if numeric {
                            a.num().partial_cmp(&b.num()).unwrap_or(std::cmp::Ordering::Equal)
                        } else {
                            a.text().cmp(&b.text())
                        };
                        let t = match op.as_str() {
                            "==" => ord.is_eq(),
                            "!=" => !ord.is_eq(),
                            "<" => ord.is_lt(),
                            "<=" => ord.is_le(),
                            ">" => ord.is_gt(),
                            _ => ord.is_ge(),
                        };
                        Value::Num(f64::from(u8::from(t)))
                    }
                }
            }
            Expr::Not(e) => Value::Num(f64::from(u8::from(!self.get(e)?.truthy()))),
            Expr::Neg(e) => Value::Num(-self.get(e)?.num()),
            Expr::Concat(a, b) => Value::Str(format!("{}{}", self.get(a)?.text(), self.get(b)?.text())),
            Expr::In(k, arr) => {
                let k = self.get(k)?.text();
                Value::Num(f64::from(u8::from(
                    self.arrays.get(arr).is_some_and(|m| m.contains_key(&k)),
                )))
            }
            Expr::Cond(c, a, b) => {
                if self.get(c)?.truthy() {
                    self.get(a)?
                } else {
                    self.get(b)?
                }
            }
            Expr::Call(f, args) => self.call(f, args)?,
        })
    }

    fn store(&mut self, lhs: &Expr, v: Value) -> Result<(), Ctl> {
        match lhs {
            Expr::Var(n) => {
                if n == "NF" {
                    let nf = v.num().max(0.0) as usize;
                    self.fields.resize(nf.min(10_000) + 1, String::new());
                    self.rebuild();
                } else {
                    self.vars.insert(n.clone(), v);
                }
            }
            Expr::Field(i) => {
                let i = (self.get(i)?.num().max(0.0) as usize).min(10_000);
                if i == 0 {
                    let text = v.text();
                    self.set_record(&text);
                } else {
                    if self.fields.len() <= i {
                        self.fields.resize(i + 1, String::new());
                    }
                    self.fields[i] = v.text();
                    self.rebuild();
                }
            }
            Expr::Index(a, i) => {
                let k = self.get(i)?.text();
                let arr = self.arrays.entry(a.clone()).or_default();
                if arr.len() < 100_000 {
                    arr.insert(k, v);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn call(&mut self, f: &str, args: &[Expr]) -> Result<Value, Ctl> {
        let mut vals = Vec::new();
        for (i, a) in args.iter().enumerate() {
            // split()'s array and sub()'s target are names, not values.
            if (f == "split" && i == 1) || ((f == "sub" || f == "gsub") && i == 2) {
                vals.push(Value::Str(String::new()));
            } else if let (Expr::Regex(r), true) = (a, matches!(f, "sub" | "gsub" | "match" | "split")) {
                vals.push(Value::Str(r.clone()));
            } else {
                vals.push(self.get(a)?);
            }
        }
        let s = |i: usize| vals.get(i).map(Value::text).unwrap_or_default();
        Ok(match f {
            "length" => Value::Num(if args.is_empty() {
                self.fields[0].chars().count()
            } else {
                s(0).chars().count()
            } as f64),
            "substr" => {
                let text: Vec<char> = s(0).chars().collect();
                let start = vals.get(1).map_or(1.0, Value::num).round() as i64;
                let len = vals.get(2).map_or(i64::MAX / 2, |v| v.num().round() as i64);
                let from = start.max(1);
                let to = start.saturating_add(len).min(text.len() as i64 + 1);
                if to <= from {
                    Value::Str(String::new())
                } else {
                    Value::Str(text[(from - 1) as usize..(to - 1) as usize].iter().collect())
                }
            }
            "index" => Value::Num(s(0).find(&s(1)).map_or(0, |i| s(0)[..i].chars().count() + 1) as f64),
            "tolower" => Value::Str(s(0).to_lowercase()),
            "toupper" => Value::Str(s(0).to_uppercase()),
            "int" => Value::Num(vals.first().map_or(0.0, Value::num).trunc()),
            "sprintf" => {
                let rest: Vec<String> = vals.iter().skip(1).map(Value::text).collect();
                Value::Str(String::from_utf8_lossy(&super::text::printf_format(&s(0), &rest, 1 << 16).0).into_owned())
            }
            "split" => {
                let Some(Expr::Var(arr)) = args.get(1) else {
                    return Ok(Value::Num(0.0));
                };
                let text = s(0);
                let parts: Vec<String> = match vals.get(2).map(Value::text) {
                    Some(sep) if sep != " " => text.split(sep.as_str()).map(str::to_string).collect(),
                    _ => text.split_whitespace().map(str::to_string).collect(),
                };
                let m = self.arrays.entry(arr.clone()).or_default();
                m.clear();
                for (i, p) in parts.iter().enumerate() {
                    m.insert((i + 1).to_string(), Value::Str(p.clone()));
                }
                Value::Num(parts.len() as f64)
            }
            "sub" | "gsub" => {
                let target = args.get(2).cloned().unwrap_or(Expr::Field(Box::new(Expr::Num(0.0))));
                let current = self.get(&target)?.text();
                let Ok(re) = regex::Regex::new(&super::text::posix_to_rust(&s(0), true)) else {
                    return Ok(Value::Num(0.0));
                };
                let rep = s(1).replace("\\&", "\u{0}").replace('&', "$0").replace('\u{0}', "&");
                let count = if f == "gsub" {
                    re.find_iter(&current).count()
                } else {
                    usize::from(re.is_match(&current))
                };
                let new = if f == "gsub" {
                    re.replace_all(&current, rep.as_str())
                } else {
                    re.replace(&current, rep.as_str())
                };
                let new = new.into_owned();
                self.store(&target, Value::Str(new))?;
                Value::Num(count as f64)
            }
            "match" => Value::Num(f64::from(u8::from(regex_match(&s(1), &s(0))))),
            "system" => Value::Num(0.0),
            _ => Value::Str(String::new()),
        })
    }

    fn exec(&mut self, stmts: &[Stmt]) -> Result<(), Ctl> {
        for st in stmts {
            self.stmt(st)?;
            if self.out.len() > self.max {
                return Err(Ctl::Exit);
            }
        }
        Ok(())
    }

    fn stmt(&mut self, st: &Stmt) -> Result<(), Ctl> {
        match st {
            Stmt::Print(args) => {
                let line = if args.is_empty() {
                    self.fields[0].clone()
                } else {
                    let ofs = self.vars.get("OFS").map_or(" ".to_string(), Value::text);
                    let mut parts = Vec::new();
                    for a in args {
                        parts.push(self.get(a)?.text());
                    }
                    parts.join(&ofs)
                };
                self.out.extend_from_slice(line.as_bytes());
                self.out.push(b'\n');
            }
            Stmt::Printf(args) => {
                let mut vals = Vec::new();
                for a in args {
                    vals.push(self.get(a)?.text());
                }
                if let Some((fmt, rest)) = vals.split_first() {
                    let (bytes, _, _) = super::text::printf_format(fmt, rest, self.max);
                    self.out.extend(bytes);
                }
            }
            Stmt::Expr(e) => {
                self.get(e)?;
            }
            Stmt::If(c, a, b) => {
                if self.get(c)?.truthy() {
                    self.stmt(a)?;
                } else if let Some(b) = b {
                    self.stmt(b)?;
                }
            }
            Stmt::While(c, body) => {
                while self.get(c)?.truthy() {
                    self.stmt(body)?;
                }
            }
            Stmt::For(init, cond, step, body) => {
                if let Some(i) = init {
                    self.stmt(i)?;
                }
                loop {
                    if let Some(c) = cond
                        && !self.get(c)?.truthy()
                    {
                        break;
                    }
                    self.stmt(body)?;
                    if let Some(s) = step {
                        self.stmt(s)?;
                    }
                }
            }
            Stmt::ForIn(k, arr, body) => {
                let keys: Vec<String> = self
                    .arrays
                    .get(arr)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.vars.insert(k.clone(), Value::Str(key));
                    self.stmt(body)?;
                }
            }
            Stmt::Block(b) => self.exec(b)?,
            Stmt::Next => return Err(Ctl::Next),
            Stmt::Exit(e) => {
                if let Some(e) = e {
                    self.exit_code = self.get(e)?.num() as i32;
                }
                return Err(Ctl::Exit);
            }
            Stmt::Delete(arr, idx) => match idx {
                Some(i) => {
                    let k = self.get(i)?.text();
                    if let Some(m) = self.arrays.get_mut(arr) {
                        m.remove(&k);
                    }
                }
                None => {
                    self.arrays.remove(arr);
                }
            },
        }
        Ok(())
    }
}

fn is_numeric(v: &Value) -> bool {
    match v {
        Value::Num(_) => true,
        Value::Str(s) => !s.trim().is_empty() && s.trim().parse::<f64>().is_ok(),
    }
}

fn arith(op: char, a: f64, b: f64) -> f64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        '/' => {
            if b == 0.0 {
                0.0
            } else {
                a / b
            }
        }
        '%' => {
            if b == 0.0 {
                0.0
            } else {
                a % b
            }
        }
        '^' => a.powf(b),
        _ => a,
    }
}

fn regex_match(pattern: &str, text: &str) -> bool {
    regex::RegexBuilder::new(&super::text::posix_to_rust(pattern, true))
        .size_limit(1 << 20)
        .build()
        .is_ok_and(|r| r.is_match(text))
}

/// Runs a program over `input`; returns the exit status.
pub(crate) fn run(
    prog: &Program,
    input: &[u8],
    fs: Option<&str>,
    vars: BTreeMap<String, Value>,
    out: &mut Vec<u8>,
    max: usize,
    steps: u64,
) -> i32 {
    let fs = fs.map(|f| {
        if f == "\\t" || f == "t" {
            "\t".to_string()
        } else {
            f.to_string()
        }
    });
    let mut m = Machine {
        vars,
        arrays: BTreeMap::new(),
        fields: vec![String::new()],
        fs,
        nr: 0,
        out,
        max,
        steps,
        exit_code: 0,
    };
    let text = String::from_utf8_lossy(input).into_owned();
    let mut exited = false;
    for (pat, action) in &prog.0 {
        if matches!(pat, Pattern::Begin)
            && let Some(a) = action
            && let Err(Ctl::Exit) = m.exec(a)
        {
            exited = true;
            break;
        }
    }
    let has_main = prog.0.iter().any(|(p, _)| matches!(p, Pattern::All | Pattern::Expr(_)));
    if !exited && (has_main || prog.0.iter().any(|(p, _)| matches!(p, Pattern::End))) {
        'records: for line in text.lines() {
            m.nr += 1;
            m.set_record(line);
            for (pat, action) in &prog.0 {
                let selected = match pat {
                    Pattern::All => true,
                    Pattern::Expr(e) => match m.get(e) {
                        Ok(v) => v.truthy(),
                        Err(_) => {
                            exited = true;
                            break 'records;
                        }
                    },
                    _ => false,
                };
                if !selected {
                    continue;
                }
                let result = match action {
                    Some(a) => m.exec(a),
                    None => m.stmt(&Stmt::Print(Vec::new())),
                };
                match result {
                    Ok(()) => {}
                    Err(Ctl::Next) => continue 'records,
                    Err(Ctl::Exit) => {
                        exited = true;
                        break 'records;
                    }
                }
            }
        }
    }
    let _ = exited;
    for (pat, action) in &prog.0 {
        if matches!(pat, Pattern::End)
            && let Some(a) = action
            && let Err(Ctl::Exit) = m.exec(a)
        {
            break;
        }
    }
    m.exit_code
}
