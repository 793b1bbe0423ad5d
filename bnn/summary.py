"""``summary(module, input_shape)``: what a (binarized) model stores and computes, layer
by layer, counted with Larq's conventions so that the figures compare with
``larq.models.summary``.

For each layer it reports the bit width of the input the layer multiplies, the output
shape, the parameters per bit width, their memory, the multiply-accumulates (MACs) per
precision and whether the packed XNOR-popcount runtime can execute the layer. The
totals add the model size (as stored, with 8-bit float parameters, and as float-32),
the compression ratio, the share of binary MACs and the BOPs / FLOPs / OPs figures of
the binary-network literature. docs/summary.md explains every figure.

Conventions (Larq's, unless said otherwise):

* a float parameter is 32 bits; the weight of a binary layer has the bit width its
  ``weight_pre_process`` declares; biases and binarizer parameters (scales, shifts)
  stay 32-bit;
* a batch norm counts once per channel for each pair it folds into: (shift, mean) and
  (scale, variance), i.e. its running statistics when it tracks them, else its affine
  parameters; integer buffers (``num_batches_tracked``) and non-persistent buffers are
  not stored, so they do not count;
* a convolution performs (weight count) x (output positions) MACs per sample, a linear
  layer (weight count) x (positions: 1 for a plain ``(N, features)`` input); a MAC has
  the precision of its wider operand, so 1-bit weights on a float input are float MACs;
* memory is in KiB of 8 x 1024 bits (Larq's "kB").
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnn_core.errors import BnnError, ConfigError
from bnn_core.layers import is_binary_layer

FLOAT_BITS = 32
INT8_BITS = 8
BITS_PER_KIB = 8 * 1024
BOPS_PER_FLOP = 64  # Bi-Real Net / ReActNet: OPs = BOPs / 64 + FLOPs
PACKED, FLOAT, UNSUPPORTED = "packed", "float", "unsupported"

# Layers whose multi-dimensional parameters are not multiplied with the input (look-ups
# and element-wise work); layers whose tensors are all vectors (per-channel scales,
# shifts, slopes, batch norms) have no MACs either.
_NO_MAC_LAYERS = (nn.LayerNorm, nn.Embedding, nn.EmbeddingBag)


@dataclass
class LayerSummary:
    """The figures of one layer (a binary layer includes its three binarizers)."""

    name: str
    type: str
    binary: bool
    input_bits: int
    output_shapes: list[list[int]]
    params: dict[int, int]
    trainable_params: int
    macs: dict[int, int] | None
    mixed_macs: bool
    runtime: str
    runtime_note: str

    @property
    def total_params(self) -> int:
        """Parameters counted for the size, whatever their bit width."""
        return sum(self.params.values())

    @property
    def memory_bits(self) -> int:
        """Bits needed to store the counted parameters at their bit widths."""
        return sum(bits * count for bits, count in self.params.items())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (bit widths as string keys)."""
        return {
            "name": self.name,
            "type": self.type,
            "binary": self.binary,
            "input_bits": self.input_bits,
            "output_shapes": self.output_shapes,
            "params": _keyed(self.params),
            "trainable_params": self.trainable_params,
            "memory_bits": self.memory_bits,
            "memory_kib": self.memory_bits / BITS_PER_KIB,
            "macs": None if self.macs is None else _keyed(self.macs),
            "mixed_precision_macs": self.mixed_macs,
            "runtime": self.runtime,
            "runtime_note": self.runtime_note,
        }


