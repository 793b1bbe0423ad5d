"""Cost of binarization during training: a binarized torchvision ResNet-18 (the seed
README's BConfig) against the float model, CIFAR-size input, batch 64, 2 threads.

Train steps (forward, backward, Adam) and eval forwards are interleaved round by round
in one process; medians and ratios are printed (targets: train <= 1.3x, eval <= 1.2x)::

    python benchmarks/train_overhead.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

from bnn import BConfig, prepare_binary_model
from bnn.ops import BasicInputBinarizer, BasicScaleBinarizer, XNORWeightBinarizer

CONFIGS = {
    "compute_alpha=False": XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
    "default XNOR": XNORWeightBinarizer,
}


def binarized(weight_binarizer: object) -> torch.nn.Module:
    """torchvision's ResNet-18 for 10 classes with the seed README's BConfig."""
    torch.manual_seed(0)
    bconfig = BConfig(
        activation_pre_process=BasicInputBinarizer,
        activation_post_process=BasicScaleBinarizer,
        weight_pre_process=weight_binarizer,
    )
    return prepare_binary_model(
        torchvision.models.resnet18(num_classes=10),
        bconfig,
        custom_config_layers_name={"conv1": BConfig(), "fc": BConfig()},
    )


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x, y) -> float:
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def eval_step(model: torch.nn.Module, x) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per model per round")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(10, (args.batch,))
    models = {"float": torchvision.models.resnet18(num_classes=10)}
    models.update({name: binarized(b) for name, b in CONFIGS.items()})
    optimizers = {name: torch.optim.Adam(m.parameters(), 1e-3) for name, m in models.items()}
    times = {name: {"train": [], "eval": []} for name in models}
    for model in models.values():  # warm-up: allocator, kernels
        model.train()
        train_step(model, optimizers[next(n for n, m in models.items() if m is model)], x, y)
    for _ in range(args.rounds):
        for name, model in models.items():
            model.train()
            steps = [train_step(model, optimizers[name], x, y) for _ in range(args.steps)]
            times[name]["train"].append(statistics.median(steps))
            model.eval()
            times[name]["eval"].append(
                statistics.median(eval_step(model, x) for _ in range(args.steps))
            )
    base = {kind: statistics.median(times["float"][kind]) for kind in ("train", "eval")}
    threads = torch.get_num_threads()
    print(f"ResNet-18, batch {args.batch}x3x32x32, {threads} threads, {args.rounds} rounds")
    print(f"{'model':<22}{'train ms':>10}{'ratio':>8}{'eval ms':>10}{'ratio':>8}")
    for name in models:
        train = statistics.median(times[name]["train"])
        evaluation = statistics.median(times[name]["eval"])
        print(
            f"{name:<22}{train * 1e3:>10.1f}{train / base['train']:>8.2f}"
            f"{evaluation * 1e3:>10.1f}{evaluation / base['eval']:>8.2f}"
        )


if __name__ == "__main__":
    main()
