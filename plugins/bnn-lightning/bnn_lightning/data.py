"""A LightningDataModule serving the data a recipe names, in bnn's reproducible order."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from bnn.recipe import Recipe
from bnn.training.data import make_loader
from bnn_core.errors import ConfigError
from torch.utils.data import DataLoader, Dataset, Subset

from bnn_lightning.module import as_recipe


class RecipeDataModule(L.LightningDataModule):
    """The training split and the evaluation split (``evaluation.split``) of the recipe's
    ``data`` section, batched as it says; ``limit`` and ``eval_limit`` keep a random
    subset (seeded by the recipe's seed) of that many samples, for quick runs."""

    def __init__(
        self,
        recipe: Recipe | str | Path,
        limit: int | None = None,
        eval_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.recipe = as_recipe(recipe)
        if self.recipe.data is None:
            raise ConfigError("the recipe has no 'data' section naming a dataset")
        for name, value in (("limit", limit), ("eval_limit", eval_limit)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be 1 or more samples, got {value}")
        self.limit, self.eval_limit = limit, eval_limit

    def setup(self, stage: str | None = None) -> None:
        """Build both splits (once)."""
        if hasattr(self, "train_set"):
            return
        data = self.recipe.data
        assert data is not None
        eval_spec = data.eval_dataset or data.dataset
        self.train_set = self._subset(data.dataset.build(split="train"), self.limit)
        self.eval_set = self._subset(
            eval_spec.build(split=self.recipe.evaluation.split), self.eval_limit
        )

    def _subset(self, dataset: Dataset, limit: int | None) -> Dataset:
        if limit is None or limit >= len(dataset):  # type: ignore[arg-type]
            return dataset
        generator = torch.Generator().manual_seed(self.recipe.seed)
        order = torch.randperm(len(dataset), generator=generator)  # type: ignore[arg-type]
        return Subset(dataset, order[:limit].tolist())

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches whose order and augmentation depend on (seed, epoch) only."""
        data = self.recipe.data
        assert data is not None
        return make_loader(
            self.train_set, data.batch_size, seed=self.recipe.seed, train=True, workers=data.workers
        )

    def val_dataloader(self) -> DataLoader:
        """Every evaluation sample once, in order."""
        data = self.recipe.data
        assert data is not None
        return make_loader(
            self.eval_set,
            data.eval_batch_size or data.batch_size,
            seed=self.recipe.seed,
            train=False,
            workers=data.workers,
        )

    def test_dataloader(self) -> DataLoader:
        """The evaluation split, as for validation."""
        return self.val_dataloader()
