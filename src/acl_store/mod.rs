//! Where the ACL is kept: a file, or a PostgreSQL database that every
//! node follows (docs/acl.md, "Where the ACL is kept"). One [`Store`]
//! serves the `averyws acl` commands and an admin worker's changes alike,
//! so a change means the same thing whoever makes it: it is applied by
//! the engine ([`apply`]) to the ACL stored now and stored whole, or not
//! at all.
//!
//! The thread that follows a database for the reactors is
//! `control::follow`; the SQL is in [`pg`].

pub mod command;
pub mod pg;
pub mod rows;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::auth::acl::{Acl, AclError};
use crate::auth::acl_file;
use crate::backend::message::AclOp;
use crate::config::{AclSource, PgStore};
pub use pg::Refusal;
use rows::Rows;

/// An ACL store, as a change or a command reaches it.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    /// An ACL file, rewritten atomically on every change.
    File(&'a Path),
    /// A PostgreSQL store, changed in one transaction each time.
    Postgres(&'a PgStore),
}

impl Store<'_> {
    /// The store as logs and errors name it (never a password).
    pub fn describe(&self) -> String {
        match self {
            Store::File(path) => path.display().to_string(),
            Store::Postgres(store) => store.describe(),
        }
    }

    /// The ACL stored now.
    pub fn load(&self) -> Result<Acl, Refusal> {
        match self {
            Store::File(path) => read_file(path).map_err(Refusal::Unavailable),
            Store::Postgres(store) => load_snapshot(store)
                .map(|(_, acl)| acl)
                .map_err(|refusal| refusal.on(store)),
        }
    }

    /// Applies `change` to the stored ACL and stores the result. A file
    /// store changes `base` (the ACL in force) when given, else what the
    /// file holds. Returns the ACL now stored, or `None` when the change
    /// changed nothing in a database.
    pub fn change(
        &self,
        base: Option<&Acl>,
        change: impl FnOnce(&mut Acl) -> Result<(), AclError>,
    ) -> Result<Option<Stored>, Refusal> {
        match self {
            Store::File(path) => {
                let mut acl = match base {
                    Some(acl) => acl.clone(),
                    None => self.load()?,
                };
                change(&mut acl).map_err(|e| Refusal::Invalid(e.to_string()))?;
                write_file(path, &acl)?;
                Ok(Some(Stored { acl, version: None }))
            }
            Store::Postgres(store) => self.in_transaction(store, |before| {
                let mut acl = before.build().map_err(Refusal::Invalid)?;
                change(&mut acl).map_err(|e| Refusal::Invalid(e.to_string()))?;
                Ok(Rows::of(&acl))
            }),
        }
    }

    /// Replaces the whole stored ACL with `acl` (an import), at once.
    /// Returns `None` when a database held that ACL already.
    pub fn replace(&self, acl: &Acl) -> Result<Option<Stored>, Refusal> {
        match self {
            Store::File(path) => write_file(path, acl).map(|()| {
                Some(Stored {
                    acl: acl.clone(),
                    version: None,
                })
            }),
            Store::Postgres(store) => self.in_transaction(store, |_| Ok(Rows::of(acl))),
        }
    }

    /// Runs [`pg::change`] on a connection of its own; the ACL of the
    /// rows now stored, and their version, when anything changed.
    fn in_transaction(
        &self,
        store: &PgStore,
        change: impl FnOnce(&Rows) -> Result<Rows, Refusal>,
    ) -> Result<Option<Stored>, Refusal> {
        let mut client = pg::connect(store).map_err(|e| Refusal::Unavailable(e).on(store))?;
        let (rows, version) = pg::change(&mut client, store, change).map_err(|e| e.on(store))?;
        let Some(version) = version else {
            return Ok(None);
        };
        let acl = rows.build().map_err(Refusal::Invalid)?;
        Ok(Some(Stored {
            acl,
            version: Some(version),
        }))
    }
}

/// What a change stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The ACL now stored.
    pub acl: Acl,
    /// A database's version counter after the change; `None` for a file.
    pub version: Option<i64>,
}

/// The flags that go with a database `--acl`, as the server and
/// `averyws acl` take them.
#[derive(Debug, Clone, Copy)]
pub struct StoreFlags<'a> {
    /// `--acl-password-file`
    pub password_file: Option<&'a Path>,
    /// `--acl-ca-file`
    pub ca_file: Option<&'a Path>,
    /// `--acl-schema`
    pub schema: &'a str,
    /// `--acl-max-rows`
    pub max_rows: usize,
}

