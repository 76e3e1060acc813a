//! Wire format of detection messages (see docs/wire-format.md).
