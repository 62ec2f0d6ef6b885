//! `averyws acl check`: decide offline what the server would decide, and
//! say why.
//!
//! Exit status: 0 allowed, 1 denied, 2 a usage error or an unreadable ACL
//! file (one line on stderr, with `FILE:LINE` for a parse error).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::acl_file::{self, DEFAULT_ACL, DEFAULT_ACL_NAME};

/// Offline ACL tools.
#[derive(FromArgs, Debug)]
struct AclArgs {
    #[argh(subcommand)]
    command: AclCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum AclCommand {
    Check(CheckArgs),
}

/// Print whether USER may do PERMISSION on RESOURCE, and why. Exit status:
/// 0 allowed, 1 denied, 2 bad arguments or ACL file.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
struct CheckArgs {
    /// the ACL file (default: the embedded default ACL)
    #[argh(option)]
    acl: Option<PathBuf>,

    /// a role the user's token carries (repeatable)
    #[argh(option)]
    role: Vec<String>,

    /// the user id: a token's `sub`, or `guest` for an unauthenticated
    /// client
    #[argh(positional)]
    user: String,

    /// the resource: a path such as /echo or a channel such as chat/lobby
    #[argh(positional)]
    resource: String,

    /// the permission, such as connect, send, subscribe or publish
    #[argh(positional)]
    permission: String,
}

/// Runs `averyws acl ARGS...`; `args` are the words after `acl`.
pub fn run(args: &[&str]) -> ExitCode {
    let parsed = match AclArgs::from_args(&["averyws acl"], args) {
        Ok(parsed) => parsed,
        Err(early) if early.status.is_ok() => {
            print(&format!("{}\n", early.output.trim_end()));
            return ExitCode::SUCCESS;
        }
        Err(early) => {
            // argh lists missing arguments on lines of their own.
            let words: Vec<&str> = early.output.split_whitespace().collect();
            return usage_error(&words.join(" "));
        }
    };
    let AclCommand::Check(check) = parsed.command;
    let (text, file_name) = match &check.acl {
        None => (DEFAULT_ACL.to_owned(), DEFAULT_ACL_NAME.to_owned()),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (text, path.display().to_string()),
            Err(e) => return usage_error(&format!("{}: {e}", path.display())),
        },
    };
    let acl = match acl_file::parse(&text, &file_name) {
        Ok(acl) => acl,
        Err(e) => return usage_error(&e.to_string()),
    };
    // As the server does: every connection also holds `guest`.
    let roles: Vec<&str> = check
        .role
        .iter()
        .map(String::as_str)
        .chain([crate::auth::acl::GUEST])
        .collect();
    let explanation = acl.explain(&check.user, &roles, &check.resource, &check.permission);
    let verdict = if explanation.allowed() {
        "allowed"
    } else {
        "denied"
    };
    print(&format!("{verdict}\n{explanation}\n"));
    ExitCode::from(if explanation.allowed() { 0 } else { 1 })
}

/// Writes to stdout; a closed pipe (`| head`) is not worth a panic.
fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn usage_error(line: &str) -> ExitCode {
    eprintln!("averyws acl: {line}");
    ExitCode::from(2)
}
