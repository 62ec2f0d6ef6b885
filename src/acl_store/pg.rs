//! The PostgreSQL ACL store's SQL, on the synchronous `postgres` client:
//! the schema and its migrations, a consistent snapshot, and changes made
//! in one transaction each. The layout is in docs/acl.md, "The PostgreSQL
//! store".
//!
//! Every change to the three tables, by averyws or by hand in `psql`,
//! fires a statement trigger that bumps the version counter and notifies
//! the channel `SCHEMA_acl` at commit; nodes LISTEN there
//! ([`super::follow`]) and read the version when they reconnect, so a
//! change made while a node was away is caught too.

use std::path::Path;
use std::sync::Arc;

use postgres::{Client, GenericClient, IsolationLevel, NoTls, Transaction};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::rows::{columns2, columns3, Delta, Rows};
use crate::config::PgStore;

/// The version counter as every query reads it: `bigint` whatever the
/// column's type in a schema made by hand, and -1 for a NULL.
const VERSION: &str = "coalesce(version::bigint, -1)";

/// The schema version this build creates and reads. A store at a newer
/// version was migrated by a newer averyws and is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Connects to `store` and makes sure its schema is there and current.
/// The error does not name the store: the caller does.
pub fn connect(store: &PgStore) -> Result<Client, String> {
    let config = store.client_config()?;
    let connected = match &store.ca_file {
        None => config.connect(NoTls),
        Some(ca) => config.connect(MakeRustlsConnect::new(tls_config(ca)?)),
    };
    let mut client = connected.map_err(|e| reason(&e))?;
    migrate(&mut client, &store.schema)?;
    Ok(client)
}

/// The TLS client configuration that trusts the CA certificates of the
/// PEM file `ca` (rustls with the ring provider, as the server's TLS).
pub fn tls_config(ca: &Path) -> Result<ClientConfig, String> {
    let unreadable = |e: &dyn std::fmt::Display| format!("--acl-ca-file {}: {e}", ca.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreadable(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What went wrong with the database, in one line: the server's message
/// when it sent one, else the client's error (connection refused...).
pub fn reason(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    }
}

/// The channel every change notifies.
pub fn channel(schema: &str) -> String {
    format!("{schema}_acl")
}

/// Creates the schema on first use and applies the migrations it lacks,
/// under an advisory lock so nodes that start together do it once.
fn migrate(client: &mut Client, schema: &str) -> Result<(), String> {
    let failed = |e: postgres::Error| format!("schema {schema}: {}", reason(&e));
    let mut tx = client.transaction().map_err(failed)?;
    // `IF NOT EXISTS` notices (a schema made by hand) are not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&schema])
        .map_err(failed)?;
    // Created only when missing: a node that only follows the store needs
    // no right to create anything.
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{}.schema_version", quoted(schema))],
        )
        .map_err(failed)?
        .get(0);
    if !exists {
        let q = quoted(schema);
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q};
             CREATE TABLE {q}.schema_version (version integer NOT NULL);"
        ))
        .map_err(failed)?;
    }
    let found: Option<i32> = tx
        .query_opt(
            &format!(
                "SELECT max(version)::integer FROM {}.schema_version",
                quoted(schema)
            ),
            &[],
        )
        .map_err(failed)?
        .and_then(|row| row.get(0));
    match found.unwrap_or(0) {
        0 => {
            tx.batch_execute(&version_1(schema)).map_err(failed)?;
            log::info!("ACL store: created schema {schema} at version {SCHEMA_VERSION}");
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(format!(
                "schema {schema} is at version {newer}; this averyws knows up to \
                 {SCHEMA_VERSION}: upgrade averyws"
            ))
        }
    }
    tx.commit().map_err(failed)
}

