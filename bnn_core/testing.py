"""The binarizer contract, as reusable checks for plugin authors and for bnn's own tests.

Every check builds the binarizer on small probe layers and raises ``AssertionError``
with a precise message when the contract is broken. Run them all with
:func:`check_binarizer`, or parametrize a pytest test over :data:`CONTRACT_CHECKS`::

    import pytest
    from bnn_core.testing import CONTRACT_CHECKS

    @pytest.mark.parametrize("check", CONTRACT_CHECKS.values(), ids=CONTRACT_CHECKS.keys())
    def test_my_binarizer_contract(check):
        check("my_sign")          # a registered name, a class or Class.with_args(...)

The contract: output shape and dtype follow the input; the output takes only the
values its declared ``value_set`` allows, on inputs that include 0, -0.0 and tiny
magnitudes; the backward pass equals the documented surrogate gradient
(``expected_grad``) on a grid that includes 0 and +-1; options are validated (unknown
keys rejected); the binarizer pickles, deep-copies and reloads its state; a BConfig
using it round-trips through YAML.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import torch
import yaml
from torch import nn

from bnn_core.bconfig import ROLE_OF_SLOT, BConfig, to_factory
from bnn_core.binarizer import INPUT, OUTPUT, WEIGHT, Binarizer, BinarizerFactory, ValueSet
from bnn_core.errors import ConfigError

BinarizerLike = str | type | BinarizerFactory


def probe_layers() -> dict[str, nn.Module]:
    """Small layers every binarizer is built on: a 3x3 convolution and a linear layer."""
    torch.manual_seed(0)
    return {"conv2d": nn.Conv2d(4, 8, 3), "linear": nn.Linear(6, 8)}


def _input_shape(layer: nn.Module) -> tuple[int, ...]:
    return (2, 4, 6, 6) if isinstance(layer, nn.Conv2d) else (2, 3, 6)


def grid_like(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``shape`` whose values sweep [-2, 2] in shuffled order and include -1, 0
    and +1 exactly (as many of them as it has room for)."""
    count = math.prod(shape)
    base = torch.linspace(-2.0, 2.0, 401, dtype=torch.float64)
    values = base[torch.randperm(401, generator=torch.Generator().manual_seed(0))]
    values = values.repeat(count // 401 + 1)[:count]
    _spread(values, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    return values.reshape(shape).to(dtype)


def near_zero_values(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0, -0.0 and tiny magnitudes of both signs in ``dtype``: 1e-7, 1e-30, a subnormal and
    the smallest subnormal. A sign that is not defined with care at 0 shows it here."""
    info = torch.finfo(dtype)
    magnitudes = (1e-7, 1e-30, info.tiny / 2, info.tiny * info.eps)
    values = [0.0, -0.0] + [sign * m for m in magnitudes for sign in (1.0, -1.0)]
    return torch.tensor(values, dtype=dtype)


def _spread(flat: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``values`` into the 1-d ``flat`` at evenly spread positions (as many as fit)."""
    count = min(len(values), flat.numel())
    if count:
        positions = torch.linspace(0, flat.numel() - 1, count).round().long()
        flat[positions] = values[:count].to(flat.dtype)


def _factory(binarizer: BinarizerLike) -> BinarizerFactory:
    return binarizer if isinstance(binarizer, BinarizerFactory) else to_factory(binarizer)


def _roles(factory: BinarizerFactory) -> list[str]:
    return [r for r in (INPUT, WEIGHT, OUTPUT) if r in factory.roles]


def _cases(binarizer: BinarizerLike) -> Iterator[tuple[str, str, nn.Module, nn.Module]]:
    """(role, layer name, layer, built binarizer) for every role on every probe layer."""
    factory = _factory(binarizer)
    for layer_name, layer in probe_layers().items():
        for role in _roles(factory):
            torch.manual_seed(0)
            built = factory.build(layer)
            _perturb_parameters(built)
            yield role, layer_name, layer, built


def _perturb_parameters(module: nn.Module) -> None:
    """Move learnable parameters off their initial values so their effect is visible."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.rand(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(0.5 * noise - 0.25)


def _call(role: str, layer: nn.Module, built: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if role == OUTPUT:
        from bnn_core.binarizer import forward_takes_two

        before = torch.randn(_input_shape(layer), dtype=x.dtype)
        return built(x, before) if forward_takes_two(built) else built(x)
    return built(x)


def _sample(role: str, layer: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    if role == WEIGHT:
        return grid_like(tuple(layer.weight.shape), dtype)
    if role == OUTPUT:
        with torch.no_grad():
            out = layer(torch.randn(_input_shape(layer)))
        return grid_like(tuple(out.shape), dtype)
    return grid_like(_input_shape(layer), dtype)


def check_shape_and_dtype(binarizer: BinarizerLike) -> None:
    """The output has the input's shape and dtype, in float32 and float64."""
    for role, layer_name, layer, built in _cases(binarizer):
        for dtype in (torch.float32, torch.float64):
            built = built.to(dtype)
            x = _sample(role, layer, dtype)
            out = _call(role, layer, built, x)
            where = f"{_factory(binarizer)!r} as {role} on {layer_name} ({dtype})"
            assert out.shape == x.shape, (
                f"{where}: output shape {tuple(out.shape)} != {tuple(x.shape)}"
            )
            assert out.dtype == dtype, f"{where}: output dtype {out.dtype} != {dtype}"


def _probe(role: str, layer: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The sample for ``role`` with :func:`near_zero_values` spread through it (its first
    and last elements, -1 and +1, kept)."""
    x = _sample(role, layer, dtype)
    flat = x.view(-1)
    if flat.numel() > 2:
        _spread(flat[1:-1], near_zero_values(dtype))
    return x


def _number(value: float) -> str:
    """``value`` short, keeping the sign of zero visible (``-0.0``)."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    return f"{value:.4g}"


def _examples(x: torch.Tensor, out: torch.Tensor, where_bad: torch.Tensor, limit: int = 4) -> str:
    """``input -> output`` for the first ``limit`` distinct pairs flagged in ``where_bad``."""
    positions = where_bad.flatten().nonzero().flatten().tolist()
    pairs = dict.fromkeys(
        f"{_number(float(x.flatten()[i]))} -> {_number(float(out.flatten()[i]))}" for i in positions
    )
    shown = list(pairs)[:limit]
    more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return "input -> output: " + ", ".join(shown) + more


def _check_values(
    value_set: str,
    x: torch.Tensor,
    out: torch.Tensor,
    role: str,
    where: str,
    bits: int | None = None,
) -> None:
    out = out.detach()
    if value_set == ValueSet.KBIT and bits:
        levels = 2**bits - 1
        grid = out.double() * levels
        unipolar = (grid - grid.round()).abs().max() <= 1e-4 and grid.min() >= -1e-4
        symmetric = (out.double() + 1) / 2 * levels
        bipolar = (symmetric - symmetric.round()).abs().max() <= 1e-4
        assert bool(unipolar or bipolar), f"{where}: values are not on a {bits}-bit grid"
        count = len(out.unique())
        assert count <= 2**bits, f"{where}: {count} values for {bits} bits"
    allowed = {
        ValueSet.BINARY: (-1.0, 1.0),
        ValueSet.UNIPOLAR: (0.0, 1.0),
        ValueSet.TERNARY: (-1.0, 0.0, 1.0),
    }.get(value_set)
    if allowed is not None:
        outside = ~torch.isin(out, torch.tensor(allowed, dtype=out.dtype))
        assert not bool(outside.any()), (
            f"{where}: output outside {value_set}; {_examples(x, out, outside)}"
        )
    elif value_set == ValueSet.SCALED_BINARY:
        channels = out.abs().flatten(1) if role == WEIGHT else out.abs()
        per_channel = channels.amax(dim=-1) - channels.amin(dim=-1)
        assert bool((per_channel <= 1e-6).all()), f"{where}: magnitudes vary within a channel"
        zero = out == 0
        assert not bool(zero.any()), (
            f"{where}: zero in a scaled binary output; {_examples(x, out, zero)}"
        )


def check_value_set(binarizer: BinarizerLike) -> None:
    """Input and weight outputs take only the values of the declared ``value_set``, in
    training and in eval mode, in float32 and float64, on inputs that include 0, -0.0 and
    tiny magnitudes (:func:`near_zero_values`). An instance may declare its own value set
    (options can change it, as ``ste_sign(sign_of_zero=0)`` does)."""
    factory = _factory(binarizer)
    for role, layer_name, layer, built in _cases(binarizer):
        value_set = getattr(built, "value_set", ValueSet.REAL)
        if role == OUTPUT:
            continue
        for dtype in (torch.float32, torch.float64):
            built = built.to(dtype)
            for training in (True, False):
                built.train(training)
                x = _probe(role, layer, dtype)
                out = _call(role, layer, built, x)
                mode = "train" if training else "eval"
                where = f"{factory!r} as {role} on {layer_name} ({mode}, {dtype})"
                bits = getattr(built, "bit_width", None)
                _check_values(value_set, x, out, role, where, bits)


def check_surrogate_gradient(binarizer: BinarizerLike) -> None:
    """Autograd's gradient equals the documented ``expected_grad`` on a grid of inputs."""
    factory = _factory(binarizer)
    for role, layer_name, layer, built in _cases(binarizer):
        built = built.double()
        x = _sample(role, layer, torch.float64).requires_grad_(True)
        out = _call(role, layer, built, x)
        upstream = torch.randn(
            out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        (grad,) = torch.autograd.grad(out, x, upstream)
        with torch.no_grad():
            expected = (
                built.expected_grad(x.detach(), upstream) if isinstance(built, Binarizer) else None
            )
        where = f"{factory!r} as {role} on {layer_name}"
        if expected is None:
            assert not isinstance(built, Binarizer), (
                f"{where}: a Binarizer must document its gradient (surrogate_grad or expected_grad)"
            )
            continue
        worst = float((grad - expected).abs().max())
        assert worst <= 1e-6, (
            f"{where}: gradient differs from the documented formula by {worst:.3g}"
        )


def check_parameter_schema(binarizer: BinarizerLike) -> None:
    """Unknown options are rejected by name."""
    factory = _factory(binarizer)
    try:
        BinarizerFactory(factory.target, {**factory.params, "no_such_option": 1})
    except ConfigError as exc:
        assert "no_such_option" in str(exc), f"error does not name the bad option: {exc}"
    else:
        if not getattr(factory.target, "__init__", None) or _accepts_any_keyword(factory.target):
            return
        raise AssertionError(f"{factory!r} accepted an unknown option 'no_such_option'")


def _accepts_any_keyword(target: Any) -> bool:
    import inspect

    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def check_yaml_round_trip(binarizer: BinarizerLike) -> None:
    """A BConfig naming the binarizer dumps to YAML and loads back equal."""
    factory = _factory(binarizer)
    assert factory.name is not None, f"{factory!r} is not registered, so it cannot round-trip"
    slot = next(s for s, r in ROLE_OF_SLOT.items() if r in factory.roles)
    config = BConfig(**{slot: factory})
    text = yaml.safe_dump(config.model_dump())
    loaded = BConfig.model_validate(yaml.safe_load(text))
    assert loaded == config, f"YAML round trip changed the config:\n{text}"


def check_pickle_and_copy(binarizer: BinarizerLike) -> None:
    """The factory and built binarizers pickle and deep-copy, keeping their behaviour;
    ``torch.save``/``torch.load`` of the state dict restores learned parameters."""
    factory = _factory(binarizer)
    assert pickle.loads(pickle.dumps(factory)) == factory, f"{factory!r} changed when pickled"
    if isinstance(factory.target, type) and issubclass(factory.target, Binarizer):
        assert factory.target.with_args(**factory.params) == factory, "with_args differs"
    for role, layer_name, layer, built in _cases(binarizer):
        built.eval()
        x = _sample(role, layer, torch.float32)
        reference = _call(role, layer, built, x)
        for twin in (pickle.loads(pickle.dumps(built)), copy.deepcopy(built)):
            twin_out = _call(role, layer, twin, x)
            assert torch.equal(twin_out, reference), f"{factory!r} on {layer_name}: copy differs"
        buffer = io.BytesIO()
        torch.save(built.state_dict(), buffer)
        buffer.seek(0)
        fresh = factory.build(layer).eval()
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(_call(role, layer, fresh, x), reference), (
            f"{factory!r} on {layer_name}: reloaded state dict gives a different output"
        )


CONTRACT_CHECKS: dict[str, Callable[[BinarizerLike], None]] = {
    "shape_and_dtype": check_shape_and_dtype,
    "value_set": check_value_set,
    "surrogate_gradient": check_surrogate_gradient,
    "parameter_schema": check_parameter_schema,
    "yaml_round_trip": check_yaml_round_trip,
    "pickle_and_copy": check_pickle_and_copy,
}


def check_binarizer(binarizer: BinarizerLike) -> None:
    """Run every contract check on ``binarizer`` (a registered name, a class, or a
    factory with options), raising AssertionError at the first violation."""
    for check in CONTRACT_CHECKS.values():
        check(binarizer)
