//! The ACL file: a line-oriented text that people edit and the server
//! writes back, documented in `docs/acl.md`.
//!
//! ```text
//! # Everything after `#` is a comment.
//! role moderator inherits chat-user        # role ROLE inherits PARENTS
//! allow guest /echo connect                # allow ROLES RESOURCES PERMISSIONS
//! allow chat-user chat/* subscribe,publish
//! user alice roles moderator,chat-user     # user USER roles ROLES
//! ```
//!
//! Words are separated by whitespace; lists are comma-separated with no
//! spaces and no empty items. Names follow the rule of
//! [`AclError::InvalidName`](super::acl::AclError::InvalidName). Statements
//! add up in file order, so a role may be used before its `role` line; a
//! `role` line that would close a cycle is an error. [`serialize`] writes
//! a canonical form (comments are not kept) that [`parse`] reads back to an
//! equal [`Acl`].

use super::acl::Acl;

/// The ACL used when none is configured: it allows the `guest` role, and
/// so every client, to `connect` to `/echo` and `send` to the `echo`
/// service, and nothing else.
pub const DEFAULT_ACL: &str = include_str!("default.acl");

/// The file name [`DEFAULT_ACL`]'s parse errors would carry.
pub const DEFAULT_ACL_NAME: &str = "<embedded default ACL>";

/// A line of an ACL file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file name given to [`parse`].
    pub file: String,
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    /// `FILE:LINE: MESSAGE`, as compilers do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Reads an ACL file. `file_name` is only used in errors.
pub fn parse(text: &str, file_name: &str) -> Result<Acl, ParseError> {
    let mut acl = Acl::new();
    for (index, line) in text.lines().enumerate() {
        statement(&mut acl, line).map_err(|message| ParseError {
            file: file_name.to_owned(),
            line: index + 1,
            message,
        })?;
    }
    Ok(acl)
}

