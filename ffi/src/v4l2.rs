//! Linux V4L2 UAPI (`<linux/videodev2.h>`, `<linux/v4l2-controls.h>`): the structures, ioctl
//! numbers and constants jetwatch uses, written from the kernel's "Video for Linux API"
//! documentation (Documentation/userspace-api/media/v4l/). Layouts are those of a 64-bit
//! (LP64) kernel; `tests::layout_matches_kernel_headers` compiles a C program against the
//! installed headers and compares every size and offset declared here.

use libc::{c_ulong, timespec, timeval};

// ---- ioctl number encoding (asm-generic/ioctl.h) ----
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> c_ulong {
    ((dir << IOC_DIRSHIFT)
        | ((b'V' as u32) << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)) as c_ulong
}
const fn ior<T>(nr: u32) -> c_ulong {
    ioc(IOC_READ, nr, core::mem::size_of::<T>())
}
const fn iow<T>(nr: u32) -> c_ulong {
    ioc(IOC_WRITE, nr, core::mem::size_of::<T>())
}
const fn iowr<T>(nr: u32) -> c_ulong {
    ioc(IOC_READ | IOC_WRITE, nr, core::mem::size_of::<T>())
}

pub const VIDIOC_QUERYCAP: c_ulong = ior::<v4l2_capability>(0);
pub const VIDIOC_ENUM_FMT: c_ulong = iowr::<v4l2_fmtdesc>(2);
pub const VIDIOC_G_FMT: c_ulong = iowr::<v4l2_format>(4);
pub const VIDIOC_S_FMT: c_ulong = iowr::<v4l2_format>(5);
pub const VIDIOC_REQBUFS: c_ulong = iowr::<v4l2_requestbuffers>(8);
pub const VIDIOC_QUERYBUF: c_ulong = iowr::<v4l2_buffer>(9);
pub const VIDIOC_QBUF: c_ulong = iowr::<v4l2_buffer>(15);
pub const VIDIOC_EXPBUF: c_ulong = iowr::<v4l2_exportbuffer>(16);
pub const VIDIOC_DQBUF: c_ulong = iowr::<v4l2_buffer>(17);
pub const VIDIOC_STREAMON: c_ulong = iow::<i32>(18);
pub const VIDIOC_STREAMOFF: c_ulong = iow::<i32>(19);
pub const VIDIOC_G_CTRL: c_ulong = iowr::<v4l2_control>(27);
pub const VIDIOC_S_CTRL: c_ulong = iowr::<v4l2_control>(28);
pub const VIDIOC_TRY_FMT: c_ulong = iowr::<v4l2_format>(64);
pub const VIDIOC_ENUM_FRAMESIZES: c_ulong = iowr::<v4l2_frmsizeenum>(74);
pub const VIDIOC_DQEVENT: c_ulong = ior::<v4l2_event>(89);
pub const VIDIOC_SUBSCRIBE_EVENT: c_ulong = iow::<v4l2_event_subscription>(90);
pub const VIDIOC_G_SELECTION: c_ulong = iowr::<v4l2_selection>(94);
pub const VIDIOC_S_SELECTION: c_ulong = iowr::<v4l2_selection>(95);
pub const VIDIOC_DECODER_CMD: c_ulong = iowr::<v4l2_decoder_cmd>(96);
pub const VIDIOC_ENCODER_CMD: c_ulong = iowr::<v4l2_encoder_cmd>(77);

// ---- capabilities (struct v4l2_capability, "ioctl VIDIOC_QUERYCAP") ----
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
pub const V4L2_CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub const V4L2_CAP_VIDEO_M2M: u32 = 0x0000_8000;
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;

// ---- enum v4l2_buf_type / v4l2_memory / v4l2_field ----
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
pub const V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE: u32 = 10;
pub const V4L2_MEMORY_MMAP: u32 = 1;
pub const V4L2_MEMORY_USERPTR: u32 = 2;
pub const V4L2_MEMORY_DMABUF: u32 = 4;
pub const V4L2_FIELD_ANY: u32 = 0;
pub const V4L2_FIELD_NONE: u32 = 1;

