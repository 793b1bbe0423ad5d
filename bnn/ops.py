"""The binarizer classes under the seed library's import path (``bnn.ops``)."""

from __future__ import annotations

from bnn_binarizers.learnable import BasicScaleBinarizer, InputBiasBinarizer
from bnn_binarizers.sign import (
    AdvancedInputBinarizer,
    ApproxSign,
    BasicInputBinarizer,
    SteSign,
    StochasticInputBinarizer,
)
from bnn_binarizers.weight import XNORWeightBinarizer
from bnn_core.binarizer import Binarizer, Identity

__all__ = [
    "AdvancedInputBinarizer",
    "ApproxSign",
    "BasicInputBinarizer",
    "BasicScaleBinarizer",
    "Binarizer",
    "Identity",
    "InputBiasBinarizer",
    "SteSign",
    "StochasticInputBinarizer",
    "XNORWeightBinarizer",
]
