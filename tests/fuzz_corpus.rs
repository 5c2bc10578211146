//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! invariant checks (`tests/fuzz_checks/mod.rs`), so `cargo test` guards what the fuzzers
//! found without any fuzzing tool. See `fuzz/README.md`.

mod fuzz_checks;

use std::path::PathBuf;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; returns how many ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: nothing to replay",
        dir.display()
    );
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        if let Err(panic) = outcome {
            eprintln!(
                "corpus input {} ({} bytes) violates an invariant",
                path.display(),
                data.len()
            );
            std::panic::resume_unwind(panic);
        }
    }
    println!("{target}: replayed {} corpus inputs", files.len());
    files.len()
}

#[test]
fn client_frame_corpus() {
    replay("client_frame", fuzz_checks::client_frame);
}

#[test]
fn pattern_corpus() {
    replay("pattern", fuzz_checks::pattern);
}

#[test]
fn config_corpus() {
    replay("config", fuzz_checks::config);
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", fuzz_checks::frame_decoder);
}

#[test]
fn inflater_corpus() {
    replay("inflater", fuzz_checks::inflater);
}
