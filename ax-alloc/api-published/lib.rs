//! Empty: this package only compiles `../tests/api.rs` (see Cargo.toml).
#![no_std]
