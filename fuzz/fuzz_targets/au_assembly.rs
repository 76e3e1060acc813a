//! Annex-B splitting and access-unit assembly, for H.264 and H.265 alike.
//!
//! Invariants: the incremental splitter yields the same NAL units as the whole-buffer one
//! (chunk size from the first byte); every pushed NAL byte comes out in exactly one access
//! unit; each access unit's size is 4 bytes per NAL unit plus pushed and re-inserted bytes;
//! the written Annex-B parses back into the same number of NAL units; the keyframe flag
//! matches the NAL unit types; nothing panics.
#![no_main]

use jetwatch::frame::Codec;
use jetwatch::source::annexb::{NalSplitter, NalUnits};
use jetwatch::source::au::{is_keyframe_type, nal_type, AuAssembler, AuError, AuMeta};
use libfuzzer_sys::fuzz_target;

fn check_au(codec: Codec, out: &[u8], meta: &AuMeta) {
    assert_eq!(
        out.len(),
        4 * meta.nal_units + meta.pushed_bytes + meta.inserted_bytes
    );
    let nals: Vec<&[u8]> = NalUnits::new(out).collect();
    assert_eq!(nals.len(), meta.nal_units);
    let key = nals
        .iter()
        .any(|n| is_keyframe_type(codec, nal_type(codec, n)));
    assert_eq!(key, meta.keyframe);
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let nals: Vec<&[u8]> = NalUnits::new(data).collect();

    // Incremental splitting matches.
    let chunk = 1 + data[0] as usize % 64;
    let mut sp = NalSplitter::with_capacity(data.len() + 64);
    let mut got: Vec<Vec<u8>> = Vec::new();
    for c in data.chunks(chunk) {
        sp.push(c).expect("capacity covers the whole input");
        while let Some(n) = sp.next_nal() {
            got.push(n.to_vec());
        }
    }
    sp.finish();
    while let Some(n) = sp.next_nal() {
        got.push(n.to_vec());
    }
    assert_eq!(got.len(), nals.len());
    assert!(got.iter().zip(&nals).all(|(a, b)| a == b));

    for codec in [Codec::H264, Codec::H265] {
        let cap = data.len() + 16;
        let mut asm = AuAssembler::new(codec, cap);
        let mut out = Vec::with_capacity(2 * cap + 3 * 4100);
        let total: usize = nals.iter().map(|n| n.len()).sum();
        let mut pulled = 0usize;
        let mut lost = false;
        let mut take = |asm: &mut AuAssembler, out: &mut Vec<u8>| match asm.pull(out) {
            Some(Ok(meta)) => {
                check_au(codec, out, &meta);
                pulled += meta.pushed_bytes;
            }
            Some(Err(AuError::TooManyNals { .. })) => lost = true,
            Some(Err(e)) => panic!("unexpected {e}"),
            None => panic!("ready but nothing to pull"),
        };
        for n in &nals {
            if asm.push(n).expect("pulled after every ready") {
                take(&mut asm, &mut out);
            }
        }
        if asm.finish() {
            take(&mut asm, &mut out);
        }
        assert_eq!(out.capacity(), 2 * cap + 3 * 4100, "output buffer regrown");
        if !lost {
            // Trailing NAL units without a picture are only remembered, never output.
            assert!(pulled <= total);
            let mut tail = 0;
            for n in nals.iter().rev() {
                if jetwatch::source::au::is_vcl(codec, nal_type(codec, n)) {
                    break;
                }
                tail += n.len();
            }
            assert!(
                pulled + tail >= total,
                "lost NAL bytes: {pulled} + {tail} < {total}"
            );
        }
    }
});
