//! One module per `cargo xtask` subcommand.

pub mod lab;
pub mod setup;
