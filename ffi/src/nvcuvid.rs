//! NVIDIA Video Codec SDK decoder API ("NVDECODE", `libnvcuvid.so.1`): raw declarations.
//!
//! Written from the NVDECODE API documentation (Video Codec SDK 13.0, "NVDEC Video Decoder API
//! Programming Guide" and the `cuviddec.h` / `nvcuvid.h` reference). Only what jetwatch uses is
//! declared: the parser (`cuvidCreateVideoParser` and its three callbacks), the decoder
//! (`cuvidCreateDecoder`, `cuvidDecodePicture`, `cuvidGetDecodeStatus`,
//! `cuvidReconfigureDecoder`, `cuvidMapVideoFrame64`, `cuvidUnmapVideoFrame64`) and the
//! capability query (`cuvidGetDecoderCaps`).
//!
//! Layout: LP64 Linux (x86-64 and aarch64), where the SDK's `tcu_ulong` is `unsigned long`
//! (64 bits). Every struct size and the offsets that matter were checked against a C compiler
//! on the SDK 13.0 headers as published in FFmpeg's `nv-codec-headers` (commit f2fb9b3,
//! "Bump for (in-dev) 13.0.19.1"); the values are asserted in the tests at the end of this file.
//!
//! `CUVIDPICPARAMS` (4280 bytes, a large per-codec union) is produced by the parser and
//! passed back unchanged to `cuvidDecodePicture`, so it is declared only by its leading
//! fields ([`CUVIDPICPARAMS_HEAD`]); it is never constructed or copied on the Rust side.

use std::ffi::{c_int, c_short, c_uint, c_ulong, c_void};

/// `CUresult` of the CUDA driver API (0 = `CUDA_SUCCESS`).
pub type CUresult = c_int;
pub const CUDA_SUCCESS: CUresult = 0;
/// `CUDA_ERROR_NOT_SUPPORTED`: e.g. `cuvidGetDecodeStatus` on a codec without status support.
pub const CUDA_ERROR_NOT_SUPPORTED: CUresult = 801;
pub type CUcontext = *mut c_void;
pub type CUstream = *mut c_void;
pub type CUvideodecoder = *mut c_void;
pub type CUvideoctxlock = *mut c_void;
pub type CUvideoparser = *mut c_void;
/// Timestamps in units of `CUVIDPARSERPARAMS::ulClockRate` (default 10 MHz).
pub type CUvideotimestamp = i64;
/// `tcu_ulong` in the SDK headers: `unsigned long` on Linux.
pub type tcu_ulong = c_ulong;

// ---- enums (plain C enums: 32-bit ints) -------------------------------------------------

/// `cudaVideoCodec`.
pub type cudaVideoCodec = c_uint;
pub const cudaVideoCodec_MPEG1: cudaVideoCodec = 0;
pub const cudaVideoCodec_MPEG2: cudaVideoCodec = 1;
pub const cudaVideoCodec_MPEG4: cudaVideoCodec = 2;
pub const cudaVideoCodec_VC1: cudaVideoCodec = 3;
pub const cudaVideoCodec_H264: cudaVideoCodec = 4;
pub const cudaVideoCodec_JPEG: cudaVideoCodec = 5;
pub const cudaVideoCodec_H264_SVC: cudaVideoCodec = 6;
pub const cudaVideoCodec_H264_MVC: cudaVideoCodec = 7;
pub const cudaVideoCodec_HEVC: cudaVideoCodec = 8;
pub const cudaVideoCodec_VP8: cudaVideoCodec = 9;
pub const cudaVideoCodec_VP9: cudaVideoCodec = 10;
pub const cudaVideoCodec_AV1: cudaVideoCodec = 11;

/// `cudaVideoSurfaceFormat`.
pub type cudaVideoSurfaceFormat = c_uint;
pub const cudaVideoSurfaceFormat_NV12: cudaVideoSurfaceFormat = 0;
pub const cudaVideoSurfaceFormat_P016: cudaVideoSurfaceFormat = 1;
pub const cudaVideoSurfaceFormat_YUV444: cudaVideoSurfaceFormat = 2;
pub const cudaVideoSurfaceFormat_YUV444_16Bit: cudaVideoSurfaceFormat = 3;

