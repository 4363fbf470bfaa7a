//! One module per `cargo xtask` subcommand.

pub mod ab;
pub mod bench_overhead;
pub mod bench_serve;
pub mod demo;
pub mod dist;
pub mod lab;
pub mod setup;
pub mod test;
