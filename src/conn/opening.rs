//! The upgrade request: its head collected from the client's first
//! plaintext, then judged (route, token, `connect`) and answered with a
//! 101 and the session, a refusal, or a wait for the auth service.

use std::time::Instant;

use log::debug;

use super::serve::{self, Target, WorkerSession};
use super::{Conn, Phase, Session, Shared};
use crate::access::{self, Identity};
use crate::auth::token::TokenError;
use crate::config::Service;
use crate::metrics::{scrape_request, ReactorMetrics, TokenOutcome};
use crate::outcome::Closer;
use crate::ws::upgrade::{self, Rejection};
use crate::ws::{CloseCode, Decoder};
impl Conn {
    /// Collects the upgrade request's head and judges it once complete:
    /// a scrape, a refusal, a wait for the auth service, or the session.
    pub(super) fn on_head_bytes(&mut self, bytes: &mut [u8], sh: &mut Shared<'_>) {
        let (config, now) = (sh.config, sh.now);
        let Phase::Upgrading { head } = &mut self.phase else {
            return;
        };
        let cap = config.max_header_bytes;
        let taken = bytes.len().min(cap.saturating_sub(head.len()));
        let seen = head.len();
        head.extend_from_slice(&bytes[..taken]);
        // httparse re-parses from the start: only try once the
        // head can have ended, so a byte-at-a-time client costs
        // one scan per byte, not one parse.
        let fresh = &head[seen.saturating_sub(2)..];
        let may_be_complete = head.len() >= cap
            || fresh.windows(2).any(|w| w == b"\n\n")
            || fresh.windows(3).any(|w| w == b"\n\r\n");
        if !may_be_complete {
            return;
        }
        let policy = upgrade::Policy {
            max_header_bytes: cap,
            allowed_origins: &config.allowed_origins,
            subprotocols: &config.subprotocols,
        };
        if let Some(scrape) = scrape_request::parse_scrape(head, cap) {
            return self.scrape(&scrape, sh);
        }
        let mut request = match upgrade::parse(head, &policy) {
            Ok(None) => return,
            Ok(Some(request)) => request,
            Err(rejection) => return self.refuse(rejection, sh.out, now),
        };
        let Some(route) = config.route(&request.path) else {
            return self.refuse(Rejection::NotFound, sh.out, now);
        };
        self.path = Some(request.path.as_str().into());
        self.subprotocol = request.subprotocol.as_deref().map(Box::from);
        let identified = sh.access.identify(&request, access::unix_now());
        count_token(sh.metrics, &identified);
        let identity = match identified {
            Ok(identity) => identity,
            Err(e) => {
                debug!("{}: token refused: {e}", self.peer);
                return self.refuse(Rejection::Unauthorized, sh.out, now);
            }
        };
        request.query = request.query.map(|q| sh.access.forwarded_query(&q));
        let rest = &mut bytes[taken..];
        let delegate = config.auth.delegate_for(&request.path);
        if let (false, Some(service)) = (identity.is_authenticated(), delegate) {
            // What followed the head waits with it for the verdict.
            head.extend_from_slice(rest);
            return self.delegate(request, service, sh);
        }
        self.open_session(request, identity, &route.service, sh, rest);
    }

    /// Admits `identity` to the request's path (`connect`), then answers
    /// 101 and opens the session. `rest` is what followed the head in the
    /// read that completed it.
    pub(super) fn open_session(
        &mut self,
        request: upgrade::Request,
        identity: Identity,
        service: &Service,
        sh: &mut Shared<'_>,
        rest: &mut [u8],
    ) {
        let now = sh.now;
        let admitted = sh.access.admit(&identity, &request.path);
        self.identity = Some(identity);
        if let Err(rejection) = admitted {
            return self.refuse(rejection, sh.out, now);
        }
        upgrade::write_accept(sh.out, &request);
        let mut early = match &mut self.phase {
            Phase::Upgrading { head } => head.split_off(request.head_len),
            _ => Vec::new(),
        };
        self.phase = Phase::Open(Session {
            decoder: Decoder::new(sh.config.limits),
        });
        self.target = Some(match service {
            Service::Echo => Target::Echo,
            Service::Worker(name) => {
                let identity = self.identity.as_ref();
                let info = serve::connect_info(name, self.peer, &request, identity);
                let served = sh
                    .backend
                    .as_deref_mut()
                    .is_some_and(|backend| backend.open(self.id, info, now));
                if !served {
                    let reason = "no worker for this service";
                    self.start_close(sh.out, now, CloseCode::TRY_AGAIN_LATER, reason);
                }
                Target::Worker(Box::new(WorkerSession::new(name)))
            }
        });
        // Frames pipelined behind the request head.
        self.on_plaintext(&mut early, sh);
        if !self.is_done() {
            self.on_plaintext(rest, sh);
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
