//! `cargo fuzz run inflater`: the invariants are in `tests/fuzz_checks/inflater.rs`, shared with
//! the corpus replay test (`cargo test --test fuzz_corpus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)] // each target uses one of the checks
#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::inflater(data));
