"""Pretrained weights by path or URL, read through iopath, verified and loaded safely.

A source is a local path, an ``http(s)://`` URL or a path that a plugin's iopath handler
serves (``bnn_register_path_handlers``), optionally with its SHA-256: as a
``#sha256=<hex>`` suffix, as ``{url: ..., sha256: ...}`` (or ``{path: ...}``), in a model
card beside a local file (``NAME.card.yaml``, ``.yml`` or ``.json`` holding ``sha256``),
or in a model's registration (``weights={"path": ..., "sha256": ...}``). Remote sources
need a hash; the file is verified before ``torch.load(weights_only=True)`` reads it, and
files larger than :data:`MAX_WEIGHTS_BYTES` are refused before they are read whole.
"""

from __future__ import annotations

import importlib
import importlib.resources
import io
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnn_core.errors import BnnError
from bnn_core.weights_errors import (  # WeightsError re-exported: it belongs to this API
    WeightsError as WeightsError,
)
from bnn_core.weights_errors import (
    WeightsFormatError,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsSourceError,
)
from bnn_core.weights_http import BoundedHTTPHandler, sha256_of

#: Weights files larger than this are refused before they are read whole.
MAX_WEIGHTS_BYTES = 2 * 1024**3
#: Model cards larger than this are refused.
MAX_CARD_BYTES = 64 * 1024
#: The file names a model card may have beside ``NAME.pt`` (any suffix in place of .pt).
CARD_SUFFIXES = (".card.yaml", ".card.yml", ".card.json")
#: Keys of the binarizers a binary layer holds; weights under them belong to binarizers.
BINARIZER_SLOTS = ("activation_pre_process", "weight_pre_process", "activation_post_process")

_HEX = re.compile(r"[0-9a-fA-F]{64}")
_FRAGMENT = re.compile(r"#sha256=([0-9a-fA-F]{64})$")
_SHOWN = 3


@dataclass(frozen=True)
class WeightsSource:
    """Where weights come from: ``location`` (a path or URL), the ``sha256`` they must
    have, and for a path registered by a model, the ``package`` it is relative to."""

    location: str
    sha256: str | None = None
    package: str | None = None

    @property
    def remote(self) -> bool:
        """Whether the location is a URL or a plugin handler's path (``scheme://...``)."""
        return "://" in self.location


def parse_source(value: Any, where: str = "pretrained") -> WeightsSource:
    """The source that ``value`` (a path or URL string, or a mapping with ``url`` or
    ``path`` and ``sha256``) names; ``where`` names the field in errors."""
    if isinstance(value, WeightsSource):
        return value
    if isinstance(value, str | os.PathLike):
        location, sha256 = os.fspath(value), None
        found = _FRAGMENT.search(location)
        if found:
            location, sha256 = location[: found.start()], found.group(1)
        return _checked(WeightsSource(location, sha256), where)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"url", "path", "sha256", "package"})
        given = [key for key in ("url", "path") if key in value]
        if unknown or len(given) != 1:
            raise WeightsSourceError(
                f"{where} must name its weights with exactly one of 'url' or 'path' (and may "
                f"add 'sha256'), got the keys {sorted(value)}"
            )
        fields = {"location": value[given[0]], **{k: value.get(k) for k in ("sha256", "package")}}
        if not all(isinstance(v, str) or v is None for v in fields.values()):
            raise WeightsSourceError(f"{where}: 'url', 'path', 'sha256' and 'package' are strings")
        return _checked(WeightsSource(**fields), where)
    raise WeightsSourceError(
        f"{where} must be a path, a URL or a mapping {{url: ..., sha256: ...}}, got "
        f"{type(value).__name__} {value!r}"
    )


def _checked(source: WeightsSource, where: str) -> WeightsSource:
    if not source.location.strip():
        raise WeightsSourceError(f"{where} is empty: give a path or URL of a weights file")
    if source.sha256 is not None:
        if not _HEX.fullmatch(source.sha256):
            raise WeightsSourceError(
                f"{where}: sha256 must be 64 hexadecimal digits, got {source.sha256!r}"
            )
        source = replace(source, sha256=source.sha256.lower())
    if source.remote:
        prefix = _prefix_of(source.location)
        if prefix is None:
            known = ", ".join(sorted(_handler_prefixes()))
            raise WeightsSourceError(
                f"{where}: no handler reads {source.location!r}; the known prefixes are "
                f"{known} (a plugin may register more through bnn_register_path_handlers)"
            )
        if source.sha256 is None:
            raise WeightsSourceError(
                f"{where}: the remote weights {source.location!r} have no SHA-256, and remote "
                "weights are only loaded after they are verified; append '#sha256=<64 hex "
                "digits>' to the URL or write {url: ..., sha256: ...}"
            )
    return source


