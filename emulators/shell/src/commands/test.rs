//! `test`, `[` and the predicates of `[[ ]]`.

use brush_parser::ast::{BinaryPredicate, UnaryPredicate};

use crate::fs::NodeKind;
use crate::interp::Run;

/// Evaluates `test`'s arguments (POSIX rules by argument count, then `-a`/`-o`).
pub(crate) fn evaluate(run: &mut Run<'_>, args: &[String]) -> Result<bool, String> {
    if let Some(i) = args.iter().position(|a| a == "-o") {
        return Ok(evaluate(run, &args[..i])? || evaluate(run, &args[i + 1..])?);
    }
    if let Some(i) = args.iter().position(|a| a == "-a")
        && i > 0
    {
        return Ok(evaluate(run, &args[..i])? && evaluate(run, &args[i + 1..])?);
    }
    match args.len() {
        0 => Ok(false),
        1 => Ok(!args[0].is_empty()),
        2 if args[0] == "!" => Ok(!evaluate(run, &args[1..])?),
        2 => match unary_op(&args[0]) {
            Some(pred) => Ok(unary(run, &pred, &args[1])),
            None => Err(format!("{}: unary operator expected", args[0])),
        },
        3 if args[0] == "!" => Ok(!evaluate(run, &args[1..])?),
        3 if args[0] == "(" && args[2] == ")" => Ok(!args[1].is_empty()),
        3 => match binary_op(&args[1]) {
            Some(pred) => {
                if is_arith(&pred) {
                    for v in [&args[0], &args[2]] {
                        if crate::arith::parse_int(v.trim()).is_none() {
                            return Err(format!("{v}: integer expression expected"));
                        }
                    }
                }
                Ok(binary(run, &pred, &args[0], &args[2]))
            }
            None => Err(format!("{}: binary operator expected", args[1])),
        },
        4 if args[0] == "!" => Ok(!evaluate(run, &args[1..])?),
        _ => Err("too many arguments".to_string()),
    }
}

fn is_arith(p: &BinaryPredicate) -> bool {
    use BinaryPredicate as B;
    matches!(
        p,
        B::ArithmeticEqualTo
            | B::ArithmeticNotEqualTo
            | B::ArithmeticLessThan
            | B::ArithmeticLessThanOrEqualTo
            | B::ArithmeticGreaterThan
            | B::ArithmeticGreaterThanOrEqualTo
    )
}

fn unary_op(op: &str) -> Option<UnaryPredicate> {
    use UnaryPredicate as U;
    Some(match op {
        "-e" | "-a" => U::FileExists,
        "-f" => U::FileExistsAndIsRegularFile,
        "-d" => U::FileExistsAndIsDir,
        "-L" | "-h" => U::FileExistsAndIsSymlink,
        "-r" => U::FileExistsAndIsReadable,
        "-w" => U::FileExistsAndIsWritable,
        "-x" => U::FileExistsAndIsExecutable,
        "-s" => U::FileExistsAndIsNotZeroLength,
        "-c" => U::FileExistsAndIsCharSpecialFile,
        "-b" => U::FileExistsAndIsBlockSpecialFile,
        "-p" => U::FileExistsAndIsFifo,
        "-S" => U::FileExistsAndIsSocket,
        "-u" => U::FileExistsAndIsSetuid,
        "-g" => U::FileExistsAndIsSetgid,
        "-k" => U::FileExistsAndHasStickyBit,
        "-O" => U::FileExistsAndOwnedByEffectiveUserId,
        "-G" => U::FileExistsAndOwnedByEffectiveGroupId,
        "-t" => U::FdIsOpenTerminal,
        "-z" => U::StringHasZeroLength,
        "-n" => U::StringHasNonZeroLength,
        "-v" => U::ShellVariableIsSetAndAssigned,
        _ => return None,
    })
}

fn binary_op(op: &str) -> Option<BinaryPredicate> {
    use BinaryPredicate as B;
    Some(match op {
        "=" | "==" => B::StringExactlyMatchesString,
        "!=" => B::StringDoesNotExactlyMatchString,
        "<" => B::LeftSortsBeforeRight,
        ">" => B::LeftSortsAfterRight,
        "-eq" => B::ArithmeticEqualTo,
        "-ne" => B::ArithmeticNotEqualTo,
        "-lt" => B::ArithmeticLessThan,
        "-le" => B::ArithmeticLessThanOrEqualTo,
        "-gt" => B::ArithmeticGreaterThan,
        "-ge" => B::ArithmeticGreaterThanOrEqualTo,
        "-nt" => B::LeftFileIsNewerOrExistsWhenRightDoesNot,
        "-ot" => B::LeftFileIsOlderOrDoesNotExistWhenRightDoes,
        "-ef" => B::FilesReferToSameDeviceAndInodeNumbers,
        _ => return None,
    })
}

