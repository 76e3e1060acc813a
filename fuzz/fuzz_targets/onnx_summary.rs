//! The ONNX reader (`engine::onnx`), which reads model files jetwatch is pointed at before any
//! inference runtime sees them. Invariants: no panic; a parsed summary's inputs exclude
//! nothing but initializers (every name it lists came from the input), and reparsing the same
//! bytes gives the same summary.
#![no_main]

use jetwatch::engine::onnx::OnnxSummary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = OnnxSummary::parse(data) {
        assert_eq!(OnnxSummary::parse(data).as_ref(), Ok(&s));
        for v in s.inputs.iter().chain(&s.outputs) {
            assert!(v.name.len() <= data.len());
        }
        for (k, v) in &s.metadata {
            assert!(k.len() + v.len() <= data.len());
        }
    }
});
