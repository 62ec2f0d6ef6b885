//! ACL administration by admin workers (docs/acl.md, "Changing the ACL at
//! runtime"): one ACL_COMMAND is carried out against the [`Access`] of the
//! node, and every change is stored (the `--acl` file, or the database)
//! before it is put in force.
//!
//! A change to a file is made on a copy of the ACL in force and written
//! atomically ([`acl_store::write_atomically`]); a change to a database is
//! made on what the database holds, in one transaction. Only then does it
//! replace the ACL in force. So a change that cannot be stored is never in
//! force, and a change that was accepted survives a restart. The new ACL
//! starts with an empty decision cache and a new generation, which
//! invalidates every cached decision.
//!
//! A change to a database is not made here on the reactor but on the
//! `acl-admin` thread (`control::store_changes`), through the same
//! [`acl_store::Store`]; [`Access::database`] tells the reactor so.

use super::Access;
use crate::acl_store::{self, Refusal};
use crate::auth::acl::Acl;
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
    /// Whether changes go to a database, which the reactor leaves to the
    /// `acl-admin` thread (`control::store_changes`); the store if so.
    pub fn database(&self) -> Option<&crate::config::PgStore> {
        match &self.source {
            crate::config::AclSource::Postgres(store) => Some(store),
            _ => None,
        }
    }

    /// Carries out `command` against `base`, the latest ACL: EXPLAIN
    /// answers from it; a change is applied to a copy and persisted to the
    /// ACL file, and the copy is returned to be put in force. Without an
    /// ACL file every change is refused.
    pub fn administer(&self, base: &Acl, command: &AclCommand<'_>) -> (Outcome, Option<Acl>) {
        let [first, second, third] = command.args.map(|list| list.iter().collect::<Vec<_>>());
        if command.op == AclOp::Explain {
            return (explain(base, &first, &second, &third), None);
        }
        let Some(store) = acl_store::store_of(&self.source) else {
            let outcome = Outcome::unchanged(AclStatus::Refused, "no ACL file to persist to");
            return (outcome, None);
        };
        let changed = store.change(Some(base), |acl| {
            acl_store::apply(acl, command.op, &first, &second, &third)
        });
        match changed {
            Ok(stored) => {
                let outcome = Outcome {
                    changed: stored.is_some(),
                    ..Outcome::unchanged(AclStatus::Ok, "")
                };
                (outcome, stored.map(|stored| stored.acl))
            }
            Err(Refusal::Invalid(why)) => (Outcome::unchanged(AclStatus::Refused, &why), None),
            Err(Refusal::Unavailable(why)) => {
                (Outcome::unchanged(AclStatus::NotPersisted, &why), None)
            }
        }
    }
}

/// EXPLAIN: what `averyws acl check` says for the user (without token
/// roles, with `guest` as every connection), the resource and the
/// permission.
fn explain(acl: &Acl, user: &[&str], resource: &[&str], permission: &[&str]) -> Outcome {
    let guest = [crate::auth::acl::GUEST];
    let one = acl_store::one;
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
pub fn clip(text: &str, field: Field) -> &str {
    let mut end = text.len().min(field.bounds().1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl_file;
    use crate::backend::message::List;
    use crate::config::{self, AclSource};
    use std::path::PathBuf;

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

    fn loaded(acl: AclSource) -> Access {
        let auth = config::Auth {
            acl,
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
        let mut access = loaded(AclSource::File(file.clone()));
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
        let mut access = loaded(AclSource::File(file.clone()));
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
        let mut embedded = loaded(AclSource::Development);
        let outcome = administer(&mut embedded, &grant);
        assert_eq!(
            (outcome.status, outcome.detail.as_str()),
            (AclStatus::Refused, "no ACL file to persist to")
        );
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        let text = "é".repeat(200);
        let clipped = clip(&text, Field::Detail);
        assert_eq!(clipped.len(), 256);
        assert_eq!(clip("short", Field::Detail), "short");
    }
}
