"""Latency of a packed network against its float twin in PyTorch, measured in one
process, interleaved round by round so that both see the same machine load.

Each round times a block of calls of the packed network (the median call of a block of
at least ``BLOCK_SECONDS``), runs it once more with per-node clocks, then does the same
with the float model (eval, no gradients), its layers timed by forward hooks on its leaf
modules. Both run with their default settings; the blocks keep PyTorch's idle OpenMP
threads, which spin on the cores for milliseconds after its last call, from being
charged to the runtime. Figures are medians over the rounds; the whole-network speed-up
is also given paired, as the median of the rounds' own ratios (a slow spell of a shared
machine then weighs on both sides of a ratio). A runtime node is compared
with the float modules it computes (``Node.modules``: a binary layer with the batch norm
folded into it is compared with the float convolution plus that batch norm, and with the
PReLU after it when the runtime fuses the shortcut addition and activation into the
layer; fused nodes get no row of their own); a module called several times (a shared
activation) is matched call by call, in order; nodes without a module (additions,
flattening) have no float counterpart of their own.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bnn_core.errors import BnnError, ConfigError
from bnn_runtime.executor import Network
from bnn_runtime.graph import OPS

#: Each round times a block of calls of each side lasting at least this long (and at
#: least this many calls): PyTorch's idle OpenMP threads keep spinning on the cores for
#: milliseconds after its last call, which would otherwise be charged to the runtime.
BLOCK_SECONDS = 0.05
BLOCK_CALLS = 3


#: The float twin of a file is rebuilt from the model name and options its metadata
#: records only when it has at most this many parameters, and between half and twice
#: (give or take ``TWIN_SLACK``) the values the file stores: a file is untrusted, and
#: options such as ``width: 100000`` would otherwise allocate terabytes.
MAX_TWIN_PARAMETERS = 1 << 30
TWIN_SLACK = 1 << 16
#: A recorded option is a string of at most this many characters, a boolean, a number
#: of at most this magnitude, or a list of at most ``MAX_OPTION_ITEMS`` of those.
MAX_OPTION_CHARS = 256
MAX_OPTION_NUMBER = 1 << 20
MAX_OPTION_ITEMS = 64


def _plain_option(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_OPTION_CHARS
    if isinstance(value, int | float):
        return math.isfinite(value) and abs(value) <= MAX_OPTION_NUMBER
    return False


def _option_ok(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) <= MAX_OPTION_ITEMS and all(_plain_option(v) for v in value)
    return _plain_option(value)


def float_twin_from_metadata(network: Network) -> nn.Module:
    """The float model a loaded file's metadata names (``source.model``: a registered
    model's name and options, random weights), built only after its options are checked
    and its parameters counted on PyTorch's meta device (no memory) against the limits
    above; otherwise a :class:`~bnn_core.errors.ConfigError` says why the float
    comparison is refused."""
    from bnn.deploy.source import model_from_spec

    advice = "benchmark the checkpoint, recipe or model name the file was exported from instead"
    source = network.metadata.get("source")
    spec = source.get("model") if isinstance(source, dict) else None
    options = spec.get("options", {}) if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ConfigError(
            f"{network.path} does not record which registered model it was exported from, so "
            f"its float twin cannot be rebuilt; {advice}"
        )
    if (
        not isinstance(options, dict)
        or len(options) > MAX_OPTION_ITEMS
        or not all(_option_ok(v) for v in options.values())
    ):
        raise ConfigError(
            f"{network.path}: the model options its metadata records are not plain values "
            f"(strings, booleans, numbers up to {MAX_OPTION_NUMBER:,}, short lists), so the "
            f"float comparison is refused; {advice}"
        )
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in model_from_spec(spec).parameters())
    except BnnError:
        raise
    except Exception as exc:  # a plugin's constructor may fail in any way on bad options
        raise ConfigError(
            f"{network.path}: the model {spec['name']!r} its metadata records cannot be built "
            f"with the recorded options ({type(exc).__name__}: {str(exc)[:200]}); {advice}"
        ) from None
    stored = network.tensor_elements
    if (
        count > MAX_TWIN_PARAMETERS
        or not stored / 2 - TWIN_SLACK <= count <= 2 * stored + TWIN_SLACK
    ):
        raise ConfigError(
            f"{network.path}: the model its metadata records ({spec['name']!r} with options "
            f"{str(options)[:200]}) has {count:,} parameters against the {stored:,} values "
            f"the file stores (limit {MAX_TWIN_PARAMETERS:,}): it is not the network in the "
            f"file, so the float comparison is refused; {advice}"
        )
    return model_from_spec(spec)


@dataclass(frozen=True)
class LayerTiming:
    """Median milliseconds of one runtime node and of the float modules it computes."""

    name: str
    op: str
    modules: list[str]
    runtime_ms: float
    torch_ms: float | None

    @property
    def speedup(self) -> float | None:
        """Float time over packed time (> 1: the packed runtime is faster)."""
        if self.torch_ms is None or self.runtime_ms <= 0:
            return None
        return self.torch_ms / self.runtime_ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "op": self.op,
            "binary": OPS[self.op].binary,
            "modules": self.modules,
            "runtime_ms": self.runtime_ms,
            "torch_ms": self.torch_ms,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class BenchResult:
    """Whole-network and per-layer medians."""

    runtime_ms: float
    torch_ms: float
    layers: list[LayerTiming]
    rounds: int
    threads: int
    batch: int
    input_shape: list[int]
    isa: str
    round_speedups: list[float]

    @property
    def speedup(self) -> float:
        """Float time over packed time for the whole network (ratio of the medians)."""
        return self.torch_ms / self.runtime_ms

    @property
    def paired_speedup(self) -> float:
        """Median over rounds of each round's float time over packed time."""
        return statistics.median(self.round_speedups)

    @property
    def images_per_second(self) -> float:
        """The packed network's throughput at the timed batch."""
        return self.batch * 1e3 / self.runtime_ms

    @property
    def torch_images_per_second(self) -> float:
        """The float model's throughput at the timed batch."""
        return self.batch * 1e3 / self.torch_ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "runtime_ms": self.runtime_ms,
            "torch_ms": self.torch_ms,
            "speedup": self.speedup,
            "paired_speedup": self.paired_speedup,
            "images_per_second": self.images_per_second,
            "torch_images_per_second": self.torch_images_per_second,
            "round_speedups": self.round_speedups,
            "rounds": self.rounds,
            "threads": self.threads,
            "batch": self.batch,
            "input_shape": self.input_shape,
            "isa": self.isa,
            "layers": [layer.to_dict() for layer in self.layers],
        }