/// Where `--acl` (with the store's flags) keeps the ACL: the development
/// ACL without it, a PostgreSQL store for a `postgres://` or
/// `postgresql://` URL, a file otherwise. The password is the URL's, else
/// the file's (its first line), else `PGPASSWORD`.
pub fn source(acl: Option<String>, flags: StoreFlags<'_>) -> Result<AclSource, String> {
    let Some(url) = acl.as_deref().filter(|acl| PgStore::is_url(acl)) else {
        if flags.password_file.is_some() || flags.ca_file.is_some() {
            return Err("--acl-password-file and --acl-ca-file need --acl postgres://...".into());
        }
        return Ok(acl.map_or(AclSource::Development, |path| AclSource::File(path.into())));
    };
    // An unencoded `@` in the password would make its tail the host, and
    // the host is logged.
    let authority = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    if authority.matches('@').count() > 1 {
        return Err("--acl: write an @ in the user or password as %40".into());
    }
    let password = match flags.password_file {
        Some(path) => Some(read_password(path)?),
        None => std::env::var("PGPASSWORD").ok(),
    };
    pg::check_schema(flags.schema)?;
    let store = PgStore {
        password,
        ca_file: flags.ca_file.map(Path::to_path_buf),
        schema: flags.schema.to_owned(),
        max_rows: flags.max_rows,
        ..PgStore::new(url)
    };
    let given: postgres::Config = url
        .parse()
        .map_err(|e| format!("--acl: not a PostgreSQL URL: {e}"))?;
    match (given.get_ssl_mode(), &store.ca_file) {
        (postgres::config::SslMode::Require, None) => {
            return Err("--acl: sslmode=require needs --acl-ca-file to verify the database".into())
        }
        (postgres::config::SslMode::Disable, Some(_)) => {
            return Err("--acl: sslmode=disable contradicts --acl-ca-file".into())
        }
        (_, Some(ca)) => {
            pg::tls_config(ca)?;
        }
        _ => {}
    }
    store.client_config()?;
    Ok(AclSource::Postgres(store))
}

/// The first line of a password file.
fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--acl-password-file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The store `source` names; `None` for the development ACL.
pub fn store_of(source: &AclSource) -> Option<Store<'_>> {
    match source {
        AclSource::Development => None,
        AclSource::File(path) => Some(Store::File(path)),
        AclSource::Postgres(store) => Some(Store::Postgres(store)),
    }
}

/// The ACL a node starts with from a database, and the version counter
/// it was read at. A database down at start is an error that says so,
/// unless the store has a cache file to start from (version `None`: the
/// follower loads the database as soon as it is back). Every snapshot
/// loaded is written to the cache file.
pub fn start(store: &PgStore) -> Result<(Acl, Option<i64>), String> {
    match load_snapshot(store).map_err(|refusal| refusal.on(store)) {
        Ok((version, acl)) => {
            log::info!("ACL store {}: version {version} loaded", store.describe());
            Ok((acl, Some(version)))
        }
        Err(Refusal::Invalid(why)) => Err(format!("ACL store {}: {why}", store.describe())),
        Err(Refusal::Unavailable(why)) => {
            let Some(cache) = &store.cache_file else {
                return Err(format!(
                    "cannot reach the ACL store {why} (pass --acl-cache FILE to start \
                     from the copy of the last ACL loaded)"
                ));
            };
            let acl = read_file(cache).map_err(|e| {
                format!("cannot reach the ACL store {why}, and its cache is unreadable: {e}")
            })?;
            log::warn!(
                "cannot reach the ACL store {why}; starting from the cached copy {} \
                 until it is back",
                cache.display()
            );
            Ok((acl, None))
        }
    }
}

/// Connects, reads a snapshot and builds its ACL (and writes the cache
/// file): the version and the ACL.
pub fn load_snapshot(store: &PgStore) -> Result<(i64, Acl), Refusal> {
    let mut client = pg::connect(store).map_err(Refusal::Unavailable)?;
    snapshot_on(&mut client, store)
}

/// [`load_snapshot`] on a connection already open.
pub fn snapshot_on(client: &mut postgres::Client, store: &PgStore) -> Result<(i64, Acl), Refusal> {
    let (version, rows) = pg::snapshot(client, store)?;
    let acl = rows.build().map_err(Refusal::Invalid)?;
    if let Some(cache) = &store.cache_file {
        if let Err(e) = write_file(cache, &acl) {
            log::warn!("ACL store: cannot write the cache: {e}");
        }
    }
    Ok((version, acl))
}

/// Applies a change to `acl`, as the engine's method of the op's name:
/// what an admin worker's ACL_COMMAND and `averyws acl` both do.
pub fn apply(
    acl: &mut Acl,
    op: AclOp,
    first: &[&str],
    second: &[&str],
    third: &[&str],
) -> Result<(), AclError> {
    match op {
        AclOp::Allow => acl.allow(first, second, third),
        AclOp::RemoveAllow => {
            acl.remove_allow(one(first), second, all_if_empty(third));
            Ok(())
        }
        AclOp::RemoveRole => {
            acl.remove_role(one(first));
            Ok(())
        }
        AclOp::RemoveResource => {
            acl.remove_resource(one(first));
            Ok(())
        }
        AclOp::AddUserRoles => acl.add_user_roles(one(first), second),
        AclOp::RemoveUserRoles => {
            acl.remove_user_roles(one(first), second);
            Ok(())
        }
        AclOp::AddRoleParents => acl.add_role_parents(one(first), second),
        AclOp::RemoveRoleParents => {
            acl.remove_role_parents(one(first), all_if_empty(second));
            Ok(())
        }
        // A question, not a change.
        AclOp::Explain => Ok(()),
    }
}

