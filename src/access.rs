//! The server's side of authentication and access control: the I/O shell
//! around the sans-IO [`crate::auth`]. It reads the secrets and ACL files
//! (again on SIGHUP), finds the token an upgrade request presents, and
//! turns the verifier's and the ACL's answers into HTTP statuses and
//! per-connection decisions. docs/acl.md says what is checked when.

pub mod admin;

use std::borrow::Cow;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::acl_store;
use crate::auth::acl::{Acl, DecisionCounts, GUEST, MAX_NAME_BYTES};
use crate::auth::acl_file::{self, DEFAULT_ACL, DEFAULT_ACL_NAME};
use crate::auth::token::{TokenError, Verifier};
use crate::backend::message::{Field, MAX_ROLES};
use crate::config;
use crate::ws::upgrade::{Rejection, Request};

/// The permission checked on the path at the upgrade, and again on every
/// ACL change.
pub const CONNECT: &str = "connect";
/// The permission checked on the route's service for each client message.
pub const SEND: &str = "send";
/// The permission checked on a channel when a worker subscribes a
/// connection to it.
pub const SUBSCRIBE: &str = "subscribe";
/// The permission a client needs on a channel for a worker to publish on
/// its behalf (the PUBLISH names it in `except`).
pub const PUBLISH: &str = "publish";

/// Which ACL a decision was made under: bumped by every reload, and by
/// every change to the loaded ACL (its own generation).
pub type Generation = (u64, u64);

/// Token verification and the ACL, as the reactor holds them.
#[derive(Debug, Clone)]
pub struct Access {
    verifier: Option<Verifier>,
    acl: Acl,
    source: config::AclSource,
    /// The database's version counter at start, for the follower.
    store_version: Option<i64>,
    token_query_param: Option<String>,
    reloads: u64,
    /// Decisions made by ACLs no longer in force.
    retired: DecisionCounts,
}

impl Access {
    /// Reads the secrets file and the ACL (from its file or database), or
    /// without one builds the development ACL for `routes`
    /// ([`development_acl`]). The error is one line naming the file (and
    /// line) or the database.
    pub fn load(config: &config::Auth, routes: &[config::Route]) -> Result<Self, String> {
        let verifier = match &config.jwt_secret_file {
            Some(path) => Some(read_verifier(path, config.jwt_leeway_s)?),
            None => None,
        };
        let (acl, store_version) = match &config.acl {
            config::AclSource::Development => (development_acl(routes)?, None),
            config::AclSource::File(path) => (acl_store::read_file(path)?, None),
            config::AclSource::Postgres(store) => acl_store::start(store)?,
        };
        Ok(Access {
            verifier,
            acl,
            source: config.acl.clone(),
            store_version,
            token_query_param: config.token_query_param.clone(),
            reloads: 0,
            retired: DecisionCounts::default(),
        })
    }

    /// Verifies tokens with `verifier` from now on (a reload); open
    /// connections were judged at their upgrade and stay.
    pub fn put_verifier(&mut self, verifier: Verifier) {
        self.verifier = Some(verifier);
    }

    /// Puts `acl` in force (a reload, an admin change): decisions cached
    /// under the old one are dropped, its decision counts carried over.
    pub fn put_acl(&mut self, acl: Acl) {
        self.retired = self.decisions();
        self.acl = acl;
        self.reloads += 1;
    }

    /// ACL decisions made since start: allowed, denied, cache hits, cache
    /// misses.
    pub fn decisions(&self) -> DecisionCounts {
        self.retired.plus(self.acl.decision_counts())
    }

    /// The ACL in force.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }

    /// `query` as a worker is told it: without the token parameter.
    pub fn forwarded_query(&self, query: &str) -> String {
        query_without(query, self.token_query_param.as_deref())
    }

    /// The database's version counter when the ACL was loaded at start;
    /// `None` for a file, or a database down at start (a cached copy).
    pub fn store_version(&self) -> Option<i64> {
        self.store_version
    }

    /// The generation of the ACL in force.
    pub fn generation(&self) -> Generation {
        (self.reloads, self.acl.generation())
    }

    /// Who the client of `request` is, at `now_unix` seconds since the
    /// epoch: the guest without a token, the token's subject with a valid
    /// one. A token is looked for in `Authorization: Bearer`, then in a
    /// `bearer.` subprotocol entry, then in the configured query
    /// parameter; the first one found is the one judged.
    pub fn identify(&self, request: &Request, now_unix: u64) -> Result<Identity, TokenError> {
        let token = presented_token(request, self.token_query_param.as_deref());
        self.identify_token(token, now_unix)
    }

