//! The command line and handlers of the reference workers
//! (`examples/echo_worker.rs`, `examples/chat_worker.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use log::{error, info, warn};

use crate::{default_name, Config, Event, KeyRing, Worker, WorkerError, DEFAULT_ENDPOINT};

// The command line of the reference workers (`examples/echo_worker.rs`,
// `examples/chat_worker.rs`); argh prints the doc comment as the help.
/// An averyws backend worker (docs/protocol.md). SIGINT or SIGTERM sends
/// BYE to every node and exits.
#[derive(argh::FromArgs, Debug)]
pub struct WorkerArgs {
    /// node endpoint to connect to, one DEALER each; one per averyws
    /// process, whose other reactors are found from it (repeatable;
    /// default tcp://127.0.0.1:7100)
    #[argh(option)]
    pub connect: Vec<String>,

    /// service to announce (repeatable; default depends on the worker)
    #[argh(option)]
    pub service: Vec<String>,

    /// key file of KEYID:SECRET lines, the nodes' --backend-key-file, to
    /// sign and verify every message
    #[argh(option)]
    pub key_file: Option<PathBuf>,

    /// with --key-file, connect without CURVE, to nodes run with
    /// --backend-no-curve
    #[argh(switch)]
    pub no_curve: bool,

    /// log level: error, warn, info, debug or trace (default info)
    #[argh(option, default = "log::LevelFilter::Info")]
    pub log_level: log::LevelFilter,
}

/// What a reference worker does with each event; `FnMut(&mut Worker,
/// Event)` closures are handlers.
pub trait Handler {
    /// Act on one event, sending commands through `worker`.
    fn handle(&mut self, worker: &mut Worker, event: Event);
}

impl<F: FnMut(&mut Worker, Event)> Handler for F {
    fn handle(&mut self, worker: &mut Worker, event: Event) {
        self(worker, event)
    }
}

/// `main` of a reference worker: parse [`WorkerArgs`] from the command
/// line, log to stderr, then [`run`].
pub fn cli_main(program: &str, default_service: &str, handler: impl Handler) -> ExitCode {
    let args: WorkerArgs = argh::from_env();
    if let Err(why) = init_logging(args.log_level) {
        eprintln!("{program}: cannot log: {why}");
    }
    match run(program, default_service, args, handler) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            error!("{program}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Connect as `args` says and hand every event to `handler` until SIGINT
/// or SIGTERM, then send BYE. A second signal ends the process at once.
pub fn run(
    program: &str,
    default_service: &str,
    args: WorkerArgs,
    mut handler: impl Handler,
) -> Result<(), WorkerError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The second signal finds the flag set and exits.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|why| WorkerError::Signal(why.to_string()))?;
    }
    let keys = match &args.key_file {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|why| WorkerError::KeyFile(format!("{}: {why}", path.display())))?;
            let keys = KeyRing::parse(&text)
                .map_err(|why| WorkerError::KeyFile(format!("{}: {why}", path.display())))?;
            Some(keys)
        }
        None => None,
    };
    let endpoints = if args.connect.is_empty() {
        vec![DEFAULT_ENDPOINT.to_owned()]
    } else {
        args.connect
    };
    let services = if args.service.is_empty() {
        vec![default_service.to_owned()]
    } else {
        args.service
    };
    let mut config = Config::new(endpoints, services);
    config.name = default_name(program);
    config.keys = keys;
    config.curve = !args.no_curve;
    let mut worker = Worker::new(config)?;
    while !stop.load(Ordering::Relaxed) {
        if let Some(event) = worker.poll(Duration::from_millis(250)) {
            handler.handle(&mut worker, event);
        }
    }
    info!("{program}: signal received, sending BYE");
    worker.bye();
    Ok(())
}

/// The echo worker's handler: each MESSAGE goes back to its connection
/// with SEND, as it came (text or binary). CONNECT and DISCONNECT are
/// logged.
pub fn echo(worker: &mut Worker, event: Event) {
    match event {
        Event::Message {
            node,
            conn,
            payload,
        } => {
            if let Err(why) = worker.send(node, &[conn], payload.as_payload()) {
                warn!("{node}: echo to {conn} failed: {why}");
            }
        }
        Event::Connect(connect) => info!(
            "{}: connection {} from {} on {}{}",
            connect.node,
            connect.conn,
            connect.peer,
            connect.path,
            if connect.reassigned {
                " (reassigned)"
            } else {
                ""
            }
        ),
        Event::Disconnect {
            node,
            conn,
            code,
            reason,
            ..
        } => info!("{node}: connection {conn} closed ({} {reason:?})", code.0),
        Event::Error {
            node, code, detail, ..
        } => warn!("{node}: ERROR {}: {detail}", code.0),
        Event::NodeReset { node } => info!("{node}: reset, its connections are gone"),
        Event::AclResult {
            node,
            request,
            status,
            detail,
            ..
        } => info!("{node}: ACL request {request}: {status:?} {detail}"),
        Event::Auth { node, request, .. } => {
            // Not an auth service: refuse rather than leave the node waiting.
            if let Err(why) = worker.auth_reply(node, request, false, "", &[]) {
                warn!("{node}: AUTH {request} not answered: {why}");
            }
        }
    }
}

/// Log to stderr at `level`: time, level, target, message.
fn init_logging(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    fern::Dispatch::new()
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:<5} {}: {message}",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.target()
            ))
        })
        .level(level)
        .chain(std::io::stderr())
        .apply()
}
