//! The `averyws` binary: command line → configuration → reactor.

use std::process::ExitCode;

use averyws::cli::{self, Exit};
use averyws::config::TlsSource;
use averyws::reactor::Reactor;
use averyws::tls::TlsContext;
use log::{error, info, warn};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let program = args.first().map_or("averyws", String::as_str);
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if let Some((&"acl", acl_args)) = rest.split_first() {
        return averyws::auth::check::run(acl_args);
    }
    let config = match cli::parse(program, &rest) {
        Ok(config) => config,
        Err(Exit::Info(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage(line)) => {
            eprintln!("averyws: {line}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = averyws::logging::init_with(&config.logging) {
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
    let routes: Vec<String> = config
        .routes
        .iter()
        .map(|route| format!("{} -> {:?}", route.path, route.service))
        .collect();
    let mut reactor = match Reactor::new(config, tls) {
        Ok(reactor) => reactor,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(
        "listening on wss://{} with routes: {}",
        reactor.local_addr(),
        routes.join(", ")
    );
    match reactor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("reactor failed: {e}");
            ExitCode::FAILURE
        }
    }
}
