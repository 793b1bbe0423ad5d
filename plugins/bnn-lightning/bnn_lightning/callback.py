"""A Lightning callback that writes checkpoints in bnn's own format, which ``bnn eval``
and ``bnn export`` read as they read those of ``bnn train``."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from bnn_core.errors import ConfigError

from bnn_lightning.module import BinaryRecipeModule


class BnnCheckpoint(L.Callback):
    """Writes ``dirpath/last.pt`` (the file it replaces kept as ``previous.pt``) at the end
    of every ``every_n_epochs``-th epoch and when training ends, through bnn's checkpoint
    writer: atomic, with a checksum, and holding the recipe the model is rebuilt from."""

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be 1 or more, got {every_n_epochs}")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self._saved_step: int | None = None

    @property
    def last_path(self) -> Path:
        """The newest checkpoint: what ``bnn export`` takes."""
        return self.dirpath / "last.pt"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse a module that holds no bnn recipe before any training is done."""
        if not isinstance(pl_module, BinaryRecipeModule):
            raise ConfigError(
                f"BnnCheckpoint writes the model of a BinaryRecipeModule (it stores the recipe "
                f"the model is rebuilt from), and this module is a {type(pl_module).__name__}"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save after every ``every_n_epochs``-th epoch."""
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer, pl_module, trainer.current_epoch + 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final weights, unless the last epoch's save already holds them."""
        self._save(trainer, pl_module, trainer.current_epoch)

    def _save(self, trainer: L.Trainer, module: L.LightningModule, epochs_done: int) -> None:
        if self._saved_step == trainer.global_step or not trainer.is_global_zero:
            return
        assert isinstance(module, BinaryRecipeModule)
        module.save_bnn_checkpoint(self.last_path, epochs_done)
        self._saved_step = trainer.global_step
