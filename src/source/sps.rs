//! Sequence parameter set parsing for H.264 (ITU-T H.264 7.3.2.1.1, VUI E.1.1) and H.265
//! (ITU-T H.265 7.3.2.2.1, VUI E.2.1): picture size after cropping, colour description and
//! frame rate. Our own parser for both codecs; it never panics on garbage (fuzzed by
//! `fuzz/fuzz_targets/sps.rs`) and allocates nothing: emulation-prevention bytes are removed
//! into a fixed stack buffer.

use crate::frame::{Codec, ColourDesc, Matrix, StreamInfo};

/// RBSP bytes parsed at most; SPS NAL units are far smaller (H.265 ones with scaling lists
/// reach a few hundred bytes).
const MAX_RBSP: usize = 4096;

/// Why an SPS could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    #[error("SPS is truncated")]
    Truncated,
    #[error("not an SPS NAL unit (type {0})")]
    NotSps(u8),
    #[error("SPS value out of range: {0}")]
    Invalid(&'static str),
}

/// What jetwatch needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    pub codec: Codec,
    pub profile_idc: u8,
    pub level_idc: u8,
    /// Display size after cropping (H.264 `frame_crop_*`, H.265 conformance window).
    pub width: u32,
    pub height: u32,
    /// `video_full_range_flag` and `matrix_coefficients` from the VUI, or
    /// [`ColourDesc::default_for_height`] when absent.
    pub colour: ColourDesc,
    /// Frames per second from the VUI timing info, if present.
    pub fps: Option<f64>,
    pub bit_depth_luma: u8,
    pub chroma_format_idc: u8,
    /// H.264 VUI `max_num_reorder_frames` (E.2.1), when the stream states it: 0 means output
    /// order equals decoding order (no B-frame reordering). Not read for H.265.
    pub max_num_reorder_frames: Option<u32>,
}

impl SpsInfo {
    pub fn stream_info(&self) -> StreamInfo {
        StreamInfo {
            codec: self.codec,
            width: self.width,
            height: self.height,
            fps: self.fps,
            colour: self.colour,
        }
    }
}