def declared_source(model_name: str) -> WeightsSource:
    """The weights that the registration of ``model_name`` declares (``weights=`` metadata),
    a relative path resolved in the package of its builder."""
    from bnn_core.plugins import REGISTRIES

    entry = REGISTRIES["model"].entry(model_name)
    declared = entry.metadata.get("weights")
    if declared is None:
        raise WeightsSourceError(
            f"model {entry.name!r} declares no pretrained weights, so pretrained=True has "
            "nothing to load; give a path or URL instead (pretrained: PATH_OR_URL)"
        )
    source = parse_source(declared, f"the weights declared by model {entry.name!r}")
    if source.package is None and not source.remote and not Path(source.location).is_absolute():
        module = entry.reference.partition(":")[0]
        imported = importlib.import_module(module)
        package = module if hasattr(imported, "__path__") else module.rpartition(".")[0]
        source = replace(source, package=package or module)
    return source


def read_weights(source: WeightsSource) -> dict[str, Any]:
    """The state dict that ``source`` holds, after its size and hash are checked: a plain
    state dict, one wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``, or the
    weights a ``bnn train`` checkpoint's run evaluated."""
    with _local_copy(source) as (data, hashes):
        _verify(data, source, hashes)
        loaded = _torch_load(data, source)
    return _state_dict_of(loaded, source)


def pretrained_weights(value: Any, model_name: str) -> tuple[dict[str, Any], str]:
    """The state dict that ``value`` names (``True``: the weights the registration of
    ``model_name`` declares) and where it came from, for error messages."""
    source = declared_source(model_name) if value is True else parse_source(value)
    return read_weights(source), source.location


def load_pretrained(model: Any, value: Any, model_name: str) -> Any:
    """Load the weights ``value`` names (``True``: those the registration of
    ``model_name`` declares) into ``model`` and return it. A model on the meta device
    (built to check a config) holds no weights, so nothing is read for it."""
    if holds_no_weights(model):
        return model
    fit_weights(model, *pretrained_weights(value, model_name), model_name)
    return model


def holds_no_weights(model: Any) -> bool:
    """Whether ``model`` lives on the meta device (built only to check a config)."""
    return any(parameter.is_meta for parameter in model.parameters())