/// `cudaVideoDeinterlaceMode`.
pub type cudaVideoDeinterlaceMode = c_uint;
pub const cudaVideoDeinterlaceMode_Weave: cudaVideoDeinterlaceMode = 0;
pub const cudaVideoDeinterlaceMode_Bob: cudaVideoDeinterlaceMode = 1;
pub const cudaVideoDeinterlaceMode_Adaptive: cudaVideoDeinterlaceMode = 2;

/// `cudaVideoChromaFormat`.
pub type cudaVideoChromaFormat = c_uint;
pub const cudaVideoChromaFormat_Monochrome: cudaVideoChromaFormat = 0;
pub const cudaVideoChromaFormat_420: cudaVideoChromaFormat = 1;
pub const cudaVideoChromaFormat_422: cudaVideoChromaFormat = 2;
pub const cudaVideoChromaFormat_444: cudaVideoChromaFormat = 3;

/// `cudaVideoCreateFlags`.
pub const cudaVideoCreate_Default: tcu_ulong = 0x00;
pub const cudaVideoCreate_PreferCUDA: tcu_ulong = 0x01;
pub const cudaVideoCreate_PreferDXVA: tcu_ulong = 0x02;
pub const cudaVideoCreate_PreferCUVID: tcu_ulong = 0x04;

/// `cuvidDecodeStatus`.
pub type cuvidDecodeStatus = c_uint;
pub const cuvidDecodeStatus_Invalid: cuvidDecodeStatus = 0;
pub const cuvidDecodeStatus_InProgress: cuvidDecodeStatus = 1;
pub const cuvidDecodeStatus_Success: cuvidDecodeStatus = 2;
pub const cuvidDecodeStatus_Error: cuvidDecodeStatus = 8;
pub const cuvidDecodeStatus_Error_Concealed: cuvidDecodeStatus = 9;

/// `CUvideopacketflags` (`CUVIDSOURCEDATAPACKET::flags`).
pub const CUVID_PKT_ENDOFSTREAM: tcu_ulong = 0x01;
pub const CUVID_PKT_TIMESTAMP: tcu_ulong = 0x02;
pub const CUVID_PKT_DISCONTINUITY: tcu_ulong = 0x04;
/// The packet holds exactly one frame or field: the parser need not wait for the next start
/// code to finish the picture (lower latency).
pub const CUVID_PKT_ENDOFPICTURE: tcu_ulong = 0x08;
pub const CUVID_PKT_NOTIFY_EOS: tcu_ulong = 0x10;

// ---- structs ---------------------------------------------------------------------------

/// `CUVIDDECODECAPS` (88 bytes): `cuvidGetDecoderCaps` in/out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDDECODECAPS {
    pub eCodecType: cudaVideoCodec,
    pub eChromaFormat: cudaVideoChromaFormat,
    pub nBitDepthMinus8: c_uint,
    pub reserved1: [c_uint; 3],
    pub bIsSupported: u8,
    pub nNumNVDECs: u8,
    pub nOutputFormatMask: u16,
    pub nMaxWidth: c_uint,
    pub nMaxHeight: c_uint,
    pub nMaxMBCount: c_uint,
    pub nMinWidth: u16,
    pub nMinHeight: u16,
    pub bIsHistogramSupported: u8,
    pub nCounterBitDepth: u8,
    pub nMaxHistogramBins: u16,
    pub reserved3: [c_uint; 10],
}

/// A rectangle of `short`s as used in the decoder create/reconfigure structs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CUVIDRECT16 {
    pub left: c_short,
    pub top: c_short,
    pub right: c_short,
    pub bottom: c_short,
}

