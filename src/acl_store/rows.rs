//! The ACL as the database holds it: three relations of names, and the
//! changes that turn one ACL's rows into another's. Pure: the SQL is in
//! [`super::pg`].
//!
//! Rows come from a table anyone with the right grants can write to, so
//! [`Rows::build`] checks every name with the engine's own rules and
//! refuses the whole snapshot on the first bad row: a snapshot is put in
//! force whole or not at all.

use std::collections::BTreeSet;

use crate::auth::acl::Acl;

/// One ACL as rows: what the tables `grants`, `role_parents` and
/// `user_roles` hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// (role, resource, permission)
    pub grants: BTreeSet<(String, String, String)>,
    /// (role, parent)
    pub parents: BTreeSet<(String, String)>,
    /// (user, role)
    pub users: BTreeSet<(String, String)>,
}

impl Rows {
    /// The rows of `acl`: one per permission granted, parent and user role.
    pub fn of(acl: &Acl) -> Rows {
        let mut rows = Rows::default();
        for (role, resource, permissions) in acl.grants() {
            for permission in permissions {
                rows.grants
                    .insert((role.to_owned(), resource.to_owned(), permission.clone()));
            }
        }
        for (role, parents) in acl.parents() {
            for parent in parents {
                rows.parents.insert((role.to_owned(), parent.clone()));
            }
        }
        for (user, roles) in acl.users() {
            for role in roles {
                rows.users.insert((user.to_owned(), role.clone()));
            }
        }
        rows
    }

    /// How many rows there are in all.
    pub fn len(&self) -> usize {
        self.grants.len() + self.parents.len() + self.users.len()
    }

    /// True when there is no row at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ACL these rows describe, or the first row the engine refuses (a
    /// name that breaks its rules, a parent that closes a cycle), named by
    /// table and values.
    pub fn build(&self) -> Result<Acl, String> {
        let mut acl = Acl::new();
        for (role, resource, permission) in &self.grants {
            acl.allow(&[role], &[resource], &[permission])
                .map_err(|e| format!("grants ({role}, {resource}, {permission}): {e}"))?;
        }
        for (role, parent) in &self.parents {
            acl.add_role_parents(role, &[parent])
                .map_err(|e| format!("role_parents ({role}, {parent}): {e}"))?;
        }
        for (user, role) in &self.users {
            acl.add_user_roles(user, &[role])
                .map_err(|e| format!("user_roles ({user}, {role}): {e}"))?;
        }
        Ok(acl)
    }

    /// What turns `self` into `to`: the rows to delete and the rows to
    /// insert.
    pub fn delta(&self, to: &Rows) -> Delta {
        Delta {
            delete: Rows {
                grants: self.grants.difference(&to.grants).cloned().collect(),
                parents: self.parents.difference(&to.parents).cloned().collect(),
                users: self.users.difference(&to.users).cloned().collect(),
            },
            insert: Rows {
                grants: to.grants.difference(&self.grants).cloned().collect(),
                parents: to.parents.difference(&self.parents).cloned().collect(),
                users: to.users.difference(&self.users).cloned().collect(),
            },
        }
    }
}

/// The rows a change deletes and inserts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rows there before and not after.
    pub delete: Rows,
    /// Rows there after and not before.
    pub insert: Rows,
}

impl Delta {
    /// True when the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.insert.is_empty()
    }
}

/// Rows of two columns as the two arrays `unnest` takes.
pub fn columns2(rows: &BTreeSet<(String, String)>) -> [Vec<&str>; 2] {
    let mut columns = [Vec::new(), Vec::new()];
    for (a, b) in rows {
        columns[0].push(a.as_str());
        columns[1].push(b.as_str());
    }
    columns
}

/// Rows of three columns as the three arrays `unnest` takes.
pub fn columns3(rows: &BTreeSet<(String, String, String)>) -> [Vec<&str>; 3] {
    let mut columns = [Vec::new(), Vec::new(), Vec::new()];
    for (a, b, c) in rows {
        columns[0].push(a.as_str());
        columns[1].push(b.as_str());
        columns[2].push(c.as_str());
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl_file;

    const TEXT: &str = "role mod inherits member\n\
                        allow member chat/* subscribe,publish\n\
                        allow mod /admin connect\n\
                        user alice roles mod\n";

    #[test]
    fn rows_round_trip_an_acl() {
        let acl = acl_file::parse(TEXT, "t").expect("parses");
        let rows = Rows::of(&acl);
        assert_eq!(
            (rows.grants.len(), rows.parents.len(), rows.users.len()),
            (3, 1, 1)
        );
        let back = rows.build().expect("builds");
        assert_eq!(acl_file::serialize(&back), acl_file::serialize(&acl));
    }

    #[test]
    fn a_bad_row_refuses_the_whole_snapshot() {
        let table: &[(Rows, &str)] = &[
            (
                Rows {
                    grants: [("r".into(), "x y".into(), "p".into())].into(),
                    ..Rows::default()
                },
                "grants (r, x y, p): invalid resource name",
            ),
            (
                Rows {
                    parents: [("a".into(), "b".into()), ("b".into(), "a".into())].into(),
                    ..Rows::default()
                },
                "role_parents (b, a)",
            ),
            (
                Rows {
                    users: [(String::new(), "r".into())].into(),
                    ..Rows::default()
                },
                "user_roles (, r): invalid user name",
            ),
        ];
        for (rows, start) in table {
            let error = rows.build().expect_err("refused");
            assert!(error.starts_with(start), "{error}");
        }
    }

    #[test]
    fn a_delta_holds_only_what_changed() {
        let before = Rows::of(&acl_file::parse(TEXT, "t").unwrap());
        let mut acl = before.build().unwrap();
        acl.remove_allow("member", &["chat/*"], Some(&["publish"]));
        acl.add_user_roles("bob", &["member"]).unwrap();
        let after = Rows::of(&acl);
        let delta = before.delta(&after);
        assert_eq!(
            delta.delete.grants,
            [("member".into(), "chat/*".into(), "publish".into())].into()
        );
        assert_eq!(delta.insert.users, [("bob".into(), "member".into())].into());
        assert_eq!((delta.delete.len(), delta.insert.len()), (1, 1));
        assert!(after.delta(&after).is_empty());
    }
}
