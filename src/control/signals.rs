//! The process's signals, handled on a thread of their own: SIGHUP
//! reloads the certificate, the ACL, the token keys and the backend keys
//! for every reactor; SIGTERM or SIGINT drains; a second one exits at once.
//!
//! Each kind is read and checked once, here, and published whole: every
//! reactor switches to the same new value, or, when the file is broken,
//! all keep the old one. A reload is logged only once every reactor has
//! it in force.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use log::{info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Control;
use crate::access;
use crate::acl_store;
use crate::config::{AclSource, Config};
use crate::tls::TlsContext;

/// What SIGHUP reads again.
pub struct Reloader {
    tls: TlsContext,
    acl_file: Option<PathBuf>,
    /// `--jwt-secret-file` and `--jwt-leeway-s`.
    token_keys: Option<(PathBuf, u64)>,
    key_file: Option<PathBuf>,
    admin_keys: Vec<String>,
}

impl Reloader {
    /// Reloads the files `config` names; `tls` holds the certificate now
    /// in force.
    pub fn new(config: &Config, tls: TlsContext) -> Self {
        let backend = config.backend.as_ref();
        Reloader {
            tls,
            // A database store is followed live, not reloaded.
            acl_file: match &config.auth.acl {
                AclSource::File(path) => Some(path.clone()),
                _ => None,
            },
            token_keys: (config.auth.jwt_secret_file.clone())
                .map(|path| (path, config.auth.jwt_leeway_s)),
            key_file: backend.and_then(|b| b.key_file.clone()),
            admin_keys: backend.map(|b| b.admin_keys.clone()).unwrap_or_default(),
        }
    }

    /// Reloads each kind; a kind whose file is broken keeps what is in
    /// force and says why.
    fn reload(&mut self, control: &Arc<Control>) {
        match self.tls.reload() {
            Ok(()) => {
                let version = control.publish_tls(self.tls.config());
                let fingerprint = self.tls.fingerprint().to_owned();
                in_force(
                    control,
                    version,
                    &format!("certificate reloaded (SHA-256 {fingerprint})"),
                );
            }
            Err(e) => warn!("SIGHUP: keeping the current certificate: {e}"),
        }
        if let Some(path) = &self.acl_file {
            let (read, published) = control.change_acl(|_| match acl_store::read_file(path) {
                Ok(acl) => (Ok(()), Some(acl)),
                Err(e) => (Err(e), None),
            });
            match (read, published) {
                (Ok(()), Some((version, _))) => {
                    in_force(
                        control,
                        version,
                        &format!("ACL reloaded from {}", path.display()),
                    );
                }
                (Err(e), _) => warn!("SIGHUP: keeping the current ACL: {e}"),
                (Ok(()), None) => {}
            }
        }
        if let Some((path, leeway_s)) = &self.token_keys {
            match access::read_verifier(path, *leeway_s) {
                Ok(verifier) => {
                    let version = control.publish_tokens(verifier);
                    let what = format!("token keys reloaded from {}", path.display());
                    in_force(control, version, &what);
                }
                Err(e) => warn!("SIGHUP: keeping the current token keys: {e}"),
            }
        }
        if let Some(path) = &self.key_file {
            match crate::backend::key_file::read_keys(path, &self.admin_keys) {
                Ok(ring) => {
                    let ids: Vec<&str> = ring.key_ids().collect();
                    let what = format!(
                        "backend keys reloaded from {} (key ids {})",
                        path.display(),
                        ids.join(", ")
                    );
                    let version = control.publish_keys(ring);
                    in_force(control, version, &what);
                }
                Err(e) => warn!("SIGHUP: keeping the current backend keys: {e}"),
            }
        }
    }
}

/// Logs a reload once every reactor has it in force. The wait runs on a
/// thread of its own, so a SIGTERM right after a SIGHUP is not held up by
/// a reactor that is slow to take the change.
fn in_force(control: &Arc<Control>, version: u64, what: &str) {
    let (control, line) = (Arc::clone(control), what.to_owned());
    let waiter = std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            if control.wait_adopted(version) {
                let reactors = control.reactors();
                info!("SIGHUP: {line}, in force on {reactors} reactor(s)");
            } else {
                warn!("SIGHUP: {line}, but a reactor has not taken it yet");
            }
        });
    if let Err(e) = waiter {
        warn!("SIGHUP: {what} (cannot wait for the reactors to confirm: {e})");
    }
}

/// Installs the handlers and starts the thread that serves them.
pub fn spawn(control: Arc<Control>, mut reloader: Reloader) -> io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reloader.reload(&control);
                } else {
                    // Each reactor logs what it does with it.
                    control.shut_down();
                }
            }
        })?;
    Ok(())
}
