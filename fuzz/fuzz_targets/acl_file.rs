//! Fuzz the ACL file reader and writer, `auth::acl_file`, and the engine
//! behind them.
//!
//! Guards against: panics and unbounded allocation or recursion on any
//! text (long lists, deep or diamond parent chains, attempted cycles);
//! round-trip failure: whenever `parse` accepts a text, `parse(serialize(
//! acl)) == acl` and serializing that again gives the same text, so what
//! the server persists is what it reloads; and an explanation that
//! disagrees with the decision it explains.
#![no_main]

use averyws::auth::acl::{ALL, GUEST};
use averyws::auth::acl_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(acl) = acl_file::parse(text, "fuzz.acl") else {
        return;
    };
    let written = acl_file::serialize(&acl);
    let reread = acl_file::parse(&written, "written.acl").expect("a serialized ACL parses");
    assert_eq!(reread, acl);
    assert_eq!(acl_file::serialize(&reread), written);

    // Ask about the names the file uses, and a longer name under each
    // resource so patterns get matched.
    let users: Vec<&str> = acl
        .users()
        .map(|(user, _)| user)
        .take(3)
        .chain([GUEST])
        .collect();
    let rules: Vec<(&str, &str)> = acl
        .grants()
        .map(|(role, resource, _)| (role, resource))
        .take(3)
        .collect();
    let resources: Vec<String> = rules
        .iter()
        .flat_map(|(_, resource)| [resource.to_string(), format!("{resource}x")])
        .collect();
    let permissions: Vec<&str> = acl
        .grants()
        .flat_map(|(_, _, permissions)| permissions.iter().map(String::as_str))
        .take(3)
        .chain([ALL])
        .collect();
    let extra: Vec<&str> = rules.iter().map(|(role, _)| *role).take(1).collect();
    for user in &users {
        for resource in &resources {
            for permission in &permissions {
                for extra in [&[][..], &extra] {
                    assert_eq!(
                        acl.explain(user, extra, resource, permission).allowed(),
                        acl.is_allowed_with(user, extra, resource, &[permission]),
                    );
                }
            }
        }
    }
});
