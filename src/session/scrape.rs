//! `GET /metrics` on the TLS listener: the Prometheus text of every
//! reactor, for a client whose user may `read` the resource `metrics`
//! (a token in `Authorization: Bearer`, or the ACL's guest). The answer
//! closes the connection, as an error response does.

use super::opening::count_token;
use super::{Ctx, Session};
use crate::access;
use crate::metrics::render::{render, render_store, CONTENT_TYPE};
use crate::metrics::scrape_request::{Scrape, METRICS_PATH};
use crate::outcome::Closer;
use crate::ws::upgrade::Rejection;

/// The ACL resource a scrape needs [`READ`] on.
pub const METRICS_RESOURCE: &str = "metrics";
/// The permission a scrape needs on [`METRICS_RESOURCE`].
pub const READ: &str = "read";

impl Session {
    /// Answers a scrape: 200 with the metrics, or 401/403.
    pub(super) fn scrape(&mut self, scrape: &Scrape, ctx: &mut Ctx<'_>) {
        self.path = Some(METRICS_PATH.into());
        let identified = ctx
            .access
            .identify_authorization(scrape.authorization.as_deref(), access::unix_now());
        count_token(ctx.metrics, &identified);
        let Ok(identity) = identified else {
            return self.refuse(Rejection::Unauthorized, ctx.out, ctx.now);
        };
        let permitted = ctx.access.permit(&identity, METRICS_RESOURCE, READ);
        self.identity = Some(identity);
        if let Err(rejection) = permitted {
            return self.refuse(rejection, ctx.out, ctx.now);
        }
        ctx.metrics.scrapes.add(1);
        let all = ctx.control.metrics();
        let reactors: Vec<_> = all.iter().map(AsRef::as_ref).collect();
        let mut body = String::new();
        render(&reactors, &mut body);
        if let Some(health) = ctx.control.store_health() {
            render_store(&health, &mut body);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        );
        ctx.out.extend_from_slice(head.as_bytes());
        ctx.out.extend_from_slice(body.as_bytes());
        self.close = Some((200, Closer::Server));
        self.drain(ctx.now);
    }
}