/// `CUVIDDECODECREATEINFO` (176 bytes): `cuvidCreateDecoder` input.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDDECODECREATEINFO {
    pub ulWidth: tcu_ulong,
    pub ulHeight: tcu_ulong,
    pub ulNumDecodeSurfaces: tcu_ulong,
    pub CodecType: cudaVideoCodec,
    pub ChromaFormat: cudaVideoChromaFormat,
    pub ulCreationFlags: tcu_ulong,
    pub bitDepthMinus8: tcu_ulong,
    pub ulIntraDecodeOnly: tcu_ulong,
    pub ulMaxWidth: tcu_ulong,
    pub ulMaxHeight: tcu_ulong,
    pub Reserved1: tcu_ulong,
    pub display_area: CUVIDRECT16,
    pub OutputFormat: cudaVideoSurfaceFormat,
    pub DeinterlaceMode: cudaVideoDeinterlaceMode,
    pub ulTargetWidth: tcu_ulong,
    pub ulTargetHeight: tcu_ulong,
    pub ulNumOutputSurfaces: tcu_ulong,
    pub vidLock: CUvideoctxlock,
    pub target_rect: CUVIDRECT16,
    pub enableHistogram: tcu_ulong,
    pub Reserved2: [tcu_ulong; 4],
}

impl Default for CUVIDDECODECREATEINFO {
    fn default() -> Self {
        // SAFETY: every field is an integer, an array of integers or a raw pointer, for which
        // all-zero bytes are a valid value (null for the pointer) — the SDK's documented
        // "set to zero" initial state.
        unsafe { std::mem::zeroed() }
    }
}

/// `CUVIDRECONFIGUREDECODERINFO` (128 bytes): `cuvidReconfigureDecoder` input.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDRECONFIGUREDECODERINFO {
    pub ulWidth: c_uint,
    pub ulHeight: c_uint,
    pub ulTargetWidth: c_uint,
    pub ulTargetHeight: c_uint,
    pub ulNumDecodeSurfaces: c_uint,
    pub reserved1: [c_uint; 12],
    pub display_area: CUVIDRECT16,
    pub target_rect: CUVIDRECT16,
    pub reserved2: [c_uint; 11],
}

/// Leading fields of `CUVIDPICPARAMS` (the whole struct is 4280 bytes on LP64). The parser
/// owns the struct; we only read `CurrPicIdx` and hand the pointer back to
/// `cuvidDecodePicture`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPICPARAMS_HEAD {
    pub PicWidthInMbs: c_int,
    pub FrameHeightInMbs: c_int,
    pub CurrPicIdx: c_int,
    pub field_pic_flag: c_int,
    pub bottom_field_flag: c_int,
    pub second_field: c_int,
    pub nBitstreamDataLen: c_uint,
    pub pBitstreamData: *const u8,
    pub nNumSlices: c_uint,
    pub pSliceDataOffsets: *const c_uint,
    pub ref_pic_flag: c_int,
    pub intra_pic_flag: c_int,
}

/// Opaque `CUVIDPICPARAMS`: only ever used behind a pointer the parser gave us.
#[repr(C)]
pub struct CUVIDPICPARAMS {
    _opaque: [u8; 0],
}

/// Size of the full `CUVIDPICPARAMS` on LP64 (SDK 13.0), for reference.
pub const CUVIDPICPARAMS_SIZE: usize = 4280;

/// `CUVIDPROCPARAMS` (264 bytes): `cuvidMapVideoFrame64` input.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPROCPARAMS {
    pub progressive_frame: c_int,
    pub second_field: c_int,
    pub top_field_first: c_int,
    pub unpaired_field: c_int,
    pub reserved_flags: c_uint,
    pub reserved_zero: c_uint,
    pub raw_input_dptr: u64,
    pub raw_input_pitch: c_uint,
    pub raw_input_format: c_uint,
    pub raw_output_dptr: u64,
    pub raw_output_pitch: c_uint,
    pub Reserved1: c_uint,
    pub output_stream: CUstream,
    pub Reserved: [c_uint; 46],
    pub histogram_dptr: *mut u64,
    pub Reserved2: [*mut c_void; 1],
}

