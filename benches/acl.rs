//! ACL decision micro-benchmark: `is_allowed` on a store of 10,000 users
//! and 1,000 roles in parent chains ten deep, with the decision cache and
//! without it, as the reactor asks once per upgrade and once per message.
//! And the PostgreSQL store's side of a change on that store (35,000
//! rows): a snapshot's rows built into the ACL (each node, each change),
//! an ACL turned into rows, and the delta of one change (the writer).

use std::hint::black_box;
use std::time::Duration;

use averyws::acl_store::rows::Rows;
use averyws::auth::acl::Acl;
use criterion::{criterion_group, criterion_main, Criterion};

const ROLES: usize = 1_000;
const USERS: usize = 10_000;
/// Roles per parent chain: r0 ← r1 ← … ← r9, r10 ← … ← r19, …
const CHAIN: usize = 10;

/// Role `r{i}` inherits `r{i-1}` within its chain, may read and write
/// `res/{i}`, and a chain's root may subscribe to `chan/{i}/*`. User
/// `u{j}` holds three roles spread over the chains; user `bench` holds
/// only the top of the last chain.
fn store() -> Acl {
    let mut acl = Acl::new();
    let role = |i: usize| format!("r{i}");
    for i in 0..ROLES {
        acl.allow(&[&role(i)], &[&format!("res/{i}")], &["read", "write"])
            .expect("valid names");
        if i % CHAIN == 0 {
            acl.allow(&[&role(i)], &[&format!("chan/{i}/*")], &["subscribe"])
                .expect("valid names");
        } else {
            acl.add_role_parents(&role(i), &[&role(i - 1)])
                .expect("a chain has no cycle");
        }
    }
    for j in 0..USERS {
        let roles = [
            role(j * 7 % ROLES),
            role(j * 13 % ROLES),
            role(j * 31 % ROLES),
        ];
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        acl.add_user_roles(&format!("u{j}"), &roles)
            .expect("valid names");
    }
    acl.add_user_roles("bench", &[&role(ROLES - 1)])
        .expect("valid names");
    acl
}

fn is_allowed(c: &mut Criterion) {
    let cached = store();
    let uncached = store().with_cache_budget(0);
    // Granted by a pattern at the root of bench's chain, ten roles up.
    let deep = ("bench", "chan/990/lobby", ["subscribe"]);
    // Denied: every role of the chain is searched.
    let denied = ("bench", "res/5", ["write"]);
    assert!(cached.is_allowed(deep.0, deep.1, &deep.2));
    assert!(!cached.is_allowed(denied.0, denied.1, &denied.2));
    let users: Vec<String> = (0..USERS).map(|j| format!("u{j}")).collect();

    let mut group = c.benchmark_group("acl/is_allowed");
    for (name, acl) in [("cached", &cached), ("uncached", &uncached)] {
        group.bench_function(format!("{name}/granted-10-up"), |b| {
            b.iter(|| acl.is_allowed(black_box(deep.0), black_box(deep.1), &deep.2))
        });
        group.bench_function(format!("{name}/denied"), |b| {
            b.iter(|| acl.is_allowed(black_box(denied.0), black_box(denied.1), &denied.2))
        });
        // Every user in turn, as many connections would ask.
        let mut next = 0;
        group.bench_function(format!("{name}/10k-users-in-turn"), |b| {
            b.iter(|| {
                next = (next + 1) % USERS;
                acl.is_allowed(black_box(&users[next]), "res/7", &["read"])
            })
        });
    }
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let acl = store();
    let rows = Rows::of(&acl);
    let mut changed = acl.clone();
    changed
        .allow(&["r5"], &["res/new"], &["read"])
        .expect("valid names");
    let after = Rows::of(&changed);
    let mut group = c.benchmark_group(format!("acl_store/{}-rows", rows.len()));
    group.sample_size(20);
    group.bench_function("build", |b| b.iter(|| black_box(&rows).build()));
    group.bench_function("rows-of", |b| b.iter(|| Rows::of(black_box(&acl))));
    group.bench_function("delta-of-one-change", |b| {
        b.iter(|| black_box(&rows).delta(black_box(&after)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = is_allowed, snapshot
}
criterion_main!(benches);
