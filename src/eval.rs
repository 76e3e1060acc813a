//! Detection quality against MOTChallenge ground truth (`gt.txt`): one-to-one greedy matching
//! by score at an IoU threshold, as in ../shared/media/README.md. Used by `jetwatch demo`'s
//! summary and by the end-to-end tests.

use std::collections::BTreeMap;
use std::path::Path;

use crate::postprocess::Detection;

/// A ground-truth box (top-left corner and size, pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// `flag` column: false = "don't care" region.
    pub evaluated: bool,
}

/// Ground truth per frame, keyed by 0-based decoded-frame index.
#[derive(Debug, Clone, Default)]
pub struct GroundTruth {
    pub frames: BTreeMap<u64, Vec<GtBox>>,
}

impl GroundTruth {
    /// Parses MOTChallenge `gt.txt` (`frame, id, left, top, width, height, flag, x, y, z`,
    /// frame 1-based).
    pub fn parse(text: &str) -> Result<GroundTruth, String> {
        let mut gt = GroundTruth::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols.len() < 7 {
                return Err(format!("line {}: expected at least 7 columns", i + 1));
            }
            let num = |k: usize| -> Result<f32, String> {
                cols[k]
                    .parse::<f32>()
                    .map_err(|e| format!("line {}: column {}: {e}", i + 1, k + 1))
            };
            let frame = num(0)? as i64;
            if frame < 1 {
                return Err(format!("line {}: frame numbers start at 1", i + 1));
            }
            gt.frames.entry(frame as u64 - 1).or_default().push(GtBox {
                x: num(2)?,
                y: num(3)?,
                w: num(4)?,
                h: num(5)?,
                evaluated: num(6)? != 0.0,
            });
        }
        Ok(gt)
    }

    pub fn load(path: &Path) -> Result<GroundTruth, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        GroundTruth::parse(&text)
    }

    pub fn boxes(&self) -> usize {
        self.frames
            .values()
            .map(|v| v.iter().filter(|b| b.evaluated).count())
            .sum()
    }
}

/// Intersection over union of two corner boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let ua = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0)
        + (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
        - inter;
    if ua <= 0.0 {
        0.0
    } else {
        inter / ua
    }
}

/// Matching totals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub true_positives: usize,
    pub false_positives: usize,
    pub ground_truth: usize,
}

impl Score {
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / self.ground_truth.max(1) as f64
    }
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / (self.true_positives + self.false_positives).max(1) as f64
    }
}

/// Accumulates matches frame by frame.
#[derive(Debug, Default)]
pub struct Evaluator {
    pub score: Score,
    frames_seen: std::collections::BTreeSet<u64>,
}

impl Evaluator {
    /// Matches the detections of class `class` in frame `frame` against the ground truth:
    /// greedy by descending score, each ground-truth box used once, IoU ≥ `iou_min`.
    /// Detections matching a "don't care" box are ignored. A frame is counted once.
    pub fn add_frame(
        &mut self,
        gt: &GroundTruth,
        frame: u64,
        dets: &[Detection],
        class: u16,
        iou_min: f32,
    ) {
        if !self.frames_seen.insert(frame) {
            return;
        }
        let empty = Vec::new();
        let boxes = gt.frames.get(&frame).unwrap_or(&empty);
        self.score.ground_truth += boxes.iter().filter(|b| b.evaluated).count();
        let mut used = vec![false; boxes.len()];
        let mut order: Vec<&Detection> = dets.iter().filter(|d| d.class == class).collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score));
        for d in order {
            let db = [d.x0, d.y0, d.x1, d.y1];
            let mut best = (-1.0f32, usize::MAX);
            for (i, g) in boxes.iter().enumerate() {
                if used[i] {
                    continue;
                }
                let v = iou(db, [g.x, g.y, g.x + g.w, g.y + g.h]);
                if v > best.0 {
                    best = (v, i);
                }
            }
            if best.0 >= iou_min {
                used[best.1] = true;
                if boxes[best.1].evaluated {
                    self.score.true_positives += 1;
                }
            } else {
                self.score.false_positives += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(score: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> Detection {
        Detection {
            class: 0,
            score,
            x0,
            y0,
            x1,
            y1,
            track: 0,
        }
    }

    #[test]
    fn parses_mot_gt_and_matches_one_to_one() {
        let gt = GroundTruth::parse("1,1,10,10,100,200,1,-1,-1,-1\n1,2,300,10,50,100,1,-1,-1,-1\n2,1,0,0,10,10,0,-1,-1,-1\n").unwrap();
        assert_eq!(gt.boxes(), 2);
        assert_eq!(gt.frames[&0].len(), 2);
        let mut ev = Evaluator::default();
        // Two detections on the first person (one duplicate), one miss elsewhere.
        ev.add_frame(
            &gt,
            0,
            &[
                d(0.9, 12.0, 10.0, 110.0, 210.0),
                d(0.8, 10.0, 12.0, 108.0, 208.0),
                d(0.7, 500.0, 0.0, 550.0, 50.0),
            ],
            0,
            0.5,
        );
        assert_eq!(
            ev.score,
            Score {
                true_positives: 1,
                false_positives: 2,
                ground_truth: 2
            }
        );
        assert!((ev.score.recall() - 0.5).abs() < 1e-9);
        // The same frame again is not counted twice; a don't-care match is not a false positive.
        ev.add_frame(&gt, 0, &[d(0.9, 12.0, 10.0, 110.0, 210.0)], 0, 0.5);
        ev.add_frame(&gt, 1, &[d(0.9, 0.0, 0.0, 10.0, 10.0)], 0, 0.5);
        assert_eq!(
            ev.score,
            Score {
                true_positives: 1,
                false_positives: 2,
                ground_truth: 2
            }
        );
        assert!(GroundTruth::parse("0,1,1,1,1,1,1").is_err());
        assert!(GroundTruth::parse("1,1,a,1,1,1,1").is_err());
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}