    /// Who presents `authorization` (an `Authorization` field value, if
    /// any) at `now_unix`, as [`Access::identify`] judges it.
    pub fn identify_authorization(
        &self,
        authorization: Option<&str>,
        now_unix: u64,
    ) -> Result<Identity, TokenError> {
        self.identify_token(authorization.map(bearer_token), now_unix)
    }

    fn identify_token(&self, token: Option<&str>, now_unix: u64) -> Result<Identity, TokenError> {
        let Some(token) = token else {
            return Ok(Identity::guest());
        };
        let verifier = self.verifier.as_ref().ok_or(TokenError::UnknownKeyId)?;
        let claims = verifier.verify(token, now_unix)?;
        if claims.sub.len() > MAX_NAME_BYTES {
            return Err(TokenError::BadClaims("sub longer than 256 bytes"));
        }
        Ok(Identity {
            user: Cow::Owned(claims.sub),
            roles: claims.roles.into(),
            authenticated: true,
            send: None,
        })
    }

    /// Whether `identity` may connect to `path`: refused, 401 for a client
    /// without a token (a token might help) and 403 for one with a token.
    pub fn admit(&self, identity: &Identity, path: &str) -> Result<(), Rejection> {
        self.permit(identity, path, CONNECT)
    }

    /// Whether `identity` may do `permission` on `resource`, refused as
    /// [`Access::admit`] refuses.
    pub fn permit(
        &self,
        identity: &Identity,
        resource: &str,
        permission: &str,
    ) -> Result<(), Rejection> {
        match (
            identity.may(&self.acl, resource, permission),
            identity.authenticated,
        ) {
            (true, _) => Ok(()),
            (false, false) => Err(Rejection::Unauthorized),
            (false, true) => Err(Rejection::Forbidden),
        }
    }
}

/// Who is on the other end of a connection, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Borrowed for a guest, so the common case allocates nothing.
    user: Cow<'static, str>,
    /// The token's roles; every connection also holds [`GUEST`]. A boxed
    /// slice: set once, and 8 bytes smaller than a `Vec` in every connection.
    roles: Box<[String]>,
    authenticated: bool,
    /// The last `send` decision and the ACL it was made under.
    send: Option<(Generation, bool)>,
}

impl Identity {
    /// An unauthenticated client: the user [`GUEST`].
    pub fn guest() -> Self {
        Identity {
            user: Cow::Borrowed(GUEST),
            roles: Box::default(),
            authenticated: false,
            send: None,
        }
    }

    /// A client the auth service vouched for: `user` with `roles` (as a
    /// token's subject and roles are).
    pub fn delegated<'r>(user: &str, roles: impl Iterator<Item = &'r str>) -> Self {
        Identity {
            user: Cow::Owned(user.to_owned()),
            roles: roles.map(str::to_owned).collect(),
            authenticated: true,
            send: None,
        }
    }

    /// The user id: the token's `sub`, or [`GUEST`].
    pub fn user(&self) -> &str {
        &self.user
    }

    /// True when a valid token established the user.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The user as CONNECT carries it: empty for a guest.
    pub fn connect_user(&self) -> &str {
        if self.authenticated {
            &self.user
        } else {
            ""
        }
    }

    /// The token's roles as CONNECT can carry them: the first
    /// [`MAX_ROLES`] that fit a role frame.
    pub fn connect_roles(&self) -> Vec<&str> {
        let (min, max) = Field::Role.bounds();
        self.roles
            .iter()
            .map(String::as_str)
            .filter(|role| (min..=max).contains(&role.len()))
            .take(MAX_ROLES)
            .collect()
    }

    /// Whether the user, with the token's roles and [`GUEST`] on top of
    /// their stored roles, may do `permission` on `resource`.
    ///
    /// Every connection holds [`GUEST`]: what anyone may do without a
    /// token, a token holder may do too (the ACL has no deny rule).
    pub fn may(&self, acl: &Acl, resource: &str, permission: &str) -> bool {
        let roles: Vec<&str> = self
            .roles
            .iter()
            .map(String::as_str)
            .chain([GUEST])
            .collect();
        acl.is_allowed_with(&self.user, &roles, resource, &[permission])
    }

    /// Whether the user may `send` on `service`, decided once per ACL
    /// generation (the service of a connection never changes).
    pub fn may_send(&mut self, access: &Access, service: &str) -> bool {
        let generation = access.generation();
        match self.send {
            Some((at, allowed)) if at == generation => allowed,
            _ => {
                let allowed = self.may(access.acl(), service, SEND);
                self.send = Some((generation, allowed));
                allowed
            }
        }
    }
}

