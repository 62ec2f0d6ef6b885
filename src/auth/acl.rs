//! The access-control engine, with the semantics of the node `acl` library
//! (OptimalBits) held in memory:
//!
//! - A **user** holds **roles**; a role may have **parent** roles whose
//!   permissions it inherits, to any depth. A parent that would close a
//!   cycle is refused with [`AclError::Cycle`].
//! - [`Acl::allow`] grants **permissions** on **resources** to roles.
//!   The permission [`ALL`] (`*`) stands for every permission.
//! - A user may do something when one of their roles, or an ancestor of
//!   one, is granted it. Asking for several permissions at once asks for
//!   all of them, and each may come from a different level of the
//!   hierarchy. Asking for none is denied (node `acl` allows it).
//! - A resource is a name, such as a path (`/echo`) or a channel
//!   (`chat/lobby`), or a **pattern**: a name ending in `*` matches every
//!   resource that starts with the part before the `*` and has at least
//!   one character more. So `chat/*` matches `chat/lobby` and `chat/a/b`
//!   but neither `chat/` nor `chat`, and `*` alone matches every resource.
//!   `*` may appear nowhere else in a resource (see [`resource_matches`]).
//! - The user [`GUEST`] always holds the role [`GUEST`]: it is who an
//!   unauthenticated client is. The roles of a token are passed as extra
//!   roles to [`Acl::is_allowed_with`] and [`Acl::explain`], on top of the
//!   user's stored roles, for that connection only.
//!
//! Better than node `acl`: [`Acl::remove_role`] also takes the role away
//! from every user and every child role, and no operation can crash on a
//! cycle or recurse without bound (traversal is iterative).
//!
//! Decisions of [`Acl::is_allowed_with`] are cached in a byte-bounded memo
//! that every change empties; [`Acl::generation`] counts the changes so
//! holders of older decisions know to check again.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub use super::cache::DecisionCounts;
use super::cache::{Cache, DEFAULT_CACHE_BYTES};
use super::explain::RoleSource;

/// The user an unauthenticated client is, and the role that user holds.
pub const GUEST: &str = "guest";

/// The permission that stands for every permission.
pub const ALL: &str = "*";

/// Longest user, role, resource or permission name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// What kind of name an [`AclError::InvalidName`] is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A user id.
    User,
    /// A role.
    Role,
    /// A resource or resource pattern.
    Resource,
    /// A permission.
    Permission,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::User => "user",
            NameKind::Role => "role",
            NameKind::Resource => "resource",
            NameKind::Permission => "permission",
        })
    }
}

/// Why a change to the ACL was refused. A refused change changes nothing.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclError {
    /// A name breaks the naming rule: 1 to [`MAX_NAME_BYTES`] bytes, no
    /// whitespace, control characters, `,` or `#`, and `*` only to end a
    /// resource pattern or as the whole permission [`ALL`].
    InvalidName {
        /// Which kind of name.
        kind: NameKind,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// Making `parent` a parent of `role` would close a cycle, because
    /// `parent` is `role` or already inherits from it.
    Cycle {
        /// The child role.
        role: String,
        /// The refused parent.
        parent: String,
    },
}

impl std::fmt::Display for AclError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AclError::InvalidName { kind, reason } => write!(f, "invalid {kind} name: {reason}"),
            AclError::Cycle { role, parent } => write!(
                f,
                "role {role} cannot inherit {parent}: {parent} is {role} or inherits from it"
            ),
        }
    }
}

impl std::error::Error for AclError {}

/// Whether the resource name or pattern of a rule matches `resource`: a
/// name matches itself; a pattern `P*` matches every resource that starts
/// with `P` and is longer than `P`.
pub fn resource_matches(rule: &str, resource: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => resource.len() > prefix.len() && resource.starts_with(prefix),
        None => rule == resource,
    }
}

/// Users, role parents and grants, with a decision cache.
///
/// Queries take `&self`; the cache sits in a `RefCell`, so an `Acl` can be
/// sent to another thread but not shared between threads: each reactor
/// owns its own.
pub struct Acl {
    rules: Rules,
    generation: u64,
    cache: RefCell<Cache>,
}

/// The data of an [`Acl`]: what equality, the ACL file and persistence
/// see. No set or map in it is ever empty, so equal ACLs have equal rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules {
    /// User → roles.
    users: BTreeMap<String, BTreeSet<String>>,
    /// Role → parent roles.
    parents: BTreeMap<String, BTreeSet<String>>,
    /// Role → what it is granted.
    grants: BTreeMap<String, Grants>,
}

/// One role's grants: resource → permissions, names and patterns apart so
/// a check looks names up and scans only the patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grants {
    names: BTreeMap<String, BTreeSet<String>>,
    patterns: BTreeMap<String, BTreeSet<String>>,
}

impl Acl {
    /// An empty ACL: nobody may do anything.
    pub fn new() -> Self {
        Acl {
            rules: Rules::default(),
            generation: 0,
            cache: RefCell::new(Cache::new(DEFAULT_CACHE_BYTES)),
        }
    }

    /// Sets the decision cache's budget in bytes (default 4 MiB); 0 turns
    /// caching off.
    pub fn with_cache_budget(self, bytes: usize) -> Self {
        Acl {
            cache: RefCell::new(Cache::new(bytes)),
            ..self
        }
    }

