#!/usr/bin/env python3
"""Independent numpy implementation of docs/preprocess.md, for cross-checking the CPU twin.

usage: preprocess_ref.py IN.nv12 W H OUT.f32 SW SH PLACEMENT ORDER SCALE MATRIX RANGE
  IN.nv12     tightly packed NV12 (pitch = W), W x H luma then ceil(H/2) rows of CbCr
  PLACEMENT   centre | topleft | stretch;  ORDER rgb | bgr;  MATRIX 601 | 709;  RANGE limited | full
Writes the [3, SH, SW] float32 planes (little-endian) to OUT.f32.
"""
import sys

import numpy as np


def geometry(sw, sh, w, h, placement):
    if placement == "stretch":
        return sw, sh, 0, 0
    r = min(sw / w, sh / h)

    def rnd(v):  # round half away from zero, as Rust's f64::round
        return int(np.floor(v + 0.5)) if v >= 0 else -int(np.floor(-v + 0.5))

    nw = min(max(rnd(w * r), 1), sw)
    nh = min(max(rnd(h * r), 1), sh)
    if placement == "topleft":
        return nw, nh, 0, 0
    return nw, nh, max(0, rnd((sw - nw) / 2 - 0.1)), max(0, rnd((sh - nh) / 2 - 0.1))


def bilinear(plane, x, y):
    """plane [h, w] float32; x [nw], y [nh] float32 sample positions -> [nh, nw]."""
    h, w = plane.shape
    x = np.clip(x, 0, w - 1).astype(np.float32)
    y = np.clip(y, 0, h - 1).astype(np.float32)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0).astype(np.float32)[None, :]
    fy = (y - y0).astype(np.float32)[:, None]
    p00, p01 = plane[y0][:, x0], plane[y0][:, x1]
    p10, p11 = plane[y1][:, x0], plane[y1][:, x1]
    top = p00 + (p01 - p00) * fx
    bot = p10 + (p11 - p10) * fx
    return top + (bot - top) * fy


def main():
    a = sys.argv[1:]
    if len(a) != 11:
        sys.exit(__doc__)
    src, w, h, out, sw, sh, placement, order, scale, matrix, rng = a
    w, h, sw, sh = int(w), int(h), int(sw), int(sh)
    scale = np.float32(float(scale))
    raw = np.fromfile(src, dtype=np.uint8)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    luma = raw[: w * h].reshape(h, w).astype(np.float32)
    uv = raw[w * h : w * h + 2 * cw * ch].reshape(ch, cw, 2).astype(np.float32)
    nw, nh, left, top = geometry(sw, sh, w, h, placement)
    f = np.float32
    sx = (np.arange(nw, dtype=f) + f(0.5)) * (f(w) / f(nw)) - f(0.5)
    sy = (np.arange(nh, dtype=f) + f(0.5)) * (f(h) / f(nh)) - f(0.5)
    cx = (sx + f(0.5)) / f(2) - f(0.5)
    cy = (sy + f(0.5)) / f(2) - f(0.5)
    Y = bilinear(luma, sx, sy)
    Cb = bilinear(uv[:, :, 0], cx, cy)
    Cr = bilinear(uv[:, :, 1], cx, cy)
    kr, kb = (f(0.299), f(0.114)) if matrix == "601" else (f(0.2126), f(0.0722))
    kg = f(1) - kr - kb
    if rng == "limited":
        y = (Y - f(16)) * (f(255) / f(219))
        cb = (Cb - f(128)) * (f(255) / f(224))
        cr = (Cr - f(128)) * (f(255) / f(224))
    else:
        y, cb, cr = Y, Cb - f(128), Cr - f(128)
    R = y + f(2) * (f(1) - kr) * cr
    G = y - (f(2) * kb * (f(1) - kb) / kg) * cb - (f(2) * kr * (f(1) - kr) / kg) * cr
    B = y + f(2) * (f(1) - kb) * cb
    rgb = [np.clip(c, 0, 255).astype(f) * scale for c in (R, G, B)]
    if order == "bgr":
        rgb = rgb[::-1]
    canvas = np.full((3, sh, sw), f(114) * scale, dtype=f)
    for c in range(3):
        canvas[c, top : top + nh, left : left + nw] = rgb[c]
    canvas.astype("<f4").tofile(out)


if __name__ == "__main__":
    main()
