"""Does a ReLU network from a model bridge learn once binarized? Each method binarizes the
same model (first and last layers float, as the bridges declare) and trains it for a few
hundred steps on the embedded Fashion-MNIST, against the float model::

    python benchmarks/bridge_binarization.py                       # torchvision/resnet18
    python benchmarks/bridge_binarization.py --model timm/test_resnet --steps 300

In a ReLU network every binary convolution reads a ReLU's output, which is never
negative, so a plain sign maps it to +1 everywhere and the layer passes no information;
a learned per-channel threshold (``input_bias`` in the ``react`` method) can split it.
The script prints each method's test accuracy and the share of the binary layers' input
values that are negative.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bnn_core import create_dataset, create_model

METHODS = ("float", "xnor", "react")


def run(model_name: str, method: str, steps: int, threads: int) -> str:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    options = {"num_classes": 10}
    if model_name.startswith("timm/"):
        options["in_chans"] = 1
    binarize = False if method == "float" else method
    model = create_model(model_name, binarize=binarize, **options)
    channels = 1 if "in_chans" in options else 3
    train = create_dataset("fashion_mnist", split="train")
    test = create_dataset("fashion_mnist", split="test")
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    negative: list[float] = []
    for module in model.modules():
        if hasattr(module, "activation_pre_process"):
            module.register_forward_pre_hook(
                lambda _, args: negative.append(float((args[0] < 0).float().mean()))
            )
    start = time.perf_counter()
    model.train()
    for step, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x.expand(-1, channels, -1, -1)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 == steps:
            break
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=500):
            correct += int((model(x.expand(-1, channels, -1, -1)).argmax(1) == y).sum())
    share = f"{sum(negative) / len(negative):.1%}" if negative else "-"
    return (
        f"{method:>6}: test accuracy {correct / len(test):.2%} after {steps} steps, "
        f"negative binary-layer inputs {share}, {time.perf_counter() - start:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision/resnet18")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.model}, embedded Fashion-MNIST, batch 64, Adam 2e-3 (chance: 10 %)")
    for method in METHODS:
        print(run(args.model, method, args.steps, args.threads), flush=True)


if __name__ == "__main__":
    main()
