"""The engines a deployer would otherwise pick, built from the float twin of a packed
network and timed against it: PyTorch eager, ONNX Runtime and OpenVINO in float32, and
both in int8 from ONNX Runtime's own static quantizer (QDQ, per-channel weights,
calibrated on a few batches).

The float model is exported once to ONNX (TorchScript exporter, dynamic batch);
ONNX Runtime runs it and its QDQ quantization with ``threads`` intra-op threads, and
OpenVINO compiles both for its CPU plugin (which runs QDQ models in int8) with the same
thread count and its latency hint, at its default precision (bf16 for the float layers
on CPUs with bf16 units, which the peer's name then says). A peer whose package is
missing, or that fails to build, becomes a one-line note instead of an error. Each
built peer's outputs on the calibration batches are compared with PyTorch's (largest
absolute difference, top-1 agreement): reported, never enforced, since int8 is expected
to drift a little.

Timing follows :mod:`bnn.deploy.bench`: rounds interleave a block of packed calls with
a block of each peer's (median call of a block of at least ``BLOCK_SECONDS``); figures
are medians over rounds, and each ratio is also given paired, as the median of the
rounds' own ratios.
"""

from __future__ import annotations

import logging
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bnn.deploy.bench import _block
from bnn.deploy.calibration import recipe_samples
from bnn_core.errors import ConfigError
from bnn_runtime.executor import Network

#: Every peer, in the order of the table: PyTorch eager, ONNX Runtime fp32 and int8,
#: OpenVINO fp32 and int8.
PEER_NAMES = ("torch", "ort", "ort-int8", "ov", "ov-int8")
#: Images the int8 peers are calibrated on by default (in batches of the timed size).
CALIBRATION_IMAGES = 16
INSTALL_HINT = "pip install bnn-core[bench]"
OPSET = 17


def parse_peer_names(text: str) -> tuple[str, ...]:
    """The peers a comma-separated list names (``all``: every one), in table order; an
    unknown name is a :class:`~bnn_core.errors.ConfigError` listing the known ones."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return PEER_NAMES
    unknown = [name for name in names if name not in PEER_NAMES]
    if unknown or not names:
        raise ConfigError(
            f"--peers names unknown engines {unknown or [text]}: give a comma-separated list "
            f"of {', '.join(PEER_NAMES)} (or 'all')"
        )
    return tuple(name for name in PEER_NAMES if name in names)


def random_calibration(
    input_shape: Sequence[int], batch: int, images: int = CALIBRATION_IMAGES
) -> tuple[list[np.ndarray], str]:
    """Batches of ``batch`` standard-normal samples, at least ``images`` in all, and a
    sentence saying so."""
    rng = np.random.default_rng(1)
    count = -(-images // batch)
    batches = [rng.standard_normal((batch, *input_shape), dtype=np.float32) for _ in range(count)]
    return batches, f"{count * batch} random normal images"


def recipe_calibration(
    recipe: Path, input_shape: Sequence[int], batch: int, images: int = CALIBRATION_IMAGES
) -> tuple[list[np.ndarray], str]:
    """Batches of ``batch`` samples of ``recipe``'s training split, at least ``images`` in
    all, and a sentence saying which (:func:`bnn.deploy.calibration.recipe_samples`)."""
    return recipe_samples(recipe, input_shape, -(-images // batch) * batch, batch)


@dataclass
class Peer:
    """One built engine: its short name, a description, and a call on an NCHW batch."""

    name: str
    engine: str
    call: Callable[[np.ndarray], Any]
    max_abs_diff: float | None = None
    top1_agreement: float | None = None


@dataclass(frozen=True)
class PeerTiming:
    """Median milliseconds of one peer at the timed batch, and its ratio to the packed
    network (> 1: the packed network is faster)."""

    name: str
    engine: str
    ms: float
    speedup: float
    paired_speedup: float
    batch: int
    max_abs_diff: float | None
    top1_agreement: float | None

    @property
    def images_per_second(self) -> float:
        """Throughput at the timed batch."""
        return self.batch * 1e3 / self.ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "engine": self.engine,
            "ms": self.ms,
            "images_per_second": self.images_per_second,
            "speedup": self.speedup,
            "paired_speedup": self.paired_speedup,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
        }


@dataclass(frozen=True)
class PeerReport:
    """The packed network against every peer that was built, in one interleaved run."""

    packed_ms: float
    batch: int
    threads: int
    rounds: int
    calibration: str
    peers: list[PeerTiming]
    notes: list[str] = field(default_factory=list)

    @property
    def packed_images_per_second(self) -> float:
        """The packed network's throughput at the timed batch."""
        return self.batch * 1e3 / self.packed_ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "packed_ms": self.packed_ms,
            "packed_images_per_second": self.packed_images_per_second,
            "batch": self.batch,
            "threads": self.threads,
            "rounds": self.rounds,
            "calibration": self.calibration,
            "peers": [peer.to_dict() for peer in self.peers],
            "notes": self.notes,
        }