/// Writes `acl` as an ACL file: `role` lines, then `allow` lines, then
/// `user` lines, each group in name order.
pub fn serialize(acl: &Acl) -> String {
    let roles = acl
        .parents()
        .map(|(role, parents)| format!("role {role} inherits {}", join(parents)));
    let allows = acl.grants().map(|(role, resource, permissions)| {
        format!("allow {role} {resource} {}", join(permissions))
    });
    let users = acl
        .users()
        .map(|(user, roles)| format!("user {user} roles {}", join(roles)));
    let mut out =
        String::from("# averyws ACL, written by the server; the format is in docs/acl.md.\n");
    for group in [roles.collect::<Vec<_>>(), allows.collect(), users.collect()] {
        if !group.is_empty() {
            out.push('\n');
            for line in group {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// Applies one line to `acl`.
fn statement(acl: &mut Acl, line: &str) -> Result<(), String> {
    // `#` is in no name, so it always starts a comment.
    let content = line.split('#').next().unwrap_or_default();
    let mut words = content.split_whitespace();
    let Some(keyword) = words.next() else {
        return Ok(());
    };
    let result = match (
        keyword,
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) {
        ("allow", Some(roles), Some(resources), Some(permissions), None) => {
            acl.allow(&list(roles)?, &list(resources)?, &list(permissions)?)
        }
        ("role", Some(role), Some("inherits"), Some(parents), None) => {
            acl.add_role_parents(role, &list(parents)?)
        }
        ("user", Some(user), Some("roles"), Some(roles), None) => {
            acl.add_user_roles(user, &list(roles)?)
        }
        ("allow", ..) => return Err("expected `allow ROLES RESOURCES PERMISSIONS`".into()),
        ("role", ..) => return Err("expected `role ROLE inherits PARENTS`".into()),
        ("user", ..) => return Err("expected `user USER roles ROLES`".into()),
        _ => return Err("unknown statement: expected `allow`, `role` or `user`".into()),
    };
    result.map_err(|e| e.to_string())
}

/// Splits a comma-separated list.
fn list(words: &str) -> Result<Vec<&str>, String> {
    let names: Vec<&str> = words.split(',').collect();
    if names.contains(&"") {
        return Err("empty name in a comma-separated list".into());
    }
    Ok(names)
}

fn join(names: &std::collections::BTreeSet<String>) -> String {
    names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::GUEST;

    const EXAMPLE: &str = include_str!("../../examples/acl.conf");

    #[test]
    fn statements_and_comments() {
        let acl = parse(
            "# header\n\
             \n\
             role moderator inherits chat-user   # trailing comment\n\
             \tallow  chat-user,guest   chat/*,news  subscribe,publish\r\n\
             allow guest /echo connect\n\
             user alice roles moderator,extra\n\
             user alice roles more\n",
            "test.acl",
        )
        .expect("valid");
        assert_eq!(acl.user_roles("alice"), ["extra", "moderator", "more"]);
        assert!(acl.is_allowed("alice", "chat/x", &["subscribe", "publish"]));
        assert!(acl.is_allowed(GUEST, "news", &["publish"]));
        assert!(acl.is_allowed(GUEST, "/echo", &["connect"]));
        assert!(!acl.is_allowed("alice", "/echo", &["connect"]));
    }

    #[test]
    fn errors_carry_file_and_line() {
        let table = [
            (
                "allow a b",
                1,
                "expected `allow ROLES RESOURCES PERMISSIONS`",
            ),
            (
                "allow a b c d",
                1,
                "expected `allow ROLES RESOURCES PERMISSIONS`",
            ),
            (
                "\n\nrole a parents b",
                3,
                "expected `role ROLE inherits PARENTS`",
            ),
            ("user alice admin", 1, "expected `user USER roles ROLES`"),
            (
                "deny a b c",
                1,
                "unknown statement: expected `allow`, `role` or `user`",
            ),
            (
                "Allow a b c",
                1,
                "unknown statement: expected `allow`, `role` or `user`",
            ),
            ("allow a, b c", 1, "empty name in a comma-separated list"),
            ("allow a,,b r p", 1, "empty name in a comma-separated list"),
            ("allow a r p,", 1, "empty name in a comma-separated list"),
            (
                "# ok\nallow a chat/*/x p",
                2,
                "invalid resource name: `*` may only end a resource pattern",
            ),
            (
                "allow a r read*",
                1,
                "invalid permission name: `*` may only stand alone, for every permission",
            ),
            ("user a* roles r", 1, "invalid user name: holds `*`"),
            (
                "role a inherits b\nrole b inherits c\nrole c inherits a",
                3,
                "role c cannot inherit a: a is c or inherits from it",
            ),
        ];
        for (text, line, message) in table {
            let error = parse(text, "conf/acl.txt").unwrap_err();
            assert_eq!(
                (error.line, error.message.as_str()),
                (line, message),
                "{text}"
            );
            assert_eq!(error.to_string(), format!("conf/acl.txt:{line}: {message}"));
        }
    }

    #[test]
    fn serialize_round_trips() {
        let acl = parse(EXAMPLE, "examples/acl.conf").expect("the example parses");
        let text = serialize(&acl);
        assert_eq!(parse(&text, "again").expect("serialized parses"), acl);
        assert_eq!(serialize(&parse(&text, "again").unwrap()), text);
        assert_eq!(parse(&serialize(&Acl::new()), "empty"), Ok(Acl::new()));
    }

    #[test]
    fn serialized_form_is_canonical() {
        let acl = parse(
            "user bob roles b,a\nallow r2,r1 x,chat/* q,p\nrole c inherits b,a\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            serialize(&acl),
            "# averyws ACL, written by the server; the format is in docs/acl.md.\n\
             \n\
             role c inherits a,b\n\
             \n\
             allow r1 x p,q\n\
             allow r1 chat/* p,q\n\
             allow r2 x p,q\n\
             allow r2 chat/* p,q\n\
             \n\
             user bob roles a,b\n"
        );
    }

    #[test]
    fn default_acl_lets_guests_echo_and_nothing_else() {
        let acl = parse(DEFAULT_ACL, DEFAULT_ACL_NAME).expect("the default parses");
        assert!(acl.is_allowed(GUEST, "/echo", &["connect"]));
        assert!(acl.is_allowed(GUEST, "echo", &["send"]));
        assert!(!acl.is_allowed(GUEST, "/echo", &["send"]));
        assert!(!acl.is_allowed(GUEST, "echo", &["connect"]));
        assert!(!acl.is_allowed(GUEST, "/other", &["connect"]));
        assert!(!acl.is_allowed(GUEST, "other", &["send"]));
        assert_eq!(acl.grants().count(), 2);
        assert_eq!(acl.users().count() + acl.parents().count(), 0);
    }

    #[test]
    fn example_file_means_what_its_comments_say() {
        let acl = parse(EXAMPLE, "examples/acl.conf").expect("the example parses");
        assert!(acl.is_allowed(GUEST, "/echo", &["connect"]));
        assert!(!acl.is_allowed(GUEST, "/chat", &["connect"]));
        assert!(acl.is_allowed_with("anyone", &["chat-user"], "/chat", &["connect"]));
        assert!(acl.is_allowed_with(
            "anyone",
            &["chat-user"],
            "chat/lobby",
            &["subscribe", "publish"]
        ));
        assert!(!acl.is_allowed_with("anyone", &["chat-user"], "announcements/x", &["publish"]));
        assert!(acl.is_allowed("alice", "announcements/news", &["publish"]));
        assert!(acl.is_allowed("root", "anything", &["anything"]));
        let explanation = acl.explain("alice", &[], "chat/lobby", "publish");
        assert_eq!(explanation.grant.map(|g| g.path.len()), Some(2));
    }
}
