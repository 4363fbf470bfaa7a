//! One module per `cargo xtask` subcommand.

pub mod demo;
pub mod lab;
pub mod setup;
pub mod test;