def export_onnx_float(model: nn.Module, input_shape: Sequence[int], path: Path) -> Path:
    """``model`` (float, eval) as an ONNX file with a dynamic batch dimension."""
    example = torch.zeros((1, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return path


def quantize_qdq(source: Path, target: Path, calibration: Sequence[np.ndarray]) -> Path:
    """``source`` quantized to int8 by ONNX Runtime's ``quantize_static``: QDQ format,
    per-channel int8 weights, uint8 activations with min-max ranges from ``calibration``
    (after ``quant_pre_process`` when it succeeds on the model)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"input": batch}

    prepared = target.with_name(target.stem + "-prepared.onnx")
    try:
        quant_pre_process(str(source), str(prepared))
    except Exception:  # the pre-processing is an optional optimization
        prepared = source
    # the quantizer logs a warning on the root logger for each 1-D weight it keeps per-tensor
    logging.disable(logging.WARNING)
    try:
        quantize_static(
            str(prepared),
            str(target),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.disable(logging.NOTSET)
    return target


def _ort_peer(name: str, path: Path, threads: int, kind: str) -> Peer:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Peer(
        name,
        f"ONNX Runtime {ort.__version__} {kind}",
        lambda x: session.run(None, {"input": x})[0],
    )


def _ov_peer(name: str, path: Path, threads: int, batch: int, kind: str) -> Peer:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([batch, *model.input(0).get_partial_shape()[1:].to_shape()])
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    # on CPUs with bf16 or AMX units the plugin computes float layers in bf16 by default
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if precision != "f32":
        kind = f"{kind} ({precision} float layers)"

    def call(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data

    return Peer(name, f"OpenVINO {ov.get_version().split('-')[0]} {kind}", call)


def packed_peer(path: Path, threads: int, input_shape: Sequence[int]) -> Peer:
    """Another ``.bnnpack`` file of the same model (its int8 export, say), raced like a
    peer; a file taking another input shape is a :class:`~bnn_core.errors.ConfigError`."""
    from bnn_runtime.executor import load

    network = load(path, threads=threads)
    if tuple(network.input_shape) != tuple(input_shape):
        raise ConfigError(
            f"--compare {path}: the file takes inputs of shape {list(network.input_shape)}, "
            f"the benchmarked network {list(input_shape)}; compare exports of the same model"
        )
    return Peer(f"packed:{path.name}", f"packed runtime, {path.name}", network)


def _torch_peer(model: nn.Module) -> Peer:
    def call(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return Peer("torch", f"PyTorch {torch.__version__.split('+')[0]} fp32 eager", call)


#: The package each peer needs, checked before building it.
_NEEDS = {
    "torch": (),
    "ort": ("onnx", "onnxruntime"),
    "ort-int8": ("onnx", "onnxruntime"),
    "ov": ("onnx", "openvino"),
    "ov-int8": ("onnx", "onnxruntime", "openvino"),
}


def _missing(package: str) -> bool:
    try:
        __import__(package)
    except ImportError:
        return True
    return False


def build_peers(
    model: nn.Module,
    input_shape: Sequence[int],
    threads: int,
    calibration: Sequence[np.ndarray],
    folder: Path,
    names: Sequence[str] = PEER_NAMES,
) -> tuple[list[Peer], list[str]]:
    """The peers ``names`` asks for, built from the float ``model`` in ``folder``
    (calibration batches all of the timed batch size), each checked against PyTorch on
    ``calibration``; and a one-line note for each peer left out and why."""
    model = model.eval()
    batch = int(calibration[0].shape[0])
    notes: list[str] = []
    peers: list[Peer] = []
    files: dict[str, Path] = {}

    def onnx_file(kind: str) -> Path:
        if kind not in files:
            fp32 = files.get("fp32") or export_onnx_float(model, input_shape, folder / "fp32.onnx")
            files["fp32"] = fp32
            if kind == "int8":
                files["int8"] = quantize_qdq(fp32, folder / "int8.onnx", calibration)
        return files[kind]

    builders: dict[str, Callable[[], Peer]] = {
        "torch": lambda: _torch_peer(model),
        "ort": lambda: _ort_peer("ort", onnx_file("fp32"), threads, "fp32"),
        "ort-int8": lambda: _ort_peer("ort-int8", onnx_file("int8"), threads, "int8"),
        "ov": lambda: _ov_peer("ov", onnx_file("fp32"), threads, batch, "fp32"),
        "ov-int8": lambda: _ov_peer("ov-int8", onnx_file("int8"), threads, batch, "int8"),
    }
    for name in names:
        missing = [package for package in _NEEDS[name] if _missing(package)]
        if missing:
            notes.append(f"{name}: {', '.join(missing)} not installed: {INSTALL_HINT}")
            continue
        try:
            peer = builders[name]()
        except Exception as exc:  # a foreign exporter or engine fails in any way
            notes.append(f"{name}: could not be built ({type(exc).__name__}: {_short(exc)})")
            continue
        peers.append(peer)
    with torch.no_grad():
        check_agreement(lambda x: model(torch.from_numpy(x)).numpy(), peers, calibration)
    return peers, notes


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def check_agreement(
    reference: Callable[[np.ndarray], np.ndarray],
    peers: Sequence[Peer],
    calibration: Sequence[np.ndarray],
) -> None:
    """Set each peer's largest absolute difference from ``reference`` on ``calibration``
    and, for a 2-D output (class scores), the fraction of samples with the same top-1."""
    expected = [np.asarray(reference(batch)).copy() for batch in calibration]
    for peer in peers:
        outputs = [np.asarray(peer.call(batch)).copy() for batch in calibration]
        peer.max_abs_diff = max(
            float(np.max(np.abs(got - want))) for got, want in zip(outputs, expected, strict=True)
        )
        if expected[0].ndim == 2:
            same = sum(
                int(np.sum(got.argmax(1) == want.argmax(1)))
                for got, want in zip(outputs, expected, strict=True)
            )
            peer.top1_agreement = same / sum(len(want) for want in expected)


def race(
    network: Network,
    x: np.ndarray,
    peers: Sequence[Peer],
    rounds: int,
    warmup: int = 1,
    calibration: str = "",
    notes: Sequence[str] = (),
) -> PeerReport:
    """Time ``network`` and every peer on ``x``, interleaved round by round, with
    PyTorch on as many threads as the network; medians and ratios over ``rounds``."""
    from bnn_runtime import kernels

    threads = network.threads or kernels.default_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = np.ascontiguousarray(x, dtype=np.float32)
    packed: list[float] = []
    times: dict[str, list[float]] = {peer.name: [] for peer in peers}
    try:
        for _ in range(warmup):
            network(x)
            for peer in peers:
                peer.call(x)
        for _ in range(rounds):
            packed.append(_block(lambda: network(x)))
            for peer in peers:
                times[peer.name].append(_block(lambda peer=peer: peer.call(x)))
    finally:
        torch.set_num_threads(previous_threads)
    packed_ms = statistics.median(packed) * 1e3
    batch = int(x.shape[0])
    return PeerReport(
        packed_ms=packed_ms,
        batch=batch,
        threads=threads,
        rounds=rounds,
        calibration=calibration,
        peers=[
            PeerTiming(
                name=peer.name,
                engine=peer.engine,
                ms=statistics.median(times[peer.name]) * 1e3,
                speedup=statistics.median(times[peer.name]) * 1e3 / packed_ms,
                paired_speedup=statistics.median(
                    p / q for p, q in zip(times[peer.name], packed, strict=True)
                ),
                batch=batch,
                max_abs_diff=peer.max_abs_diff,
                top1_agreement=peer.top1_agreement,
            )
            for peer in peers
        ],
        notes=list(notes),
    )
