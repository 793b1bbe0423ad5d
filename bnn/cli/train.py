"""``bnn train RECIPE`` and ``bnn eval`` (a checkpoint, a recipe's run, a model that ships
weights, or a .bnnpack file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bnn.cli.output import print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "eval":
        parser.add_argument(
            "target",
            help="a checkpoint (.pt), a recipe whose run has best.pt, a registered model that "
            "ships weights (bnn list models), or a .bnnpack file (run by the packed runtime)",
        )
        parser.add_argument(
            "--dataset",
            help="for a model name or .bnnpack: the dataset whose test split to use (default: "
            "the one the model's registration names)",
        )
        parser.add_argument(
            "--root",
            help="for a model name or .bnnpack: the dataset's folder, e.g. "
            "/usr/share/datasets/fashion-mnist (default: the dataset's own, for "
            "Fashion-MNIST the embedded subset)",
        )
        parser.add_argument("--device", help="cpu, cuda or cuda:N")
        parser.add_argument("--threads", type=int, help="for a .bnnpack: the runtime's threads")
        parser.add_argument("--json", action="store_true", help="print JSON")
        return
    parser.add_argument("recipe", help="a YAML recipe")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe value (YAML), e.g. --set training.epochs=3",
    )
    parser.add_argument("--env", help="an environment file (the seed library's env_NAME.yaml)")
    parser.add_argument("-u", "--user", help="read configs/env_USER.yaml")
    parser.add_argument("--exp-name", "--exp_name", dest="exp_name", help="experiment name")
    parser.add_argument("--seed", type=int, help="random seed (overrides the recipe)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--gpu", type=int, help="GPU index, the same as --device cuda:N")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="PATH",
        help="continue from PATH, or from the run's last.pt",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")


def run(name: str, args: argparse.Namespace) -> int:
    from bnn.training.layering import parse_set
    from bnn_core.errors import ConfigError

    if name == "eval":
        return _evaluate(args)
    if args.env and args.user:
        raise ConfigError("give either --env or -u/--user, not both")
    if args.gpu is not None and args.device is not None:
        raise ConfigError("give either --device or --gpu, not both")
    if args.gpu is not None and args.gpu < 0:
        raise ConfigError(f"--gpu is a GPU index, 0 or more, got {args.gpu}")
    from bnn.cli.paths import check_input_file, check_output_dir
    from bnn.training.distributed import resolve_device
    from bnn.training.runner import prepare_recipe, train_recipe

    recipe, output = prepare_recipe(
        args.recipe, parse_set(args.set), args.env or args.user, args.exp_name, args.seed
    )
    device = f"cuda:{args.gpu}" if args.gpu is not None else args.device
    resolve_device(device)
    check_output_dir(output, "the run folder (output.dir)")
    if isinstance(args.resume, str):
        check_input_file(Path(args.resume), "the checkpoint to resume (--resume)")
    train_recipe(recipe, output, device=device, resume=args.resume, quiet=args.quiet)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from bnn.cli.paths import check_input_file
    from bnn.training.distributed import resolve_device
    from bnn.training.runner import evaluate_checkpoint, prepare_recipe
    from bnn_core.errors import ConfigError

    resolve_device(args.device or "cpu")
    target = Path(args.target)
    if target.suffix == ".bnnpack" or not (target.suffix in {".yaml", ".yml"} or target.exists()):
        return _evaluate_model(args, target)
    if args.dataset or args.root or args.threads:
        raise ConfigError(
            "--dataset, --root and --threads apply to a model name or a .bnnpack file; a "
            "checkpoint or recipe is evaluated on its recipe's evaluation data"
        )
    if target.suffix in {".yaml", ".yml"}:
        _, output = prepare_recipe(target)
        found = [p for p in (output / "best.pt", output / "last.pt") if p.exists()]
        if not found:
            raise ConfigError(
                f"no checkpoint in {output}: train it first with `bnn train {target}`"
            )
        target = found[0]
    check_input_file(target, "checkpoint")
    result = evaluate_checkpoint(target, args.device)
    if args.json:
        print_json(result)
    else:
        print(
            f"{result['checkpoint']} ({result['stage']}, epoch {result['epoch']}): accuracy "
            f"{result['eval_acc']:.2%}, loss {result['eval_loss']:.4f} on {result['samples']} "
            f"samples of {result['dataset']} ({result['split']})"
        )
    return 0


def _evaluate_model(args: argparse.Namespace, target: Path) -> int:
    """``bnn eval NAME`` (shipped weights, in torch) or ``bnn eval FILE.bnnpack``."""
    from bnn.cli.paths import check_input_file
    from bnn.training.model_eval import evaluate_packed, evaluate_registered

    if target.suffix == ".bnnpack":
        check_input_file(target, "the .bnnpack file")
        result = evaluate_packed(target, args.dataset, args.root, args.threads)
        what = f"{target} (packed runtime)"
    else:
        result = evaluate_registered(args.target, args.dataset, args.root, args.device)
        what = f"{result['model']} (shipped weights)"
    if args.json:
        print_json(result)
        return 0
    where = f" from {result['root']}" if result["root"] else ""
    print(
        f"{what}: accuracy {result['eval_acc']:.2%}, loss {result['eval_loss']:.4f} on "
        f"{result['samples']} samples of {result['dataset']} (test){where}"
    )
    return 0