    /// A counter that changes on every change to the ACL. A connection that
    /// remembers the generation of its last check knows when to check
    /// again.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Grants every permission to every role on every resource (node
    /// `allow`). Permissions add up; nothing is taken away.
    pub fn allow(
        &mut self,
        roles: &[&str],
        resources: &[&str],
        permissions: &[&str],
    ) -> Result<(), AclError> {
        check_names(NameKind::Role, roles)?;
        check_names(NameKind::Resource, resources)?;
        check_names(NameKind::Permission, permissions)?;
        if !resources.is_empty() && !permissions.is_empty() {
            for role in roles {
                let grants = self.rules.grants.entry((*role).to_owned()).or_default();
                for resource in resources {
                    add_all(grants.table_mut(resource), resource, permissions);
                }
            }
        }
        self.changed();
        Ok(())
    }

    /// Takes `permissions` on `resources` away from `role`, or every
    /// permission there when `permissions` is `None` (node `removeAllow`).
    /// Only grants made to `role` itself change, not its parents'.
    pub fn remove_allow(&mut self, role: &str, resources: &[&str], permissions: Option<&[&str]>) {
        if let Some(grants) = self.rules.grants.get_mut(role) {
            for resource in resources {
                let table = grants.table_mut(resource);
                match permissions {
                    Some(permissions) => remove_all(table, resource, permissions),
                    None => {
                        table.remove(*resource);
                    }
                }
            }
            if grants.is_empty() {
                self.rules.grants.remove(role);
            }
        }
        self.changed();
    }

    /// Removes `role` entirely: its grants, its parents, and — unlike node
    /// `acl` — its place among every user's roles and every child role's
    /// parents (node `removeRole`).
    pub fn remove_role(&mut self, role: &str) {
        self.rules.grants.remove(role);
        self.rules.parents.remove(role);
        remove_everywhere(&mut self.rules.parents, role);
        remove_everywhere(&mut self.rules.users, role);
        self.changed();
    }

    /// Removes every grant on `resource` (a name or a pattern, exactly as
    /// granted) from every role (node `removeResource`).
    pub fn remove_resource(&mut self, resource: &str) {
        self.rules.grants.retain(|_, grants| {
            grants.table_mut(resource).remove(resource);
            !grants.is_empty()
        });
        self.changed();
    }

    /// Gives `user` the `roles` (node `addUserRoles`).
    pub fn add_user_roles(&mut self, user: &str, roles: &[&str]) -> Result<(), AclError> {
        check_name(NameKind::User, user)?;
        check_names(NameKind::Role, roles)?;
        add_all(&mut self.rules.users, user, roles);
        self.changed();
        Ok(())
    }

    /// Takes the `roles` away from `user` (node `removeUserRoles`). A user
    /// left with no role is forgotten.
    pub fn remove_user_roles(&mut self, user: &str, roles: &[&str]) {
        remove_all(&mut self.rules.users, user, roles);
        self.changed();
    }

    /// The roles stored for `user`, in name order (node `userRoles`). The
    /// built-in role of [`GUEST`] is not stored and not listed.
    pub fn user_roles(&self, user: &str) -> Vec<&str> {
        self.rules
            .users
            .get(user)
            .map(|roles| roles.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The users that hold `role`, in name order (node `roleUsers`). This
    /// scans every user.
    pub fn role_users(&self, role: &str) -> Vec<&str> {
        self.rules
            .users
            .iter()
            .filter(|(_, roles)| roles.contains(role))
            .map(|(user, _)| user.as_str())
            .collect()
    }

    /// Whether `role` is stored for `user` (node `hasRole`).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.rules
            .users
            .get(user)
            .is_some_and(|roles| roles.contains(role))
    }

    /// Makes `role` inherit the permissions of each of `parents` (node
    /// `addRoleParents`). A parent that is `role` itself or already
    /// inherits from it would close a cycle: the whole call is refused.
    pub fn add_role_parents(&mut self, role: &str, parents: &[&str]) -> Result<(), AclError> {
        check_name(NameKind::Role, role)?;
        check_names(NameKind::Role, parents)?;
        // Every new edge leaves `role`, so a cycle through several new
        // edges would hold a shorter one through one: checking each
        // against the old graph is enough.
        if let Some(parent) = parents.iter().find(|parent| {
            self.ancestry(&[parent])
                .iter()
                .any(|step| step.role == role)
        }) {
            return Err(AclError::Cycle {
                role: role.to_owned(),
                parent: (*parent).to_owned(),
            });
        }
        add_all(&mut self.rules.parents, role, parents);
        self.changed();
        Ok(())
    }

    /// Removes `parents` from `role`'s parents, or all of them when
    /// `parents` is `None` (node `removeRoleParents`).
    pub fn remove_role_parents(&mut self, role: &str, parents: Option<&[&str]>) {
        match parents {
            None => {
                self.rules.parents.remove(role);
            }
            Some(parents) => remove_all(&mut self.rules.parents, role, parents),
        }
        self.changed();
    }

    /// Whether `user` may do all of `permissions` on `resource` with their
    /// stored roles (node `isAllowed`).
    pub fn is_allowed(&self, user: &str, resource: &str, permissions: &[&str]) -> bool {
        self.is_allowed_with(user, &[], resource, permissions)
    }

    /// Whether `user`, holding `extra_roles` on top of their stored roles
    /// (the roles of their token), may do all of `permissions` on
    /// `resource`. Cached.
    pub fn is_allowed_with(
        &self,
        user: &str,
        extra_roles: &[&str],
        resource: &str,
        permissions: &[&str],
    ) -> bool {
        let decide = || {
            let roles: Vec<&str> = self
                .subject_roles(user, extra_roles)
                .into_iter()
                .map(|(role, _)| role)
                .collect();
            self.are_any_roles_allowed(&roles, resource, permissions)
        };
        // The cache is never borrowed twice (`decide` does not touch it),
        // but deciding uncached beats a panic if that ever changes.
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => cache.decision(user, extra_roles, resource, permissions, decide),
            Err(_) => decide(),
        }
    }

