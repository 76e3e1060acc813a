//! Decoders: access units in, NV12 pictures out (host memory, CUDA memory or CUDA arrays).
//!
//! Pictures are owned by the decoder's fixed pool. `decode` hands each finished picture to a
//! sink; the pipeline moves it to the inference thread and gives it back with
//! [`Decoder::recycle`]. When the pool is empty the decoder drops the newest picture and
//! counts it (it never blocks and never allocates).

use crate::error::DecodeError;
use crate::frame::{AccessUnit, ColourDesc, Picture};

/// A decoded picture handed to the sink, with what the decoder knows about it.
#[derive(Debug)]
pub struct Decoded {
    pub picture: Picture,
    pub pts_us: i64,
    pub colour: ColourDesc,
    /// Token to pass back with the picture to `recycle`.
    pub token: u32,
}

/// Counters every decoder keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub access_units: u64,
    pub pictures: u64,
    /// Pictures dropped because every pool slot was in use downstream.
    pub dropped_pool_empty: u64,
    /// Access units the decoder reported as corrupt or could not decode.
    pub corrupt: u64,
}

pub trait Decoder: Send {
    /// Short backend name for logs and `probe` ("openh264", "nvdec", "v4l2").
    fn backend(&self) -> &'static str;
    /// Decodes one access unit; zero or more finished pictures go to `sink` (in output order).
    fn decode(&mut self, au: &AccessUnit, sink: &mut dyn FnMut(Decoded))
        -> Result<(), DecodeError>;
    /// Drains pictures still held inside the decoder (end of stream, or before a loop).
    fn flush(&mut self, sink: &mut dyn FnMut(Decoded)) -> Result<(), DecodeError>;
    /// Gives a picture back to the pool once downstream is done with it.
    fn recycle(&mut self, picture: Picture, token: u32);
    fn stats(&self) -> DecodeStats;
}

#[cfg(feature = "nvdec")]
pub mod nvdec;
#[cfg(feature = "sw-h264")]
pub mod openh264;
pub mod v4l2;
