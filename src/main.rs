//! The `averyws` binary: command line → configuration → reactors.

use std::process::ExitCode;

use std::sync::Arc;

use averyws::access::Access;
use averyws::cli::{self, Exit};
use averyws::config::{AclSource, Config, TlsSource};
use averyws::control::signals::{self, Reloader};
use averyws::control::{follow, Control};
use averyws::listen;
use averyws::reactor::Reactor;
use averyws::tls::TlsContext;
use log::{error, info, warn};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let program = args.first().map_or("averyws", String::as_str);
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if let Some((&"acl", acl_args)) = rest.split_first() {
        return averyws::acl_store::command::run(acl_args);
    }
    let launch = match cli::parse(program, &rest) {
        Ok(launch) => launch,
        Err(Exit::Info(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage(line)) => {
            eprintln!("averyws: {line}");
            return ExitCode::from(2);
        }
    };
    let config = launch.config;
    if let Err(e) = averyws::logging::init_with(&launch.logging) {
        eprintln!("averyws: cannot start logging: {e}");
        return ExitCode::FAILURE;
    }
    match averyws::sys::raise_nofile_limit() {
        Ok(limit) => info!("open-file limit: {limit}"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let tls = match TlsContext::new(config.tls.clone()) {
        Ok(tls) => tls,
        Err(e) => {
            error!("TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let TlsSource::Development { out } = &config.tls {
        warn!(
            "USING A GENERATED SELF-SIGNED DEVELOPMENT CERTIFICATE for localhost, 127.0.0.1, ::1 \
             (SHA-256 {}). Clients must trust it explicitly{}. Pass --cert and --key in production.",
            tls.fingerprint(),
            out.as_ref()
                .map(|path| format!(": it was written to {}", path.display()))
                .unwrap_or_default()
        );
    }
    match serve(config, tls) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Says loudly that a server without `--acl` lets guests use every route,
/// and names each route an `--acl` lets nobody connect to.
fn warn_about_access(config: &Config, access: &Access) {
    let paths = |paths: Vec<&str>| paths.join(", ");
    match averyws::acl_store::store_of(&config.auth.acl).map(|store| store.describe()) {
        None => warn!(
            "NO --acl: USING THE DEVELOPMENT ACL. Guests (clients without a token) may connect \
             to every route ({}), send to its service, and be subscribed to any channel. \
             Pass --acl in production (docs/acl.md).",
            paths(config.routes.iter().map(|r| r.path.as_str()).collect())
        ),
        Some(file) => {
            for path in access.unreachable(&config.routes) {
                warn!(
                    "--acl {file}: no role may connect to the route {path}: every client gets \
                     401 or 403 there"
                );
            }
        }
    }
}

/// Starts one reactor per `--threads` on its own thread, and the signal
/// thread; returns once every reactor has stopped. A reactor that fails
/// makes the others drain, so the process ends.
fn serve(config: Config, tls: TlsContext) -> Result<(), String> {
    let access =
        Access::load(&config.auth, &config.routes).map_err(|e| format!("cannot start: {e}"))?;
    warn_about_access(&config, &access);
    let control = Control::new(tls.config());
    let listeners = listen::bind(config.listen, config.threads)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let mut reactors = Vec::with_capacity(listeners.len());
    for (index, listener) in listeners.into_iter().enumerate() {
        let own = config.for_reactor(index)?;
        let reactor = Reactor::new(own, access.clone(), Arc::clone(&control), listener)
            .map_err(|e| format!("cannot start: {e}"))?;
        reactors.push(reactor);
    }
    let addr = reactors[0].local_addr();
    signals::spawn(Arc::clone(&control), Reloader::new(&config, tls))
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    if let AclSource::Postgres(store) = &config.auth.acl {
        follow::spawn(Arc::clone(&control), store.clone(), access.store_version())
            .map_err(|e| format!("cannot follow the ACL store: {e}"))?;
    }
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|route| format!("{} -> {:?}", route.path, route.service))
        .collect();
    info!(
        "listening on wss://{addr} with routes: {} ({} reactor(s))",
        routes.join(", "),
        reactors.len()
    );
    let mut threads = Vec::with_capacity(reactors.len());
    for (index, mut reactor) in reactors.into_iter().enumerate() {
        let control = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(format!("reactor-{index}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| reactor.run());
                let result = match std::panic::catch_unwind(run) {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("panicked".to_owned()),
                };
                control.stopped(index);
                if result.is_err() {
                    control.drain();
                }
                result
            })
            .map_err(|e| format!("cannot start reactor thread: {e}"))?;
        threads.push(thread);
    }
    let mut failure = Ok(());
    for (index, thread) in threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Err(format!("reactor {index} failed: {e}")),
            Err(_) => failure = Err(format!("reactor {index} ended abnormally")),
        }
    }
    failure
}
