"""Knowledge distillation from a real-valued teacher, as ReActNet trains binary networks:
the student matches the teacher's output distribution (KL divergence between the two
softmaxes), optionally mixed with the usual cross-entropy on the labels."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnn.recipe.sections import DistillationSpec
from bnn.training.checkpoint import CheckpointError, evaluated_weights, load
from bnn_core.errors import ConfigError


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, target)``,
    both distributions taken at temperature ``T``, averaged over the batch."""
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    loss = alpha * temperature**2 * kl
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(
            student, target, label_smoothing=label_smoothing
        )
    return loss


def build_teacher(spec: DistillationSpec) -> nn.Module:
    """The frozen teacher: the registered model, with its checkpoint's weights if given
    (those a bnn checkpoint's run evaluated, or a plain state dict)."""
    teacher = spec.teacher.build()
    path = spec.teacher.checkpoint
    if path is not None:
        try:
            teacher.load_state_dict(_teacher_weights(Path(path)))
        except RuntimeError as exc:  # missing, unexpected or mis-shaped entries
            lines = [line.strip().rstrip(".") for line in str(exc).splitlines()[1:]]
            problems = "; ".join(lines[:3]) + (
                f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
            )
            raise ConfigError(
                f"the teacher checkpoint {path} does not fit the teacher model "
                f"{spec.teacher.name!r} with its options: {problems}"
            ) from None
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _teacher_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights a bnn checkpoint's run evaluated, or the state dict a file holds."""
    if not path.is_file():
        raise CheckpointError(f"the teacher checkpoint {path} does not exist")
    try:
        return evaluated_weights(load(path))
    except CheckpointError:
        pass
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any file torch cannot read: reported, not a traceback
        raise CheckpointError(
            f"the teacher checkpoint {path} is neither a bnn checkpoint nor a state dict "
            f"that torch.load(weights_only=True) reads ({type(exc).__name__}); give the "
            "best.pt or last.pt of the teacher's run, or a file of torch.save(model.state_dict())"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"the teacher checkpoint {path} holds a {type(state).__name__}, not a state dict"
        )
    return state