impl Default for CUVIDPROCPARAMS {
    fn default() -> Self {
        // SAFETY: integers, integer arrays and raw pointers only; all-zero is valid and is
        // the SDK's documented initial state.
        unsafe { std::mem::zeroed() }
    }
}

/// `CUVIDGETDECODESTATUS` (192 bytes): `cuvidGetDecodeStatus` output.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDGETDECODESTATUS {
    pub decodeStatus: cuvidDecodeStatus,
    pub reserved: [c_uint; 31],
    pub pReserved: [*mut c_void; 8],
}

impl Default for CUVIDGETDECODESTATUS {
    fn default() -> Self {
        // SAFETY: integers and raw pointers only; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

/// Frame rate in `CUVIDEOFORMAT` (0/0 = unspecified).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDFRAMERATE {
    pub numerator: c_uint,
    pub denominator: c_uint,
}

/// Display rectangle in `CUVIDEOFORMAT` (ints, unlike the decoder's shorts).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDRECT32 {
    pub left: c_int,
    pub top: c_int,
    pub right: c_int,
    pub bottom: c_int,
}

/// `video_signal_description` in `CUVIDEOFORMAT` (H.264 E.2.1 / H.265 E.3.1 VUI semantics).
/// `flags` packs the C bit-fields `video_format:3, video_full_range_flag:1, reserved:4`
/// (GCC/Clang allocate bit-fields from the least significant bit on little-endian targets).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDSIGNALDESC {
    pub flags: u8,
    pub color_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
}

impl CUVIDSIGNALDESC {
    pub fn video_format(&self) -> u8 {
        self.flags & 0x7
    }
    pub fn video_full_range_flag(&self) -> bool {
        self.flags & 0x8 != 0
    }
}

/// `CUVIDEOFORMAT` (64 bytes): passed to the sequence callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDEOFORMAT {
    pub codec: cudaVideoCodec,
    pub frame_rate: CUVIDFRAMERATE,
    pub progressive_sequence: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub min_num_decode_surfaces: u8,
    pub coded_width: c_uint,
    pub coded_height: c_uint,
    pub display_area: CUVIDRECT32,
    pub chroma_format: cudaVideoChromaFormat,
    pub bitrate: c_uint,
    pub display_aspect_ratio_x: c_int,
    pub display_aspect_ratio_y: c_int,
    pub video_signal_description: CUVIDSIGNALDESC,
    pub seqhdr_data_length: c_uint,
}

/// `CUVIDPARSERDISPINFO` (24 bytes): passed to the display callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDPARSERDISPINFO {
    pub picture_index: c_int,
    pub progressive_frame: c_int,
    pub top_field_first: c_int,
    pub repeat_first_field: c_int,
    pub timestamp: CUvideotimestamp,
}

/// `CUVIDSOURCEDATAPACKET` (32 bytes): `cuvidParseVideoData` input.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDSOURCEDATAPACKET {
    pub flags: tcu_ulong,
    pub payload_size: tcu_ulong,
    pub payload: *const u8,
    pub timestamp: CUvideotimestamp,
}

/// Sequence callback: 0 = fail, 1 = ok, >1 = override the parser's DPB size.
pub type PFNVIDSEQUENCECALLBACK =
    Option<unsafe extern "C" fn(user: *mut c_void, fmt: *mut CUVIDEOFORMAT) -> c_int>;
/// Decode callback: 0 = fail, >=1 = ok.
pub type PFNVIDDECODECALLBACK =
    Option<unsafe extern "C" fn(user: *mut c_void, pic: *mut CUVIDPICPARAMS) -> c_int>;
/// Display callback: 0 = fail, >=1 = ok. A null `disp` signals end of stream.
pub type PFNVIDDISPLAYCALLBACK =
    Option<unsafe extern "C" fn(user: *mut c_void, disp: *mut CUVIDPARSERDISPINFO) -> c_int>;
/// AV1 operating point / SEI callbacks: unused by jetwatch, declared as untyped pointers.
pub type PFNVIDUNUSED = *const c_void;

