#!/usr/bin/env python3
"""Makes the inputs tools/gpu-check.sh needs from ../shared (run on a development host; the GPU
host cannot see ../shared):

  nv12_<W>x<H>.bin        real decoded NV12 frames (pitch = width), first frame of each clip,
                          decoded by ffmpeg (`-pix_fmt nv12 -f rawvideo`)
  yolov8n_out_f32.bin     raw output0 [1, 84, 8400] float32 of yolov8n_fp32.onnx on that frame
  yolov8n_out_f16.bin     raw output0 [1, 84, 8400] float16 of yolov8n_fp16.onnx on the same frame
  yolov8n_letterbox.txt   src_w src_h scaled_w scaled_h left top of that frame on the 640 canvas

The frame whose YOLOv8n output has the most anchors above 0.25 is used. The model input is made with numpy (BT.709 limited range, bilinear letterbox, /255): only a
realistic output tensor is needed here, the GPU test compares the CUDA postprocess against
the CPU twin on it.

Usage: tools/gpu-fixtures.py OUT_DIR [SHARED_DIR]
"""
import gzip
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

out = sys.argv[1]
shared = sys.argv[2] if len(sys.argv) > 2 else os.environ.get(
    "JETWATCH_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
os.makedirs(out, exist_ok=True)


def decode_first(path):
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", path],
                           check=True, capture_output=True, text=True).stdout.strip()
    w, h = map(int, probe.split(",")[:2])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-pix_fmt", "nv12",
                          "-f", "rawvideo", "-"], check=True, capture_output=True).stdout
    assert len(raw) == w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2), (len(raw), w, h)
    return w, h, raw


frames = {}
for clip in ["cam1080_h264.mp4", "bikes_h264.mp4", "car-detection_h264.mp4"]:
    w, h, raw = decode_first(os.path.join(shared, "media", clip))
    with open(os.path.join(out, f"nv12_{w}x{h}.bin"), "wb") as f:
        f.write(raw)
    frames[(w, h)] = raw
    print(f"{clip}: {w}x{h}")

def model_input(w, h, raw):
    y = np.frombuffer(raw, np.uint8, w * h).reshape(h, w).astype(np.float32)
    c = np.frombuffer(raw, np.uint8, offset=w * h).reshape((h + 1) // 2, (w + 1) // 2, 2).astype(np.float32)
    cb = np.repeat(np.repeat(c[..., 0], 2, 0), 2, 1)[:h, :w] - 128
    cr = np.repeat(np.repeat(c[..., 1], 2, 0), 2, 1)[:h, :w] - 128
    yy = (y - 16) * 255 / 219
    cb *= 255 / 224
    cr *= 255 / 224
    kr, kb = 0.2126, 0.0722
    kg = 1 - kr - kb
    rgb = np.stack([yy + 2 * (1 - kr) * cr,
                    yy - 2 * kb * (1 - kb) / kg * cb - 2 * kr * (1 - kr) / kg * cr,
                    yy + 2 * (1 - kb) * cb]).clip(0, 255)
    S = 640
    r = min(S / w, S / h)
    nw, nh = round(w * r), round(h * r)
    left, top = max(0, round((S - nw) / 2 - 0.1)), max(0, round((S - nh) / 2 - 0.1))
    xs = ((np.arange(nw) + 0.5) * (w / nw) - 0.5).clip(0, w - 1)
    ys = ((np.arange(nh) + 0.5) * (h / nh) - 0.5).clip(0, h - 1)
    x0 = np.floor(xs).astype(int); x1 = np.minimum(x0 + 1, w - 1); fx = xs - x0
    y0 = np.floor(ys).astype(int); y1 = np.minimum(y0 + 1, h - 1); fy = ys - y0
    t = rgb[:, y0][:, :, x0] * (1 - fx) + rgb[:, y0][:, :, x1] * fx
    b = rgb[:, y1][:, :, x0] * (1 - fx) + rgb[:, y1][:, :, x1] * fx
    img = t * (1 - fy[:, None]) + b * fy[:, None]
    canvas = np.full((1, 3, S, S), 114.0, np.float32)
    canvas[0, :, top:top + nh, left:left + nw] = img
    canvas /= 255.0
    return canvas, (w, h, nw, nh, left, top)



# The frame with the most confident YOLOv8n anchors (fp32 model) is the fixture.
fp32 = ort.InferenceSession(gzip.decompress(open(os.path.join(shared, "models", "yolov8n_fp32.onnx.gz"), "rb").read()),
                            providers=["CPUExecutionProvider"])
best = None
for (w, h), raw in frames.items():
    canvas, lb = model_input(w, h, raw)
    o = fp32.run(None, {fp32.get_inputs()[0].name: canvas})[0]
    n = int((o[0, 4:].max(0) > 0.25).sum())
    print(f"{w}x{h}: {n} anchors > 0.25")
    if best is None or n > best[0]:
        best = (n, canvas, lb)
_, canvas, lb = best
with open(os.path.join(out, "yolov8n_letterbox.txt"), "w") as f:
    f.write(" ".join(map(str, lb)) + "\n")

for name, dtype in [("yolov8n_fp32.onnx.gz", np.float32), ("yolov8n_fp16.onnx.gz", np.float16)]:
    model = gzip.decompress(open(os.path.join(shared, "models", name), "rb").read())
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    o = sess.run(None, {sess.get_inputs()[0].name: canvas.astype(dtype)})[0]
    assert o.shape == (1, 84, 8400) and o.dtype == dtype, (o.shape, o.dtype)
    tag = "f32" if dtype == np.float32 else "f16"
    o.tofile(os.path.join(out, f"yolov8n_out_{tag}.bin"))
    print(f"{name}: output {o.shape} {o.dtype}, best score {o[0, 4:].max():.3f}, "
          f"anchors > 0.25: {(o[0, 4:].max(0) > 0.25).sum()}")
