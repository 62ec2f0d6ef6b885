//! `averyws acl`: decide offline what the server would decide and say why
//! (`check`), and read or change an ACL store, a file or a PostgreSQL
//! database, as the server's admin workers do (`import`, `export`, and one
//! command per engine change).
//!
//! Exit status: 0 allowed or done; 1 denied, or a change the engine
//! refused (a bad name, a cycle); 2 a usage error or a store that cannot
//! be read or written (one line on stderr, with `FILE:LINE` for a parse
//! error). A change to a file store reaches a running server on SIGHUP; a
//! change to a database reaches every node on its own.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use super::{apply, source, Refusal, Store, StoreFlags, Stored};
use crate::auth::acl::GUEST;
use crate::auth::acl_file::{self, DEFAULT_ACL, DEFAULT_ACL_NAME};
use crate::backend::message::AclOp;
use crate::config::{AclSource, DEFAULT_ACL_SCHEMA, DEFAULT_MAX_ACL_ROWS};

/// ACL tools: check a decision, or read and change an ACL store.
#[derive(FromArgs, Debug)]
struct AclArgs {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Check(CheckArgs),
    Import(Import),
    Export(Export),
    Allow(Allow),
    RemoveAllow(RemoveAllow),
    RemoveRole(RemoveRole),
    RemoveResource(RemoveResource),
    AddUserRoles(AddUserRoles),
    RemoveUserRoles(RemoveUserRoles),
    AddRoleParents(AddRoleParents),
    RemoveRoleParents(RemoveRoleParents),
}

/// Print whether USER may do PERMISSION on RESOURCE, and why. Exit status:
/// 0 allowed, 1 denied, 2 bad arguments or ACL store.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
struct CheckArgs {
    /// the ACL: a file or postgres://USER@HOST[:PORT]/DB (default: the
    /// embedded default ACL)
    #[argh(option)]
    acl: Option<String>,

    /// a file holding the store's password (default: PGPASSWORD)
    #[argh(option)]
    acl_password_file: Option<PathBuf>,

    /// CA certificates (PEM) verifying the database: TLS, required
    #[argh(option)]
    acl_ca_file: Option<PathBuf>,

    /// the schema of the store's tables (default averyws)
    #[argh(option, default = "DEFAULT_ACL_SCHEMA.to_owned()")]
    acl_schema: String,

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

/// One `averyws acl` subcommand that works on a store given by `--acl`:
/// the store's flags and the words after them.
macro_rules! store_command {
    ($name:ident, $word:literal, $about:literal, $words:literal) => {
        #[doc = $about]
        #[derive(FromArgs, Debug)]
        #[argh(subcommand, name = $word)]
        struct $name {
            /// the ACL store: a file or postgres://USER@HOST[:PORT]/DB
            #[argh(option)]
            acl: String,

            /// a file holding the store's password (default: PGPASSWORD)
            #[argh(option)]
            acl_password_file: Option<PathBuf>,

            /// CA certificates (PEM) verifying the database: TLS, required
            #[argh(option)]
            acl_ca_file: Option<PathBuf>,

            /// the schema of the store's tables (default averyws)
            #[argh(option, default = "DEFAULT_ACL_SCHEMA.to_owned()")]
            acl_schema: String,

            /// the most rows the store may hold, as the nodes' cap
            /// (default 1000000)
            #[argh(option, default = "DEFAULT_MAX_ACL_ROWS")]
            acl_max_rows: usize,

            #[doc = $words]
            #[argh(positional, greedy)]
            words: Vec<String>,
        }

        impl $name {
            fn parts(&self) -> StoreWords<'_> {
                StoreWords {
                    acl: &self.acl,
                    flags: StoreFlags {
                        password_file: self.acl_password_file.as_deref(),
                        ca_file: self.acl_ca_file.as_deref(),
                        schema: &self.acl_schema,
                        max_rows: self.acl_max_rows,
                    },
                    words: &self.words,
                }
            }
        }
    };
}

store_command!(
    Import,
    "import",
    "Replace the whole stored ACL with an ACL file's, at once.",
    "the ACL file to load"
);
store_command!(
    Export,
    "export",
    "Print the stored ACL in the ACL file format.",
    "no words: the store is given by --acl"
);
store_command!(
    Allow,
    "allow",
    "Grant PERMISSIONS on RESOURCES to ROLES (comma-separated lists).",
    "ROLES RESOURCES PERMISSIONS"
);
store_command!(
    RemoveAllow,
    "remove-allow",
    "Take PERMISSIONS (default: all) on RESOURCES away from ROLE.",
    "ROLE RESOURCES [PERMISSIONS]"
);
store_command!(
    RemoveRole,
    "remove-role",
    "Remove ROLE: its grants, its parents, and it from users and children.",
    "ROLE"
);
store_command!(
    RemoveResource,
    "remove-resource",
    "Remove every grant on RESOURCE (a name or a pattern, as granted).",
    "RESOURCE"
);
store_command!(
    AddUserRoles,
    "add-user-roles",
    "Give USER the ROLES.",
    "USER ROLES"
);
store_command!(
    RemoveUserRoles,
    "remove-user-roles",
    "Take the ROLES away from USER.",
    "USER ROLES"
);
store_command!(
    AddRoleParents,
    "add-role-parents",
    "Make ROLE inherit from each of PARENTS; a cycle is refused.",
    "ROLE PARENTS"
);
store_command!(
    RemoveRoleParents,
    "remove-role-parents",
    "Remove PARENTS (default: all) from ROLE's parents.",
    "ROLE [PARENTS]"
);

