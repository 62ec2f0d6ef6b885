//! The PostgreSQL ACL store (docs/acl.md, "The PostgreSQL store") against
//! a real PostgreSQL and the real binary: two nodes share one database; a
//! grant made through one node's admin worker is honoured by the other, a
//! revocation made with `averyws acl` closes held clients on both, a bad
//! row is refused whole, and a database stopped and started again in the
//! middle loses nothing. The `averyws acl` commands are checked on a file
//! store and a database store alike.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use averyws::auth::acl_file;
use averyws::backend::message::{AclOp, AclStatus};
use common::admin::{done, Admin, Reply};
use common::pg::{self, Cluster};
use common::scrape::scrape;
use common::{assert_echo, free_endpoint, read_close, upgrade_status, utf8, Server, TempDir, TEXT};

/// The bound for a change to reach every node.
const PROPAGATION: Duration = Duration::from_secs(3);
/// Guests may echo on /echo and read /metrics; /more (an echo route too)
/// is closed until a grant opens it.
const ACL: &str = "allow guest /echo connect\nallow guest echo send\nallow guest metrics read\n";
const NODE_KEYS: &str = "admin:0123456789abcdef0123456789abcdef\n";
const NO_NAMES: &[&str] = &[];

/// Runs `averyws acl ARGS`.
fn acl_command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_averyws"))
        .arg("acl")
        .args(args)
        .output()
        .expect("run averyws acl")
}

