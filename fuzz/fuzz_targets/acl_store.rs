//! Fuzz what the ACL stores read: a snapshot's rows (`acl_store::rows`),
//! which come from tables anyone with grants may write, and the `--acl`
//! value with its schema (`acl_store::source`).
//!
//! Guards against: panics on any rows or any `--acl` text; a snapshot
//! the engine accepts that does not come back as the same rows
//! (`Rows::of(build(rows)) == rows`, so what a node loads is what was
//! stored); a delta that does not turn one snapshot into the other; and a
//! password in the URL that shows in the store's name.
#![no_main]

use averyws::acl_store::{self, rows::Rows};
use averyws::config::AclSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((first, rest)) = text.split_once('\n') else {
        return;
    };
    if first == "url" {
        let (url, schema) = rest.split_once('\n').unwrap_or((rest, "averyws"));
        if let Ok(AclSource::Postgres(store)) = acl_store::source(
            Some(url.into()),
            acl_store::StoreFlags {
                password_file: None,
                ca_file: None,
                schema,
                max_rows: averyws::config::DEFAULT_MAX_ACL_ROWS,
            },
        ) {
            let config = store.client_config().expect("checked by source");
            let password = config.get_password().map(String::from_utf8_lossy);
            // An alphanumeric password can only show inside one field of
            // the name (they are all set apart by punctuation): unless one
            // of them holds it, it must not show at all.
            if let Some(password) = password.filter(|p| p.bytes().all(|b| b.is_ascii_alphanumeric())) {
                let mut fields: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .map(|host| match host {
                        postgres::config::Host::Tcp(name) => name.clone(),
                        postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .chain(config.get_ports().iter().map(u16::to_string))
                    .collect();
                fields.extend(["postgres", "schema", &store.schema].map(str::to_owned));
                fields.extend(config.get_user().map(str::to_owned));
                fields.extend(config.get_dbname().map(str::to_owned));
                let shown = store.describe();
                if !password.is_empty() && !fields.iter().any(|field| field.contains(&*password)) {
                    assert!(!shown.contains(&*password), "{shown}");
                }
            }
        }
        return;
    }
    // Two snapshots, one row per line: `g ROLE RESOURCE PERMISSION`,
    // `p ROLE PARENT`, `u USER ROLE`, fields split on tabs so any name
    // (spaces included) can be tried; `--` starts the second snapshot.
    let (one, two) = text.split_once("\n--\n").unwrap_or((text, ""));
    let (before, after) = (rows(one), rows(two));
    if let Ok(acl) = before.build() {
        assert_eq!(Rows::of(&acl), before);
    }
    let delta = before.delta(&after);
    let mut applied = before.clone();
    for row in &delta.delete.grants {
        assert!(applied.grants.remove(row));
    }
    for row in &delta.delete.parents {
        assert!(applied.parents.remove(row));
    }
    for row in &delta.delete.users {
        assert!(applied.users.remove(row));
    }
    applied.grants.extend(delta.insert.grants.iter().cloned());
    applied.parents.extend(delta.insert.parents.iter().cloned());
    applied.users.extend(delta.insert.users.iter().cloned());
    assert_eq!(applied, after);
});

fn rows(text: &str) -> Rows {
    let mut rows = Rows::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            ["g", role, resource, permission] => {
                rows.grants
                    .insert((role.into(), resource.into(), permission.into()));
            }
            ["p", role, parent] => {
                rows.parents.insert((role.into(), parent.into()));
            }
            ["u", user, role] => {
                rows.users.insert((user.into(), role.into()));
            }
            _ => {}
        }
    }
    rows
}
