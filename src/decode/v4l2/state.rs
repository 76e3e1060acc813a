//! The stateful-decoder protocol as a pure state machine, following the kernel's
//! "Memory-to-Memory Stateful Video Decoder Interface" (dev-decoder.rst): Initialization →
//! Capture Setup (on `V4L2_EVENT_SOURCE_CHANGE`) → Decoding → Dynamic Resolution Change
//! (source change, then the CAPTURE buffer flagged `V4L2_BUF_FLAG_LAST`, then capture
//! reallocation) → Drain (`V4L2_DEC_CMD_STOP` until `V4L2_BUF_FLAG_LAST`) → End of Stream,
//! resumed with `V4L2_DEC_CMD_START` (section "Drain", last paragraphs). No IO here: the
//! decoder feeds [`Input`]s and performs the returned [`Action`].

/// Where the decoder is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// OUTPUT streaming, CAPTURE not set up: waiting for the first source-change event
    /// ("Initialization", step 7).
    AwaitingSourceChange,
    /// Both queues streaming ("Decoding").
    Decoding,
    /// A source change arrived while decoding: CAPTURE buffers keep coming until the one
    /// flagged LAST ("Dynamic Resolution Change").
    ResolutionChange,
    /// `V4L2_DEC_CMD_STOP` sent; waiting for the LAST buffer ("Drain").
    Draining,
    /// Source change during a drain: reallocate at the LAST buffer, then keep draining.
    DrainingResolutionChange,
    /// Drain finished: the decoder is stopped until `V4L2_DEC_CMD_START` ("End of Stream").
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `V4L2_EVENT_SOURCE_CHANGE` with `V4L2_EVENT_SRC_CH_RESOLUTION`.
    SourceChange,
    /// A CAPTURE buffer flagged `V4L2_BUF_FLAG_LAST` was dequeued.
    LastBuffer,
    /// The caller wants every pending picture (end of stream or flush).
    Drain,
    /// The caller queues more bitstream.
    Feed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// G_FMT CAPTURE, REQBUFS, map, QBUF all, STREAMON CAPTURE ("Capture Setup").
    SetupCapture,
    /// STREAMOFF CAPTURE, free, then Capture Setup with the new format.
    ReallocateCapture,
    /// Issue `V4L2_DEC_CMD_STOP`.
    SendStop,
    /// Nothing was ever decoded (no source change): nothing to drain.
    NothingToDrain,
    /// The drain is complete.
    Drained,
    /// Issue `V4L2_DEC_CMD_START` to leave the stopped state, then feed.
    SendStart,
}

/// An input that the protocol does not allow in this phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal {
    pub phase: Phase,
    pub input: Input,
}

