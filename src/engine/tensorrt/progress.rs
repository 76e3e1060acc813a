//! Turns TensorRT's build progress (`nvinfer1::IProgressMonitor`: `phaseStart(name, parent,
//! nbSteps)`, `stepComplete(name, step)`, `phaseFinish(name)`, TensorRT ≥ 10.0) into lines
//! for `jetwatch engine build`. Pure logic: the shim forwards the raw events.

use std::collections::HashMap;

/// Event kinds, as the shim numbers them (`JW_TRT_PHASE_*`).
pub const PHASE_START: i32 = 0;
pub const PHASE_STEP: i32 = 1;
pub const PHASE_FINISH: i32 = 2;

/// Tracks open phases so step lines can say "3/12" and nest under their parent.
#[derive(Debug, Default)]
pub struct ProgressTracker {
    /// phase name → (depth, number of steps)
    open: HashMap<String, (usize, i32)>,
}

impl ProgressTracker {
    /// Returns the line to show for an event, if any. Steps are reported when the step count
    /// is small (≤ 20) or at every tenth of the phase, so a long phase prints ~10 lines.
    pub fn event(&mut self, kind: i32, phase: &str, parent: &str, value: i32) -> Option<String> {
        match kind {
            PHASE_START => {
                let depth = if parent.is_empty() {
                    0
                } else {
                    self.open.get(parent).map(|p| p.0 + 1).unwrap_or(1)
                };
                self.open.insert(phase.to_string(), (depth, value));
                let steps = if value > 0 {
                    format!(" ({value} steps)")
                } else {
                    String::new()
                };
                Some(format!("{}{phase}{steps}", "  ".repeat(depth)))
            }
            PHASE_STEP => {
                let &(depth, n) = self.open.get(phase)?;
                let done = value + 1;
                if n <= 0 {
                    return None;
                }
                let every = if n <= 20 { 1 } else { (n + 9) / 10 };
                if done % every == 0 || done == n {
                    Some(format!("{}{phase}: {done}/{n}", "  ".repeat(depth + 1)))
                } else {
                    None
                }
            }
            PHASE_FINISH => {
                let (depth, _) = self.open.remove(phase)?;
                Some(format!("{}{phase} done", "  ".repeat(depth)))
            }
            _ => None,
        }
    }
}
