"""PyTorch -> ONNX (plugin and portable flavours) -> TensorRT engine, with parity checks."""
