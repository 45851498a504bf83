//! The parts of `fvfsc` that are more than its command line: writing trees and files
//! to the daemon ([`put`]) and the mount ([`mount`]), whose core the end-to-end tests
//! also drive without FUSE.

pub mod mount;
pub mod put;
