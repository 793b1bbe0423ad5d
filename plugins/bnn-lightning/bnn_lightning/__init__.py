"""Train bnn recipes with PyTorch Lightning.

:class:`BinaryRecipeModule` binarizes a recipe's model and runs its stages, optimizers,
schedule and distillation in Lightning's loop; :class:`RecipeDataModule` serves the
recipe's data; :class:`BnnCheckpoint` writes checkpoints that ``bnn eval`` and
``bnn export`` accept. Unlike registry plugins, which sit below the app and never import
it, this package is built on the app's public API (``bnn``) and registers nothing.
"""

from bnn_lightning.callback import BnnCheckpoint
from bnn_lightning.data import RecipeDataModule
from bnn_lightning.module import BinaryRecipeModule

__all__ = ["BinaryRecipeModule", "BnnCheckpoint", "RecipeDataModule"]
__version__ = "0.1.0"