// ---- buffer flags ("Buffer Flags" table in buffer.rst) ----
pub const V4L2_BUF_FLAG_MAPPED: u32 = 0x0000_0001;
pub const V4L2_BUF_FLAG_QUEUED: u32 = 0x0000_0002;
pub const V4L2_BUF_FLAG_DONE: u32 = 0x0000_0004;
pub const V4L2_BUF_FLAG_KEYFRAME: u32 = 0x0000_0008;
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0000_0040;
pub const V4L2_BUF_FLAG_TIMESTAMP_MASK: u32 = 0x0000_e000;
pub const V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;
pub const V4L2_BUF_FLAG_TIMESTAMP_COPY: u32 = 0x0000_4000;
pub const V4L2_BUF_FLAG_LAST: u32 = 0x0010_0000;

// ---- events (vidioc-dqevent.rst) ----
pub const V4L2_EVENT_EOS: u32 = 2;
pub const V4L2_EVENT_SOURCE_CHANGE: u32 = 5;
pub const V4L2_EVENT_SRC_CH_RESOLUTION: u32 = 1 << 0;

// ---- decoder / encoder commands (vidioc-decoder-cmd.rst, vidioc-encoder-cmd.rst) ----
pub const V4L2_DEC_CMD_START: u32 = 0;
pub const V4L2_DEC_CMD_STOP: u32 = 1;
pub const V4L2_ENC_CMD_START: u32 = 0;
pub const V4L2_ENC_CMD_STOP: u32 = 1;

// ---- controls (v4l2-controls.h) ----
pub const V4L2_CID_BASE: u32 = 0x0098_0900;
pub const V4L2_CID_USER_BASE: u32 = V4L2_CID_BASE;
pub const V4L2_CID_MIN_BUFFERS_FOR_CAPTURE: u32 = V4L2_CID_BASE + 39;
pub const V4L2_CID_MIN_BUFFERS_FOR_OUTPUT: u32 = V4L2_CID_BASE + 40;
pub const V4L2_CTRL_CLASS_CODEC: u32 = 0x0099_0000;
pub const V4L2_CID_CODEC_BASE: u32 = V4L2_CTRL_CLASS_CODEC | 0x900;

// ---- frame sizes (vidioc-enum-framesizes.rst) ----
pub const V4L2_FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const V4L2_FRMSIZE_TYPE_CONTINUOUS: u32 = 2;
pub const V4L2_FRMSIZE_TYPE_STEPWISE: u32 = 3;

/// `v4l2_fourcc(a, b, c, d)`.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    (code[0] as u32) | ((code[1] as u32) << 8) | ((code[2] as u32) << 16) | ((code[3] as u32) << 24)
}
pub const V4L2_PIX_FMT_NV12: u32 = fourcc(b"NV12");
pub const V4L2_PIX_FMT_NV12M: u32 = fourcc(b"NM12");
pub const V4L2_PIX_FMT_YUV420: u32 = fourcc(b"YU12");
pub const V4L2_PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
pub const V4L2_PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const V4L2_PIX_FMT_H264: u32 = fourcc(b"H264");
pub const V4L2_PIX_FMT_HEVC: u32 = fourcc(b"HEVC");
pub const V4L2_PIX_FMT_FWHT: u32 = fourcc(b"FWHT");

pub const VIDEO_MAX_PLANES: usize = 8;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_fmtdesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

/// Single-planar image format (pixfmt-v4l2.rst).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_pix_format {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    /// Union of `ycbcr_enc` and `hsv_enc`.
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// One plane of a multi-planar format (pixfmt-v4l2-mplane.rst); packed in the UAPI.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_plane_pix_format {
    pub sizeimage: u32,
    pub bytesperline: u32,
    pub reserved: [u16; 6],
}

/// Multi-planar image format (pixfmt-v4l2-mplane.rst); packed in the UAPI.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_pix_format_mplane {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub colorspace: u32,
    pub plane_fmt: [v4l2_plane_pix_format; VIDEO_MAX_PLANES],
    pub num_planes: u8,
    pub flags: u8,
    pub ycbcr_enc: u8,
    pub quantization: u8,
    pub xfer_func: u8,
    pub reserved: [u8; 7],
}