class _ModuleClock:
    """Forward hooks timing every call of every leaf module of a model, by qualified
    name; inactive unless ``measuring``."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.active = False
        self._started: dict[int, list[float]] = defaultdict(list)
        self._handles = []
        for name, module in model.named_modules():
            if name and not any(True for _ in module.children()):
                self._handles.append(module.register_forward_pre_hook(self._pre(module)))
                self._handles.append(module.register_forward_hook(self._post(name, module)))

    def _pre(self, module: nn.Module) -> Any:
        def hook(*_: Any) -> None:
            if self.active:
                self._started[id(module)].append(time.perf_counter())

        return hook

    def _post(self, name: str, module: nn.Module) -> Any:
        def hook(*_: Any) -> None:
            if self.active:
                self.calls[name].append(time.perf_counter() - self._started[id(module)].pop())

        return hook

    @contextmanager
    def measuring(self) -> Iterator[dict[str, list[float]]]:
        self.calls = defaultdict(list)
        self.active = True
        try:
            yield self.calls
        finally:
            self.active = False

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _match_calls(network: Network, calls: dict[str, list[float]]) -> dict[str, float]:
    """Seconds of the float modules each node computes: the k-th node naming a module
    gets that module's k-th call."""
    used: dict[str, int] = defaultdict(int)
    matched: dict[str, float] = {}
    for node in network.nodes:
        for module in node.modules:
            index = used[module]
            if index < len(calls.get(module, [])):
                matched[node.name] = matched.get(node.name, 0.0) + calls[module][index]
                used[module] += 1
    return matched


def _block(call: Any) -> float:
    """Median seconds of ``call()`` over a block of calls lasting at least
    ``BLOCK_SECONDS`` (and at least ``BLOCK_CALLS`` calls): the first calls after the
    other side ran may share the cores with its still-spinning threads."""
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < BLOCK_CALLS or time.perf_counter() - began < BLOCK_SECONDS:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    network: Network, float_model: nn.Module, x: np.ndarray, rounds: int = 10, warmup: int = 1
) -> BenchResult:
    """Time ``network`` and ``float_model`` on ``x`` (NCHW float32), interleaved, with
    PyTorch on as many threads as the network was loaded with; medians over ``rounds``."""
    from bnn_runtime import kernels

    threads = network.threads or kernels.default_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    float_model.eval()
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    clock = _ModuleClock(float_model)
    whole_runtime: list[float] = []
    whole_torch: list[float] = []
    per_node: dict[str, list[float]] = defaultdict(list)
    per_node_float: dict[str, list[float]] = defaultdict(list)
    try:
        with torch.no_grad():
            for _ in range(warmup):
                network(x)
                float_model(tensor)
            for _ in range(rounds):
                whole_runtime.append(_block(lambda: network(x)))
                _, timings = network.run(x, profile=True)
                for timing in timings:
                    per_node[timing.name].append(timing.seconds)
                whole_torch.append(_block(lambda: float_model(tensor)))
                with clock.measuring() as calls:
                    float_model(tensor)
                for name, seconds in _match_calls(network, calls).items():
                    per_node_float[name].append(seconds)
    finally:
        clock.remove()
        torch.set_num_threads(previous_threads)
    fused_into = network.fused_into()
    modules: dict[str, list[str]] = {node.name: list(node.modules) for node in network.nodes}
    for node in network.nodes:
        if node.name in fused_into:
            target = fused_into[node.name]
            modules[target] += node.modules
            for index, seconds in enumerate(per_node_float.pop(node.name, [])):
                per_node_float[target][index] += seconds
    layers = [
        LayerTiming(
            name=node.name,
            op=node.op,
            modules=modules[node.name],
            runtime_ms=statistics.median(per_node[node.name]) * 1e3,
            torch_ms=(
                statistics.median(per_node_float[node.name]) * 1e3
                if node.name in per_node_float
                else None
            ),
        )
        for node in network.nodes
        if node.name not in fused_into
    ]
    return BenchResult(
        runtime_ms=statistics.median(whole_runtime) * 1e3,
        torch_ms=statistics.median(whole_torch) * 1e3,
        layers=layers,
        rounds=rounds,
        threads=threads,
        batch=int(x.shape[0]),
        input_shape=list(x.shape[1:]),
        isa=kernels.isa(),
        round_speedups=[f / p for f, p in zip(whole_torch, whole_runtime, strict=True)],
    )
