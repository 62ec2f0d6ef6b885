//! ACL administration by admin workers (docs/acl.md, "Changing the ACL at
//! runtime"): one ACL_COMMAND is carried out against the [`Access`] of the
//! node, and every change is written to the `--acl` file before it is put
//! in force.
//!
//! A change is made on a copy of the ACL in force; the copy is written
//! atomically ([`write_atomically`]: a temporary file in the same
//! directory, fsync, rename over the file, fsync of the directory) and only
//! then replaces the ACL in force. So a change that cannot be written is
//! never in force (it is rolled back before anyone saw it), and a change
//! that was accepted survives a restart. The copy starts with an empty
//! decision cache and a new generation, which invalidates every cached
//! decision.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Access;
use crate::auth::acl::{Acl, AclError};
use crate::auth::acl_file;
use crate::backend::message::{AclCommand, AclOp, AclStatus, Field};

/// What became of one ACL_COMMAND: the fields of its ACL_RESULT, within
/// their caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Done, refused or not persisted.
    pub status: AclStatus,
    /// Why not done; empty when done.
    pub detail: String,
    /// For EXPLAIN, the decision.
    pub decision: Option<bool>,
    /// For EXPLAIN, the explanation text.
    pub explanation: String,
    /// Whether the ACL in force changed: live connections are to be
    /// checked again.
    pub changed: bool,
}

impl Outcome {
    /// An outcome that changed nothing and answers no question.
    fn unchanged(status: AclStatus, detail: &str) -> Outcome {
        Outcome {
            status,
            detail: clip(detail, Field::Detail).to_owned(),
            decision: None,
            explanation: String::new(),
            changed: false,
        }
    }
}

impl Access {
    /// Carries out `command` against `base`, the latest ACL: EXPLAIN
    /// answers from it; a change is applied to a copy and persisted to the
    /// ACL file, and the copy is returned to be put in force. Without an
    /// ACL file every change is refused.
    pub fn administer(&self, base: &Acl, command: &AclCommand<'_>) -> (Outcome, Option<Acl>) {
        let [first, second, third] = command.args.map(|list| list.iter().collect::<Vec<_>>());
        if command.op == AclOp::Explain {
            return (explain(base, &first, &second, &third), None);
        }
        let Some(path) = self.acl_file.clone() else {
            let outcome = Outcome::unchanged(AclStatus::Refused, "no ACL file to persist to");
            return (outcome, None);
        };
        let mut candidate = base.clone();
        if let Err(e) = apply(&mut candidate, command.op, &first, &second, &third) {
            return (Outcome::unchanged(AclStatus::Refused, &e.to_string()), None);
        }
        let text = acl_file::serialize(&candidate);
        if let Err(e) = write_atomically(&path, text.as_bytes()) {
            let detail = format!("{}: {e}", path.display());
            return (Outcome::unchanged(AclStatus::NotPersisted, &detail), None);
        }
        let outcome = Outcome {
            changed: true,
            ..Outcome::unchanged(AclStatus::Ok, "")
        };
        (outcome, Some(candidate))
    }
}

/// The one name of a list whose arity is exactly one (the codec checked
/// it); empty otherwise, which no engine call accepts as a name.
fn one<'a>(names: &[&'a str]) -> &'a str {
    names.first().copied().unwrap_or_default()
}

/// Applies a change to `acl`, as the engine's method of the op's name.
fn apply(
    acl: &mut Acl,
    op: AclOp,
    first: &[&str],
    second: &[&str],
    third: &[&str],
) -> Result<(), AclError> {
    match op {
        AclOp::Allow => acl.allow(first, second, third),
        AclOp::RemoveAllow => {
            acl.remove_allow(one(first), second, all_if_empty(third));
            Ok(())
        }
        AclOp::RemoveRole => {
            acl.remove_role(one(first));
            Ok(())
        }
        AclOp::RemoveResource => {
            acl.remove_resource(one(first));
            Ok(())
        }
        AclOp::AddUserRoles => acl.add_user_roles(one(first), second),
        AclOp::RemoveUserRoles => {
            acl.remove_user_roles(one(first), second);
            Ok(())
        }
        AclOp::AddRoleParents => acl.add_role_parents(one(first), second),
        AclOp::RemoveRoleParents => {
            acl.remove_role_parents(one(first), all_if_empty(second));
            Ok(())
        }
        // Answered by `explain`; changes nothing.
        AclOp::Explain => Ok(()),
    }
}

/// No permission (or parent) listed means all of them.
fn all_if_empty<'n, 's>(names: &'n [&'s str]) -> Option<&'n [&'s str]> {
    (!names.is_empty()).then_some(names)
}

/// EXPLAIN: what `averyws acl check` says for the user (without token
/// roles, with `guest` as every connection), the resource and the
/// permission.
fn explain(acl: &Acl, user: &[&str], resource: &[&str], permission: &[&str]) -> Outcome {
    let guest = [crate::auth::acl::GUEST];
    let explanation = acl.explain(one(user), &guest, one(resource), one(permission));
    Outcome {
        status: AclStatus::Ok,
        detail: String::new(),
        decision: Some(explanation.allowed()),
        explanation: clip(&explanation.to_string(), Field::Explanation).to_owned(),
        changed: false,
    }
}

