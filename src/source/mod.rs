//! Sources: where access units come from (files today; RTSP and V4L2 cameras plug in here).
//!
//! A source fills a caller-owned [`AccessUnit`] (pre-allocated, reused) with one Annex-B
//! access unit at a time. Container and packetisation details stay inside the source.

use crate::error::SourceError;
use crate::frame::{AccessUnit, StreamInfo};

/// What `Source::next` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEvent {
    /// `au` holds a new access unit.
    AccessUnit,
    /// The source looped back to its start (files with `loop = true`): the decoder should be
    /// ready for a new IDR. `au` holds the first access unit after the loop.
    Looped,
    /// No more data.
    End,
}

/// A stream of access units.
pub trait Source: Send {
    /// Codec, size and colour of the stream.
    fn info(&self) -> &StreamInfo;
    /// Reads the next access unit into `au` (replacing its contents). Never grows `au.data`
    /// beyond its capacity: an access unit that does not fit is `SourceError::TooLarge`.
    fn next(&mut self, au: &mut AccessUnit) -> Result<SourceEvent, SourceError>;
}

pub mod annexb;
pub mod au;
pub mod file;
pub mod mp4;
pub mod sps;
pub mod v4l2;