/// A store subcommand's flags and words.
struct StoreWords<'a> {
    acl: &'a str,
    flags: StoreFlags<'a>,
    words: &'a [String],
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
    let (op, parts) = match &parsed.command {
        Command::Check(check) => return run_check(check),
        Command::Import(c) => return run_import(&c.parts()),
        Command::Export(c) => return run_export(&c.parts()),
        Command::Allow(c) => (AclOp::Allow, c.parts()),
        Command::RemoveAllow(c) => (AclOp::RemoveAllow, c.parts()),
        Command::RemoveRole(c) => (AclOp::RemoveRole, c.parts()),
        Command::RemoveResource(c) => (AclOp::RemoveResource, c.parts()),
        Command::AddUserRoles(c) => (AclOp::AddUserRoles, c.parts()),
        Command::RemoveUserRoles(c) => (AclOp::RemoveUserRoles, c.parts()),
        Command::AddRoleParents(c) => (AclOp::AddRoleParents, c.parts()),
        Command::RemoveRoleParents(c) => (AclOp::RemoveRoleParents, c.parts()),
    };
    run_change(op, &parts)
}

/// Opens the store `parts` names, for `words` words exactly (or a usage
/// error).
fn open(
    parts: &StoreWords<'_>,
    words: std::ops::RangeInclusive<usize>,
) -> Result<AclSource, String> {
    if !words.contains(&parts.words.len()) {
        let expected = match (words.start(), words.end()) {
            (low, high) if low == high => low.to_string(),
            (low, high) => format!("{low} to {high}"),
        };
        return Err(format!(
            "expected {expected} word(s) after the flags, got {}",
            parts.words.len()
        ));
    }
    source(Some(parts.acl.to_owned()), parts.flags)
}

fn run_change(op: AclOp, parts: &StoreWords<'_>) -> ExitCode {
    let arity = op.arity();
    let needed = arity.iter().filter(|(min, _)| *min > 0).count();
    let allowed = arity.iter().filter(|(_, max)| *max > 0).count();
    let source = match open(parts, needed..=allowed) {
        Ok(source) => source,
        Err(e) => return usage_error(&e),
    };
    let lists: Vec<Vec<&str>> = parts
        .words
        .iter()
        .map(|word| word.split(',').collect())
        .collect();
    let list = |index: usize| lists.get(index).cloned().unwrap_or_default();
    let (first, second, third) = (list(0), list(1), list(2));
    if arity[0] == (1, 1) && first.len() != 1 {
        return usage_error("the first word is one name, not a list");
    }
    let Some(store) = super::store_of(&source) else {
        return usage_error("--acl names no store");
    };
    let changed = store.change(None, |acl| apply(acl, op, &first, &second, &third));
    finish(&store, changed)
}

fn run_import(parts: &StoreWords<'_>) -> ExitCode {
    let source = match open(parts, 1..=1) {
        Ok(source) => source,
        Err(e) => return usage_error(&e),
    };
    let file = PathBuf::from(&parts.words[0]);
    let acl = match super::read_file(&file) {
        Ok(acl) => acl,
        Err(e) => return usage_error(&e),
    };
    let Some(store) = super::store_of(&source) else {
        return usage_error("--acl names no store");
    };
    finish(&store, store.replace(&acl))
}

fn run_export(parts: &StoreWords<'_>) -> ExitCode {
    let loaded = open(parts, 0..=0).and_then(|source| {
        let store = super::store_of(&source).ok_or("--acl names no store")?;
        store.load().map_err(|e| e.to_string())
    });
    match loaded {
        Ok(acl) => {
            print(&acl_file::serialize(&acl));
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(&e),
    }
}

/// Reports a change: `changed` or `unchanged` on stdout (exit 0), why not
/// on stderr (exit 1 for a refusal, 2 for a store error).
fn finish(store: &Store<'_>, changed: Result<Option<Stored>, Refusal>) -> ExitCode {
    match changed {
        Ok(Some(_)) => {
            print(&format!("changed: {}\n", store.describe()));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            print(&format!("unchanged: {}\n", store.describe()));
            ExitCode::SUCCESS
        }
        Err(Refusal::Invalid(why)) => {
            eprintln!("averyws acl: refused: {why}");
            ExitCode::from(1)
        }
        Err(Refusal::Unavailable(why)) => usage_error(&why),
    }
}

fn run_check(check: &CheckArgs) -> ExitCode {
    let loaded = match &check.acl {
        None => acl_file::parse(DEFAULT_ACL, DEFAULT_ACL_NAME).map_err(|e| e.to_string()),
        Some(acl) => source(
            Some(acl.clone()),
            StoreFlags {
                password_file: check.acl_password_file.as_deref(),
                ca_file: check.acl_ca_file.as_deref(),
                schema: &check.acl_schema,
                max_rows: DEFAULT_MAX_ACL_ROWS,
            },
        )
        .and_then(|source| {
            let store = super::store_of(&source).ok_or("--acl names no store")?;
            store.load().map_err(|e| e.to_string())
        }),
    };
    let acl = match loaded {
        Ok(acl) => acl,
        Err(e) => return usage_error(&e),
    };
    // As the server does: every connection also holds `guest`.
    let roles: Vec<&str> = check
        .role
        .iter()
        .map(String::as_str)
        .chain([GUEST])
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
