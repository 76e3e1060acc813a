//! H.264 and H.265 SPS parsing. The input is parsed whole as an SPS of each codec (with the
//! NAL header forced to the SPS type), and, if it is an Annex-B stream, every NAL unit in it.
//! Invariants: no panic; a parsed SPS has a non-empty picture within the codecs' limits and a
//! finite, positive frame rate.
#![no_main]

use jetwatch::frame::Codec;
use jetwatch::source::annexb::NalUnits;
use jetwatch::source::sps::{parse_sps, SpsInfo};
use libfuzzer_sys::fuzz_target;

fn check(r: Result<SpsInfo, jetwatch::source::sps::SpsError>) {
    if let Ok(s) = r {
        assert!(s.width > 0 && s.height > 0);
        assert!(
            s.width <= 16 * 1024 * 2 && s.height <= 16 * 1024 * 2,
            "{s:?}"
        );
        if let Some(f) = s.fps {
            assert!(f.is_finite() && f > 0.0);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 2 {
        let mut v = data.to_vec();
        v[0] = 0x67;
        check(parse_sps(Codec::H264, &v));
        v[0] = 0x42;
        v[1] = 0x01;
        check(parse_sps(Codec::H265, &v));
    }
    for nal in NalUnits::new(data).take(64) {
        check(parse_sps(Codec::H264, nal));
        check(parse_sps(Codec::H265, nal));
    }
});
