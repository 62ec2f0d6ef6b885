//! Library workers (`averyws_worker`) on the test's own
//! threads: each event goes to a handler, then to the test.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws::backend::message::Payload;
use averyws::backend::KeyRing;
use averyws_worker::{Config, Event, Worker};

use super::procs::join;

/// How long to wait for an event that should come.
const LIMIT: Duration = Duration::from_secs(8);

/// An event and the name of the library worker that got it.
pub type Tagged = (String, Event);

/// What a library worker thread should do next.
const RUN: u8 = 0;
const LEAVE: u8 = 1;
const VANISH: u8 = 2;

/// A library worker serving `svc` on its own thread: each event goes to
/// the handler, then to the test.
pub struct Lib {
    next: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl Lib {
    pub fn start(
        name: &str,
        endpoints: &[&str],
        keys: Option<&str>,
        events: &Sender<Tagged>,
        mut handler: impl FnMut(&mut Worker, &Event) + Send + 'static,
    ) -> Lib {
        let endpoints = endpoints.iter().map(|e| e.to_string()).collect();
        let mut config = Config::new(endpoints, vec!["svc".to_owned()]);
        config.name = name.to_owned();
        config.keys = keys.map(|text| KeyRing::parse(text.as_bytes()).expect("keys"));
        let next = Arc::new(AtomicU8::new(RUN));
        let (flag, events, name) = (Arc::clone(&next), events.clone(), name.to_owned());
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker");
            while flag.load(Ordering::Relaxed) == RUN {
                if let Some(event) = worker.poll(Duration::from_millis(10)) {
                    handler(&mut worker, &event);
                    let _ = events.send((name.clone(), event));
                }
            }
            if flag.load(Ordering::Relaxed) == LEAVE {
                worker.bye();
            }
            // VANISH: the sockets close (linger 0) without a word.
        });
        Lib {
            next,
            thread: Some(thread),
        }
    }

    /// Stops without BYE, as if the process died.
    pub fn vanish(mut self) {
        self.stop(VANISH);
    }

    fn stop(&mut self, how: u8) {
        self.next.store(how, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            join(thread);
        }
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        self.stop(LEAVE);
    }
}

/// An echo handler that prefixes text replies with `tag:`.
pub fn tagging(tag: &'static str) -> impl FnMut(&mut Worker, &Event) + Send {
    move |worker, event| {
        if let Event::Message {
            node,
            conn,
            payload,
        } = event
        {
            let text = String::from_utf8_lossy(payload.as_bytes());
            let reply = format!("{tag}:{text}");
            worker
                .send(*node, &[*conn], Payload::Text(&reply))
                .expect("echo");
        }
    }
}

/// Waits for the first event `pick` accepts; the others are dropped.
pub fn wait_event<T>(
    events: &Receiver<Tagged>,
    what: &str,
    mut pick: impl FnMut(&str, &Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (name, event) = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"));
        if let Some(found) = pick(&name, &event) {
            return found;
        }
    }
}
