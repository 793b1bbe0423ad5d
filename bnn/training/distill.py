"""Knowledge distillation from a real-valued teacher, as ReActNet trains binary networks:
the student matches the teacher's output distribution (KL divergence between the two
softmaxes), optionally mixed with the usual cross-entropy on the labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnn.training.checkpoint import CheckpointError, load
from bnn.training.spec import DistillationSpec


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
    (a bnn checkpoint's ``model`` entry or a plain state dict)."""
    teacher = spec.teacher.build()
    path = spec.teacher.checkpoint
    if path is not None:
        try:
            state = load(path)["model"]
        except CheckpointError:
            state = torch.load(path, map_location="cpu", weights_only=True)
        teacher.load_state_dict(state)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