/// Seconds since the Unix epoch, for token expiry (0 if the clock is
/// before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The token a request presents, if any. An `Authorization` field with
/// another scheme than `Bearer` presents an empty token, which fails
/// verification: a credential the server cannot use is a bad one.
fn presented_token<'r>(request: &'r Request, query_param: Option<&str>) -> Option<&'r str> {
    if let Some(value) = &request.authorization {
        return Some(bearer_token(value));
    }
    if let Some(token) = &request.bearer_protocol {
        return Some(token);
    }
    let (name, query) = (query_param?, request.query.as_deref()?);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The token of an `Authorization` field value; empty for another scheme.
fn bearer_token(value: &str) -> &str {
    // RFC 9110 section 11.1: the scheme is case-insensitive.
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    }
}

/// The query with the `name` parameter left out: what a worker is told,
/// so a token in the URL goes no further than the node.
pub fn query_without(query: &str, name: Option<&str>) -> String {
    let Some(name) = name else {
        return query.to_owned();
    };
    query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a `--jwt-secret-file` into a verifier with `leeway_s` of clock
/// skew; the error names the file (and line).
pub fn read_verifier(path: &Path, leeway_s: u64) -> Result<Verifier, String> {
    let verifier =
        Verifier::from_secrets(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(verifier.with_leeway(leeway_s))
}

/// The ACL of a server started without `--acl`: the embedded default
/// (guests may use `/echo`), and guests may also connect to every route
/// mounted on the command line, send to its service, and be subscribed
/// and published for on any channel when a route has workers. A
/// development setup then works as the README shows; `main` says so
/// loudly at start.
pub fn development_acl(routes: &[config::Route]) -> Result<Acl, String> {
    let mut acl = acl_file::parse(DEFAULT_ACL, DEFAULT_ACL_NAME).map_err(|e| e.to_string())?;
    let invalid = |e| format!("development ACL: {e}");
    for route in routes {
        acl.allow(&[GUEST], &[&route.path], &[CONNECT])
            .map_err(invalid)?;
        acl.allow(&[GUEST], &[route.service.name()], &[SEND])
            .map_err(invalid)?;
        if matches!(route.service, config::Service::Worker(_)) {
            acl.allow(&[GUEST], &["*"], &[SUBSCRIBE, PUBLISH])
                .map_err(invalid)?;
        }
    }
    Ok(acl)
}

impl Access {
    /// The paths of `routes` that no role of the ACL may `connect` to:
    /// every client gets 401 or 403 there.
    pub fn unreachable<'r>(&self, routes: &'r [config::Route]) -> Vec<&'r str> {
        let mut roles: Vec<&str> = self.acl.grants().map(|(role, _, _)| role).collect();
        roles.dedup();
        routes
            .iter()
            .map(|route| route.path.as_str())
            .filter(|path| !self.acl.are_any_roles_allowed(&roles, path, &[CONNECT]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::upgrade::{self, Policy};

    fn request(target: &str, extra: &str) -> Request {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let policy = Policy {
            max_header_bytes: 8192,
            allowed_origins: &[],
            subprotocols: &[],
        };
        upgrade::parse(head.as_bytes(), &policy)
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn the_token_comes_from_the_first_source_that_has_one() {
        let table: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("/e", "", Some("t"), None),
            ("/e", "Authorization: Bearer  abc \r\n", None, Some("abc")),
            ("/e", "Authorization: bearer abc\r\n", None, Some("abc")),
            ("/e", "Authorization: Basic abc\r\n", None, Some("")),
            (
                "/e",
                "Sec-WebSocket-Protocol: chat, bearer.x.y.z\r\n",
                None,
                Some("x.y.z"),
            ),
            (
                "/e?t=q",
                "Authorization: Bearer h\r\nSec-WebSocket-Protocol: bearer.p\r\n",
                Some("t"),
                Some("h"),
            ),
            ("/e?a=1&t=q.r.s", "", Some("t"), Some("q.r.s")),
            ("/e?a=1&t=q.r.s", "", None, None),
            ("/e?tt=1&t", "", Some("t"), None),
        ];
        for &(target, extra, param, token) in table {
            let req = request(target, extra);
            assert_eq!(presented_token(&req, param), token, "{target} {extra:?}");
        }
    }

    #[test]
    fn the_token_parameter_is_not_forwarded() {
        assert_eq!(query_without("a=1&t=x&b=2", Some("t")), "a=1&b=2");
        assert_eq!(query_without("a=1&t=x", None), "a=1&t=x");
        assert_eq!(query_without("tt=1", Some("t")), "tt=1");
    }

    #[test]
    fn guests_get_401_and_token_holders_403() {
        let access = Access::load(&config::Auth::default(), &[]).expect("default");
        let guest = Identity::guest();
        assert_eq!(access.admit(&guest, "/echo"), Ok(()));
        assert_eq!(access.admit(&guest, "/other"), Err(Rejection::Unauthorized));
        let alice = Identity {
            user: "alice".into(),
            roles: vec!["r".into()].into(),
            authenticated: true,
            send: None,
        };
        // Every connection holds guest.
        assert_eq!(access.admit(&alice, "/echo"), Ok(()));
        assert_eq!(access.admit(&alice, "/other"), Err(Rejection::Forbidden));
        assert_eq!((alice.connect_user(), guest.connect_user()), ("alice", ""));
    }

    fn route(path: &str, service: config::Service) -> config::Route {
        config::Route {
            path: path.into(),
            service,
        }
    }

    #[test]
    fn the_development_acl_opens_every_route_given_and_nothing_else() {
        let routes = [
            route("/e", config::Service::Echo),
            route("/chat", config::Service::Worker("chat".into())),
        ];
        let access = Access::load(&config::Auth::default(), &routes).expect("loads");
        let acl = access.acl();
        // (resource, permission, allowed for a guest)
        let table = [
            ("/echo", CONNECT, true),
            ("/e", CONNECT, true),
            ("echo", SEND, true),
            ("/chat", CONNECT, true),
            ("chat", SEND, true),
            ("chat/lobby", SUBSCRIBE, true),
            ("chat/lobby", PUBLISH, true),
            ("/other", CONNECT, false),
            ("other", SEND, false),
            ("metrics", "read", false),
        ];
        for (resource, permission, allowed) in table {
            assert_eq!(
                acl.is_allowed(GUEST, resource, &[permission]),
                allowed,
                "{permission} on {resource}"
            );
        }
        assert!(access.unreachable(&routes).is_empty());
        // Echo routes alone: no channel is opened.
        let echo_only = Access::load(&config::Auth::default(), &routes[..1]).expect("loads");
        assert!(!echo_only
            .acl()
            .is_allowed(GUEST, "chat/lobby", &[SUBSCRIBE]));
    }

    #[test]
    fn unreachable_routes_are_those_no_role_may_connect_to() {
        let mut access = Access::load(&config::Auth::default(), &[]).expect("loads");
        let mut acl = Acl::new();
        acl.allow(&["member"], &["/chat"], &[CONNECT]).unwrap();
        acl.allow(&["admin"], &["/admin*"], &["*"]).unwrap();
        access.put_acl(acl);
        let routes = [
            route("/chat", config::Service::Worker("chat".into())),
            route("/admin/x", config::Service::Worker("x".into())),
            route("/w", config::Service::Worker("w".into())),
            route("/echo", config::Service::Echo),
        ];
        assert_eq!(access.unreachable(&routes), ["/w", "/echo"]);
    }

    #[test]
    fn a_send_decision_is_kept_until_the_acl_changes() {
        let mut access = Access::load(&config::Auth::default(), &[]).expect("default");
        let mut guest = Identity::guest();
        assert!(guest.may_send(&access, "echo"));
        assert!(!Identity::guest().may_send(&access, "chat"));
        access.acl = Acl::new();
        access.reloads += 1;
        assert!(!guest.may_send(&access, "echo"));
    }

    #[test]
    fn a_token_without_keys_is_refused() {
        let access = Access::load(&config::Auth::default(), &[]).expect("default");
        let req = request("/echo", "Authorization: Bearer a.b.c\r\n");
        assert_eq!(access.identify(&req, 0), Err(TokenError::UnknownKeyId));
        let req = request("/echo", "");
        assert_eq!(access.identify(&req, 0), Ok(Identity::guest()));
    }

    #[test]
    fn roles_that_do_not_fit_connect_are_left_out() {
        let mut roles: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
        roles.insert(0, "x".repeat(65));
        let identity = Identity {
            user: "u".into(),
            roles: roles.into(),
            authenticated: true,
            send: None,
        };
        let forwarded = identity.connect_roles();
        assert_eq!(forwarded.len(), MAX_ROLES);
        assert_eq!(forwarded[0], "r0");
    }
}