    /// Decisions made through [`Acl::is_allowed_with`] on this ACL (not on
    /// a clone of it).
    pub fn decision_counts(&self) -> DecisionCounts {
        self.cache
            .try_borrow()
            .map_or_else(|_| DecisionCounts::default(), |cache| cache.counts())
    }

    /// Whether `roles` and their ancestors together hold all of
    /// `permissions` on `resource` (node `areAnyRolesAllowed`). Not cached.
    pub fn are_any_roles_allowed(
        &self,
        roles: &[&str],
        resource: &str,
        permissions: &[&str],
    ) -> bool {
        if permissions.is_empty() {
            return false;
        }
        let mut missing = permissions.to_vec();
        for step in self.ancestry(roles) {
            for (_, granted) in self.matching_grants(step.role, resource) {
                if granted.contains(ALL) {
                    return true;
                }
                missing.retain(|permission| !granted.contains(*permission));
                if missing.is_empty() {
                    return true;
                }
            }
        }
        false
    }

    /// For each of `resources`, every permission `user`'s stored roles and
    /// their ancestors hold there, [`ALL`] included as granted (node
    /// `allowedPermissions`). Every asked resource is a key, perhaps with
    /// no permission.
    pub fn allowed_permissions(
        &self,
        user: &str,
        resources: &[&str],
    ) -> BTreeMap<String, BTreeSet<String>> {
        let roles: Vec<&str> = self
            .subject_roles(user, &[])
            .into_iter()
            .map(|(role, _)| role)
            .collect();
        let ancestry = self.ancestry(&roles);
        resources
            .iter()
            .map(|resource| {
                let permissions = ancestry
                    .iter()
                    .flat_map(|step| self.matching_grants(step.role, resource))
                    .flat_map(|(_, granted)| granted.iter().cloned())
                    .collect();
                ((*resource).to_owned(), permissions)
            })
            .collect()
    }

    /// Every resource name or pattern granted to `roles` or their
    /// ancestors, with the permissions held there (node `whatResources`
    /// without permissions).
    pub fn what_resources(&self, roles: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for step in self.ancestry(roles) {
            for (resource, granted) in self
                .rules
                .grants
                .get(step.role)
                .into_iter()
                .flat_map(Grants::iter)
            {
                resources
                    .entry(resource.to_owned())
                    .or_default()
                    .extend(granted.iter().cloned());
            }
        }
        resources
    }

    /// The resource names and patterns on which `roles` and their ancestors
    /// hold at least one of `permissions`, or [`ALL`] (node
    /// `whatResources` with permissions, except that node `acl` does not
    /// count a `*` grant).
    pub fn what_resources_permitting(
        &self,
        roles: &[&str],
        permissions: &[&str],
    ) -> BTreeSet<String> {
        self.what_resources(roles)
            .into_iter()
            .filter(|(_, granted)| {
                granted.contains(ALL) || permissions.iter().any(|p| granted.contains(*p))
            })
            .map(|(resource, _)| resource)
            .collect()
    }

    /// Every user that holds a role, in name order, with their roles.
    pub fn users(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.rules
            .users
            .iter()
            .map(|(user, roles)| (user.as_str(), roles))
    }

    /// Every role that has parents, in name order, with its parents.
    pub fn parents(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.rules
            .parents
            .iter()
            .map(|(role, parents)| (role.as_str(), parents))
    }

    /// Every grant as (role, resource name or pattern, permissions), in
    /// role order; within a role, names first, then patterns.
    pub fn grants(&self) -> impl Iterator<Item = (&str, &str, &BTreeSet<String>)> {
        self.rules.grants.iter().flat_map(|(role, grants)| {
            grants
                .iter()
                .map(move |(resource, permissions)| (role.as_str(), resource, permissions))
        })
    }