/// Parses an SPS NAL unit (with its NAL header, without start code) of `codec`.
pub fn parse_sps(codec: Codec, nal: &[u8]) -> Result<SpsInfo, SpsError> {
    match codec {
        Codec::H264 => parse_h264_sps(nal),
        Codec::H265 => parse_h265_sps(nal),
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`, H.264 7.4.1 / H.265 7.4.2) from
/// `nal[skip..]` into `out`; returns the RBSP length (truncated to `out.len()`).
fn unescape(nal: &[u8], skip: usize, out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut zeros = 0;
    for &b in nal.iter().skip(skip) {
        if n == out.len() {
            break;
        }
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out[n] = b;
        n += 1;
    }
    n
}

/// MSB-first bit reader with exp-Golomb decoding (H.264 9.1).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = *self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(b as u32)
    }

    fn flag(&mut self) -> Result<bool, SpsError> {
        Ok(self.bit()? == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()? as u64;
        }
        Ok(v as u32)
    }

    fn skip(&mut self, n: usize) -> Result<(), SpsError> {
        if self.pos + n > self.data.len() * 8 {
            return Err(SpsError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// ue(v); values above 2^32 - 2 are rejected.
    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::Invalid("exp-Golomb code longer than 32 bits"));
            }
        }
        let rest = self.bits(zeros)? as u64;
        let v = (1u64 << zeros) - 1 + rest;
        u32::try_from(v).map_err(|_| SpsError::Invalid("exp-Golomb value too large"))
    }

    /// ue(v) that must be at most `max`.
    fn ue_max(&mut self, max: u32, what: &'static str) -> Result<u32, SpsError> {
        let v = self.ue()?;
        if v > max {
            return Err(SpsError::Invalid(what));
        }
        Ok(v)
    }

    fn se(&mut self) -> Result<i32, SpsError> {
        let k = self.ue()? as i64;
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

/// Colour description from VUI `video_signal_type` fields (H.273 `matrix_coefficients`).
fn colour_from_vui(height: u32, full_range: Option<bool>, matrix: Option<u8>) -> ColourDesc {
    let default = ColourDesc::default_for_height(height);
    let matrix = match matrix {
        Some(1) | Some(7) => Matrix::Bt709,
        Some(4) | Some(5) | Some(6) => Matrix::Bt601,
        _ => default.matrix,
    };
    ColourDesc {
        matrix,
        full_range: full_range.unwrap_or(false),
    }
}

/// Fields common to both VUIs up to the colour description: aspect ratio, overscan, video
/// signal type (H.264 E.1.1 and H.265 E.2.1 share this prefix).
fn vui_signal(r: &mut Bits) -> Result<(Option<bool>, Option<u8>), SpsError> {
    if r.flag()? {
        // aspect_ratio_info_present_flag
        let idc = r.bits(8)?;
        if idc == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.flag()? {
        // overscan_info_present_flag
        r.skip(1)?;
    }
    let mut full_range = None;
    let mut matrix = None;
    if r.flag()? {
        // video_signal_type_present_flag
        r.skip(3)?; // video_format
        full_range = Some(r.flag()?);
        if r.flag()? {
            // colour_description_present_flag
            r.skip(16)?; // colour_primaries, transfer_characteristics
            matrix = Some(r.bits(8)? as u8);
        }
    }
    if r.flag()? {
        // chroma_loc_info_present_flag
        r.ue()?;
        r.ue()?;
    }
    Ok((full_range, matrix))
}

fn fps_from(num_units_in_tick: u32, time_scale: u32, ticks_per_frame: f64) -> Option<f64> {
    if num_units_in_tick == 0 || time_scale == 0 {
        return None;
    }
    let fps = time_scale as f64 / (ticks_per_frame * num_units_in_tick as f64);
    (fps.is_finite() && fps > 0.0 && fps <= 1000.0).then_some(fps)
}

/// H.264 `scaling_list()` (7.3.2.1.1.1): only skipped.
fn skip_scaling_list(r: &mut Bits, size: usize) -> Result<(), SpsError> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Parses an H.264 SPS (NAL unit type 7), H.264 7.3.2.1.1.
pub fn parse_h264_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    let header = *nal.first().ok_or(SpsError::Truncated)?;
    if header & 0x1f != 7 {
        return Err(SpsError::NotSps(header & 0x1f));
    }
    let mut buf = [0u8; MAX_RBSP];
    let n = unescape(nal, 1, &mut buf);
    let mut r = Bits::new(&buf[..n]);
    let profile_idc = r.bits(8)? as u8;
    r.skip(8)?; // constraint flags, reserved
    let level_idc = r.bits(8)? as u8;
    r.ue_max(31, "seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = r.ue_max(6, "bit_depth_luma_minus8")? + 8;
        r.ue_max(6, "bit_depth_chroma_minus8")?;
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue_max(12, "log2_max_frame_num_minus4")?;
    let poc_type = r.ue_max(2, "pic_order_cnt_type")?;
    if poc_type == 0 {
        r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
    } else if poc_type == 1 {
        r.skip(1)?; // delta_pic_order_always_zero_flag
        r.se()?;
        r.se()?;
        let cycle = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
        for _ in 0..cycle {
            r.se()?;
        }
    }
    r.ue_max(32, "max_num_ref_frames")?;
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue_max(1023, "pic_width_in_mbs_minus1")? + 1;
    let height_map_units = r.ue_max(1023, "pic_height_in_map_units_minus1")? + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let width = width_mbs * 16;
    let height = (2 - frame_mbs_only as u32) * height_map_units * 16;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.flag()? {
        // frame_cropping_flag
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    // ChromaArrayType and crop units, H.264 7.4.2.1.1 (equations 7-19 .. 7-22).
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_unit_x = sub_w as u64;
    let crop_unit_y = sub_h as u64 * (2 - frame_mbs_only as u64);
    let crop_w = crop_unit_x * (cl as u64 + cr as u64);
    let crop_h = crop_unit_y * (ct as u64 + cb as u64);
    if crop_w >= width as u64 || crop_h >= height as u64 {
        return Err(SpsError::Invalid("cropping removes the whole picture"));
    }
    let width = width - crop_w as u32;
    let height = height - crop_h as u32;

    let mut full_range = None;
    let mut matrix = None;
    let mut fps = None;
    let mut max_num_reorder_frames = None;
    // A truncated or odd VUI still leaves a usable size: keep what was read before the error.
    let _ = (|| -> Result<(), SpsError> {
        if !r.flag()? {
            return Ok(()); // vui_parameters_present_flag
        }
        let (fr, m) = vui_signal(&mut r)?;
        full_range = fr;
        matrix = m;
        if r.flag()? {
            // timing_info_present_flag; H.264 E.2.1: a frame lasts two ticks.
            let n = r.bits(32)?;
            let t = r.bits(32)?;
            fps = fps_from(n, t, 2.0);
            r.skip(1)?; // fixed_frame_rate_flag
        }
        let nal_hrd = r.flag()?;
        if nal_hrd {
            skip_h264_hrd(&mut r)?;
        }
        let vcl_hrd = r.flag()?;
        if vcl_hrd {
            skip_h264_hrd(&mut r)?;
        }
        if nal_hrd || vcl_hrd {
            r.skip(1)?; // low_delay_hrd_flag
        }
        r.skip(1)?; // pic_struct_present_flag
        if r.flag()? {
            // bitstream_restriction_flag
            r.skip(1)?; // motion_vectors_over_pic_boundaries_flag
            for _ in 0..4 {
                r.ue()?; // max_bytes_per_pic_denom .. log2_max_mv_length_vertical
            }
            max_num_reorder_frames = Some(r.ue_max(16, "max_num_reorder_frames")?);
            r.ue()?; // max_dec_frame_buffering
        }
        Ok(())
    })();
    Ok(SpsInfo {
        codec: Codec::H264,
        profile_idc,
        level_idc,
        width,
        height,
        colour: colour_from_vui(height, full_range, matrix),
        fps,
        bit_depth_luma: bit_depth_luma as u8,
        chroma_format_idc: chroma_format_idc as u8,
        max_num_reorder_frames,
    })
}

/// H.264 `hrd_parameters()` (E.1.2): only skipped.
fn skip_h264_hrd(r: &mut Bits) -> Result<(), SpsError> {
    let cpb_cnt = r.ue_max(31, "cpb_cnt_minus1")? + 1;
    r.skip(8)?; // bit_rate_scale, cpb_size_scale
    for _ in 0..cpb_cnt {
        r.ue()?;
        r.ue()?;
        r.skip(1)?;
    }
    r.skip(20) // four 5-bit delay/offset lengths
}

/// H.265 `profile_tier_level(1, max_sub_layers_minus1)` (7.3.3): only skipped.
fn skip_profile_tier_level(r: &mut Bits, max_sub_layers_minus1: u32) -> Result<u8, SpsError> {
    r.skip(8)?; // general_profile_space, tier, profile_idc
    r.skip(32)?; // general_profile_compatibility_flags
    r.skip(48)?; // progressive/interlaced/non-packed/frame-only + 43 + 1 bits
    let level = r.bits(8)? as u8;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        profile_present[i] = r.flag()?;
        level_present[i] = r.flag()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?; // reserved_zero_2bits
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if profile_present[i] {
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    Ok(level)
}

/// H.265 `scaling_list_data()` (7.3.4): only skipped.
fn skip_h265_scaling_list_data(r: &mut Bits) -> Result<(), SpsError> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        let mut matrix_id = 0;
        while matrix_id < 6 {
            if !r.flag()? {
                r.ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coef_num = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.se()?; // scaling_list_dc_coef_minus8
                }
                for _ in 0..coef_num {
                    r.se()?;
                }
            }
            matrix_id += step;
        }
    }
    Ok(())
}

/// Maximum `num_short_term_ref_pic_sets` (7.4.3.2.1).
const MAX_ST_RPS: usize = 64;

/// H.265 `st_ref_pic_set(idx)` (7.3.7) inside an SPS; returns NumDeltaPocs[idx] (7-61, 7-62).
fn skip_st_ref_pic_set(
    r: &mut Bits,
    idx: usize,
    num_delta_pocs: &[u32; MAX_ST_RPS],
) -> Result<u32, SpsError> {
    let inter = idx != 0 && r.flag()?;
    if inter {
        // In an SPS delta_idx_minus1 is absent, so RefRpsIdx = idx - 1.
        r.skip(1)?; // delta_rps_sign
        r.ue_max(1 << 15, "abs_delta_rps_minus1")?;
        let ref_count = num_delta_pocs[idx - 1];
        let mut count = 0;
        for _ in 0..=ref_count {
            let used = r.flag()?;
            let use_delta = if used { true } else { r.flag()? };
            if use_delta {
                count += 1;
            }
        }
        Ok(count)
    } else {
        let neg = r.ue_max(16, "num_negative_pics")?;
        let pos = r.ue_max(16, "num_positive_pics")?;
        for _ in 0..neg + pos {
            r.ue_max(1 << 15, "delta_poc_minus1")?;
            r.skip(1)?; // used_by_curr_pic_flag
        }
        Ok(neg + pos)
    }
}

/// Parses an H.265 SPS (NAL unit type 33), H.265 7.3.2.2.1.
pub fn parse_h265_sps(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.len() < 2 {
        return Err(SpsError::Truncated);
    }
    let nal_type = (nal[0] >> 1) & 0x3f;
    if nal_type != 33 {
        return Err(SpsError::NotSps(nal_type));
    }
    let mut buf = [0u8; MAX_RBSP];
    let n = unescape(nal, 2, &mut buf);
    let mut r = Bits::new(&buf[..n]);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(SpsError::Invalid("sps_max_sub_layers_minus1"));
    }
    r.skip(1)?; // sps_temporal_id_nesting_flag
                // general_profile_idc is the low 5 bits of the first PTL byte.
    let profile_idc = buf.get(1).map_or(0, |b| b & 0x1f);
    let level_idc = skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue_max(15, "sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.flag()?;
    }
    let width = r.ue_max(16888, "pic_width_in_luma_samples")?;
    let height = r.ue_max(16888, "pic_height_in_luma_samples")?;
    if width == 0 || height == 0 {
        return Err(SpsError::Invalid("zero picture size"));
    }
    let (mut cl, mut cr, mut ct, mut cb) = (0u32, 0u32, 0u32, 0u32);
    if r.flag()? {
        // conformance_window_flag
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    // SubWidthC / SubHeightC, H.265 Table 6-1; ChromaArrayType 0 uses 1.
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2u64, 2u64),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let crop_w = sub_w * (cl as u64 + cr as u64);
    let crop_h = sub_h * (ct as u64 + cb as u64);
    if crop_w >= width as u64 || crop_h >= height as u64 {
        return Err(SpsError::Invalid(
            "conformance window removes the whole picture",
        ));
    }
    let out_w = width - crop_w as u32;
    let out_h = height - crop_h as u32;
    let bit_depth_luma = r.ue_max(8, "bit_depth_luma_minus8")? + 8;
    r.ue_max(8, "bit_depth_chroma_minus8")?;
    let log2_max_poc_lsb = r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")? + 4;
    let ordering_info_present = r.flag()?;
    let first = if ordering_info_present {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.ue()?;
        r.ue()?;
        r.ue()?;
    }
    for _ in 0..6 {
        // log2_min_luma_coding_block_size_minus3 .. max_transform_hierarchy_depth_intra
        r.ue()?;
    }

    let mut full_range = None;
    let mut matrix = None;
    let mut fps = None;
    // Everything after the size is best effort: a parse failure below keeps the size and
    // falls back to the default colour description.
    let vui: Result<(), SpsError> = (|| {
        if r.flag()? {
            // scaling_list_enabled_flag
            if r.flag()? {
                skip_h265_scaling_list_data(&mut r)?;
            }
        }
        r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
        if r.flag()? {
            // pcm_enabled_flag
            r.skip(8)?;
            r.ue()?;
            r.ue()?;
            r.skip(1)?;
        }
        let num_st_rps = r.ue_max(MAX_ST_RPS as u32, "num_short_term_ref_pic_sets")? as usize;
        let mut num_delta_pocs = [0u32; MAX_ST_RPS];
        for i in 0..num_st_rps {
            num_delta_pocs[i] = skip_st_ref_pic_set(&mut r, i, &num_delta_pocs)?;
        }
        if r.flag()? {
            // long_term_ref_pics_present_flag
            let n = r.ue_max(32, "num_long_term_ref_pics_sps")?;
            for _ in 0..n {
                r.skip(log2_max_poc_lsb as usize + 1)?;
            }
        }
        r.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
        if !r.flag()? {
            return Ok(()); // vui_parameters_present_flag
        }
        let (fr, m) = vui_signal(&mut r)?;
        full_range = fr;
        matrix = m;
        r.skip(3)?; // neutral_chroma, field_seq, frame_field_info_present
        if r.flag()? {
            // default_display_window_flag
            for _ in 0..4 {
                r.ue()?;
            }
        }
        if r.flag()? {
            // vui_timing_info_present_flag; H.265 E.3.1: one tick per picture.
            let n = r.bits(32)?;
            let t = r.bits(32)?;
            fps = fps_from(n, t, 1.0);
        }
        Ok(())
    })();
    let _ = vui;
    Ok(SpsInfo {
        codec: Codec::H265,
        profile_idc,
        level_idc,
        width: out_w,
        height: out_h,
        colour: colour_from_vui(out_h, full_range, matrix),
        fps,
        bit_depth_luma: bit_depth_luma as u8,
        chroma_format_idc: chroma_format_idc as u8,
        max_num_reorder_frames: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x264 640x480 Main SPS with VUI timing (25 fps), from TUD-Campus.h264's first SPS shape:
    /// built here bit by bit so the test does not depend on the media directory.
    fn write_ue(bits: &mut Vec<bool>, v: u32) {
        let x = v as u64 + 1;
        let len = 64 - x.leading_zeros();
        for _ in 0..len - 1 {
            bits.push(false);
        }
        for i in (0..len).rev() {
            bits.push((x >> i) & 1 == 1);
        }
    }
    fn write_bits(bits: &mut Vec<bool>, v: u32, n: u32) {
        for i in (0..n).rev() {
            bits.push((v >> i) & 1 == 1);
        }
    }
    fn to_bytes(mut bits: Vec<bool>) -> Vec<u8> {
        bits.push(true); // rbsp_stop_one_bit
        while !bits.len().is_multiple_of(8) {
            bits.push(false);
        }
        let raw: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | b as u8))
            .collect();
        // Emulation prevention (H.264 7.4.1): 00 00 0x with x <= 3 gets an 03 inserted.
        let mut out = Vec::new();
        let mut zeros = 0;
        for b in raw {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }

    fn h264_sps(crop_bottom: u32, vui: Option<(bool, u8, u32, u32)>) -> Vec<u8> {
        let mut b = Vec::new();
        write_bits(&mut b, 77, 8); // Main
        write_bits(&mut b, 0, 8);
        write_bits(&mut b, 30, 8);
        write_ue(&mut b, 0); // sps id
        write_ue(&mut b, 0); // log2_max_frame_num_minus4
        write_ue(&mut b, 0); // poc type 0
        write_ue(&mut b, 2);
        write_ue(&mut b, 3); // max refs
        b.push(false);
        write_ue(&mut b, 119); // 1920 / 16 - 1
        write_ue(&mut b, 67); // 1088 / 16 - 1
        b.push(true); // frame_mbs_only
        b.push(true); // direct_8x8
        b.push(crop_bottom > 0);
        if crop_bottom > 0 {
            for v in [0, 0, 0, crop_bottom] {
                write_ue(&mut b, v);
            }
        }
        b.push(vui.is_some());
        if let Some((full, matrix, tick, scale)) = vui {
            b.push(false); // aspect
            b.push(false); // overscan
            b.push(true); // video signal
            write_bits(&mut b, 5, 3);
            b.push(full);
            b.push(true);
            write_bits(&mut b, 1, 8);
            write_bits(&mut b, 1, 8);
            write_bits(&mut b, matrix as u32, 8);
            b.push(false); // chroma loc
            b.push(true); // timing
            write_bits(&mut b, tick, 32);
            write_bits(&mut b, scale, 32);
            b.push(true);
        }
        let mut nal = vec![0x67];
        nal.extend(to_bytes(b));
        nal
    }

    #[test]
    fn h264_size_crop_colour_fps() {
        let nal = h264_sps(4, Some((true, 6, 1, 50)));
        let s = parse_h264_sps(&nal).unwrap();
        assert_eq!((s.width, s.height), (1920, 1080));
        assert_eq!(s.fps, Some(25.0));
        assert_eq!(
            s.colour,
            ColourDesc {
                matrix: Matrix::Bt601,
                full_range: true
            }
        );
        let s = parse_h264_sps(&h264_sps(0, None)).unwrap();
        assert_eq!((s.width, s.height), (1920, 1088));
        assert_eq!(s.fps, None);
        assert_eq!(s.colour, ColourDesc::default_for_height(1088));
    }

    #[test]
    fn h264_garbage_and_truncation_never_panic() {
        let sps = h264_sps(4, Some((false, 1, 1001, 60000)));
        for cut in 0..sps.len() {
            let _ = parse_h264_sps(&sps[..cut]);
        }
        assert!(parse_h264_sps(&sps[..5]).is_err());
        assert_eq!(parse_h264_sps(&[0x68, 1, 2]), Err(SpsError::NotSps(8)));
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut v = vec![0x67];
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            let _ = parse_h264_sps(&v);
            v[0] = 0x42;
            v[1] = 0x01;
            let _ = parse_h265_sps(&v);
        }
    }

    #[test]
    fn emulation_prevention_is_removed() {
        let mut out = [0u8; 8];
        let n = unescape(&[0x67, 0, 0, 3, 1, 0, 0, 3], 1, &mut out);
        assert_eq!(&out[..n], &[0, 0, 1, 0, 0]);
    }
}