/// The longest prefix of `text` within `field`'s cap that ends on a
/// character boundary.
fn clip(text: &str, field: Field) -> &str {
    let mut end = text.len().min(field.bounds().1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either
/// the old file or the new one, never a mix: `bytes` go to `PATH.tmp` in
/// the same directory, which is synced, renamed over `path`, and then the
/// directory is synced so the rename itself is durable. On error the
/// temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// `PATH.tmp`: the temporary file beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::message::List;
    use crate::config;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "averyws-admin-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn loaded(acl_file: Option<PathBuf>) -> Access {
        let auth = config::Auth {
            acl_file,
            ..config::Auth::default()
        };
        Access::load(&auth, &[]).expect("loads")
    }

    /// Administers against the ACL in force and puts a change in force,
    /// as the reactor does.
    fn administer(access: &mut Access, command: &AclCommand<'_>) -> Outcome {
        let (outcome, changed) = access.administer(access.acl(), command);
        if let Some(acl) = changed {
            access.put_acl(acl);
        }
        outcome
    }

    fn command<'a>(op: AclOp, args: &'a [&'a [&'a str]; 3]) -> AclCommand<'a> {
        AclCommand {
            request: 1,
            op,
            args: args.map(List::from),
        }
    }

    #[test]
    fn a_change_is_persisted_and_put_in_force() {
        let dir = Dir::new("ok");
        let file = dir.0.join("acl.conf");
        std::fs::write(&file, "allow guest /echo connect\n").expect("write");
        let mut access = loaded(Some(file.clone()));
        let before = access.generation();
        let grant = command(AclOp::Allow, &[&["member"], &["/m"], &["connect"]]);
        let outcome = administer(&mut access, &grant);
        assert_eq!((outcome.status, outcome.changed), (AclStatus::Ok, true));
        assert_ne!(access.generation(), before, "cached decisions are dropped");
        let on_disk = acl_file::parse(&std::fs::read_to_string(&file).expect("read"), "f");
        assert_eq!(on_disk.as_ref(), Ok(access.acl()));
        assert!(!file.with_extension("conf.tmp").exists());
        let why = command(AclOp::Explain, &[&["bob"], &["/m"], &["connect"]]);
        let outcome = administer(&mut access, &why);
        assert_eq!(outcome.decision, Some(false));
        let add = command(AclOp::AddUserRoles, &[&["bob"], &["member"], &[]]);
        assert_eq!(administer(&mut access, &add).status, AclStatus::Ok);
        let outcome = administer(&mut access, &why);
        assert_eq!(outcome.decision, Some(true));
        assert!(outcome.explanation.contains("member"), "{outcome:?}");
    }

    #[test]
    fn refused_and_unpersisted_changes_change_nothing() {
        let dir = Dir::new("fail");
        let file = dir.0.join("sub").join("acl.conf");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, "role a inherits b\n").expect("write");
        let mut access = loaded(Some(file.clone()));
        let before = access.acl().clone();
        let cycle = command(AclOp::AddRoleParents, &[&["b"], &["a"], &[]]);
        let outcome = administer(&mut access, &cycle);
        assert_eq!(outcome.status, AclStatus::Refused);
        assert!(outcome.detail.contains("cannot inherit"), "{outcome:?}");
        // Root writes through any mode bits: a missing directory stops it.
        std::fs::remove_dir_all(file.parent().expect("parent")).expect("rm");
        let grant = command(AclOp::Allow, &[&["a"], &["/x"], &["connect"]]);
        let outcome = administer(&mut access, &grant);
        assert_eq!(outcome.status, AclStatus::NotPersisted, "{outcome:?}");
        assert!(outcome.detail.contains("acl.conf"), "{outcome:?}");
        assert!(!outcome.changed);
        assert_eq!(access.acl(), &before);
        let mut embedded = loaded(None);
        let outcome = administer(&mut embedded, &grant);
        assert_eq!(
            (outcome.status, outcome.detail.as_str()),
            (AclStatus::Refused, "no ACL file to persist to")
        );
    }

    #[test]
    fn every_remove_op_reaches_the_engine() {
        let mut acl = acl_file::parse(
            "role r inherits p\nallow r /a,/b connect,send\nuser u roles r,s\n",
            "t",
        )
        .expect("parses");
        apply(&mut acl, AclOp::RemoveAllow, &["r"], &["/a"], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveAllow, &["r"], &["/b"], &["send"]).expect("ok");
        apply(&mut acl, AclOp::RemoveUserRoles, &["u"], &["s"], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveRoleParents, &["r"], &[], &[]).expect("ok");
        assert_eq!(
            acl_file::serialize(&acl),
            acl_file::serialize(
                &acl_file::parse("allow r /b connect\nuser u roles r\n", "t").expect("parses")
            )
        );
        apply(&mut acl, AclOp::RemoveResource, &["/b"], &[], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveRole, &["r"], &[], &[]).expect("ok");
        assert_eq!(acl, Acl::new());
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        let text = "é".repeat(200);
        let clipped = clip(&text, Field::Detail);
        assert_eq!(clipped.len(), 256);
        assert_eq!(clip("short", Field::Detail), "short");
    }
}