    /// The roles a check of `user` with `extra_roles` starts from, each
    /// once, with where it comes from: stored first, then extra, then the
    /// built-in role of [`GUEST`].
    pub(super) fn subject_roles<'a>(
        &'a self,
        user: &str,
        extra_roles: &[&'a str],
    ) -> Vec<(&'a str, RoleSource)> {
        let stored = self
            .user_roles(user)
            .into_iter()
            .map(|r| (r, RoleSource::Stored));
        // `guest` given for the check is the role every connection holds,
        // not one a token carried.
        let extra = extra_roles.iter().map(|&r| {
            let source = if r == GUEST {
                RoleSource::BuiltIn
            } else {
                RoleSource::Extra
            };
            (r, source)
        });
        let builtin = (user == GUEST).then_some((GUEST, RoleSource::BuiltIn));
        let mut roles: Vec<(&str, RoleSource)> = Vec::new();
        for (role, source) in stored.chain(extra).chain(builtin) {
            if !roles.iter().any(|(held, _)| *held == role) {
                roles.push((role, source));
            }
        }
        roles
    }

    /// `roles` and all their ancestors, each once, breadth first: the
    /// roles themselves, then their parents, and so on. Each step knows the
    /// step it was reached from, so a path can be told.
    pub(super) fn ancestry<'a>(&'a self, roles: &[&'a str]) -> Vec<Step<'a>> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut steps: Vec<Step<'a>> = roles
            .iter()
            .filter(|role| seen.insert(role))
            .map(|role| Step { role, child: None })
            .collect();
        let mut next = 0;
        while let Some(step) = steps.get(next) {
            if let Some(parents) = self.rules.parents.get(step.role) {
                for parent in parents {
                    if seen.insert(parent) {
                        steps.push(Step {
                            role: parent,
                            child: Some(next),
                        });
                    }
                }
            }
            next += 1;
        }
        steps
    }

    /// The grants made to `role` itself whose resource matches `resource`,
    /// as (resource name or pattern, permissions).
    pub(super) fn matching_grants<'a>(
        &'a self,
        role: &str,
        resource: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeSet<String>)> {
        self.rules
            .grants
            .get(role)
            .into_iter()
            .flat_map(move |grants| grants.matching(resource))
    }

    /// Every change ends here: cached decisions are stale.
    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.cache.get_mut().clear();
    }
}

/// One role reached by [`Acl::ancestry`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Step<'a> {
    /// The role.
    pub(super) role: &'a str,
    /// Index of the step whose parent this role is; `None` for a role the
    /// walk started from.
    pub(super) child: Option<usize>,
}

impl Grants {
    /// The table a resource name or pattern belongs in.
    fn table_mut(&mut self, resource: &str) -> &mut BTreeMap<String, BTreeSet<String>> {
        if resource.ends_with('*') {
            &mut self.patterns
        } else {
            &mut self.names
        }
    }

    /// Entries whose resource matches `resource`: its own name, then the
    /// patterns that match it.
    fn matching<'a>(
        &'a self,
        resource: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeSet<String>)> {
        self.names
            .get_key_value(resource)
            .into_iter()
            .chain(
                self.patterns
                    .iter()
                    .filter(move |(pattern, _)| resource_matches(pattern, resource)),
            )
            .map(|(rule, granted)| (rule.as_str(), granted))
    }

    /// Every entry: names, then patterns.
    fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.names
            .iter()
            .chain(&self.patterns)
            .map(|(rule, granted)| (rule.as_str(), granted))
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.patterns.is_empty()
    }
}

impl Default for Acl {
    fn default() -> Self {
        Acl::new()
    }
}

impl Clone for Acl {
    /// The same rules and generation, with an empty cache of the same
    /// budget.
    fn clone(&self) -> Self {
        let budget = self
            .cache
            .try_borrow()
            .map_or(DEFAULT_CACHE_BYTES, |c| c.budget());
        Acl {
            rules: self.rules.clone(),
            generation: self.generation,
            cache: RefCell::new(Cache::new(budget)),
        }
    }
}

impl PartialEq for Acl {
    /// Equal rules; the generation and the cache do not count.
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for Acl {}

impl std::fmt::Debug for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acl")
            .field("generation", &self.generation)
            .field("users", &self.rules.users)
            .field("parents", &self.rules.parents)
            .field("grants", &self.rules.grants)
            .finish()
    }
}

/// Adds `names` to the set under `key`; no set is made for no name.
fn add_all(map: &mut BTreeMap<String, BTreeSet<String>>, key: &str, names: &[&str]) {
    if !names.is_empty() {
        map.entry(key.to_owned())
            .or_default()
            .extend(names.iter().map(|name| (*name).to_owned()));
    }
}

