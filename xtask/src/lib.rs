//! Developer tasks for ttmlat, usable as a library by other xtask code
//! (notably lab tests): host set-up ([`prepare`]), the kernel manifest
//! ([`manifest`]), the QEMU kernel lab ([`lab`]) and the lab's independent tracefs
//! observer ([`observer`]).

pub mod lab;
pub mod lab_dirs;
pub mod lab_timeline;
pub mod lab_web;
pub mod labtest;
pub mod manifest;
pub mod observer;
pub mod overhead;
pub mod prepare;
pub(crate) mod process;
