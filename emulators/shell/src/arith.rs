//! `$(( ))` evaluation over brush-parser's arithmetic AST, with bash's
//! 64-bit wrapping integers.

use brush_parser::ast::{ArithmeticExpr, ArithmeticTarget, BinaryOperator, UnaryAssignmentOperator, UnaryOperator};

use crate::interp::Run;

/// How deep variable references may recurse (`a=b; b=a; $((a))`).
const MAX_DEPTH: u32 = 32;

pub(crate) fn eval(run: &mut Run<'_>, expr: &ArithmeticExpr, depth: u32) -> Result<i64, String> {
    if depth > MAX_DEPTH {
        return Err("expression recursion level exceeded".into());
    }
    Ok(match expr {
        ArithmeticExpr::Literal(v) => *v,
        ArithmeticExpr::Reference(target) => read(run, target, depth)?,
        ArithmeticExpr::UnaryOp(op, e) => {
            let v = eval(run, e, depth + 1)?;
            match op {
                UnaryOperator::UnaryPlus => v,
                UnaryOperator::UnaryMinus => v.wrapping_neg(),
                UnaryOperator::BitwiseNot => !v,
                UnaryOperator::LogicalNot => i64::from(v == 0),
            }
        }
        ArithmeticExpr::BinaryOp(op, a, b) => {
            // && and || short-circuit like C.
            match op {
                BinaryOperator::LogicalAnd => {
                    return Ok(i64::from(
                        eval(run, a, depth + 1)? != 0 && eval(run, b, depth + 1)? != 0,
                    ));
                }
                BinaryOperator::LogicalOr => {
                    return Ok(i64::from(
                        eval(run, a, depth + 1)? != 0 || eval(run, b, depth + 1)? != 0,
                    ));
                }
                _ => {}
            }
            let x = eval(run, a, depth + 1)?;
            let y = eval(run, b, depth + 1)?;
            binary(*op, x, y)?
        }
        ArithmeticExpr::Conditional(c, a, b) => {
            if eval(run, c, depth + 1)? != 0 {
                eval(run, a, depth + 1)?
            } else {
                eval(run, b, depth + 1)?
            }
        }
        ArithmeticExpr::Assignment(target, e) => {
            let v = eval(run, e, depth + 1)?;
            write(run, target, v);
            v
        }
        ArithmeticExpr::BinaryAssignment(op, target, e) => {
            let old = read(run, target, depth)?;
            let v = binary(*op, old, eval(run, e, depth + 1)?)?;
            write(run, target, v);
            v
        }
        ArithmeticExpr::UnaryAssignment(op, target) => {
            let old = read(run, target, depth)?;
            let new = match op {
                UnaryAssignmentOperator::PrefixIncrement | UnaryAssignmentOperator::PostfixIncrement => {
                    old.wrapping_add(1)
                }
                _ => old.wrapping_sub(1),
            };
            write(run, target, new);
            match op {
                UnaryAssignmentOperator::PrefixIncrement | UnaryAssignmentOperator::PrefixDecrement => new,
                _ => old,
            }
        }
    })
}

fn binary(op: BinaryOperator, x: i64, y: i64) -> Result<i64, String> {
    Ok(match op {
        BinaryOperator::Power => {
            if y < 0 {
                return Err("exponent less than 0".into());
            }
            x.wrapping_pow(u32::try_from(y).unwrap_or(u32::MAX))
        }
        BinaryOperator::Multiply => x.wrapping_mul(y),
        BinaryOperator::Divide | BinaryOperator::Modulo if y == 0 => return Err("division by 0".into()),
        BinaryOperator::Divide => x.wrapping_div(y),
        BinaryOperator::Modulo => x.wrapping_rem(y),
        BinaryOperator::Comma => y,
        BinaryOperator::Add => x.wrapping_add(y),
        BinaryOperator::Subtract => x.wrapping_sub(y),
        BinaryOperator::ShiftLeft => x.wrapping_shl((y & 63) as u32),
        BinaryOperator::ShiftRight => x.wrapping_shr((y & 63) as u32),
        BinaryOperator::LessThan => i64::from(x < y),
        BinaryOperator::LessThanOrEqualTo => i64::from(x <= y),
        BinaryOperator::GreaterThan => i64::from(x > y),
        BinaryOperator::GreaterThanOrEqualTo => i64::from(x >= y),
        BinaryOperator::Equals => i64::from(x == y),
        BinaryOperator::NotEquals => i64::from(x != y),
        BinaryOperator::BitwiseAnd => x & y,
        BinaryOperator::BitwiseXor => x ^ y,
        BinaryOperator::BitwiseOr => x | y,
        BinaryOperator::LogicalAnd => i64::from(x != 0 && y != 0),
        BinaryOperator::LogicalOr => i64::from(x != 0 || y != 0),
    })
}

fn name_of(target: &ArithmeticTarget) -> &str {
    match target {
        ArithmeticTarget::Variable(n) | ArithmeticTarget::ArrayElement(n, _) => n,
    }
}

fn read(run: &mut Run<'_>, target: &ArithmeticTarget, depth: u32) -> Result<i64, String> {
    let value = run.st.vars.get(name_of(target)).cloned().unwrap_or_default();
    let value = value.trim();
    if value.is_empty() {
        return Ok(0);
    }
    if let Some(v) = parse_int(value) {
        return Ok(v);
    }
    // A variable holding an expression is evaluated in turn.
    match crate::parse::guarded(|| brush_parser::arithmetic::parse(value))
        .unwrap_or_else(|| brush_parser::arithmetic::parse("("))
    {
        Ok(e) => eval(run, &e, depth + 1),
        Err(_) => Err("syntax error in expression".into()),
    }
}

fn write(run: &mut Run<'_>, target: &ArithmeticTarget, v: i64) {
    run.set_var(name_of(target), v.to_string(), false);
}

/// Parses bash integer literals: decimal, `0x` hex, leading-0 octal, `base#n`.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}
