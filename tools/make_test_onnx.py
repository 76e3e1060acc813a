#!/usr/bin/env python3
"""Writes tiny ONNX models for the engine's error-path tests (needs the `onnx` package).

usage: make_test_onnx.py KIND OUT.onnx
  identity   input images [1,3,64,64] float -> Identity -> output [1,3,64,64]
             (a model whose output is no detector head jetwatch knows)
  int-input  input images [1,3,64,64] uint8 -> Cast -> output [1,84,...]: wrong input type
"""
import sys

import onnx
from onnx import TensorProto, helper


def identity():
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 64, 64])
    node = helper.make_node("Identity", ["images"], ["output0"])
    return helper.make_graph([node], "identity", [x], [y])


def int_input():
    x = helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 64, 64])
    node = helper.make_node("Cast", ["images"], ["output0"], to=TensorProto.FLOAT)
    return helper.make_graph([node], "int_input", [x], [y])


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("identity", "int-input"):
        sys.exit(__doc__)
    graph = identity() if sys.argv[1] == "identity" else int_input()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