/// Removes `names` from the set under `key`, dropping it if left empty.
fn remove_all(map: &mut BTreeMap<String, BTreeSet<String>>, key: &str, names: &[&str]) {
    if let Some(set) = map.get_mut(key) {
        for name in names {
            set.remove(*name);
        }
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// Removes `name` from every set in `map`, dropping sets left empty.
fn remove_everywhere(map: &mut BTreeMap<String, BTreeSet<String>>, name: &str) {
    map.retain(|_, names| {
        names.remove(name);
        !names.is_empty()
    });
}

fn check_names(kind: NameKind, names: &[&str]) -> Result<(), AclError> {
    names.iter().try_for_each(|name| check_name(kind, name))
}

/// The naming rule of [`AclError::InvalidName`]. It keeps every name a
/// single word of the ACL file, so the file round-trips.
fn check_name(kind: NameKind, name: &str) -> Result<(), AclError> {
    let fail = |reason| Err(AclError::InvalidName { kind, reason });
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return fail("not 1 to 256 bytes long");
    }
    if name.contains(|c: char| c.is_whitespace() || c.is_control() || c == ',' || c == '#') {
        return fail("holds whitespace, a control character, `,` or `#`");
    }
    let star_ok = match kind {
        NameKind::Resource => !name.strip_suffix('*').unwrap_or(name).contains('*'),
        NameKind::Permission => name == ALL || !name.contains('*'),
        NameKind::User | NameKind::Role => !name.contains('*'),
    };
    if !star_ok {
        return fail(match kind {
            NameKind::Resource => "`*` may only end a resource pattern",
            NameKind::Permission => "`*` may only stand alone, for every permission",
            _ => "holds `*`",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// The store of node `acl`'s own test suite (test/tests.js), trimmed.
    fn node_acl_store() -> Acl {
        let mut acl = Acl::new();
        acl.allow(&["guest", "member"], &["blogs"], &["view"])
            .unwrap();
        acl.allow(&["member"], &["blogs"], &["edit", "delete"])
            .unwrap();
        acl.allow(&["guest"], &["forums", "news"], &["get", "put", "delete"])
            .unwrap();
        acl.allow(&["gold", "silver"], &["cash"], &["sell", "exchange"])
            .unwrap();
        acl.allow(
            &["gold", "silver"],
            &["account", "deposit"],
            &["put", "delete"],
        )
        .unwrap();
        acl.allow(&["admin"], &["*"], &[ALL]).unwrap();
        acl.add_user_roles("joed", &["guest"]).unwrap();
        acl.add_user_roles("jsmith", &["member"]).unwrap();
        acl.add_user_roles("harry", &["admin"]).unwrap();
        acl.add_user_roles("test@test.com", &["member"]).unwrap();
        acl.add_user_roles("james", &["baz"]).unwrap();
        acl.add_role_parents("baz", &["bar"]).unwrap();
        acl.add_role_parents("bar", &["foo"]).unwrap();
        acl.allow(&["foo"], &["blogs"], &["view"]).unwrap();
        acl.allow(&["bar"], &["blogs"], &["edit"]).unwrap();
        acl.allow(&["baz"], &["blogs"], &["delete"]).unwrap();
        acl
    }

    #[test]
    fn is_allowed_as_node_acl() {
        let acl = node_acl_store();
        let table: &[(&str, &str, &[&str], bool)] = &[
            ("joed", "blogs", &["view"], true),
            ("joed", "blogs", &["edit"], false),
            ("joed", "forums", &["get", "put"], true),
            ("joed", "forums", &["get", "put", "sell"], false),
            ("jsmith", "blogs", &["edit", "view", "delete"], true),
            ("jsmith", "forums", &["get"], false),
            ("test@test.com", "blogs", &["edit"], true),
            ("harry", "anything", &["whatever", "more"], true),
            ("nobody", "blogs", &["view"], false),
            // Permissions from three levels: baz, bar, foo.
            ("james", "blogs", &["view", "edit", "delete"], true),
            ("james", "blogs", &["view", "edit", "delete", "x"], false),
            // Asking for nothing is denied, unlike node acl.
            ("jsmith", "blogs", &[], false),
        ];
        for &(user, resource, permissions, expected) in table {
            assert_eq!(
                acl.is_allowed(user, resource, permissions),
                expected,
                "{user} {resource} {permissions:?}"
            );
        }
    }

    #[test]
    fn inheritance_to_any_depth() {
        let mut acl = Acl::new();
        for level in 1..200 {
            acl.add_role_parents(&format!("r{level}"), &[&format!("r{}", level - 1)])
                .unwrap();
        }
        acl.allow(&["r0"], &["top"], &["read"]).unwrap();
        acl.allow(&["r100"], &["middle"], &["write"]).unwrap();
        acl.add_user_roles("deep", &["r199"]).unwrap();
        acl.add_user_roles("shallow", &["r50"]).unwrap();
        assert!(acl.is_allowed("deep", "top", &["read"]));
        assert!(acl.is_allowed("deep", "middle", &["write"]));
        assert!(acl.is_allowed("shallow", "top", &["read"]));
        assert!(!acl.is_allowed("shallow", "middle", &["write"]));
    }

    #[test]
    fn diamond_inheritance_visits_each_role_once() {
        let mut acl = Acl::new();
        acl.add_role_parents("child", &["left", "right"]).unwrap();
        acl.add_role_parents("left", &["base"]).unwrap();
        acl.add_role_parents("right", &["base"]).unwrap();
        let roles: Vec<&str> = acl.ancestry(&["child"]).iter().map(|s| s.role).collect();
        assert_eq!(roles, ["child", "left", "right", "base"]);
    }

    #[test]
    fn wildcard_permission_means_every_permission() {
        let mut acl = Acl::new();
        acl.allow(&["admin"], &["a"], &[ALL]).unwrap();
        acl.add_user_roles("root", &["admin"]).unwrap();
        assert!(acl.is_allowed("root", "a", &["read", "write", ALL]));
        assert!(!acl.is_allowed("root", "b", &["read"]));
        // Asking for `*` needs a `*` grant.
        acl.allow(&["reader"], &["a"], &["read"]).unwrap();
        acl.add_user_roles("ann", &["reader"]).unwrap();
        assert!(!acl.is_allowed("ann", "a", &[ALL]));
    }

    #[test]
    fn resource_patterns() {
        let table = [
            ("chat/*", "chat/lobby", true),
            ("chat/*", "chat/a/b", true),
            ("chat/*", "chat/*", true),
            ("chat/*", "chat/", false),
            ("chat/*", "chat", false),
            ("chat/*", "chatroom", false),
            ("chat/*", "/chat/lobby", false),
            ("chat*", "chatroom", true),
            ("*", "anything", true),
            ("*", "", false),
            ("/echo", "/echo", true),
            ("/echo", "/echo/", false),
            ("/echo", "/ECHO", false),
        ];
        for (rule, resource, expected) in table {
            assert_eq!(
                resource_matches(rule, resource),
                expected,
                "{rule} {resource}"
            );
        }
        let mut acl = Acl::new();
        acl.allow(&["chat-user"], &["chat/*"], &["subscribe"])
            .unwrap();
        acl.allow(&["chat-user"], &["chat/lobby"], &["publish"])
            .unwrap();
        acl.add_user_roles("alice", &["chat-user"]).unwrap();
        assert!(acl.is_allowed("alice", "chat/lobby", &["subscribe", "publish"]));
        assert!(acl.is_allowed("alice", "chat/other", &["subscribe"]));
        assert!(!acl.is_allowed("alice", "chat/other", &["publish"]));
        assert!(!acl.is_allowed("alice", "chat", &["subscribe"]));
    }

    #[test]
    fn invalid_names_are_refused_and_change_nothing() {
        use NameKind::{Permission, Resource, Role, User};
        // check_name's reasons: each case must fail for its own.
        const LENGTH: &str = "not 1 to 256 bytes long";
        const SPACE: &str = "holds whitespace, a control character, `,` or `#`";
        const RESOURCE_STAR: &str = "`*` may only end a resource pattern";
        const PERMISSION_STAR: &str = "`*` may only stand alone, for every permission";
        const STAR: &str = "holds `*`";
        let invalid = |kind, reason| Err::<(), _>(AclError::InvalidName { kind, reason });
        let mut acl = Acl::new();
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let bad_resources = [
            ("", LENGTH),
            ("chat/*/x", RESOURCE_STAR),
            ("ch*t", RESOURCE_STAR),
            ("**", RESOURCE_STAR),
            ("a b", SPACE),
            ("a,b", SPACE),
            ("a#b", SPACE),
            ("a\tb", SPACE),
            (&long, LENGTH),
        ];
        for (resource, reason) in bad_resources {
            let got = acl.allow(&["r"], &["ok", resource], &["p"]);
            assert_eq!(got, invalid(Resource, reason), "{resource:?}");
        }
        let bad_permissions = [
            ("read*", PERMISSION_STAR),
            ("**", PERMISSION_STAR),
            ("*a", PERMISSION_STAR),
            ("a\u{a0}b", SPACE),
        ];
        for (permission, reason) in bad_permissions {
            let got = acl.allow(&["r"], &["x"], &[permission]);
            assert_eq!(got, invalid(Permission, reason), "{permission:?}");
        }
        assert_eq!(acl.allow(&["r*"], &["x"], &["p"]), invalid(Role, STAR));
        assert_eq!(acl.add_user_roles("a*", &["r"]), invalid(User, STAR));
        assert_eq!(acl.add_user_roles("a", &["r\n"]), invalid(Role, SPACE));
        assert_eq!(acl.add_role_parents("r", &[""]), invalid(Role, LENGTH));
        assert_eq!(acl, Acl::new());
        assert!(acl
            .allow(&["r"], &[&"x".repeat(MAX_NAME_BYTES)], &["é"])
            .is_ok());
    }

    #[test]
    fn cycles_are_refused() {
        let mut acl = Acl::new();
        acl.add_role_parents("a", &["b"]).unwrap();
        acl.add_role_parents("b", &["c"]).unwrap();
        let before = acl.clone();
        for (role, parents) in [
            ("a", &["a"][..]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("c", &["x", "b"]),
        ] {
            assert_eq!(
                acl.add_role_parents(role, parents),
                Err(AclError::Cycle {
                    role: role.into(),
                    parent: parents[parents.len() - 1].into()
                })
            );
        }
        assert_eq!(acl, before);
        // A diamond is not a cycle.
        acl.add_role_parents("a", &["c"]).unwrap();
        assert_eq!(
            AclError::Cycle {
                role: "c".into(),
                parent: "a".into()
            }
            .to_string(),
            "role c cannot inherit a: a is c or inherits from it"
        );
    }

    #[test]
    fn remove_allow_some_or_all_permissions() {
        // node acl issue #55: removing one permission keeps the others.
        let mut acl = Acl::new();
        acl.allow(
            &["jose"],
            &["products", "orders"],
            &["exec", "view", "edit"],
        )
        .unwrap();
        acl.add_user_roles("u", &["jose"]).unwrap();
        acl.remove_allow("jose", &["products"], Some(&["exec"]));
        assert!(!acl.is_allowed("u", "products", &["exec"]));
        assert!(acl.is_allowed("u", "products", &["view", "edit"]));
        acl.remove_allow("jose", &["products"], Some(&["view", "edit"]));
        assert!(!acl.is_allowed("u", "products", &["view"]));
        assert_eq!(acl.grants().count(), 1);
        acl.remove_allow("jose", &["orders"], None);
        assert_eq!(acl.grants().count(), 0);
        acl.remove_allow("nobody", &["x"], None);
    }

    #[test]
    fn remove_role_everywhere() {
        let mut acl = node_acl_store();
        acl.add_user_roles("both", &["member", "gold"]).unwrap();
        acl.remove_role("bar");
        // james keeps baz, but baz no longer inherits bar, nor bar foo.
        assert_eq!(acl.user_roles("james"), ["baz"]);
        assert!(acl.is_allowed("james", "blogs", &["delete"]));
        assert!(!acl.is_allowed("james", "blogs", &["edit"]));
        assert!(!acl.is_allowed("james", "blogs", &["view"]));
        assert_eq!(acl.parents().count(), 0);
        acl.remove_role("member");
        assert_eq!(acl.role_users("member"), Vec::<&str>::new());
        assert_eq!(acl.user_roles("jsmith"), Vec::<&str>::new());
        assert_eq!(acl.user_roles("both"), ["gold"]);
        assert!(!acl.users().any(|(user, _)| user == "jsmith"));
        assert!(!acl.is_allowed("jsmith", "blogs", &["edit"]));
        assert!(!acl.grants().any(|(role, _, _)| role == "member"));
        // The same blogs grant of guest survives.
        assert!(acl.is_allowed("joed", "blogs", &["view"]));
    }

    #[test]
    fn remove_resource_from_every_role() {
        let mut acl = node_acl_store();
        acl.allow(&["x"], &["blog*"], &["view"]).unwrap();
        acl.remove_resource("blogs");
        assert!(!acl.grants().any(|(_, resource, _)| resource == "blogs"));
        assert!(!acl.is_allowed("jsmith", "blogs", &["edit"]));
        assert!(acl.is_allowed("joed", "forums", &["get"]));
        // Patterns are removed by their own name.
        acl.remove_resource("blog*");
        assert!(!acl.grants().any(|(role, _, _)| role == "x"));
    }

    #[test]
    fn user_roles_operations() {
        let mut acl = Acl::new();
        acl.add_user_roles("u", &["a", "b", "c"]).unwrap();
        acl.add_user_roles("v", &["b"]).unwrap();
        assert_eq!(acl.user_roles("u"), ["a", "b", "c"]);
        assert_eq!(acl.role_users("b"), ["u", "v"]);
        assert!(acl.has_role("u", "a") && !acl.has_role("v", "a"));
        acl.remove_user_roles("u", &["a", "c", "zz"]);
        assert_eq!(acl.user_roles("u"), ["b"]);
        acl.remove_user_roles("v", &["b"]);
        assert_eq!(acl.users().count(), 1);
        assert!(!acl.has_role("nobody", "b"));
    }

    #[test]
    fn remove_role_parents_some_or_all() {
        let mut acl = Acl::new();
        let parents = ["p1", "p2", "p3"];
        for (i, parent) in parents.iter().enumerate() {
            acl.allow(&[parent], &["x"], &[&format!("read{i}")])
                .unwrap();
        }
        acl.add_role_parents("child", &parents).unwrap();
        acl.add_user_roles("u", &["child"]).unwrap();
        assert!(acl.is_allowed("u", "x", &["read0", "read1", "read2"]));
        acl.remove_role_parents("child", Some(&["p1"]));
        assert!(!acl.is_allowed("u", "x", &["read0"]));
        assert!(acl.is_allowed("u", "x", &["read1", "read2"]));
        acl.remove_role_parents("child", None);
        assert!(!acl.is_allowed("u", "x", &["read1"]));
        assert_eq!(acl.parents().count(), 0);
        acl.add_role_parents("child", &["p1"]).unwrap();
        acl.remove_role_parents("child", Some(&["p1"]));
        assert_eq!(acl.parents().count(), 0);
    }

    #[test]
    fn what_resources_as_node_acl() {
        let acl = node_acl_store();
        let all = acl.what_resources(&["gold"]);
        assert_eq!(all.len(), 3);
        assert_eq!(all["cash"], set(&["exchange", "sell"]));
        assert_eq!(all["account"], set(&["delete", "put"]));
        // Through parents: baz → bar → foo.
        assert_eq!(
            acl.what_resources(&["baz"])["blogs"],
            set(&["delete", "edit", "view"])
        );
        assert_eq!(
            acl.what_resources_permitting(&["gold"], &["sell"]),
            set(&["cash"])
        );
        assert_eq!(
            acl.what_resources_permitting(&["gold"], &["put", "sell"]),
            set(&["account", "cash", "deposit"])
        );
        assert_eq!(
            acl.what_resources_permitting(&["admin"], &["x"]),
            set(&["*"])
        );
        assert!(acl.what_resources_permitting(&["nope"], &["x"]).is_empty());
    }

    #[test]
    fn allowed_permissions_as_node_acl() {
        let acl = node_acl_store();
        let got = acl.allowed_permissions("james", &["blogs", "forums"]);
        assert_eq!(got["blogs"], set(&["delete", "edit", "view"]));
        assert!(got["forums"].is_empty());
        assert_eq!(acl.allowed_permissions("harry", &["x"])["x"], set(&[ALL]));
        assert!(acl.allowed_permissions("nobody", &["blogs"])["blogs"].is_empty());
    }

    #[test]
    fn are_any_roles_allowed_as_node_acl() {
        let acl = node_acl_store();
        assert!(acl.are_any_roles_allowed(&["guest"], "blogs", &["view"]));
        assert!(!acl.are_any_roles_allowed(&["guest"], "blogs", &["view", "edit"]));
        assert!(acl.are_any_roles_allowed(&["guest", "member"], "blogs", &["view", "edit"]));
        assert!(!acl.are_any_roles_allowed(&[], "blogs", &["view"]));
    }

    #[test]
    fn extra_roles_and_the_built_in_guest() {
        let mut acl = Acl::new();
        acl.allow(&[GUEST], &["/echo"], &["connect"]).unwrap();
        acl.allow(&["chat-user"], &["chat/*"], &["publish"])
            .unwrap();
        assert!(acl.is_allowed(GUEST, "/echo", &["connect"]));
        assert!(!acl.is_allowed("alice", "/echo", &["connect"]));
        assert!(acl.is_allowed_with("alice", &[GUEST], "/echo", &["connect"]));
        assert!(!acl.is_allowed("alice", "chat/x", &["publish"]));
        assert!(acl.is_allowed_with("alice", &["chat-user"], "chat/x", &["publish"]));
        assert!(!acl.is_allowed_with("alice", &["nonexistent"], "chat/x", &["publish"]));
        assert_eq!(acl.user_roles(GUEST), Vec::<&str>::new());
        let roles = acl.subject_roles(GUEST, &["x", GUEST]);
        assert_eq!(
            roles,
            [("x", RoleSource::Extra), (GUEST, RoleSource::BuiltIn)]
        );
    }

    #[test]
    fn every_change_invalidates_cached_decisions() {
        // u → role → parent, which may p on r.
        let store = || {
            let mut acl = Acl::new();
            acl.allow(&["parent"], &["r"], &["p"]).unwrap();
            acl.add_role_parents("role", &["parent"]).unwrap();
            acl.add_user_roles("u", &["role"]).unwrap();
            acl
        };
        let allowed = |acl: &Acl| acl.is_allowed("u", "r", &["p"]);
        let revocations: &[fn(&mut Acl)] = &[
            |acl| acl.remove_allow("parent", &["r"], None),
            |acl| acl.remove_allow("parent", &["r"], Some(&["p"])),
            |acl| acl.remove_role("parent"),
            |acl| acl.remove_role("role"),
            |acl| acl.remove_resource("r"),
            |acl| acl.remove_user_roles("u", &["role"]),
            |acl| acl.remove_role_parents("role", None),
            |acl| acl.remove_role_parents("role", Some(&["parent"])),
        ];
        for (i, revoke) in revocations.iter().enumerate() {
            let mut acl = store();
            assert!(allowed(&acl), "revocation {i}: before");
            let generation = acl.generation();
            revoke(&mut acl);
            assert_ne!(acl.generation(), generation, "revocation {i}");
            assert!(!allowed(&acl), "revocation {i}: after");
        }
        let grants: &[fn(&mut Acl)] = &[
            |acl| acl.allow(&["u-role"], &["r"], &["p"]).unwrap(),
            |acl| acl.add_user_roles("u", &["parent"]).unwrap(),
            |acl| acl.add_role_parents("u-role", &["parent"]).unwrap(),
        ];
        for (i, grant) in grants.iter().enumerate() {
            let mut acl = store();
            acl.remove_user_roles("u", &["role"]);
            acl.add_user_roles("u", &["u-role"]).unwrap();
            assert!(!allowed(&acl), "grant {i}: before");
            grant(&mut acl);
            assert!(allowed(&acl), "grant {i}: after");
        }
    }

    #[test]
    fn uncached_acl_decides_the_same() {
        let cached = node_acl_store();
        let uncached = node_acl_store().with_cache_budget(0);
        for user in ["joed", "jsmith", "james", "harry", "nobody"] {
            for permission in ["view", "edit", "get", ALL] {
                for _ in 0..2 {
                    assert_eq!(
                        cached.is_allowed(user, "blogs", &[permission]),
                        uncached.is_allowed(user, "blogs", &[permission])
                    );
                }
            }
        }
    }

    #[test]
    fn equality_ignores_order_cache_and_generation() {
        let mut a = Acl::new();
        a.allow(&["r1", "r2"], &["x"], &["p", "q"]).unwrap();
        a.add_user_roles("u", &["r1"]).unwrap();
        let mut b = Acl::new().with_cache_budget(0);
        b.add_user_roles("u", &["r1"]).unwrap();
        b.allow(&["r2", "r1"], &["x"], &["q"]).unwrap();
        b.allow(&["r1", "r2"], &["x"], &["p"]).unwrap();
        assert!(b.is_allowed("u", "x", &["p"]));
        assert_eq!(a, b);
        assert_eq!(a.clone(), b);
        assert_ne!(a.generation(), b.generation());
    }
}