/// The one name of a list whose arity is exactly one (the codec or the
/// command line checked it); empty otherwise, which no engine call
/// accepts as a name.
pub fn one<'a>(names: &[&'a str]) -> &'a str {
    names.first().copied().unwrap_or_default()
}

/// No permission (or parent) listed means all of them.
fn all_if_empty<'n, 's>(names: &'n [&'s str]) -> Option<&'n [&'s str]> {
    (!names.is_empty()).then_some(names)
}

/// Reads and parses an ACL file; the error names the file and line.
pub fn read_file(path: &Path) -> Result<Acl, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    acl_file::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())
}

/// Writes `acl` to the file at `path` in the file format, atomically.
pub fn write_file(path: &Path, acl: &Acl) -> Result<(), Refusal> {
    let text = acl_file::serialize(acl);
    write_atomically(path, text.as_bytes())
        .map_err(|e| Refusal::Unavailable(format!("{}: {e}", path.display())))
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either
/// the old file or the new one, never a mix: `bytes` go to `PATH.tmp` in
/// the same directory, which is synced, renamed over `path`, and then the
/// directory is synced so the rename itself is durable. On error the
/// temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// `PATH.tmp`: the temporary file beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(password_file: Option<&'a Path>, schema: &'a str) -> StoreFlags<'a> {
        StoreFlags {
            password_file,
            ca_file: None,
            schema,
            max_rows: crate::config::DEFAULT_MAX_ACL_ROWS,
        }
    }

    #[test]
    fn every_remove_op_reaches_the_engine() {
        let mut acl = acl_file::parse(
            "role r inherits p\nallow r /a,/b connect,send\nuser u roles r,s\n",
            "t",
        )
        .expect("parses");
        apply(&mut acl, AclOp::RemoveAllow, &["r"], &["/a"], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveAllow, &["r"], &["/b"], &["send"]).expect("ok");
        apply(&mut acl, AclOp::RemoveUserRoles, &["u"], &["s"], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveRoleParents, &["r"], &[], &[]).expect("ok");
        assert_eq!(
            acl_file::serialize(&acl),
            acl_file::serialize(
                &acl_file::parse("allow r /b connect\nuser u roles r\n", "t").expect("parses")
            )
        );
        apply(&mut acl, AclOp::RemoveResource, &["/b"], &[], &[]).expect("ok");
        apply(&mut acl, AclOp::RemoveRole, &["r"], &[], &[]).expect("ok");
        assert_eq!(acl, Acl::new());
    }

    #[test]
    fn acl_names_a_file_or_a_database() {
        assert_eq!(
            source(None, flags(None, "averyws")),
            Ok(AclSource::Development)
        );
        assert_eq!(
            source(Some("x.acl".into()), flags(None, "averyws")),
            Ok(AclSource::File("x.acl".into()))
        );
        for url in [
            "postgres://u:secret@db:6432/acl",
            "postgresql://u@%2Frun%2Fpostgresql/acl",
            "postgresql:///acl?host=/run/postgresql&user=u",
        ] {
            let Ok(AclSource::Postgres(store)) = source(Some(url.into()), flags(None, "s1")) else {
                panic!("{url} is a store");
            };
            assert_eq!(store.schema, "s1");
            let shown = format!("{} {store:?}", store.describe());
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("acl (schema s1)"), "{shown}");
        }
        let refused = [
            (Some("postgres://u@h/db"), "Bad-Schema"),
            (Some("postgres://u@h/db"), "1st"),
            (Some("postgres://u@h:notaport/db"), "averyws"),
            (Some("postgres://u@h/db?sslmode=require"), "averyws"),
            (Some("postgres://u:p@ss@h/db"), "averyws"),
        ];
        for (acl, schema) in refused {
            let result = source(acl.map(str::to_owned), flags(None, schema));
            assert!(result.is_err(), "{acl:?} {schema}: {result:?}");
        }
        let file_with_password =
            source(Some("x.acl".into()), flags(Some(Path::new("p")), "averyws"));
        assert!(file_with_password.is_err());
    }

    #[test]
    fn the_password_file_gives_the_password_the_url_lacks() {
        let dir = std::env::temp_dir().join(format!("averyws-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let Ok(AclSource::Postgres(store)) = source(
            Some("postgres://u@h/db".into()),
            flags(Some(&file), "averyws"),
        ) else {
            panic!("a store");
        };
        let config = store.client_config().expect("config");
        assert_eq!(config.get_password(), Some(&b"from-file"[..]));
        let Ok(AclSource::Postgres(store)) = source(
            Some("postgres://u:in-url@h/db".into()),
            flags(Some(&file), "averyws"),
        ) else {
            panic!("a store");
        };
        let config = store.client_config().expect("config");
        assert_eq!(config.get_password(), Some(&b"in-url"[..]));
        let missing = source(
            Some("postgres://u@h/db".into()),
            flags(Some(&dir.join("no")), "a"),
        );
        assert!(missing.is_err_and(|e| e.contains("--acl-password-file")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