def binarized_weights(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` is a binarized model's (it holds binarizers' parameters), so that
    it loads only after the model is binarized."""
    return any(_binarizer_key(k) for k in state)


def fit_weights(model: Any, state: Mapping[str, Any], origin: str, model_name: str) -> None:
    """Load ``state`` into ``model``, which must have every key, with the same shape. A
    binarized model may take the weights of its float twin: its binarizers then keep their
    initial state."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} ({tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model)"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    missing = [k for k in missing if not _binarizer_key(k)]
    if unexpected and all(_binarizer_key(k) for k in unexpected) and not missing and not shapes:
        raise WeightsMismatchError(
            f"the weights {origin} are those of a binarized model (binarizer entries such as "
            f"{_few(unexpected)}), and model {model_name!r} is float here; binarize it first, "
            "for example create_model(name, binarize=..., pretrained=...)"
        )
    if missing or unexpected or shapes:
        parts = [
            f"{len(found)} {label}: {_few(found)}"
            for label, found in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", shapes),
            )
            if found
        ]
        raise WeightsMismatchError(
            f"the weights {origin} do not fit model {model_name!r} (a different architecture "
            f"or different options): {'; '.join(parts)}"
        )
    model.load_state_dict(dict(state), strict=False)


def _binarizer_key(key: str) -> bool:
    return any(part in BINARIZER_SLOTS for part in key.split("."))


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


@contextmanager
def _local_copy(
    source: WeightsSource,
) -> Iterator[tuple[Path | bytes, list[tuple[str, str]]]]:
    """The file's bytes (or a local path holding them) and the hashes it must have, each
    with where it was given."""
    hashes = [(source.sha256, "given with it")] if source.sha256 else []
    if source.package is not None:
        resource = importlib.resources.files(source.package).joinpath(source.location)
        with importlib.resources.as_file(resource) as path:
            yield _checked_file(path, source), hashes + _card_hashes(path)
        return
    if not source.remote:
        from bnn_core.paths import expand_path

        path = _checked_file(expand_path(source.location), source)
        yield path, hashes + _card_hashes(path)
        return
    if _prefix_of(source.location) in ("http://", "https://"):
        yield _download(source), hashes
        return
    yield _read_through_handler(source), hashes


def _checked_file(path: Path, source: WeightsSource) -> Path:
    if not path.exists():
        raise WeightsSourceError(f"the pretrained weights file {source.location} does not exist")
    if not path.is_file():
        raise WeightsSourceError(f"the pretrained weights {source.location} are not a file")
    _check_size(path.stat().st_size, source)
    return path


def _check_size(size: int, source: WeightsSource) -> None:
    if size > MAX_WEIGHTS_BYTES:
        raise WeightsFormatError(
            f"the pretrained weights {source.location} are {size:,} bytes or more; weights "
            f"files are at most {MAX_WEIGHTS_BYTES:,} bytes"
        )


def _card_hashes(path: Path) -> list[tuple[str, str]]:
    """The SHA-256 that a model card beside ``path`` gives, if there is a card."""
    from bnn_core.safe_yaml import load_text

    stem = path.name.rpartition(".")[0] or path.name
    for suffix in CARD_SUFFIXES:
        card = path.with_name(stem + suffix)
        if not card.is_file():
            continue
        if card.stat().st_size > MAX_CARD_BYTES:
            raise WeightsFormatError(
                f"the model card {card} is larger than {MAX_CARD_BYTES:,} bytes"
            )
        data = load_text(card.read_text(encoding="utf-8"), str(card))
        sha256 = data.get("sha256") if isinstance(data, dict) else None
        if not isinstance(sha256, str) or not _HEX.fullmatch(sha256):
            raise WeightsFormatError(
                f"the model card {card} must be a mapping with 'sha256': the 64 hexadecimal "
                "digits of the weights beside it, as a string (quoted in YAML)"
            )
        return [(sha256.lower(), f"in its model card {card}")]
    return []


def _verify(data: Path | bytes, source: WeightsSource, hashes: list[tuple[str, str]]) -> None:
    if not hashes:
        return
    actual = sha256_of(data)
    for expected, origin in hashes:
        if actual != expected:
            if source.remote and isinstance(data, Path):
                data.unlink(missing_ok=True)  # a cached download: fetched again next time
            raise WeightsIntegrityError(
                f"the pretrained weights {source.location} have SHA-256 {actual}, but the "
                f"SHA-256 {origin} is {expected}: the file is damaged, was replaced, or the "
                "hash is not the one for this file"
            )


def _torch_load(data: Path | bytes, source: WeightsSource) -> Any:
    import pickle
    import warnings

    import torch

    head = data[:4] if isinstance(data, bytes) else _head(data)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise WeightsFormatError(
            f"the pretrained weights {source.location} are not a weights file: torch.save "
            f"writes a zip archive, and this file begins with {head!r}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = io.BytesIO(data) if isinstance(data, bytes) else data
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise WeightsFormatError(
                f"the pretrained weights {source.location} were refused: the file holds Python "
                "objects or code besides tensors, numbers and strings, and bnn never runs code "
                "from a file (torch.load with weights_only=True)"
            ) from None
        detail = str(exc)
    except Exception as exc:  # whatever a file that is not torch.save output raises
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    raise WeightsFormatError(
        f"the pretrained weights {source.location} are not a weights file that torch.save "
        f"wrote ({detail.rstrip(': ')})"
    )


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _state_dict_of(loaded: Any, source: WeightsSource) -> dict[str, Any]:
    """The tensors of ``loaded``: unwraps bnn checkpoints and the usual wrappers."""
    import torch

    if isinstance(loaded, Mapping) and loaded.get("format") == "bnn-checkpoint":
        ema = loaded.get("ema")
        if isinstance(ema, Mapping) and ema:
            loaded = {k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"}
        else:
            loaded = loaded.get("model")
    elif isinstance(loaded, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise WeightsFormatError(
            f"the pretrained weights {source.location} hold no state dict (a mapping of "
            "parameter names to tensors, possibly under 'state_dict' or 'model')"
        )
    odd = [k for k, v in loaded.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if odd:
        raise WeightsFormatError(
            f"the pretrained weights {source.location} are not a state dict: entries such as "
            f"{_few([str(k) for k in odd])} are not tensors named by strings"
        )
    if all(k.startswith("module.") for k in loaded):  # saved from a DistributedDataParallel
        return {k.removeprefix("module."): v for k, v in loaded.items()}
    return dict(loaded)


def _handler_prefixes() -> dict[str, Any]:
    """``{prefix: (provider, handler)}``: the built-in http(s) handler and the plugins'."""
    from bnn_core.plugins import path_handlers

    found: dict[str, Any] = {"http://": None, "https://": None}
    for prefixes, handler in path_handlers():
        found.update(dict.fromkeys(prefixes, handler))
    return found


def _prefix_of(location: str) -> str | None:
    matches = [p for p in _handler_prefixes() if location.startswith(p)]
    return max(matches, key=len) if matches else None


def _download(source: WeightsSource) -> Path:
    return BoundedHTTPHandler(MAX_WEIGHTS_BYTES).fetch(source.location, source.sha256)


def _read_through_handler(source: WeightsSource) -> bytes:
    """The bytes a plugin's handler serves, read no further than the size limit."""
    from iopath.common.file_io import PathManager

    manager = PathManager()
    manager.register_handler(_handler_prefixes()[_prefix_of(source.location)])
    try:
        with manager.open(source.location, "rb") as handle:
            data = handle.read(MAX_WEIGHTS_BYTES + 1)
    except BnnError:
        raise
    except Exception as exc:  # the handler is plugin code failing on this path
        raise WeightsSourceError(
            f"cannot read the pretrained weights {source.location}: {type(exc).__name__}: {exc}"
        ) from None
    _check_size(len(data), source)
    return bytes(data)
