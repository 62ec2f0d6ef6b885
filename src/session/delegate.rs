//! Delegated authentication (docs/acl.md): a client without a token is
//! judged by a worker of the `--auth-service`. The upgrade waits, reading
//! nothing more, until the worker's AUTH_REPLY, its death or the
//! `--auth-timeout-ms` deadline; every way but an allow ends in a refusal.

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use super::serve::forwarded_headers;
use super::{Ctx, NodePort, Session};
use crate::access::Identity;
use crate::backend::message::{Auth, AuthReply};
use crate::ws::upgrade::{Rejection, Request};

/// An upgrade waiting for the auth service's verdict.
pub(super) struct AuthWait {
    /// The parsed request, its query as workers are told it.
    pub request: Request,
    /// No verdict by then: 503.
    pub until: Instant,
}

/// Sends AUTH about `request` (the request id is the connection id) to a
/// worker of `service`; false when the service has no worker.
pub(super) fn ask(
    node: &mut dyn NodePort,
    service: &str,
    conn: u64,
    peer: SocketAddr,
    request: &Request,
    now: Instant,
) -> bool {
    let peer = peer.to_string();
    let headers: Vec<(&str, &[u8])> = forwarded_headers(request, true)
        .map(|(name, value)| (name, value.as_bytes()))
        .collect();
    let auth = Auth {
        request: conn,
        peer: &peer,
        path: &request.path,
        query: request.query.as_deref().unwrap_or_default(),
        headers: headers.as_slice().into(),
    };
    node.ask_auth(service, &auth, now)
}

/// The identity an AUTH_REPLY establishes, or the refusal it means: a
/// deny, or an allow without a user, is 401.
pub(super) fn verdict(reply: &AuthReply<'_>) -> Result<Identity, Rejection> {
    if reply.allow && !reply.user.is_empty() {
        Ok(Identity::delegated(reply.user, reply.roles.iter()))
    } else {
        Err(Rejection::Unauthorized)
    }
}

impl Session {
    /// A client without a token: a worker of the auth service judges its
    /// request, and reading pauses until the verdict. No worker: 503.
    pub(super) fn delegate(&mut self, request: Request, service: &str, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let (id, peer) = (self.id, self.peer);
        let asked = ctx
            .node
            .as_deref_mut()
            .is_some_and(|node| ask(node, service, id, peer, &request, now));
        if !asked {
            debug!("{}: no worker for auth service {service}", self.peer);
            return self.refuse(Rejection::ServiceUnavailable, ctx.out, now);
        }
        self.auth = Some(Box::new(AuthWait {
            request,
            until: now + ctx.config.auth.auth_timeout,
        }));
        self.guard.settled();
    }

    /// The auth service's verdict on this session's upgrade (the node
    /// checked it came from the worker asked): an allow goes on to the
    /// `connect` check (101 or 403), a deny is 401. False when the
    /// session was not waiting for one.
    pub fn on_auth_reply(&mut self, ctx: &mut Ctx<'_>, reply: &AuthReply<'_>) -> bool {
        if !self.is_upgrading() {
            return false;
        }
        let Some(wait) = self.auth.take() else {
            return false;
        };
        let config = ctx.config;
        match (verdict(reply), config.route(&wait.request.path)) {
            (Ok(identity), Some(route)) => {
                debug!(
                    "{}: auth service vouches for {}",
                    self.peer,
                    identity.user()
                );
                self.open_session(wait.request, identity, &route.service, ctx, &mut []);
            }
            (Err(rejection), _) => {
                debug!("{}: auth service refused", self.peer);
                self.refuse(rejection, ctx.out, ctx.now);
            }
            (Ok(_), None) => self.refuse(Rejection::NotFound, ctx.out, ctx.now),
        }
        true
    }

    /// No verdict will come (timeout, the auth worker died): 503, fail
    /// closed.
    pub(super) fn auth_unavailable(&mut self, ctx: &mut Ctx<'_>, why: &str) {
        // A session that ended meanwhile (the client hung up) stays ended.
        if !self.is_upgrading() || self.auth.take().is_none() {
            return;
        }
        debug!("{}: {why}", self.peer);
        if let Some(node) = ctx.node.as_deref_mut() {
            node.auth_done(self.id);
        }
        self.refuse(Rejection::ServiceUnavailable, ctx.out, ctx.now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::message::List;

    fn reply(allow: bool, user: &'static str) -> AuthReply<'static> {
        AuthReply {
            request: 1,
            allow,
            user,
            roles: List::from(&["member"][..]),
        }
    }

    #[test]
    fn only_an_allow_with_a_user_lets_the_client_in() {
        let identity = verdict(&reply(true, "alice")).expect("allowed");
        assert_eq!(identity.user(), "alice");
        assert!(identity.is_authenticated());
        assert_eq!(identity.connect_roles(), ["member"]);
        assert_eq!(verdict(&reply(true, "")), Err(Rejection::Unauthorized));
        assert_eq!(
            verdict(&reply(false, "alice")),
            Err(Rejection::Unauthorized)
        );
    }
}