/// `CUVIDPARSERPARAMS` (136 bytes): `cuvidCreateVideoParser` input. `flags` packs the C
/// bit-fields `bAnnexb:1, bMemoryOptimize:1, uReserved:30`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPARSERPARAMS {
    pub CodecType: cudaVideoCodec,
    pub ulMaxNumDecodeSurfaces: c_uint,
    pub ulClockRate: c_uint,
    pub ulErrorThreshold: c_uint,
    pub ulMaxDisplayDelay: c_uint,
    pub flags: c_uint,
    pub uReserved1: [c_uint; 4],
    pub pUserData: *mut c_void,
    pub pfnSequenceCallback: PFNVIDSEQUENCECALLBACK,
    pub pfnDecodePicture: PFNVIDDECODECALLBACK,
    pub pfnDisplayPicture: PFNVIDDISPLAYCALLBACK,
    pub pfnGetOperatingPoint: PFNVIDUNUSED,
    pub pfnGetSEIMsg: PFNVIDUNUSED,
    pub pvReserved2: [*mut c_void; 5],
    pub pExtVideoInfo: *mut c_void,
}

impl Default for CUVIDPARSERPARAMS {
    fn default() -> Self {
        // SAFETY: integers, raw pointers and `Option<fn>` (null = None) only; all-zero is
        // valid and is the SDK's documented initial state.
        unsafe { std::mem::zeroed() }
    }
}

// ---- function table --------------------------------------------------------------------

pub type tcuvidGetDecoderCaps = unsafe extern "C" fn(pdc: *mut CUVIDDECODECAPS) -> CUresult;
pub type tcuvidCreateDecoder = unsafe extern "C" fn(
    phDecoder: *mut CUvideodecoder,
    pdci: *mut CUVIDDECODECREATEINFO,
) -> CUresult;
pub type tcuvidDestroyDecoder = unsafe extern "C" fn(hDecoder: CUvideodecoder) -> CUresult;
pub type tcuvidDecodePicture =
    unsafe extern "C" fn(hDecoder: CUvideodecoder, pPicParams: *mut CUVIDPICPARAMS) -> CUresult;
pub type tcuvidGetDecodeStatus = unsafe extern "C" fn(
    hDecoder: CUvideodecoder,
    nPicIdx: c_int,
    pDecodeStatus: *mut CUVIDGETDECODESTATUS,
) -> CUresult;
pub type tcuvidReconfigureDecoder = unsafe extern "C" fn(
    hDecoder: CUvideodecoder,
    pDecReconfigParams: *mut CUVIDRECONFIGUREDECODERINFO,
) -> CUresult;
pub type tcuvidMapVideoFrame64 = unsafe extern "C" fn(
    hDecoder: CUvideodecoder,
    nPicIdx: c_int,
    pDevPtr: *mut u64,
    pPitch: *mut c_uint,
    pVPP: *mut CUVIDPROCPARAMS,
) -> CUresult;
pub type tcuvidUnmapVideoFrame64 =
    unsafe extern "C" fn(hDecoder: CUvideodecoder, DevPtr: u64) -> CUresult;
pub type tcuvidCreateVideoParser =
    unsafe extern "C" fn(pObj: *mut CUvideoparser, pParams: *mut CUVIDPARSERPARAMS) -> CUresult;
pub type tcuvidParseVideoData =
    unsafe extern "C" fn(obj: CUvideoparser, pPacket: *mut CUVIDSOURCEDATAPACKET) -> CUresult;
pub type tcuvidDestroyVideoParser = unsafe extern "C" fn(obj: CUvideoparser) -> CUresult;

/// Shared-object name of the NVDEC library (installed with the NVIDIA driver).
pub const LIBNVCUVID: &str = "libnvcuvid.so.1";

