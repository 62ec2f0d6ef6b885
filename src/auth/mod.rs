//! Authentication and access control, sans-IO: [`token`] verifies the JWT
//! a client presents, [`acl`] decides what a user may do, and
//! [`acl_file`] reads and writes the ACL file format. Where an ACL is
//! kept, and the `averyws acl` commands, are `acl_store`'s.
//!
//! Nothing here touches a socket or a clock: the current time comes in as
//! an argument, so every part is unit-testable, fuzzable and
//! benchmarkable on its own.

pub mod acl;
pub mod acl_file;
mod cache;
pub mod explain;
pub mod token;
