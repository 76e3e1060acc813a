#!/usr/bin/env python3
"""Makes a batch-dynamic copy of a YOLO-style ONNX detector whose batch is fixed to 1.

usage: make_dynamic_batch.py IN.onnx[.gz] OUT.onnx [--no-verify] [--max-batch N]

What it changes (with the `onnx` package):
  * dim 0 of every graph input and output becomes the symbolic dimension `batch`;
  * every Reshape of a tensor computed from the input whose target shape is a constant
    (initializer or Constant node) starting with 1 gets 0 there instead: ONNX Reshape copies a 0 from the input's dimension
    (https://onnx.ai/onnx/operators/onnx__Reshape.html, `allowzero` = 0), so the head's
    reshapes ([1, 64, -1], [1, 4, 16, 8400], [1, 4, 8400] in YOLOv8) follow the batch;
  * stale intermediate shape annotations (value_info) are dropped and shapes re-inferred.
It refuses models where that is not enough (dynamic int8 quantisation, which couples the
items of a batch; a Reshape with allowzero=1, a computed shape whose
first value is 1 but is used elsewhere, an input that is not batch-first).

Verification (default, needs onnxruntime and numpy): runs the original on each of N random
inputs and the new model on batch 1 and on all N at once; the outputs must agree per item.
"""
import argparse
import gzip
import sys

import onnx
from onnx import numpy_helper


def load(path):
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return onnx.load_from_string(f.read())
    return onnx.load(path)


def make_dynamic(model):
    g = model.graph
    if any(n.op_type == "DynamicQuantizeLinear" for n in g.node):
        # Its scale and zero point come from the min/max of the whole tensor, batch included
        # (https://onnx.ai/onnx/operators/onnx__DynamicQuantizeLinear.html), so one item's
        # result would depend on the others: batching would change detections.
        raise SystemExit(
            "this model quantises activations dynamically (DynamicQuantizeLinear): with a batch "
            "> 1 each item's output depends on the other items. Use the FP32 or FP16 model."
        )
    inits = {i.name: i for i in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a
    # Which tensors feed something other than a Reshape's shape input (must not be edited).
    other_uses = set()
    for n in g.node:
        for k, i in enumerate(n.input):
            if not (n.op_type == "Reshape" and k == 1):
                other_uses.add(i)
    # Tensors computed from the graph inputs (only their Reshapes carry the batch; a bias
    # reshaped to [1, C, 1, 1] does not).
    live = {i.name for i in g.input} - set(inits)
    for n in g.node:  # nodes are topologically sorted (ONNX requirement)
        if any(i in live for i in n.input):
            live.update(n.output)
    changed = 0
    for n in g.node:
        if n.op_type != "Reshape" or n.input[0] not in live:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in n.attribute):
            raise SystemExit(f"Reshape {n.name} has allowzero=1; cannot make it follow the batch")
        shape_name = n.input[1]
        if shape_name in inits:
            arr = numpy_helper.to_array(inits[shape_name]).copy()
            holder = ("init", inits[shape_name])
        elif shape_name in consts:
            arr = numpy_helper.to_array(consts[shape_name].t).copy()
            holder = ("const", consts[shape_name])
        else:
            continue  # computed at run time from Shape ops: already follows the batch
        if arr.ndim != 1 or len(arr) == 0 or arr[0] != 1:
            continue
        if shape_name in other_uses:
            raise SystemExit(f"shape constant {shape_name} of Reshape {n.name} is used elsewhere")
        arr[0] = 0
        t = numpy_helper.from_array(arr, shape_name)
        if holder[0] == "init":
            holder[1].CopyFrom(t)
        else:
            holder[1].t.CopyFrom(t)
        changed += 1
    for v in list(g.input) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 0:
            raise SystemExit(f"{v.name} has no shape")
        if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
            raise SystemExit(f"{v.name} has batch {dims[0].dim_value}, expected 1")
        dims[0].Clear()
        dims[0].dim_param = "batch"
        # Non-batch dims of the outputs stay as they were.
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model, changed


def verify(orig_bytes, new_bytes, batch):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    a = ort.InferenceSession(orig_bytes, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(new_bytes, so, providers=["CPUExecutionProvider"])
    inp = a.get_inputs()[0]
    shape = [batch] + list(inp.shape[1:])
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    rng = np.random.default_rng(1)
    x = rng.random(shape, dtype=np.float32).astype(dtype)
    ref = [a.run(None, {inp.name: x[k : k + 1]}) for k in range(batch)]
    one = b.run(None, {inp.name: x[:1]})
    many = b.run(None, {inp.name: x})
    def rel(p, q):
        p, q = p.astype(np.float32), q.astype(np.float32)
        return float((np.abs(p - q) / np.maximum(1.0, np.abs(q))).max())

    worst = 0.0
    for o in range(len(one)):
        d1 = rel(one[o], ref[0][o])
        dk = max(rel(many[o][k : k + 1], ref[k][o]) for k in range(batch))
        worst = max(worst, d1, dk)
        print(f"output {o}: batch-1 max rel diff {d1:.3g}; batch-{batch} per-item max rel diff {dk:.3g}")
    # Another batch size may pick other kernels: allow float rounding noise (relative to
    # max(1, |value|); box coordinates reach 640, where an f16 ulp is 0.5).
    tol = 1e-2 if dtype == np.float16 else 1e-4
    if worst > tol:
        raise SystemExit(f"verification failed: max relative diff {worst} > {tol}")
    print(f"verified: batch 1 and batch {batch} equal the original per item (max rel diff {worst:.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--max-batch", type=int, default=4, help="batch used for verification")
    args = ap.parse_args()
    model = load(args.input)
    orig = model.SerializeToString()
    new, changed = make_dynamic(model)
    data = new.SerializeToString()
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"{args.output}: batch is dynamic; {changed} Reshape shape constants now follow it")
    if not args.no_verify:
        verify(orig, data, args.max_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
