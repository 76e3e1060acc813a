//! The publish decision per camera: every frame with detections, or only on change, with a
//! minimum interval. Pure logic over fixed-size state (no allocation).

use crate::config::PublishMode;
use crate::postprocess::{Detection, DetectionList};

/// Per-camera publish state.
#[derive(Debug, Default)]
pub struct PublishGate {
    last: DetectionList,
    last_published_ns: Option<u64>,
    /// The last published message had detections (so an empty frame must be announced).
    last_had_detections: bool,
}

impl PublishGate {
    /// Decides whether a frame with `dets` at time `now_ns` is published, and records it if so.
    ///
    /// Rules: a frame with detections is published in `EveryFrame` mode, and in `OnChange`
    /// mode when the set differs from the last published one (count per class, or a box
    /// moving by more than a tenth of its size); the first frame without detections after
    /// a published frame with detections is always published (so subscribers can clear);
    /// `min_interval_ns` rate-limits everything except that clearing message.
    pub fn decide(
        &mut self,
        mode: PublishMode,
        min_interval_ns: u64,
        now_ns: u64,
        dets: &[Detection],
    ) -> bool {
        let publish = if dets.is_empty() {
            self.last_had_detections
        } else {
            let rate_ok = match self.last_published_ns {
                Some(t) => now_ns.saturating_sub(t) >= min_interval_ns,
                None => true,
            };
            rate_ok
                && match mode {
                    PublishMode::EveryFrame => true,
                    PublishMode::OnChange => !self.last_had_detections || changed(&self.last, dets),
                }
        };
        if publish {
            self.last.clear();
            for d in dets {
                let _ = self.last.push(*d);
            }
            self.last_published_ns = Some(now_ns);
            self.last_had_detections = !dets.is_empty();
        }
        publish
    }
}

fn changed(prev: &[Detection], now: &[Detection]) -> bool {
    if prev.len() != now.len() {
        return true;
    }
    // Same count: every current detection must have a same-class partner that moved little.
    // O(n²) on at most MAX_DETECTIONS entries, no allocation.
    now.iter().any(|d| {
        !prev.iter().any(|p| {
            p.class == d.class && {
                let tol_x = 0.1 * (p.x1 - p.x0).abs().max(1.0);
                let tol_y = 0.1 * (p.y1 - p.y0).abs().max(1.0);
                (p.x0 - d.x0).abs() <= tol_x
                    && (p.x1 - d.x1).abs() <= tol_x
                    && (p.y0 - d.y0).abs() <= tol_y
                    && (p.y1 - d.y1).abs() <= tol_y
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u16, x: f32) -> Detection {
        Detection {
            class,
            score: 0.9,
            x0: x,
            y0: 10.0,
            x1: x + 100.0,
            y1: 110.0,
            track: 0,
        }
    }

    #[test]
    fn every_frame_publishes_detections_and_one_clearing_empty() {
        let mut g = PublishGate::default();
        assert!(
            !g.decide(PublishMode::EveryFrame, 0, 0, &[]),
            "nothing to clear yet"
        );
        assert!(g.decide(PublishMode::EveryFrame, 0, 1, &[det(0, 0.0)]));
        assert!(g.decide(PublishMode::EveryFrame, 0, 2, &[det(0, 0.0)]));
        assert!(
            g.decide(PublishMode::EveryFrame, 0, 3, &[]),
            "clearing message"
        );
        assert!(!g.decide(PublishMode::EveryFrame, 0, 4, &[]));
    }

    #[test]
    fn on_change_ignores_jitter_and_sees_moves_and_classes() {
        let mut g = PublishGate::default();
        let m = PublishMode::OnChange;
        assert!(g.decide(m, 0, 0, &[det(0, 0.0)]));
        assert!(
            !g.decide(m, 0, 1, &[det(0, 5.0)]),
            "5 px of a 100 px box is jitter"
        );
        assert!(g.decide(m, 0, 2, &[det(0, 20.0)]), "20 px is a move");
        assert!(g.decide(m, 0, 3, &[det(2, 20.0)]), "class changed");
        assert!(
            g.decide(m, 0, 4, &[det(2, 20.0), det(0, 300.0)]),
            "count changed"
        );
    }

    #[test]
    fn min_interval_limits_rate_but_not_clearing() {
        let mut g = PublishGate::default();
        let ms = 1_000_000;
        assert!(g.decide(PublishMode::EveryFrame, 100 * ms, 0, &[det(0, 0.0)]));
        assert!(!g.decide(PublishMode::EveryFrame, 100 * ms, 50 * ms, &[det(0, 0.0)]));
        assert!(g.decide(PublishMode::EveryFrame, 100 * ms, 100 * ms, &[det(0, 0.0)]));
        assert!(g.decide(PublishMode::EveryFrame, 100 * ms, 101 * ms, &[]));
    }
}