@dataclass
class ModelSummary:
    """Per-layer figures of a model and their totals; ``str()`` gives the tables."""

    model: str
    input_shape: list[int]
    layers: list[LayerSummary]

    @property
    def params_by_bits(self) -> dict[int, int]:
        """Parameter counts per bit width over the whole model."""
        return _add(layer.params for layer in self.layers)

    @property
    def total_params(self) -> int:
        """Every counted parameter."""
        return sum(layer.total_params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        """Counted parameters that require a gradient."""
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def memory_bits(self) -> int:
        """Model size in bits, each parameter at its bit width."""
        return sum(layer.memory_bits for layer in self.layers)

    @property
    def int8_float_memory_bits(self) -> int:
        """Model size if every parameter wider than 8 bits were stored in 8 bits."""
        return sum(min(bits, INT8_BITS) * n for bits, n in self.params_by_bits.items())

    @property
    def float32_memory_bits(self) -> int:
        """Model size if every parameter were a float-32."""
        return FLOAT_BITS * self.total_params

    @property
    def compression_ratio(self) -> float:
        """Model size over its float-32 size (Larq's "compression ratio of memory")."""
        return self.memory_bits / self.float32_memory_bits if self.total_params else 1.0

    @property
    def macs_by_bits(self) -> dict[int, int]:
        """MACs per sample, per precision."""
        return _add(layer.macs for layer in self.layers if layer.macs is not None)

    @property
    def macs(self) -> int:
        """All MACs per sample."""
        return sum(self.macs_by_bits.values())

    @property
    def bops(self) -> int:
        """Binary operations: MACs whose two operands are 1-bit (XNOR-popcount work)."""
        return self.macs_by_bits.get(1, 0)

    @property
    def flops(self) -> int:
        """Floating-point operations: every other MAC."""
        return self.macs - self.bops

    @property
    def binarized_mac_ratio(self) -> float:
        """The share of MACs that are binary (Larq's "ratio of MACs that are binarized")."""
        return self.bops / self.macs if self.macs else 0.0

    @property
    def ops(self) -> float:
        """OPs = BOPs / 64 + FLOPs (Bi-Real Net, ReActNet, BiBench)."""
        return self.bops / BOPS_PER_FLOP + self.flops

    @property
    def binarization_degree(self) -> float | None:
        """BOPs / (64 FLOPs): the binary work in float-operation units per float
        operation; ``None`` when the model has no float MACs."""
        return self.bops / (BOPS_PER_FLOP * self.flops) if self.flops else None

    def totals(self) -> dict[str, Any]:
        """The model-wide figures, JSON-ready."""
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "params": _keyed(self.params_by_bits),
            "memory_bits": self.memory_bits,
            "model_size_bytes": self.memory_bits / 8,
            "model_size_8bit_float_bytes": self.int8_float_memory_bits / 8,
            "float32_size_bytes": self.float32_memory_bits / 8,
            "compression_ratio": self.compression_ratio,
            "macs": self.macs,
            "macs_by_bits": _keyed(self.macs_by_bits),
            "binarized_mac_ratio": self.binarized_mac_ratio,
            "bops": self.bops,
            "flops": self.flops,
            "ops": self.ops,
            "binarization_degree": self.binarization_degree,
            "mixed_precision_layers": [x.name for x in self.layers if x.mixed_macs],
            "uncounted_mac_layers": [x.name for x in self.layers if x.macs is None],
            "unsupported_runtime_layers": [x.name for x in self.layers if x.runtime == UNSUPPORTED],
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole summary, JSON-ready."""
        return {
            "model": self.model,
            "input_shape": self.input_shape,
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": self.totals(),
        }

    def tables(self) -> list[Any]:
        """Two rich tables: the layers (with a total row) and the model totals."""
        return [_layer_table(self), _totals_table(self)]

    def render(self, console: Any) -> None:
        """Print the tables on a rich ``Console``, a blank line between them."""
        layers, totals = self.tables()
        console.print(layers)
        console.print()
        console.print(totals)

    def __str__(self) -> str:
        from rich.console import Console

        buffer = io.StringIO()
        self.render(Console(file=buffer, width=200, color_system=None, highlight=False))
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def summary(
    module: nn.Module, input_shape: Sequence[int] | torch.Tensor, *, name: str | None = None
) -> ModelSummary:
    """Summarize ``module`` from one forward pass in eval mode without gradients.

    ``input_shape`` is the shape of one sample (no batch dimension), for example
    ``(3, 32, 32)``: the pass runs on a random batch of one. An example tensor (batch
    first) may be given instead. Figures are per sample. Training modes are restored.
    """
    example = _example_input(module, input_shape)
    rows = _rows(module)
    calls = _record_calls(module, rows, example)
    first_call = {key: index for index, key in enumerate(calls) if calls[key]}
    rows.sort(key=lambda row: first_call.get(id(row[1]), len(first_call)))
    batch = example.shape[0] if example.dim() else 1
    seen: set[int] = set()
    layers = [
        _summarize_layer(row_name, layer, calls[id(layer)], batch, seen) for row_name, layer in rows
    ]
    return ModelSummary(name or type(module).__name__, list(example.shape[1:]), layers)


def _example_input(module: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> torch.Tensor:
    reference = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    if isinstance(input_shape, torch.Tensor):
        return input_shape.to(device)
    shape = list(input_shape) if isinstance(input_shape, Sequence) else None
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ConfigError(
            f"input_shape must be a non-empty sequence of positive integers (one sample, no "
            f"batch dimension, for example (3, 32, 32)), got {input_shape!r}"
        )
    generator = torch.Generator().manual_seed(0)
    return torch.randn([1, *shape], generator=generator, dtype=dtype).to(device)


def _rows(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules that get a row: binary layers (their binarizers inside), leaves, and
    containers holding tensors of their own; shared modules once."""
    rows: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def visit(name: str, module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        binary = is_binary_layer(module)
        children = list(module.named_children())
        if binary or not children or any(True for _ in _tensors(module, recurse=False)):
            rows.append((name or "<model>", module))
        if not binary:
            for child_name, child in children:
                visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return rows


@dataclass
class _Call:
    input_shape: torch.Size | None
    output_shapes: list[torch.Size]


def _record_calls(
    model: nn.Module, rows: list[tuple[str, nn.Module]], example: torch.Tensor
) -> dict[int, list[_Call]]:
    """Run ``example`` through ``model`` once, recording each row's calls; the keys
    of the result are in the order of first call (rows never called last)."""
    calls: dict[int, list[_Call]] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        shapes = [t.shape for t in _flatten(output)]
        calls.setdefault(id(module), []).append(
            _Call(None if first is None else first.shape, shapes)
        )

    modes = {module: module.training for module in model.modules()}
    handles = [module.register_forward_hook(hook) for _, module in rows]
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    except BnnError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"the forward pass of {type(model).__name__} on an input of shape "
            f"{tuple(example.shape)} (batch first) failed: {' '.join(str(exc).split())}. "
            "Give the input shape the model expects, without the batch dimension."
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    for _, module in rows:
        calls.setdefault(id(module), [])
    return calls


def _flatten(output: Any) -> Iterator[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, list | tuple):
        for item in output:
            yield from _flatten(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _flatten(item)


def _tensors(module: nn.Module, recurse: bool) -> Iterator[tuple[torch.Tensor, bool]]:
    """The stored float tensors of ``module`` with whether each is trainable; a batch
    norm's affine pair gives way to the running statistics it folds with (Larq)."""
    folded: set[str] = set()
    if isinstance(module, nn.modules.batchnorm._NormBase):
        folded = {
            affine
            for affine, statistic in (("bias", "running_mean"), ("weight", "running_var"))
            if getattr(module, statistic, None) is not None
        }
    owners = module.named_modules() if recurse else [("", module)]
    for prefix, owner in owners:
        for name, parameter in owner.named_parameters(recurse=False):
            if parameter.is_floating_point() and (prefix or name not in folded):
                yield parameter, parameter.requires_grad
        transient = getattr(owner, "_non_persistent_buffers_set", set())
        for name, buffer in owner.named_buffers(recurse=False):
            if buffer.is_floating_point() and name not in transient:
                yield buffer, False


def _summarize_layer(
    name: str, module: nn.Module, calls: list[_Call], batch: int, seen: set[int]
) -> LayerSummary:
    binary = is_binary_layer(module)
    weight = getattr(module, "weight", None)
    input_bits = _declared_bits(module.activation_pre_process) if binary else FLOAT_BITS
    weight_bits = _declared_bits(module.weight_pre_process) if binary else FLOAT_BITS
    params: dict[int, int] = {}
    trainable = 0
    for tensor, requires_grad in _tensors(module, recurse=binary):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        bits = weight_bits if binary and tensor is weight else FLOAT_BITS
        params[bits] = params.get(bits, 0) + tensor.numel()
        trainable += tensor.numel() if requires_grad else 0
    macs = _macs(module, calls, batch, max(input_bits, weight_bits))
    runtime, note = _runtime(module) if binary else (FLOAT, "")
    return LayerSummary(
        name=name,
        type=type(module).__name__,
        binary=binary,
        input_bits=input_bits,
        output_shapes=[list(s[1:]) for call in calls for s in call.output_shapes],
        params=dict(sorted(params.items())),
        trainable_params=trainable,
        macs=macs,
        mixed_macs=bool(macs) and input_bits != weight_bits,
        runtime=runtime,
        runtime_note=note,
    )


def _macs(module: nn.Module, calls: list[_Call], batch: int, bits: int) -> dict[int, int] | None:
    """MACs per sample: weight count x positions, where positions are the output pixels
    of a convolution, the input pixels of a transposed one, the rows of a linear layer;
    ``None`` (unknown) for other layers holding a tensor with two or more dimensions."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        channels, inputs = module.in_channels, True
    elif isinstance(module, nn.modules.conv._ConvNd):
        channels, inputs = module.out_channels, False
    elif isinstance(module, nn.Linear):
        channels, inputs = module.out_features, False
    elif isinstance(module, _NO_MAC_LAYERS) or all(
        sum(size > 1 for size in tensor.shape) <= 1 for tensor, _ in _tensors(module, False)
    ):
        return {}
    else:
        return None
    total = 0
    for call in calls:
        shape = call.input_shape if inputs else next(iter(call.output_shapes), None)
        if shape is not None:
            total += module.weight.numel() * math.prod(shape) // (channels * batch)
    return {bits: total} if total else {}


def _declared_bits(binarizer: nn.Module) -> int:
    """The declared bit width of a binarizer's output; undeclared or real-valued: 32."""
    bits = getattr(binarizer, "bit_width", None)
    return bits if isinstance(bits, int) else FLOAT_BITS


def _runtime(layer: nn.Module) -> tuple[str, str]:
    """Whether the packed runtime can execute a binary layer: its input and weight
    binarizers, and its output one unless it is the identity, must declare packable."""
    from bnn_core.layers import SLOTS
    from bnn_core.registries import REGISTRIES

    problems = []
    for slot in SLOTS:
        binarizer = getattr(layer, slot)
        if slot == "activation_post_process" and isinstance(binarizer, nn.Identity):
            continue
        if not getattr(binarizer, "packable", False):
            label = REGISTRIES["binarizer"].name_of(type(binarizer)) or type(binarizer).__name__
            problems.append(f"{slot} {label} is not packable")
    return (UNSUPPORTED, "; ".join(problems)) if problems else (PACKED, "")


def _add(counts: Iterable[dict[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for count in counts:
        for bits, n in count.items():
            total[bits] = total.get(bits, 0) + n
    return dict(sorted(total.items()))


def _keyed(counts: dict[int, int]) -> dict[str, int]:
    return {str(bits): n for bits, n in counts.items()}


def _layer_table(summary: ModelSummary) -> Any:
    from rich import box
    from rich.table import Table

    bits = list(summary.params_by_bits)
    precisions = list(summary.macs_by_bits)
    shape = "x".join(map(str, summary.input_shape))
    table = Table(
        title=f"{summary.model}: input {shape} (per sample)",
        title_justify="left",
        caption="\n".join(_notes(summary)) or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("layer")
    table.add_column("type")
    table.add_column("input\nbits", justify="right")
    table.add_column("output\nshape", justify="right")
    for b in bits:
        table.add_column(f"{b}-bit\nparams", justify="right")
    table.add_column("memory\n(KiB)", justify="right")
    for p in precisions:
        table.add_column(f"{p}-bit\nMACs", justify="right")
    table.add_column("runtime")
    for layer in summary.layers:
        shapes = "\n".join(str(tuple(s)) for s in layer.output_shapes) or "not called"
        table.add_row(
            layer.name,
            layer.type,
            str(layer.input_bits),
            shapes,
            *(f"{layer.params.get(b, 0):,}" for b in bits),
            f"{layer.memory_bits / BITS_PER_KIB:,.2f}",
            *(_mac_cell(layer, p) for p in precisions),
            {PACKED: "packed", FLOAT: "float"}.get(layer.runtime, "no"),
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        "",
        *(f"{summary.params_by_bits[b]:,}" for b in bits),
        f"{summary.memory_bits / BITS_PER_KIB:,.2f}",
        *(f"{summary.macs_by_bits[p]:,}" for p in precisions),
        "",
    )
    return table


def _mac_cell(layer: LayerSummary, precision: int) -> str:
    if layer.macs is None:
        return "?"
    count = layer.macs.get(precision, 0)
    return f"{count:,}*" if count and layer.mixed_macs else f"{count:,}"


def _notes(summary: ModelSummary) -> list[str]:
    notes = []
    if any(layer.mixed_macs for layer in summary.layers):
        notes.append(
            "* operands of different bit widths (for example 1-bit weights on a float "
            "input): counted at the wider precision"
        )
    if any(layer.macs is None for layer in summary.layers):
        notes.append("? MACs of this layer type are not counted")
    notes += [
        f"runtime no: {layer.name}: {layer.runtime_note}"
        for layer in summary.layers
        if layer.runtime == UNSUPPORTED
    ]
    return notes


def _totals_table(summary: ModelSummary) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title="Totals", title_justify="left", box=box.SIMPLE, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    non_trainable = summary.total_params - summary.trainable_params
    by_bits = ", ".join(f"{b}-bit: {n:,}" for b, n in summary.params_by_bits.items())
    degree = summary.binarization_degree
    rows = [
        ("Total params", f"{summary.total_params:,}"),
        ("Trainable params", f"{summary.trainable_params:,}"),
        ("Non-trainable params", f"{non_trainable:,}"),
        ("Params by bit width", by_bits or "-"),
        ("Model size", _size(summary.memory_bits)),
        ("Model size (8-bit float params)", _size(summary.int8_float_memory_bits)),
        ("Float-32 equivalent", _size(summary.float32_memory_bits)),
        ("Compression ratio of memory", _ratio(summary.compression_ratio)),
        ("Number of MACs", f"{summary.macs:,}"),
        ("Ratio of MACs that are binarized", f"{summary.binarized_mac_ratio:.4f}"),
        ("BOPs (1-bit MACs)", f"{summary.bops:,}"),
        ("FLOPs (other MACs)", f"{summary.flops:,}"),
        ("OPs = BOPs/64 + FLOPs", _number(summary.ops)),
        (
            "Binarization degree BOPs/(64 FLOPs)",
            "n/a (no float MACs)" if degree is None else f"{degree:.4f}",
        ),
        ("Packed runtime can execute", _runtime_total(summary)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return table


def _ratio(ratio: float) -> str:
    return f"{ratio:.4f} ({1 / ratio:.2f}x smaller)" if 0 < ratio < 1 else f"{ratio:.4f}"


def _runtime_total(summary: ModelSummary) -> str:
    unsupported = [x.name for x in summary.layers if x.runtime == UNSUPPORTED]
    if unsupported:
        return "no: " + ", ".join(unsupported)
    packed = sum(x.runtime == PACKED for x in summary.layers)
    return f"yes ({packed} packed binary layers, the rest in float)"


def _number(value: float) -> str:
    return f"{int(value):,}" if value.is_integer() else f"{value:,.1f}"


def _size(bits: int) -> str:
    """Bits as bytes with a binary prefix, two decimals (Larq's readable memory)."""
    size, unit = bits / 8, "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{size:,.2f} {unit}"
