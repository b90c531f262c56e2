"""Export: ONNX graphs, TensorRT engines, Triton model repositories (torch + onnx)."""