/// One protocol step: the next phase and what to do.
pub fn step(phase: Phase, input: Input) -> Result<(Phase, Action), Illegal> {
    use Action as A;
    use Input as I;
    use Phase as P;
    Ok(match (phase, input) {
        (P::AwaitingSourceChange, I::SourceChange) => (P::Decoding, A::SetupCapture),
        (P::AwaitingSourceChange, I::Feed) => (P::AwaitingSourceChange, A::None),
        (P::AwaitingSourceChange, I::Drain) => (P::AwaitingSourceChange, A::NothingToDrain),
        (P::Decoding, I::SourceChange) => (P::ResolutionChange, A::None),
        (P::Decoding, I::Feed) => (P::Decoding, A::None),
        (P::Decoding, I::Drain) => (P::Draining, A::SendStop),
        // Some drivers flag LAST without a pending change (e.g. after an error); treat it as
        // the end of a resolution change with an unchanged format.
        (P::Decoding, I::LastBuffer) => (P::Decoding, A::ReallocateCapture),
        (P::ResolutionChange, I::LastBuffer) => (P::Decoding, A::ReallocateCapture),
        (P::ResolutionChange, I::Feed) => (P::ResolutionChange, A::None),
        (P::ResolutionChange, I::SourceChange) => (P::ResolutionChange, A::None),
        (P::ResolutionChange, I::Drain) => (P::DrainingResolutionChange, A::SendStop),
        (P::Draining, I::LastBuffer) => (P::Stopped, A::Drained),
        (P::Draining, I::SourceChange) => (P::DrainingResolutionChange, A::None),
        (P::DrainingResolutionChange, I::LastBuffer) => (P::Draining, A::ReallocateCapture),
        (P::DrainingResolutionChange, I::SourceChange) => (P::DrainingResolutionChange, A::None),
        (P::Stopped, I::Feed) => (P::Decoding, A::SendStart),
        (P::Stopped, I::Drain) => (P::Stopped, A::Drained),
        (P::Stopped, I::SourceChange) => (P::ResolutionChange, A::SendStart),
        (phase, input) => return Err(Illegal { phase, input }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use Input as I;
    use Phase as P;

    fn run(inputs: &[Input]) -> Result<Vec<(Phase, Action)>, Illegal> {
        let mut p = P::AwaitingSourceChange;
        let mut out = Vec::new();
        for &i in inputs {
            let (n, a) = step(p, i)?;
            out.push((n, a));
            p = n;
        }
        Ok(out)
    }

    #[test]
    fn normal_decode_then_drain_then_resume() {
        let r = run(&[
            I::Feed,
            I::SourceChange,
            I::Feed,
            I::Drain,
            I::LastBuffer,
            I::Feed,
        ])
        .unwrap();
        assert_eq!(
            r,
            vec![
                (P::AwaitingSourceChange, A::None),
                (P::Decoding, A::SetupCapture),
                (P::Decoding, A::None),
                (P::Draining, A::SendStop),
                (P::Stopped, A::Drained),
                (P::Decoding, A::SendStart),
            ]
        );
    }

    #[test]
    fn resolution_change_reallocates_at_last_buffer() {
        let r = run(&[I::SourceChange, I::SourceChange, I::Feed, I::LastBuffer]).unwrap();
        assert_eq!(r[1], (P::ResolutionChange, A::None));
        assert_eq!(r[3], (P::Decoding, A::ReallocateCapture));
    }

    #[test]
    fn resolution_change_during_drain_keeps_draining() {
        let r = run(&[
            I::SourceChange,
            I::Drain,
            I::SourceChange,
            I::LastBuffer,
            I::LastBuffer,
        ])
        .unwrap();
        assert_eq!(r[2], (P::DrainingResolutionChange, A::None));
        assert_eq!(r[3], (P::Draining, A::ReallocateCapture));
        assert_eq!(r[4], (P::Stopped, A::Drained));
    }

    #[test]
    fn drain_before_any_header_has_nothing_to_drain() {
        assert_eq!(
            run(&[I::Feed, I::Drain]).unwrap()[1],
            (P::AwaitingSourceChange, A::NothingToDrain)
        );
    }

    #[test]
    fn illegal_inputs_are_rejected() {
        assert_eq!(
            step(P::AwaitingSourceChange, I::LastBuffer),
            Err(Illegal {
                phase: P::AwaitingSourceChange,
                input: I::LastBuffer
            })
        );
        assert!(step(P::Draining, I::Feed).is_err());
        assert!(step(P::Draining, I::Drain).is_err());
    }

    #[test]
    fn every_phase_input_pair_is_decided() {
        let phases = [
            P::AwaitingSourceChange,
            P::Decoding,
            P::ResolutionChange,
            P::Draining,
            P::DrainingResolutionChange,
            P::Stopped,
        ];
        let inputs = [I::SourceChange, I::LastBuffer, I::Drain, I::Feed];
        let mut legal = 0;
        for p in phases {
            for i in inputs {
                if let Ok((n, _)) = step(p, i) {
                    legal += 1;
                    // Every reachable phase can always be drained or fed eventually.
                    assert!(phases.contains(&n));
                }
            }
        }
        assert_eq!(legal, 18);
    }
}