/// The entry points of `libnvcuvid.so.1`, resolved once. The library stays loaded as long as
/// the table lives, so the function pointers remain valid.
pub struct Nvcuvid {
    _lib: libloading::Library,
    pub cuvidGetDecoderCaps: tcuvidGetDecoderCaps,
    pub cuvidCreateDecoder: tcuvidCreateDecoder,
    pub cuvidDestroyDecoder: tcuvidDestroyDecoder,
    pub cuvidDecodePicture: tcuvidDecodePicture,
    pub cuvidGetDecodeStatus: tcuvidGetDecodeStatus,
    pub cuvidReconfigureDecoder: tcuvidReconfigureDecoder,
    pub cuvidMapVideoFrame64: tcuvidMapVideoFrame64,
    pub cuvidUnmapVideoFrame64: tcuvidUnmapVideoFrame64,
    pub cuvidCreateVideoParser: tcuvidCreateVideoParser,
    pub cuvidParseVideoData: tcuvidParseVideoData,
    pub cuvidDestroyVideoParser: tcuvidDestroyVideoParser,
}

impl std::fmt::Debug for Nvcuvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvcuvid(libnvcuvid.so.1)")
    }
}

impl Nvcuvid {
    /// Opens `libnvcuvid.so.1` and resolves every entry point jetwatch uses.
    ///
    /// # Safety
    /// Loading a shared library runs its initialisers; the caller must accept that
    /// `libnvcuvid.so.1` found by the dynamic loader is NVIDIA's NVDECODE library whose entry
    /// points have the signatures declared here (SDK 12/13 ABI).
    pub unsafe fn load() -> Result<Self, libloading::Error> {
        // SAFETY: the caller accepts the library's initialisers (see `# Safety`).
        let lib = unsafe { libloading::Library::new(LIBNVCUVID) }?;
        macro_rules! sym {
            ($name:literal, $ty:ty) => {{
                // SAFETY: the symbol has the C signature `$ty` in the NVDECODE API; the
                // pointer is copied out and stays valid while `lib` (kept in the table) lives.
                let s: libloading::Symbol<'_, $ty> = unsafe { lib.get($name) }?;
                *s
            }};
        }
        let t = Nvcuvid {
            cuvidGetDecoderCaps: sym!(b"cuvidGetDecoderCaps\0", tcuvidGetDecoderCaps),
            cuvidCreateDecoder: sym!(b"cuvidCreateDecoder\0", tcuvidCreateDecoder),
            cuvidDestroyDecoder: sym!(b"cuvidDestroyDecoder\0", tcuvidDestroyDecoder),
            cuvidDecodePicture: sym!(b"cuvidDecodePicture\0", tcuvidDecodePicture),
            cuvidGetDecodeStatus: sym!(b"cuvidGetDecodeStatus\0", tcuvidGetDecodeStatus),
            cuvidReconfigureDecoder: sym!(b"cuvidReconfigureDecoder\0", tcuvidReconfigureDecoder),
            cuvidMapVideoFrame64: sym!(b"cuvidMapVideoFrame64\0", tcuvidMapVideoFrame64),
            cuvidUnmapVideoFrame64: sym!(b"cuvidUnmapVideoFrame64\0", tcuvidUnmapVideoFrame64),
            cuvidCreateVideoParser: sym!(b"cuvidCreateVideoParser\0", tcuvidCreateVideoParser),
            cuvidParseVideoData: sym!(b"cuvidParseVideoData\0", tcuvidParseVideoData),
            cuvidDestroyVideoParser: sym!(b"cuvidDestroyVideoParser\0", tcuvidDestroyVideoParser),
            _lib: lib,
        };
        Ok(t)
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Sizes and offsets measured with gcc on x86-64 over the SDK 13.0 headers
    /// (FFmpeg nv-codec-headers f2fb9b3, `dynlink_cuviddec.h` / `dynlink_nvcuvid.h`).
    #[test]
    fn layout_matches_sdk_13_headers() {
        assert_eq!(size_of::<CUVIDDECODECAPS>(), 88);
        assert_eq!(offset_of!(CUVIDDECODECAPS, bIsSupported), 24);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nNumNVDECs), 25);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nOutputFormatMask), 26);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxWidth), 28);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxMBCount), 36);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMinWidth), 40);
        assert_eq!(offset_of!(CUVIDDECODECAPS, bIsHistogramSupported), 44);
        assert_eq!(offset_of!(CUVIDDECODECAPS, reserved3), 48);

        assert_eq!(size_of::<CUVIDDECODECREATEINFO>(), 176);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, CodecType), 24);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulCreationFlags), 32);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulMaxWidth), 56);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, display_area), 80);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, OutputFormat), 88);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulTargetWidth), 96);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulNumOutputSurfaces), 112);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, vidLock), 120);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, target_rect), 128);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, enableHistogram), 136);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, Reserved2), 144);

        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, CurrPicIdx), 8);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, nBitstreamDataLen), 24);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, pBitstreamData), 32);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, nNumSlices), 40);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, pSliceDataOffsets), 48);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, ref_pic_flag), 56);
        assert_eq!(offset_of!(CUVIDPICPARAMS_HEAD, intra_pic_flag), 60);

        assert_eq!(size_of::<CUVIDPROCPARAMS>(), 264);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, raw_input_dptr), 24);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, raw_output_dptr), 40);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, output_stream), 56);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, Reserved), 64);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, histogram_dptr), 248);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, Reserved2), 256);

        assert_eq!(size_of::<CUVIDGETDECODESTATUS>(), 192);
        assert_eq!(offset_of!(CUVIDGETDECODESTATUS, pReserved), 128);

        assert_eq!(size_of::<CUVIDRECONFIGUREDECODERINFO>(), 128);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, display_area), 68);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, target_rect), 76);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, reserved2), 84);

        assert_eq!(size_of::<CUVIDEOFORMAT>(), 64);
        assert_eq!(offset_of!(CUVIDEOFORMAT, frame_rate), 4);
        assert_eq!(offset_of!(CUVIDEOFORMAT, progressive_sequence), 12);
        assert_eq!(offset_of!(CUVIDEOFORMAT, min_num_decode_surfaces), 15);
        assert_eq!(offset_of!(CUVIDEOFORMAT, coded_width), 16);
        assert_eq!(offset_of!(CUVIDEOFORMAT, display_area), 24);
        assert_eq!(offset_of!(CUVIDEOFORMAT, chroma_format), 40);
        assert_eq!(offset_of!(CUVIDEOFORMAT, bitrate), 44);
        assert_eq!(offset_of!(CUVIDEOFORMAT, display_aspect_ratio_x), 48);
        assert_eq!(offset_of!(CUVIDEOFORMAT, video_signal_description), 56);
        assert_eq!(offset_of!(CUVIDEOFORMAT, seqhdr_data_length), 60);

        assert_eq!(size_of::<CUVIDPARSERDISPINFO>(), 24);
        assert_eq!(offset_of!(CUVIDPARSERDISPINFO, timestamp), 16);

        assert_eq!(size_of::<CUVIDSOURCEDATAPACKET>(), 32);
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, payload_size), 8);
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, payload), 16);
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, timestamp), 24);

        assert_eq!(size_of::<CUVIDPARSERPARAMS>(), 136);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, ulMaxDisplayDelay), 16);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, uReserved1), 24);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pUserData), 40);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnSequenceCallback), 48);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnDecodePicture), 56);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnDisplayPicture), 64);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnGetOperatingPoint), 72);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnGetSEIMsg), 80);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pvReserved2), 88);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pExtVideoInfo), 128);
    }

    #[test]
    fn signal_description_bitfields() {
        // video_format = 5 (unspecified), full range: bits 0..2 = 5, bit 3 = 1.
        let d = CUVIDSIGNALDESC {
            flags: 0b0000_1101,
            ..Default::default()
        };
        assert_eq!(d.video_format(), 5);
        assert!(d.video_full_range_flag());
        let d = CUVIDSIGNALDESC {
            flags: 0b0000_0101,
            ..Default::default()
        };
        assert!(!d.video_full_range_flag());
    }
}