/// Migration 1: the version counter, the three relations (names 1 to 256
/// bytes, as the engine allows, so no row can be larger), and the trigger
/// that counts and notifies every change to them.
fn version_1(schema: &str) -> String {
    let (s, channel) = (quoted(schema), channel(schema));
    let name = |column: &str| {
        format!("{column} text NOT NULL CHECK (octet_length({column}) BETWEEN 1 AND 256)")
    };
    let (role, resource, permission) = (name("role"), name("resource"), name("permission"));
    let (parent, username) = (name("parent"), name("username"));
    let mut sql = format!(
        "CREATE TABLE {s}.acl_version (
             single boolean PRIMARY KEY DEFAULT true CHECK (single),
             version bigint NOT NULL);
         INSERT INTO {s}.acl_version VALUES (true, 0);
         CREATE TABLE {s}.grants (
             {role}, {resource}, {permission},
             PRIMARY KEY (role, resource, permission));
         CREATE TABLE {s}.role_parents (
             {role}, {parent},
             PRIMARY KEY (role, parent));
         CREATE TABLE {s}.user_roles (
             {username}, {role},
             PRIMARY KEY (username, role));
         CREATE FUNCTION {s}.acl_changed() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             UPDATE {s}.acl_version SET version = version + 1;
             PERFORM pg_notify('{channel}', '');
             RETURN NULL;
         END $$;
         INSERT INTO {s}.schema_version VALUES (1);"
    );
    for table in ["grants", "role_parents", "user_roles"] {
        sql.push_str(&format!(
            "CREATE TRIGGER changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
             ON {s}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {s}.acl_changed();"
        ));
    }
    sql
}

/// The store's version counter: it grows with every change.
pub fn version(client: &mut Client, schema: &str) -> Result<i64, String> {
    read_version(client, schema).map_err(|e| reason(&e))
}

/// The version counter, on a connection or inside a transaction.
fn read_version(client: &mut impl GenericClient, schema: &str) -> Result<i64, postgres::Error> {
    let select = format!("SELECT {VERSION} FROM {}.acl_version", quoted(schema));
    Ok(client.query_one(&select, &[])?.get(0))
}

/// The version and every row, read in one repeatable-read transaction so
/// they belong together. More than `max_rows` rows is refused, as a bad
/// row is.
pub fn snapshot(client: &mut Client, store: &PgStore) -> Result<(i64, Rows), Refusal> {
    let failed = |e: postgres::Error| Refusal::Unavailable(reason(&e));
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(failed)?;
    let version = read_version(&mut tx, &store.schema).map_err(failed)?;
    let rows = read_rows(&mut tx, store)?;
    tx.commit().map_err(failed)?;
    Ok((version, rows))
}

/// Every row, at most `max_rows` of them.
fn read_rows(tx: &mut Transaction<'_>, store: &PgStore) -> Result<Rows, Refusal> {
    let s = &quoted(&store.schema);
    // One more than the cap tells a full store from one over it.
    let limit = i64::try_from(store.max_rows)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let select = |tx: &mut Transaction<'_>, columns: &[&str], table: &str| {
        // Read as text whatever the column's type, a NULL as "" (which the
        // engine refuses): a table made by hand cannot make this panic.
        let columns: Vec<String> = columns
            .iter()
            .map(|column| format!("coalesce({column}::text, '')"))
            .collect();
        tx.query(
            &format!("SELECT {} FROM {s}.{table} LIMIT $1", columns.join(", ")),
            &[&limit],
        )
        .map_err(|e| Refusal::Unavailable(reason(&e)))
    };
    let mut rows = Rows::default();
    for row in select(tx, &["role", "resource", "permission"], "grants")? {
        rows.grants.insert((row.get(0), row.get(1), row.get(2)));
    }
    for row in select(tx, &["role", "parent"], "role_parents")? {
        rows.parents.insert((row.get(0), row.get(1)));
    }
    for row in select(tx, &["username", "role"], "user_roles")? {
        rows.users.insert((row.get(0), row.get(1)));
    }
    if rows.len() > store.max_rows {
        return Err(Refusal::Invalid(format!(
            "more than {} rows (--acl-max-rows): refused",
            store.max_rows
        )));
    }
    Ok(rows)
}

