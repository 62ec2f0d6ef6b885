//! Why the ACL allows or denies one permission: the path from the user
//! through roles and parent roles to the rule that grants it, or the roles
//! that were tried and the rules that almost matched.
//!
//! The decision is the one [`Acl::is_allowed_with`] makes for a single
//! permission; when several rules grant it, the explanation names one on
//! the shortest path (breadth first, roles and parents in name order, a
//! resource's own name before patterns).

use super::acl::{Acl, Step, ALL};

/// Where a role of the checked user comes from.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// Stored for the user in the ACL.
    Stored,
    /// Given for this check only: the roles of the user's token.
    Extra,
    /// The role [`super::acl::GUEST`], which every connection holds (and
    /// the user of that name always).
    BuiltIn,
}

impl std::fmt::Display for RoleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoleSource::Stored => "stored",
            RoleSource::Extra => "from the token",
            RoleSource::BuiltIn => "built in",
        })
    }
}

/// The explanation of one decision. [`Display`](std::fmt::Display) gives a
/// multi-line text for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The user checked.
    pub user: String,
    /// The resource checked.
    pub resource: String,
    /// The permission checked.
    pub permission: String,
    /// The user's roles for this check, each once, with their source.
    pub roles: Vec<(String, RoleSource)>,
    /// The ancestors of those roles that are not among them, breadth
    /// first.
    pub inherited: Vec<String>,
    /// The rule that allows it; `None` when denied.
    pub grant: Option<Grant>,
    /// When denied: the rules of these roles that match the resource but
    /// grant other permissions.
    pub other_rules: Vec<Rule>,
}

/// How a permission was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The roles from one of the user's roles (first) up to the role that
    /// holds the rule (last), each the parent of the one before.
    pub path: Vec<String>,
    /// The rule that matched.
    pub rule: Rule,
    /// The permission that matched: the one asked for, or [`ALL`].
    pub permission: String,
}

/// A grant made to one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The role granted.
    pub role: String,
    /// The resource name or pattern.
    pub resource: String,
    /// The permissions granted there, in name order.
    pub permissions: Vec<String>,
}

impl Explanation {
    /// Whether the permission is granted.
    pub fn allowed(&self) -> bool {
        self.grant.is_some()
    }
}

impl Acl {
    /// Explains whether `user`, holding `extra_roles` on top of their
    /// stored roles, may do `permission` on `resource`.
    /// `explain(..).allowed()` always equals
    /// `is_allowed_with(user, extra_roles, resource, &[permission])`.
    pub fn explain(
        &self,
        user: &str,
        extra_roles: &[&str],
        resource: &str,
        permission: &str,
    ) -> Explanation {
        let roles = self.subject_roles(user, extra_roles);
        let names: Vec<&str> = roles.iter().map(|(role, _)| *role).collect();
        let steps = self.ancestry(&names);
        let mut grant = None;
        let mut other_rules = Vec::new();
        'search: for (at, step) in steps.iter().enumerate() {
            for (rule, granted) in self.matching_grants(step.role, resource) {
                let rule = Rule {
                    role: step.role.to_owned(),
                    resource: rule.to_owned(),
                    permissions: granted.iter().cloned().collect(),
                };
                let matched = [permission, ALL]
                    .into_iter()
                    .find(|wanted| granted.contains(*wanted));
                if let Some(matched) = matched {
                    grant = Some(Grant {
                        path: path_to(&steps, at),
                        rule,
                        permission: matched.to_owned(),
                    });
                    other_rules.clear();
                    break 'search;
                }
                other_rules.push(rule);
            }
        }
        Explanation {
            user: user.to_owned(),
            resource: resource.to_owned(),
            permission: permission.to_owned(),
            inherited: steps
                .iter()
                .skip(roles.len())
                .map(|step| step.role.to_owned())
                .collect(),
            roles: roles
                .into_iter()
                .map(|(role, source)| (role.to_owned(), source))
                .collect(),
            grant,
            other_rules,
        }
    }
}

