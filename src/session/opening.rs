//! The upgrade request: its head collected from the client's first
//! plaintext, then judged (route, token, `connect`) and answered with a
//! 101 and the session, a refusal, or a wait for the auth service.

use std::time::Instant;

use log::debug;

use super::head::{self, Verdict};
use super::serve::{self, Target, WorkerSession};
use super::{Ctx, Frames, Phase, Session};
use crate::access::{self, Identity};
use crate::auth::token::TokenError;
use crate::config::Service;
use crate::metrics::{ReactorMetrics, TokenOutcome};
use crate::outcome::Closer;
use crate::ws::upgrade::{self, Rejection};
use crate::ws::{deflate, CloseCode, Decoder};
impl Session {
    /// Collects the upgrade request's head and carries out its verdict
    /// once complete ([`head::judge`]): a scrape, a refusal, a wait for the
    /// auth service, or the session.
    pub(super) fn on_head_bytes(&mut self, bytes: &mut [u8], ctx: &mut Ctx<'_>) {
        let (config, now) = (ctx.config, ctx.now);
        let Phase::Upgrading { head } = &mut self.phase else {
            return;
        };
        let (taken, may_be_complete) = head::collect(head, bytes, config.max_header_bytes);
        if !may_be_complete {
            return;
        }
        let judged = head::judge(head, config, ctx.access, access::unix_now());
        if let Some((path, subprotocol)) = judged.route {
            self.path = Some(path.into());
            self.subprotocol = subprotocol.map(Box::from);
        }
        match &judged.token {
            Some(Ok(())) => ctx.metrics.token(TokenOutcome::Valid),
            Some(Err(e)) => {
                ctx.metrics.token(TokenOutcome::Invalid);
                debug!("{}: token refused: {e}", self.peer);
            }
            None => {}
        }
        let rest = &mut bytes[taken..];
        match judged.verdict {
            Verdict::More => {}
            Verdict::Scrape(scrape) => self.scrape(&scrape, ctx),
            Verdict::Refuse(rejection) => self.refuse(rejection, ctx.out, now),
            Verdict::Delegate { request, service } => {
                // What followed the head waits with it for the verdict.
                head.extend_from_slice(rest);
                self.delegate(request, &service, ctx);
            }
            Verdict::Open {
                request,
                identity,
                service,
            } => self.open_session(request, identity, &service, ctx, rest),
        }
    }

    /// Admits `identity` to the request's path (`connect`), then answers
    /// 101 and opens the session. `rest` is what followed the head in the
    /// read that completed it.
    pub(super) fn open_session(
        &mut self,
        request: upgrade::Request,
        identity: Identity,
        service: &Service,
        ctx: &mut Ctx<'_>,
        rest: &mut [u8],
    ) {
        let now = ctx.now;
        let admitted = ctx.access.admit(&identity, &request.path);
        self.identity = Some(identity);
        if let Err(rejection) = admitted {
            return self.refuse(rejection, ctx.out, now);
        }
        let policy = ctx.config.deflate.policy_for(&request.path);
        let offers = request.extensions.as_deref().zip(policy);
        let agreed = offers.and_then(|(offers, policy)| deflate::negotiate(offers, policy));
        let response = agreed.map(|agreed| agreed.response());
        upgrade::write_accept(ctx.out, &request, response.as_deref());
        let mut early = match &mut self.phase {
            Phase::Upgrading { head } => head.split_off(request.head_len),
            _ => Vec::new(),
        };
        let mut decoder = Decoder::new(ctx.config.limits);
        if agreed.is_some() {
            decoder.accept_compressed();
            ctx.metrics.deflate_sessions.add(1);
        }
        self.deflate = agreed.map(|agreed| agreed.server_window_bits);
        self.phase = Phase::Open(Frames { decoder });
        self.target = Some(match service {
            Service::Echo => Target::Echo,
            Service::Worker(name) => {
                let identity = self.identity.as_ref();
                let info = serve::connect_info(name, self.peer, &request, identity);
                let served = ctx
                    .node
                    .as_deref_mut()
                    .is_some_and(|node| node.open(self.id, info, now));
                if !served {
                    let reason = "no worker for this service";
                    self.start_close(ctx.out, now, CloseCode::TRY_AGAIN_LATER, reason);
                }
                Target::Worker(Box::new(WorkerSession::new(name)))
            }
        });
        // Frames pipelined behind the request head.
        self.on_plaintext(&mut early, ctx);
        if !self.is_done() {
            self.on_plaintext(rest, ctx);
        }
    }

    pub(super) fn refuse(&mut self, rejection: Rejection, out: &mut Vec<u8>, now: Instant) {
        debug!("{}: upgrade refused with {}", self.peer, rejection.status());
        rejection.write_response(out);
        self.close = Some((rejection.status(), Closer::Server));
        self.drain(now);
    }
}

/// Counts the verdict on a client's token, if it presented one.
pub(super) fn count_token(metrics: &ReactorMetrics, identified: &Result<Identity, TokenError>) {
    match identified {
        Ok(identity) if identity.is_authenticated() => metrics.token(TokenOutcome::Valid),
        Ok(_) => {}
        Err(_) => metrics.token(TokenOutcome::Invalid),
    }
}
