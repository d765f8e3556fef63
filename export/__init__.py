"""ONNX export (installed as quamba_edge.export); arrives with the export issue."""
