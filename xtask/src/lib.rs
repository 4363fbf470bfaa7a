//! Developer tasks for ttmlat, usable as a library by other xtask code
//! (notably lab tests): host set-up ([`prepare`]), the kernel manifest
//! ([`manifest`]) and the QEMU kernel lab ([`lab`]).

pub mod lab;
pub mod lab_dirs;
pub mod manifest;
pub mod prepare;
pub(crate) mod process;