/// A unary predicate on a string or a path.
pub(crate) fn unary(run: &mut Run<'_>, pred: &UnaryPredicate, v: &str) -> bool {
    use UnaryPredicate as U;
    match pred {
        U::StringHasZeroLength => return v.is_empty(),
        U::StringHasNonZeroLength => return !v.is_empty(),
        U::ShellVariableIsSetAndAssigned | U::ShellVariableIsSetAndNameRef => return run.st.vars.contains_key(v),
        U::FdIsOpenTerminal => return run.interactive && v.trim() != "",
        U::ShellOptionEnabled => return false,
        _ => {}
    }
    if v.is_empty() {
        return false;
    }
    let abs = crate::fs::absolute(&run.st.cwd, v);
    if matches!(pred, U::FileExistsAndIsSymlink) {
        return run
            .fs
            .lstat(&abs)
            .is_ok_and(|(_, n)| matches!(n.kind, NodeKind::Symlink(_)));
    }
    let Ok((real, node)) = run.fs.stat(&abs) else {
        return false;
    };
    if run.fs.check_traverse(&real, run.cred()).is_err() {
        return false;
    }
    let cred = run.cred();
    let bits = if cred.uid == 0 {
        0o7
    } else if node.uid == cred.uid {
        node.mode >> 6
    } else if cred.gids.contains(&node.gid) {
        node.mode >> 3
    } else {
        node.mode
    };
    match pred {
        U::FileExists => true,
        U::FileExistsAndIsRegularFile => {
            matches!(
                node.kind,
                NodeKind::File(_) | NodeKind::Generated(_) | NodeKind::Program { .. }
            )
        }
        U::FileExistsAndIsDir => node.is_dir(),
        U::FileExistsAndIsCharSpecialFile => matches!(node.kind, NodeKind::CharDevice(_)),
        U::FileExistsAndIsReadable => bits & 4 != 0,
        U::FileExistsAndIsWritable => bits & 2 != 0 && !crate::fs::is_read_only(&real),
        U::FileExistsAndIsExecutable => {
            if cred.uid == 0 {
                node.mode & 0o111 != 0 || node.is_dir()
            } else {
                bits & 1 != 0
            }
        }
        U::FileExistsAndIsNotZeroLength => node.size() > 0,
        U::FileExistsAndIsSetuid => node.mode & 0o4000 != 0,
        U::FileExistsAndIsSetgid => node.mode & 0o2000 != 0,
        U::FileExistsAndHasStickyBit => node.mode & 0o1000 != 0,
        U::FileExistsAndOwnedByEffectiveUserId => node.uid == cred.uid,
        U::FileExistsAndOwnedByEffectiveGroupId => cred.gids.first() == Some(&node.gid),
        _ => false,
    }
}

/// A binary predicate.
pub(crate) fn binary(run: &mut Run<'_>, pred: &BinaryPredicate, a: &str, b: &str) -> bool {
    use BinaryPredicate as B;
    let int = |s: &str| crate::arith::parse_int(s.trim()).unwrap_or(0);
    match pred {
        B::StringExactlyMatchesString | B::StringExactlyMatchesPattern => a == b,
        B::StringDoesNotExactlyMatchString | B::StringDoesNotExactlyMatchPattern => a != b,
        B::StringContainsSubstring => a.contains(b),
        B::LeftSortsBeforeRight => a < b,
        B::LeftSortsAfterRight => a > b,
        B::ArithmeticEqualTo => int(a) == int(b),
        B::ArithmeticNotEqualTo => int(a) != int(b),
        B::ArithmeticLessThan => int(a) < int(b),
        B::ArithmeticLessThanOrEqualTo => int(a) <= int(b),
        B::ArithmeticGreaterThan => int(a) > int(b),
        B::ArithmeticGreaterThanOrEqualTo => int(a) >= int(b),
        B::StringMatchesRegex => super::text::regex_is_match(b, a, false),
        B::LeftFileIsNewerOrExistsWhenRightDoesNot
        | B::LeftFileIsOlderOrDoesNotExistWhenRightDoes
        | B::FilesReferToSameDeviceAndInodeNumbers => {
            let ma = run
                .fs
                .stat(&crate::fs::absolute(&run.st.cwd, a))
                .ok()
                .map(|(p, n)| (p, n.mtime));
            let mb = run
                .fs
                .stat(&crate::fs::absolute(&run.st.cwd, b))
                .ok()
                .map(|(p, n)| (p, n.mtime));
            match pred {
                B::LeftFileIsNewerOrExistsWhenRightDoesNot => match (ma, mb) {
                    (Some(x), Some(y)) => x.1 > y.1,
                    (Some(_), None) => true,
                    _ => false,
                },
                B::LeftFileIsOlderOrDoesNotExistWhenRightDoes => match (ma, mb) {
                    (Some(x), Some(y)) => x.1 < y.1,
                    (None, Some(_)) => true,
                    _ => false,
                },
                _ => matches!((ma, mb), (Some(x), Some(y)) if x.0 == y.0),
            }
        }
    }
}
