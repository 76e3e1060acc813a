//! Wire-format decoding (`jetwatch::wire::decode`). Built only with `--features wire` until
//! that function exists. Invariants: no panic; both outcomes format with `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match jetwatch::wire::decode(data) {
        Ok(v) => {
            let _ = format!("{v:?}");
        }
        Err(e) => {
            let _ = format!("{e:?}");
        }
    }
});
