"""Hook implementations of bnn-timm (entry point ``bnn-timm``).

The model names come from the installed timm's source files, read without importing
timm or torch, so ``bnn list-plugins`` and ``bnn --help`` stay fast.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent

from bnn_timm.models import register_timm_models


@hookimpl
def bnn_register_models(register: RegisterComponent) -> None:
    """Register every timm model as ``timm/<name>``."""
    register_timm_models(register)
