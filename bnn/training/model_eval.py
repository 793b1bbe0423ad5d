"""``bnn eval`` of a model that ships its weights, or of a ``.bnnpack`` file: loss and
accuracy on the test split of the dataset the model's registration names (``dataset=``
metadata) or of ``dataset``, read from ``root`` (without it, the dataset's default, for
Fashion-MNIST the subset embedded in bnn_datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnn.training.data import make_loader
from bnn.training.distributed import World
from bnn.training.trainer import evaluate
from bnn_core.config import DatasetSpec, validate_model
from bnn_core.errors import ConfigError
from bnn_core.registries import REGISTRIES, create_model

#: Images per batch: the runtime and torch both run whole batches.
BATCH = 256


def evaluate_registered(
    name: str, dataset: str | None = None, root: str | None = None, device: str | None = None
) -> dict[str, Any]:
    """Evaluate registered model ``name`` with the weights its registration declares."""
    registry = REGISTRIES["model"]
    entry = registry.entry(name)
    if entry.metadata.get("weights") is None:
        shipped = [e.name for e in registry.entries() if e.metadata.get("weights") is not None]
        raise ConfigError(
            f"model {entry.name!r} ships no weights, so there is nothing trained to evaluate; "
            f"models that ship weights: {', '.join(shipped) or 'none'}. A model you trained "
            "is evaluated from its checkpoint or recipe (bnn eval RUN/best.pt)"
        )
    model = create_model(entry.name, pretrained=True)
    spec, data = _test_split(entry.name, dataset, root)
    target = torch.device(device or "cpu")
    metrics = evaluate(model.to(target), _loader(data), World(device=target))
    return {"model": entry.name, **_described(spec, data), **metrics}


def evaluate_packed(
    path: Path, dataset: str | None = None, root: str | None = None, threads: int | None = None
) -> dict[str, Any]:
    """Evaluate the network in the ``.bnnpack`` file ``path`` with the packed runtime; the
    dataset defaults to the one the registration of the model it records names."""
    from bnn_runtime.executor import load

    network = load(path, threads=threads)
    source = network.metadata.get("source")
    spec = source.get("model") if isinstance(source, dict) else None
    recorded = spec.get("name") if isinstance(spec, dict) else None
    if dataset is None and not (
        isinstance(recorded, str) and REGISTRIES["model"].contains(recorded)
    ):
        raise ConfigError(
            f"{path} does not record a registered model that names its dataset; give the "
            "dataset to evaluate on with --dataset (and --root for its files)"
        )
    data_spec, data = _test_split(recorded, dataset, root)
    metrics = evaluate(_Packed(network), _loader(data))
    return {"file": str(path), **_described(data_spec, data), **metrics}


class _Packed(nn.Module):
    """The packed network as a module, so the trainer's evaluation loop runs it."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.network(x.numpy()))


def _test_split(model_name: str | None, dataset: str | None, root: str | None) -> tuple[Any, Any]:
    declared = REGISTRIES["model"].entry(model_name).metadata.get("dataset") if model_name else None
    name = dataset or declared
    if name is None:
        raise ConfigError(
            f"model {model_name!r} declares no dataset; give the dataset to evaluate on with "
            "--dataset (and --root for its files)"
        )
    given = {"name": name, **({"root": root} if root else {})}
    spec = validate_model(DatasetSpec, given, "the dataset to evaluate on")
    return spec, spec.build(split="test")


def _loader(data: Any) -> Any:
    return make_loader(data, BATCH, seed=0, train=False, workers=0)


def _described(spec: Any, data: Any) -> dict[str, Any]:
    return {
        "dataset": spec.name,
        "root": spec.options.get("root"),
        "split": "test",
        "samples": len(data),
    }