/// Changes the store in one transaction: `change` gets the rows in force
/// (read under a lock on the version row, so concurrent changes queue and
/// none is lost) and returns the rows wanted, or why not; only the rows
/// that differ are written. Returns the rows now stored and, when
/// anything changed, the version counter the change committed. The
/// transaction commits whole or not at all.
pub fn change(
    client: &mut Client,
    store: &PgStore,
    change: impl FnOnce(&Rows) -> Result<Rows, Refusal>,
) -> Result<(Rows, Option<i64>), Refusal> {
    let failed = |e: postgres::Error| Refusal::Unavailable(reason(&e));
    let mut tx = client.transaction().map_err(failed)?;
    tx.execute(
        &format!(
            "SELECT {VERSION} FROM {}.acl_version FOR UPDATE",
            quoted(&store.schema)
        ),
        &[],
    )
    .map_err(failed)?;
    let before = read_rows(&mut tx, store)?;
    let after = change(&before)?;
    if after.len() > store.max_rows {
        return Err(Refusal::Invalid(format!(
            "the ACL would have more than {} rows (--acl-max-rows)",
            store.max_rows
        )));
    }
    let delta = before.delta(&after);
    if delta.is_empty() {
        return Ok((after, None));
    }
    write(&mut tx, &quoted(&store.schema), &delta).map_err(failed)?;
    // The triggers have counted the writes: this is the version they made.
    let version = read_version(&mut tx, &store.schema).map_err(failed)?;
    tx.commit().map_err(failed)?;
    Ok((after, Some(version)))
}

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The change itself is wrong (a bad name, a cycle, a bad file): the
    /// store is untouched.
    Invalid(String),
    /// The database could not be reached or refused the transaction: the
    /// store is untouched.
    Unavailable(String),
}

impl Refusal {
    /// The refusal with a database error's reason prefixed by the
    /// store's name (a refused change names itself).
    pub fn on(self, store: &PgStore) -> Refusal {
        match self {
            Refusal::Unavailable(why) => {
                Refusal::Unavailable(format!("{}: {why}", store.describe()))
            }
            invalid => invalid,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(why) | Refusal::Unavailable(why) => f.write_str(why),
        }
    }
}

/// Deletes and inserts `delta`'s rows, one statement per table and kind.
fn write(tx: &mut Transaction<'_>, s: &str, delta: &Delta) -> Result<(), postgres::Error> {
    let [a, b, c] = columns3(&delta.delete.grants);
    if !a.is_empty() {
        tx.execute(
            &format!(
                "DELETE FROM {s}.grants WHERE (role, resource, permission) IN
                 (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
            ),
            &[&a, &b, &c],
        )?;
    }
    let [a, b, c] = columns3(&delta.insert.grants);
    if !a.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {s}.grants SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
            ),
            &[&a, &b, &c],
        )?;
    }
    let tables2 = [
        (
            "role_parents",
            "role, parent",
            &delta.delete.parents,
            &delta.insert.parents,
        ),
        (
            "user_roles",
            "username, role",
            &delta.delete.users,
            &delta.insert.users,
        ),
    ];
    for (table, key, delete, insert) in tables2 {
        let [a, b] = columns2(delete);
        if !a.is_empty() {
            tx.execute(
                &format!(
                    "DELETE FROM {s}.{table} WHERE ({key}) IN
                     (SELECT * FROM unnest($1::text[], $2::text[]))"
                ),
                &[&a, &b],
            )?;
        }
        let [a, b] = columns2(insert);
        if !a.is_empty() {
            tx.execute(
                &format!("INSERT INTO {s}.{table} SELECT * FROM unnest($1::text[], $2::text[])"),
                &[&a, &b],
            )?;
        }
    }
    Ok(())
}

/// The schema as a quoted identifier: [`check_schema`] let through only
/// lowercase letters, digits and `_`, so quoting needs no escape, and a
/// reserved word (`user`, `order`) is a name like any other.
fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Refuses a schema name that is not a plain lowercase identifier: it is
/// written into statements, so it must need no quoting.
pub fn check_schema(schema: &str) -> Result<(), String> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    // 63 bytes is PostgreSQL's identifier limit; 4 are left for "_acl".
    if first_ok && rest_ok && schema.len() <= 59 {
        Ok(())
    } else {
        Err(format!(
            "--acl-schema {schema:?}: want 1 to 59 of a-z, 0-9 and _, not starting with a digit"
        ))
    }
}
