//! Configuration parsing (`Config::parse`). Invariants: no panic; an error renders to a
//! non-empty message.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = jetwatch::config::Config::parse(text, Path::new("fuzz.toml")) {
        assert!(!e.to_string().is_empty());
    }
});
