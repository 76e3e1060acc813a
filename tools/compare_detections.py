#!/usr/bin/env python3
"""Compares the detections two `jetwatch demo --json` runs printed (e.g. the GPU pipeline on a
CUDA host and the CPU pipeline here, on the same clip and model): per frame, the detection
count, and each detection matched to one of the same class with IoU >= 0.9.

usage: tools/compare_detections.py A.txt B.txt [--min-match 0.99]
Exits non-zero if fewer than --min-match of A's detections find a partner in B, or if the
frame sets differ.
"""
import json
import sys


def load(path):
    frames = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            frame = json.loads(line)["frame"]
            frames[frame["header"]["seq"]] = [(d["class"], d["score"], d["box"]) for d in frame["detections"]]
    return frames


def iou(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main():
    args = sys.argv[1:]
    min_match = 0.99
    if "--min-match" in args:
        k = args.index("--min-match")
        min_match = float(args[k + 1])
        del args[k : k + 2]
    a, b = load(args[0]), load(args[1])
    same_count = total_a = total_b = matched = 0
    max_score = max_px = 0.0
    for seq in sorted(set(a) | set(b)):
        da, db = a.get(seq, []), b.get(seq, [])
        total_a += len(da)
        total_b += len(db)
        same_count += len(da) == len(db)
        used = set()
        for cls, score, box in da:
            best = None
            for j, (cls2, score2, box2) in enumerate(db):
                if j in used or cls2 != cls:
                    continue
                v = iou(box, box2)
                if best is None or v > best[0]:
                    best = (v, j, score2, box2)
            if best and best[0] >= 0.9:
                used.add(best[1])
                matched += 1
                max_score = max(max_score, abs(score - best[2]))
                max_px = max(max_px, max(abs(p - q) for p, q in zip(box, best[3])))
    frames = len(set(a) | set(b))
    print(
        f"frames {frames}: same detection count in {same_count}; A {total_a} detections, "
        f"B {total_b}, matched (same class, IoU >= 0.9) {matched}; "
        f"max |score diff| {max_score:.4f}, max box diff {max_px:g} px"
    )
    ok = set(a) == set(b) and matched >= min_match * max(total_a, 1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