/// Runs `averyws acl ARGS` and expects exit status 0; returns stdout.
fn acl_ok(args: &[&str]) -> String {
    let out = acl_command(args);
    assert!(
        out.status.success(),
        "averyws acl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Loads `text` into the store `schema` of `url` with `averyws acl import`.
fn import(url: &str, schema: &str, text: &str) {
    let dir = TempDir::new();
    let file = dir.path().join("import.acl");
    std::fs::write(&file, text).expect("write");
    acl_ok(&["import", "--acl", url, "--acl-schema", schema, &utf8(&file)]);
}

/// A node following the store, with /more routed to echo; with
/// `endpoint`, an admin worker may change the ACL through it.
fn node(url: &str, schema: &str, endpoint: Option<&str>, extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let keys = dir.path().join("node.keys");
    std::fs::write(&keys, NODE_KEYS).expect("write keys");
    let cert = dir.path().join("dev-cert.pem");
    let (keys, cert_out) = (utf8(&keys), utf8(&cert));
    let mut args = vec![
        "--dev-cert-out",
        &cert_out,
        "--acl",
        url,
        "--acl-schema",
        schema,
        "--route",
        "/echo=echo",
        "--route",
        "/more=echo",
    ];
    if let Some(endpoint) = endpoint {
        args.extend([
            "--backend-bind",
            endpoint,
            "--backend-key-file",
            &keys,
            "--backend-admin-key",
            "admin",
        ]);
    }
    args.extend_from_slice(extra);
    Server::start_in(dir, cert, &args)
}

/// A cluster, and a schema `name` of this test's own holding [`ACL`].
fn fresh_store(name: &str) -> Option<(Cluster, String)> {
    let cluster = Cluster::shared_or_own()?;
    let schema = pg::schema(name);
    import(&cluster.url, &schema, ACL);
    Some((cluster, schema))
}

/// Waits until an upgrade to `path` gets `want`, for at most `limit`.
fn wait_status(server: &Server, path: &str, want: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = upgrade_status(server, path);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: still {got}, not {want}, after {limit:?}: {:#?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the process-wide sample `name` in /metrics.
fn sample(server: &Server, name: &str) -> u64 {
    let (status, _, body) = scrape(server, None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .expect("a number")
}

#[test]
fn a_grant_on_one_node_reaches_the_other_and_a_revocation_closes_clients_on_both() {
    let Some((cluster, schema)) = fresh_store("share") else {
        return;
    };
    let endpoint = free_endpoint();
    let a = node(&cluster.url, &schema, Some(&endpoint), &[]);
    let b = node(&cluster.url, &schema, None, &[]);
    assert_eq!(
        (upgrade_status(&a, "/more"), upgrade_status(&b, "/more")),
        (401, 401)
    );

    // A grant through node A's admin worker: stored, then followed by B.
    let admin = Admin::start(&endpoint, NODE_KEYS);
    let granted = admin.ask(AclOp::Allow, [&["guest"], &["/more"], &["connect"]]);
    assert_eq!(granted, done());
    assert_eq!(upgrade_status(&a, "/more"), 101, "in force when answered");
    let by_follower = a.wait_log("ACL store: version", PROPAGATION).is_some();
    let by_itself = a
        .log()
        .iter()
        .any(|line| line.contains("follower has not loaded"));
    assert!(by_follower && !by_itself, "A's follower put it in force");
    wait_status(&b, "/more", 101, PROPAGATION);
    let exported = acl_ok(&["export", "--acl", &cluster.url, "--acl-schema", &schema]);
    assert!(exported.contains("allow guest /more connect"), "{exported}");

    // A revocation made with `averyws acl`, on neither node: both close
    // their held clients with 1008.
    let mut on_a = common::raw_ws(&a, "/more");
    let mut on_b = common::raw_ws(&b, "/more");
    assert_echo(&mut on_a, TEXT, b"a");
    assert_echo(&mut on_b, TEXT, b"b");
    let started = Instant::now();
    let store = ["--acl", &cluster.url, "--acl-schema", &schema];
    acl_ok(&[&["remove-allow"], &store[..], &["guest", "/more"]].concat());
    assert_eq!(read_close(&mut on_a), Some(1008));
    assert_eq!(read_close(&mut on_b), Some(1008));
    assert!(started.elapsed() < PROPAGATION, "{:?}", started.elapsed());
    assert_eq!(
        (upgrade_status(&a, "/more"), upgrade_status(&b, "/more")),
        (401, 401)
    );
    assert_eq!(sample(&b, "averyws_acl_store_up"), 1);
    assert!(sample(&b, "averyws_acl_store_loads_total") >= 2);
    let removed = admin.ask(AclOp::RemoveRole, [&["nobody"], NO_NAMES, NO_NAMES]);
    assert_eq!(removed, done(), "a change that changes nothing is done");
}

#[test]
fn a_locked_database_holds_an_admin_change_but_never_the_reactor() {
    let Some((cluster, schema)) = fresh_store("locked") else {
        return;
    };
    let endpoint = free_endpoint();
    let server = node(&cluster.url, &schema, Some(&endpoint), &[]);
    let admin = Admin::start(&endpoint, NODE_KEYS);
    let mut held = common::raw_ws(&server, "/echo");
    assert_echo(&mut held, TEXT, b"before");

    // Someone holds the version row's table: every change must wait.
    let mut sql = cluster.client();
    let mut lock = sql.transaction().expect("begin");
    lock.batch_execute(&format!(
        "LOCK TABLE {schema}.acl_version IN EXCLUSIVE MODE"
    ))
    .expect("lock");
    let asked = std::thread::spawn(move || {
        let reply = admin.ask(AclOp::Allow, [&["guest"], &["/more"], &["connect"]]);
        (reply, admin)
    });
    // The change waits on the lock (PostgreSQL says so); the reactor
    // serves meanwhile.
    let mut watch = cluster.client();
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'averyws' AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no change waits for the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!asked.is_finished(), "the change waits for the lock");
    assert_echo(&mut held, TEXT, b"while a change waits");
    assert_eq!(upgrade_status(&server, "/echo"), 101);
    assert_eq!(upgrade_status(&server, "/more"), 401);

    lock.commit().expect("unlock");
    let (reply, _admin) = asked.join().expect("the admin thread");
    assert_eq!(reply, done());
    assert_eq!(
        upgrade_status(&server, "/more"),
        101,
        "in force when answered"
    );
}

#[test]
fn a_change_by_hand_is_followed_and_a_bad_row_is_refused_whole() {
    let Some((cluster, schema)) = fresh_store("by_hand") else {
        return;
    };
    let server = node(&cluster.url, &schema, None, &[]);
    let mut sql = cluster.client();
    sql.batch_execute(&format!(
        "INSERT INTO {schema}.grants VALUES ('guest', '/more', 'connect')"
    ))
    .expect("insert");
    wait_status(&server, "/more", 101, PROPAGATION);
    let mut held = common::raw_ws(&server, "/more");

    // One good row and one bad row in one transaction: all refused, the
    // ACL in force kept, and it says so.
    sql.batch_execute(&format!(
        "BEGIN;
         DELETE FROM {schema}.grants WHERE resource = '/more';
         INSERT INTO {schema}.grants VALUES ('guest', 'bad name', 'connect');
         COMMIT;"
    ))
    .expect("bad row");
    assert!(server
        .wait_log("refused, keeping the ACL in force", PROPAGATION)
        .is_some_and(|line| line.contains("bad name")));
    assert_echo(&mut held, TEXT, b"still here");
    assert_eq!(upgrade_status(&server, "/more"), 101);
    assert_eq!(sample(&server, "averyws_acl_store_rejected_total"), 1);
    // The bad row blocks a change made on top of it, and says why.
    let store = ["--acl", &cluster.url, "--acl-schema", &schema];
    let out = acl_command(&[&["allow"], &store[..], &["guest", "/x", "connect"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad name"));
    // Repaired by an import, which replaces everything at once.
    import(&cluster.url, &schema, ACL);
    assert_eq!(read_close(&mut held), Some(1008));

    // A store over a node's row cap is refused like a bad row, not taken
    // for a lost database: ACL (3 rows) fits in 3, one more does not.
    let capped = node(&cluster.url, &schema, None, &["--acl-max-rows", "3"]);
    sql.batch_execute(&format!(
        "INSERT INTO {schema}.grants VALUES ('guest', '/more', 'connect')"
    ))
    .expect("insert");
    wait_status(&server, "/more", 101, PROPAGATION);
    assert!(capped
        .wait_log("more than 3 rows", PROPAGATION)
        .is_some_and(|line| line.contains("keeping the ACL in force")));
    assert_eq!(upgrade_status(&capped, "/more"), 401);
    assert_eq!(sample(&capped, "averyws_acl_store_rejected_total"), 1);
    assert_eq!(sample(&capped, "averyws_acl_store_up"), 1);
    // `averyws acl` holds a change to the same cap: 4 rows, and no fifth.
    let capped_store = [&store[..], &["--acl-max-rows", "4"]].concat();
    let out = acl_command(&[&["allow"], &capped_store[..], &["guest", "/y", "connect"]].concat());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 4 rows"));
}

#[test]
fn postgres_stopped_and_started_again_loses_nothing() {
    let Some(cluster) = Cluster::own() else {
        return;
    };
    let schema = pg::schema("restart");
    import(
        &cluster.url,
        &schema,
        &format!("{ACL}allow guest /more connect\n"),
    );
    let dir = TempDir::new();
    let cache = dir.path().join("cache.acl");
    let endpoint = free_endpoint();
    let server = node(
        &cluster.url,
        &schema,
        Some(&endpoint),
        &["--acl-cache", &utf8(&cache)],
    );
    let admin = Admin::start(&endpoint, NODE_KEYS);
    let mut held = common::raw_ws(&server, "/more");
    assert_echo(&mut held, TEXT, b"before");

    cluster.stop();
    assert!(server
        .wait_log(
            "serving on the ACL loaded last (version",
            Duration::from_secs(10)
        )
        .is_some());
    assert_eq!(sample(&server, "averyws_acl_store_up"), 0);
    assert!(sample(&server, "averyws_acl_store_failures_total") >= 1);
    // Serving on: the held client, a new client, the closed path.
    assert_echo(&mut held, TEXT, b"while down");
    assert_eq!(upgrade_status(&server, "/more"), 101);
    let store = ["--acl", &cluster.url, "--acl-schema", &schema];
    let out = acl_command(&[&["remove-allow"], &store[..], &["guest", "/more"]].concat());
    assert_eq!(out.status.code(), Some(2), "the database is down");
    let Reply::Result { status, detail, .. } =
        admin.ask(AclOp::RemoveAllow, [&["guest"], &["/more"], NO_NAMES])
    else {
        panic!("an ACL_RESULT");
    };
    assert_eq!(status, AclStatus::NotPersisted, "{detail}");
    assert!(detail.contains("postgres://averyws@127.0.0.1"), "{detail}");
    assert_eq!(upgrade_status(&server, "/more"), 101, "nothing changed");
    let cached = std::fs::read_to_string(&cache).expect("the cache file");
    assert!(cached.contains("allow guest /more connect"), "{cached}");

    // Back, and revoked at once, most likely before the node reconnects
    // (it backs off; then the version counter read on reconnect catches
    // it, where no notification can): whichever way, it must catch up.
    cluster.restart();
    acl_ok(&[&["remove-allow"], &store[..], &["guest", "/more"]].concat());
    assert_eq!(read_close(&mut held), Some(1008));
    assert_eq!(upgrade_status(&server, "/more"), 401);
    assert_eq!(sample(&server, "averyws_acl_store_up"), 1);
    assert!(server.wait_log("): connected", PROPAGATION).is_some());
    // The same store over the cluster's unix socket.
    let socket = cluster.socket_url();
    let exported = acl_ok(&["export", "--acl", &socket, "--acl-schema", &schema]);
    assert!(exported.contains("allow guest echo send"), "{exported}");
    assert!(!exported.contains("/more"), "{exported}");
}

#[test]
fn with_a_ca_file_the_database_is_reached_over_verified_tls() {
    let Some(cluster) = Cluster::own() else {
        return;
    };
    let schema = pg::schema("tls");
    let ca = utf8(&cluster.ca_file());
    let store = [
        "--acl",
        &cluster.url,
        "--acl-schema",
        &schema,
        "--acl-ca-file",
        &ca,
    ];
    acl_ok(&[&["allow"], &store[..], &["guest", "/echo", "connect"]].concat());
    let mut sql = cluster.client();
    let before: std::time::SystemTime = sql.query_one("SELECT now()", &[]).expect("now").get(0);
    let server = node(&cluster.url, &schema, None, &["--acl-ca-file", &ca]);
    assert_eq!(upgrade_status(&server, "/echo"), 101);
    // The node's own connection (the follower's, once it is up) is TLS.
    let deadline = Instant::now() + PROPAGATION;
    let (all_tls, count) = loop {
        let row = sql
            .query_one(
                "SELECT bool_and(ssl), count(*) FROM pg_stat_ssl JOIN pg_stat_activity
                 USING (pid) WHERE application_name = 'averyws' AND backend_start > $1",
                &[&before],
            )
            .expect("pg_stat_ssl");
        let (all_tls, count): (Option<bool>, i64) = (row.get(0), row.get(1));
        if count > 0 || Instant::now() > deadline {
            break (all_tls, count);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(count >= 1, "the node's follower is connected");
    assert_eq!(all_tls, Some(true));

    // A certificate the CA file did not issue is refused, and so is a URL
    // asking for TLS with nothing to verify it against.
    let dir = TempDir::new();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, common::certs::generate_pair().cert).expect("write");
    let other = utf8(&other);
    let wrong = [
        "--acl",
        &cluster.url,
        "--acl-schema",
        &schema,
        "--acl-ca-file",
        &other,
    ];
    let out = acl_command(&[&["export"], &wrong[..]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    let require = format!("{}?sslmode=require", cluster.url);
    let out = acl_command(&["export", "--acl", &require, "--acl-schema", &schema]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --acl-ca-file"));
}

#[test]
fn a_database_down_at_start_is_an_error_unless_a_cache_is_given() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://averyws:hunter2-secret@127.0.0.1:{port}/acl");
    let out = Command::new(env!("CARGO_BIN_EXE_averyws"))
        .args(["--acl", &url, "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot reach the ACL store"), "{stderr}");
    assert!(stderr.contains("--acl-cache"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never logged: {stderr}"
    );

    let dir = TempDir::new();
    let cache = dir.path().join("cache.acl");
    std::fs::write(&cache, format!("{ACL}allow guest /more connect\n")).expect("write");
    let server = node(&url, "averyws", None, &["--acl-cache", &utf8(&cache)]);
    assert!(server
        .log()
        .iter()
        .any(|line| line.contains("starting from the cached copy")));
    assert!(server.log().iter().all(|line| !line.contains("hunter2")));
    assert_eq!(upgrade_status(&server, "/more"), 101);
    assert_eq!(sample(&server, "averyws_acl_store_up"), 0);
}

#[test]
fn the_acl_commands_work_on_a_file_and_on_a_database_alike() {
    let dir = TempDir::new();
    let file = utf8(&dir.path().join("store.acl"));
    std::fs::write(&file, ACL).expect("write");
    let cluster = Cluster::shared_or_own();
    let schema = pg::schema("commands");
    if let Some(cluster) = &cluster {
        import(&cluster.url, &schema, ACL);
    }
    let mut stores = vec![vec!["--acl", file.as_str()]];
    if let Some(cluster) = &cluster {
        stores.push(vec!["--acl", &cluster.url, "--acl-schema", &schema]);
    }
    for store in &stores {
        let run = |words: &[&str]| acl_command(&[&words[..1], &store[..], &words[1..]].concat());
        let ok = |words: &[&str]| {
            let out = run(words);
            assert!(out.status.success(), "{words:?} on {store:?}: {out:?}");
        };
        ok(&["allow", "member,mod", "chat/*", "subscribe,publish"]);
        ok(&["add-role-parents", "mod", "member"]);
        ok(&["add-user-roles", "alice", "mod"]);
        let cycle = run(&["add-role-parents", "member", "mod"]);
        assert_eq!(cycle.status.code(), Some(1), "{cycle:?}");
        let check = run(&["check", "alice", "chat/lobby", "publish"]);
        assert_eq!(check.status.code(), Some(0), "{check:?}");
        ok(&["remove-allow", "mod", "chat/*", "publish"]);
        ok(&["remove-user-roles", "alice", "mod"]);
        ok(&["remove-role-parents", "mod"]);
        ok(&["remove-resource", "chat/*"]);
        ok(&["remove-role", "member"]);
        let check = run(&["check", "alice", "chat/lobby", "subscribe"]);
        assert_eq!(check.status.code(), Some(1), "{check:?}");
        let exported = run(&["export"]);
        let text = String::from_utf8(exported.stdout).expect("UTF-8");
        let canonical = |text: &str| {
            acl_file::parse(text, "t")
                .map(|acl| acl_file::serialize(&acl))
                .expect("parses")
        };
        assert_eq!(canonical(&text), canonical(ACL), "back where it started");
        // An import of a broken file changes nothing and names the line.
        let broken = dir.path().join("broken.acl");
        std::fs::write(&broken, "allow guest /a connect\nallow guest\n").expect("write");
        let out = run(&["import", &utf8(&broken)]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("broken.acl:2"));
        let after = String::from_utf8(run(&["export"]).stdout).expect("UTF-8");
        assert_eq!(after, text, "nothing imported");
        let usage = run(&["remove-role", "a,b"]);
        assert_eq!(usage.status.code(), Some(2));
    }
    assert!(Path::new(&format!("{file}.tmp")).metadata().is_err());
}

#[test]
fn a_schema_migrated_by_a_newer_averyws_is_refused() {
    let Some(cluster) = Cluster::shared_or_own() else {
        return;
    };
    let schema = pg::schema("newer");
    let mut sql = cluster.client();
    sql.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.schema_version (version integer NOT NULL);
         INSERT INTO {schema}.schema_version VALUES (2);"
    ))
    .expect("a newer schema");
    let out = acl_command(&["export", "--acl", &cluster.url, "--acl-schema", &schema]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is at version 2; this averyws knows up to 1"),
        "{stderr}"
    );
    let long = "x".repeat(257);
    let store = ["--acl", &cluster.url, "--acl-schema", &pg::schema("long")];
    let refused = acl_command(&[&["allow"], &store[..], &["guest", &long, "connect"]].concat());
    assert_eq!(refused.status.code(), Some(1), "the engine's cap first");
    let inserted = cluster.client().batch_execute(&format!(
        "INSERT INTO {}.grants VALUES ('guest', '{long}', 'connect')",
        pg::schema("long")
    ));
    assert!(inserted.is_err(), "the table's cap too");
}