/// The roles from a starting role to `steps[at]`, following each step back
/// to the child it was reached from.
fn path_to(steps: &[Step<'_>], at: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut next = Some(at);
    while let Some(step) = next.and_then(|at| steps.get(at)) {
        path.push(step.role.to_owned());
        next = step.child;
    }
    path.reverse();
    path
}

impl std::fmt::Display for Explanation {
    /// For example:
    ///
    /// ```text
    /// alice may subscribe on chat/lobby
    ///   alice has role chat-user (stored)
    ///   chat-user inherits member
    ///   member is allowed subscribe on chat/*
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (user, resource, permission) = (&self.user, &self.resource, &self.permission);
        let Some(grant) = &self.grant else {
            writeln!(f, "{user} may not {permission} on {resource}")?;
            if self.roles.is_empty() {
                return write!(f, "  {user} has no roles");
            }
            let roles: Vec<String> = self
                .roles
                .iter()
                .map(|(role, source)| format!("{role} ({source})"))
                .collect();
            writeln!(f, "  {user} has roles {}", roles.join(", "))?;
            if !self.inherited.is_empty() {
                writeln!(f, "  which inherit {}", self.inherited.join(", "))?;
            }
            write!(
                f,
                "  no rule for these roles allows {permission} or {ALL} on {resource}"
            )?;
            for rule in &self.other_rules {
                write!(f, "\n  {rule} (not {permission})")?;
            }
            return Ok(());
        };
        writeln!(f, "{user} may {permission} on {resource}")?;
        let source = self
            .roles
            .iter()
            .find(|(role, _)| grant.path.first() == Some(role))
            .map(|(_, source)| *source);
        if let (Some(first), Some(source)) = (grant.path.first(), source) {
            writeln!(f, "  {user} has role {first} ({source})")?;
        }
        for pair in grant.path.windows(2) {
            writeln!(f, "  {} inherits {}", pair[0], pair[1])?;
        }
        write!(f, "  {}", grant.rule)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is allowed {} on {}",
            self.role,
            self.permissions.join(","),
            self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::GUEST;

    fn store() -> Acl {
        let mut acl = Acl::new();
        acl.allow(&["member"], &["chat/*"], &["subscribe"]).unwrap();
        acl.allow(&["member"], &["chat/lobby"], &["read"]).unwrap();
        acl.allow(&["admin"], &["*"], &[ALL]).unwrap();
        acl.allow(&[GUEST], &["/echo"], &["connect"]).unwrap();
        acl.add_role_parents("chat-user", &["member"]).unwrap();
        acl.add_role_parents("moderator", &["chat-user"]).unwrap();
        acl.add_user_roles("alice", &["moderator"]).unwrap();
        acl
    }

    #[test]
    fn allowed_through_parents() {
        let explanation = store().explain("alice", &[], "chat/lobby", "subscribe");
        assert!(explanation.allowed());
        let grant = explanation.grant.as_ref().unwrap();
        assert_eq!(grant.path, ["moderator", "chat-user", "member"]);
        assert_eq!(grant.rule.resource, "chat/*");
        assert_eq!(explanation.inherited, ["chat-user", "member"]);
        assert_eq!(
            explanation.to_string(),
            "alice may subscribe on chat/lobby\n\
             \x20 alice has role moderator (stored)\n\
             \x20 moderator inherits chat-user\n\
             \x20 chat-user inherits member\n\
             \x20 member is allowed subscribe on chat/*"
        );
    }

    #[test]
    fn allowed_by_wildcard_from_a_token_role() {
        let explanation = store().explain("bob", &["admin"], "/anything", "publish");
        let grant = explanation.grant.as_ref().unwrap();
        assert_eq!((grant.permission.as_str(), grant.path.len()), (ALL, 1));
        assert_eq!(
            explanation.to_string(),
            "bob may publish on /anything\n\
             \x20 bob has role admin (from the token)\n\
             \x20 admin is allowed * on *"
        );
    }

    #[test]
    fn guest_holds_its_built_in_role() {
        let explanation = store().explain(GUEST, &[], "/echo", "connect");
        assert!(explanation
            .to_string()
            .contains("guest has role guest (built in)"));
    }

    #[test]
    fn denied_names_the_roles_and_near_rules() {
        let explanation = store().explain("alice", &["viewer"], "chat/lobby", "publish");
        assert!(!explanation.allowed());
        assert_eq!(
            explanation.to_string(),
            "alice may not publish on chat/lobby\n\
             \x20 alice has roles moderator (stored), viewer (from the token)\n\
             \x20 which inherit chat-user, member\n\
             \x20 no rule for these roles allows publish or * on chat/lobby\n\
             \x20 member is allowed read on chat/lobby (not publish)\n\
             \x20 member is allowed subscribe on chat/* (not publish)"
        );
        assert_eq!(
            store().explain("nobody", &[], "x", "y").to_string(),
            "nobody may not y on x\n  nobody has no roles"
        );
    }

    #[test]
    fn explanation_agrees_with_is_allowed() {
        let acl = store();
        for user in ["alice", "bob", GUEST] {
            for extra in [&[][..], &["admin"], &["member", "viewer"]] {
                for resource in ["chat/lobby", "chat/x", "chat", "/echo"] {
                    for permission in ["subscribe", "read", "connect", ALL] {
                        assert_eq!(
                            acl.explain(user, extra, resource, permission).allowed(),
                            acl.is_allowed_with(user, extra, resource, &[permission]),
                            "{user} {extra:?} {resource} {permission}"
                        );
                    }
                }
            }
        }
    }
}
