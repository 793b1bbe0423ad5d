"""Export binarized PyTorch models for the packed runtime (``.bnnpack``) and as ONNX.

``export(model, path, input_shape)`` writes the bit-packed file that
``bnn_runtime.load`` runs without PyTorch; ``export_onnx`` writes the fake-binarized
model (sign and scale operations) as a standard ONNX graph. docs/deploy.md describes
both, the file format and what folds how.
"""

from __future__ import annotations

from bnn.deploy.errors import ExportError
from bnn.deploy.export import ExportResult, export
from bnn.deploy.onnx import export_onnx

__all__ = ["ExportError", "ExportResult", "export", "export_onnx"]
