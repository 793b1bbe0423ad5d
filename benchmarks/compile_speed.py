"""Training speed with ``training.compile`` against eager mode: the default job
(recipes/default.yaml, binary LeNet-5 on the embedded Fashion-MNIST subset) on 2 threads.

Both runs are built as ``bnn train`` builds them, from the same initial weights, and run
the trainer's own training step (forward, loss, metrics, backward, optimizer step,
schedule, latent-weight clipping) on the same batches, loaded beforehand. The steps are
interleaved round by round in one process, after warm-up steps that are not counted;
the first compiled step's time (the compilation, with an empty inductor cache unless
``--warm-cache``) is printed apart. Medians of the rounds' steps per second and their
ratio are printed::

    python benchmarks/compile_speed.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bnn.recipe import prepare_recipe
from bnn.training.stage_run import StageRun
from bnn.training.trainer import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "default.yaml"


def stage_run(overrides: dict[str, Any], folder: Path) -> tuple[Trainer, StageRun]:
    """The trainer of the default job with ``overrides`` and its first stage, started."""
    recipe, _ = prepare_recipe(RECIPE, overrides)
    assert recipe.data is not None
    torch.manual_seed(recipe.seed)
    trainer = Trainer(
        recipe.build_model(binarize=False),
        recipe.data.dataset.build(split="train"),
        None,
        recipe,
        binarize=recipe.binarize,
        model_builder=recipe.model.builder(),
        output_dir=folder,
        device="cpu",
        quiet=True,
    )
    stage = trainer.stages[0]
    assert stage.binarization is not None
    trainer.model = stage.binarization.apply(trainer.model, inplace=True)
    run = trainer._start_stage(0, stage, None)
    run.wrapped.train()
    return trainer, run


def timed_steps(trainer: Trainer, run: StageRun, batches: list[tuple[Any, Any]]) -> float:
    """Seconds of one training step per batch of ``batches``, in total."""
    start = time.perf_counter()
    for inputs, targets in batches:
        trainer._train_batch(run, inputs, targets, 0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per mode per round")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted steps per mode")
    parser.add_argument(
        "--warm-cache", action="store_true", help="reuse inductor's cache of earlier runs"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        if not args.warm_cache:  # what a first run pays
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder, "inductor"))
        runs = {
            "eager": stage_run({}, Path(folder, "eager")),
            "compiled": stage_run({"training": {"compile": True}}, Path(folder, "compiled")),
        }
        loader = runs["eager"][1].train_loader
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == args.steps:
                break
        first = {name: timed_steps(*run, batches[:1]) for name, run in runs.items()}
        for run in runs.values():
            timed_steps(*run, batches[: args.warmup])
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                rates[name].append(len(batches) / timed_steps(*run, batches))
    size = tuple(batches[0][0].shape)
    print(
        f"default job (binary LeNet-5), batch {size}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.rounds} rounds of {len(batches)} steps"
    )
    print(
        f"first step: eager {first['eager']:.2f} s, compiled {first['compiled']:.2f} s "
        f"(compilation, backend inductor, {'warm' if args.warm_cache else 'empty'} cache)"
    )
    print(f"{'mode':<10}{'steps/s':>10}{'ms/step':>10}")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in medians.items():
        print(f"{name:<10}{rate:>10.1f}{1e3 / rate:>10.1f}")
    print(f"speed-up of compile: {medians['compiled'] / medians['eager']:.2f}x")


if __name__ == "__main__":
    main()