/// The `fmt` union of `struct v4l2_format`: 200 bytes, 8-byte aligned on LP64 because
/// `struct v4l2_window` holds pointers.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_format_fmt {
    pub pix: v4l2_pix_format,
    pub pix_mp: v4l2_pix_format_mplane,
    pub raw_data: [u8; 200],
    pub _align: [u64; 25],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_format {
    pub type_: u32,
    pub fmt: v4l2_format_fmt,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_requestbuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// `m` union of `struct v4l2_plane`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_plane_m {
    pub mem_offset: u32,
    pub userptr: libc::c_ulong,
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_plane {
    pub bytesused: u32,
    pub length: u32,
    pub m: v4l2_plane_m,
    pub data_offset: u32,
    pub reserved: [u32; 11],
}

/// `m` union of `struct v4l2_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_buffer_m {
    pub offset: u32,
    pub userptr: libc::c_ulong,
    pub planes: *mut v4l2_plane,
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: timeval,
    pub timecode: v4l2_timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: v4l2_buffer_m,
    pub length: u32,
    pub reserved2: u32,
    /// Union of `request_fd` and `reserved`.
    pub request_fd: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_exportbuffer {
    pub type_: u32,
    pub index: u32,
    pub plane: u32,
    pub flags: u32,
    pub fd: i32,
    pub reserved: [u32; 11],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_control {
    pub id: u32,
    pub value: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_event_subscription {
    pub type_: u32,
    pub id: u32,
    pub flags: u32,
    pub reserved: [u32; 5],
}

/// `u` union of `struct v4l2_event` (64 bytes, 8-byte aligned).
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_event_u {
    /// `struct v4l2_event_src_change { __u32 changes; }` is the first word.
    pub src_change_changes: u32,
    pub data: [u8; 64],
    pub _align: [u64; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_event {
    pub type_: u32,
    pub u: v4l2_event_u,
    pub pending: u32,
    pub sequence: u32,
    pub timestamp: timespec,
    pub id: u32,
    pub reserved: [u32; 8],
}

/// `struct v4l2_decoder_cmd`: `cmd`, `flags`, then a 64-byte union (`stop.pts` is a u64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_decoder_cmd {
    pub cmd: u32,
    pub flags: u32,
    pub raw: [u64; 8],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_encoder_cmd {
    pub cmd: u32,
    pub flags: u32,
    pub data: [u32; 8],
}

/// Selection targets (v4l/selection-api-targets.rst).
pub const V4L2_SEL_TGT_CROP: u32 = 0x0000;
pub const V4L2_SEL_TGT_COMPOSE: u32 = 0x0100;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct v4l2_rect {
    pub left: i32,
    pub top: i32,
    pub width: u32,
    pub height: u32,
}

/// `struct v4l2_selection` (vidioc-g-selection.rst).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_selection {
    pub type_: u32,
    pub target: u32,
    pub flags: u32,
    pub r: v4l2_rect,
    pub reserved: [u32; 9],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct v4l2_frmsizeenum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    /// `discrete {width, height}` or `stepwise {min_width, max_width, step_width, min_height,
    /// max_height, step_height}`.
    pub size: [u32; 6],
    pub reserved: [u32; 2],
}

macro_rules! zeroed_default {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: a plain C struct of integers, arrays, unions of those and raw
                // pointers, for which all-zero bytes is a valid (and the documented initial)
                // value.
                unsafe { core::mem::zeroed() }
            }
        }
    )*};
}
zeroed_default!(
    v4l2_capability,
    v4l2_fmtdesc,
    v4l2_format,
    v4l2_requestbuffers,
    v4l2_plane,
    v4l2_buffer,
    v4l2_exportbuffer,
    v4l2_control,
    v4l2_event_subscription,
    v4l2_event,
    v4l2_decoder_cmd,
    v4l2_encoder_cmd,
    v4l2_frmsizeenum,
    v4l2_selection
);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use std::process::Command;

    /// Compiles a C program against the installed `<linux/videodev2.h>` and compares every
    /// size, offset and ioctl number with the declarations above. Skipped (with a message)
    /// when no C compiler or no kernel headers are installed.
    #[test]
    fn layout_matches_kernel_headers() {
        if !std::path::Path::new("/usr/include/linux/videodev2.h").exists() {
            eprintln!("SKIP: /usr/include/linux/videodev2.h missing (install linux-libc-dev)");
            return;
        }
        let checks: Vec<(&str, usize)> = vec![
            (
                "sizeof(struct v4l2_capability)",
                size_of::<v4l2_capability>(),
            ),
            ("sizeof(struct v4l2_fmtdesc)", size_of::<v4l2_fmtdesc>()),
            (
                "sizeof(struct v4l2_pix_format)",
                size_of::<v4l2_pix_format>(),
            ),
            (
                "sizeof(struct v4l2_plane_pix_format)",
                size_of::<v4l2_plane_pix_format>(),
            ),
            (
                "sizeof(struct v4l2_pix_format_mplane)",
                size_of::<v4l2_pix_format_mplane>(),
            ),
            (
                "offsetof(struct v4l2_pix_format_mplane, num_planes)",
                offset_of!(v4l2_pix_format_mplane, num_planes),
            ),
            ("sizeof(struct v4l2_format)", size_of::<v4l2_format>()),
            (
                "offsetof(struct v4l2_format, fmt)",
                offset_of!(v4l2_format, fmt),
            ),
            (
                "sizeof(struct v4l2_requestbuffers)",
                size_of::<v4l2_requestbuffers>(),
            ),
            ("sizeof(struct v4l2_plane)", size_of::<v4l2_plane>()),
            ("offsetof(struct v4l2_plane, m)", offset_of!(v4l2_plane, m)),
            (
                "offsetof(struct v4l2_plane, data_offset)",
                offset_of!(v4l2_plane, data_offset),
            ),
            ("sizeof(struct v4l2_buffer)", size_of::<v4l2_buffer>()),
            (
                "offsetof(struct v4l2_buffer, timestamp)",
                offset_of!(v4l2_buffer, timestamp),
            ),
            (
                "offsetof(struct v4l2_buffer, timecode)",
                offset_of!(v4l2_buffer, timecode),
            ),
            (
                "offsetof(struct v4l2_buffer, sequence)",
                offset_of!(v4l2_buffer, sequence),
            ),
            (
                "offsetof(struct v4l2_buffer, memory)",
                offset_of!(v4l2_buffer, memory),
            ),
            (
                "offsetof(struct v4l2_buffer, m)",
                offset_of!(v4l2_buffer, m),
            ),
            (
                "offsetof(struct v4l2_buffer, length)",
                offset_of!(v4l2_buffer, length),
            ),
            (
                "offsetof(struct v4l2_buffer, request_fd)",
                offset_of!(v4l2_buffer, request_fd),
            ),
            (
                "sizeof(struct v4l2_exportbuffer)",
                size_of::<v4l2_exportbuffer>(),
            ),
            ("sizeof(struct v4l2_control)", size_of::<v4l2_control>()),
            (
                "sizeof(struct v4l2_event_subscription)",
                size_of::<v4l2_event_subscription>(),
            ),
            ("sizeof(struct v4l2_event)", size_of::<v4l2_event>()),
            ("offsetof(struct v4l2_event, u)", offset_of!(v4l2_event, u)),
            (
                "offsetof(struct v4l2_event, pending)",
                offset_of!(v4l2_event, pending),
            ),
            (
                "offsetof(struct v4l2_event, timestamp)",
                offset_of!(v4l2_event, timestamp),
            ),
            (
                "offsetof(struct v4l2_event, id)",
                offset_of!(v4l2_event, id),
            ),
            (
                "sizeof(struct v4l2_decoder_cmd)",
                size_of::<v4l2_decoder_cmd>(),
            ),
            (
                "sizeof(struct v4l2_encoder_cmd)",
                size_of::<v4l2_encoder_cmd>(),
            ),
            (
                "sizeof(struct v4l2_frmsizeenum)",
                size_of::<v4l2_frmsizeenum>(),
            ),
            ("VIDIOC_QUERYCAP", VIDIOC_QUERYCAP as usize),
            ("VIDIOC_ENUM_FMT", VIDIOC_ENUM_FMT as usize),
            ("VIDIOC_G_FMT", VIDIOC_G_FMT as usize),
            ("VIDIOC_S_FMT", VIDIOC_S_FMT as usize),
            ("VIDIOC_TRY_FMT", VIDIOC_TRY_FMT as usize),
            ("VIDIOC_REQBUFS", VIDIOC_REQBUFS as usize),
            ("VIDIOC_QUERYBUF", VIDIOC_QUERYBUF as usize),
            ("VIDIOC_QBUF", VIDIOC_QBUF as usize),
            ("VIDIOC_DQBUF", VIDIOC_DQBUF as usize),
            ("VIDIOC_EXPBUF", VIDIOC_EXPBUF as usize),
            ("VIDIOC_STREAMON", VIDIOC_STREAMON as usize),
            ("VIDIOC_STREAMOFF", VIDIOC_STREAMOFF as usize),
            ("VIDIOC_G_CTRL", VIDIOC_G_CTRL as usize),
            ("VIDIOC_S_CTRL", VIDIOC_S_CTRL as usize),
            ("VIDIOC_ENUM_FRAMESIZES", VIDIOC_ENUM_FRAMESIZES as usize),
            ("VIDIOC_DQEVENT", VIDIOC_DQEVENT as usize),
            ("VIDIOC_SUBSCRIBE_EVENT", VIDIOC_SUBSCRIBE_EVENT as usize),
            ("VIDIOC_DECODER_CMD", VIDIOC_DECODER_CMD as usize),
            ("VIDIOC_G_SELECTION", VIDIOC_G_SELECTION as usize),
            ("VIDIOC_S_SELECTION", VIDIOC_S_SELECTION as usize),
            ("sizeof(struct v4l2_selection)", size_of::<v4l2_selection>()),
            (
                "offsetof(struct v4l2_selection, r)",
                offset_of!(v4l2_selection, r),
            ),
            ("V4L2_SEL_TGT_COMPOSE", V4L2_SEL_TGT_COMPOSE as usize),
            ("VIDIOC_ENCODER_CMD", VIDIOC_ENCODER_CMD as usize),
            ("V4L2_PIX_FMT_NV12M", V4L2_PIX_FMT_NV12M as usize),
            ("V4L2_PIX_FMT_FWHT", V4L2_PIX_FMT_FWHT as usize),
            ("V4L2_PIX_FMT_MJPEG", V4L2_PIX_FMT_MJPEG as usize),
            (
                "V4L2_CID_MIN_BUFFERS_FOR_CAPTURE",
                V4L2_CID_MIN_BUFFERS_FOR_CAPTURE as usize,
            ),
            ("V4L2_BUF_FLAG_LAST", V4L2_BUF_FLAG_LAST as usize),
        ];
        let mut src = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include <linux/videodev2.h>\nint main(void){\n",
        );
        for (expr, _) in &checks {
            src.push_str(&format!("printf(\"%lu\\n\", (unsigned long)({expr}));\n"));
        }
        src.push_str("return 0;}\n");
        let dir = std::env::temp_dir().join(format!("jetwatch-v4l2-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = dir.join("layout.c");
        let exe = dir.join("layout");
        std::fs::write(&c, src).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        match Command::new(&cc).arg(&c).arg("-o").arg(&exe).status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{cc} failed to compile the layout probe: {s}"),
            Err(e) => {
                eprintln!("SKIP: no C compiler ({cc}: {e})");
                return;
            }
        }
        let out = Command::new(&exe).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(got.len(), checks.len());
        let mut bad = Vec::new();
        for ((expr, ours), theirs) in checks.iter().zip(&got) {
            if ours != theirs {
                bad.push(format!("{expr}: ours {ours}, header {theirs}"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(bad.is_empty(), "layout mismatches:\n{}", bad.join("\n"));
    }

    #[test]
    fn fourcc_matches_documented_codes() {
        assert_eq!(V4L2_PIX_FMT_NV12, 0x3231_564e);
        assert_eq!(V4L2_PIX_FMT_YUYV, 0x5659_5559);
    }
}
