"""Train a binarized zoo model the seed library's way: prepare the model and the data in
Python, then hand them to the trainer.

    python examples/run_dev.py --exp_name lenet --seed 1 --epochs 2
    python examples/run_dev.py -u dima            # settings from configs/env_dima.yaml
    python examples/run_dev.py --gpu 0            # on cuda:0

The seed's flags keep their meaning: ``--exp_name`` names the run folder, ``-u/--user``
reads the user's environment file (PROJECT.ROOT, HARDWARE.WORKERS, TRAINING.EPOCHS,
TRAINING.BATCH_SIZE, EXPERIMENT.DIR), ``--gpu`` picks a GPU and ``--seed`` the seed.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bnn import BConfig, prepare_binary_model
from bnn.ops import BasicInputBinarizer, BasicScaleBinarizer, XNORWeightBinarizer
from bnn.training.layering import env_file, env_overrides, merge
from bnn.training.trainer import train
from bnn_core import BnnError, create_dataset, create_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp_name", default="run_dev", help="experiment name (run folder)")
    parser.add_argument("--gpu", type=int, help="GPU index (default: CPU)")
    parser.add_argument("-u", "--user", help="read configs/env_USER.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = create_model("lenet5", width=32)
    bconfig = BConfig(
        activation_pre_process=BasicInputBinarizer,
        activation_post_process=BasicScaleBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(center_weights=True),
    )
    model = prepare_binary_model(
        model, bconfig, custom_config_layers_name={"conv1": BConfig(), "fc2": BConfig()}
    )
    train_set = create_dataset("fashion_mnist", split="train")
    test_set = create_dataset("fashion_mnist", split="test")

    defaults = {
        "data": {"batch_size": 128},
        "training": {"epochs": 5, "optimizers": {"name": "adam", "lr": 0.003}},
    }
    config = merge(defaults, {"name": args.exp_name, "seed": args.seed})
    if args.user:  # the user's machine settings override this script's defaults
        settings, root = env_overrides(env_file(args.user))
        config = merge(config, settings)
        output = config.get("output", {}).get("dir", "runs/{name}")
        if root is not None and not output.startswith("/"):
            config = merge(config, {"output": {"dir": str(root / output)}})
    if args.epochs is not None:
        config = merge(config, {"training": {"epochs": args.epochs}})
    device = f"cuda:{args.gpu}" if args.gpu is not None else "cpu"
    result = train(model, train_set, test_set, config, device=device)
    return 0 if result.best_accuracy is not None else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BnnError as exc:
        print(f"run_dev: error: {exc}", file=sys.stderr)
        sys.exit(2)
