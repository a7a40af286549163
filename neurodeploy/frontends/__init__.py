"""Readers and writers of model files (netx HDF5, later PyTorch, NIR, ONNX)."""
