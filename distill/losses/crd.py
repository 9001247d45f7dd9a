"""Content relationship distillation (CRD; crd paper §3.1-3.2, Eqs. 1-9).

Each generator output x ∈ R^{C×H×W} is sliced into content units (Eq. 7):

* W column strips  x[:, :, w]      (vectors of length C·H),
* H row strips     x[:, h, :]      (vectors of length C·W),
* (H/P)·(W/P) non-overlapping P×P patches (vectors of length C·P·P).

Over the units {t_i} of ONE teacher image and the matching student units {s_i}, relational KD
(Park et al. 2019, "RKD") is applied:

* distance (Eqs. 2-3, 8): ψ_D(t_i, t_j) = ||t_i - t_j||₂ / μ, μ = mean of the non-zero pairwise
  distances of that unit set; L_D = mean_{i,j} huber(ψ_D(s_i, s_j), ψ_D(t_i, t_j)),
* angle (Eqs. 4-5, 9): ψ_A(t_i, t_j, t_k) = <e_ij, e_kj>, e_ij = (t_i - t_j)/||t_i - t_j||₂ (vertex
  j); L_A = mean_{i,j,k} huber(ψ_A(s), ψ_A(t)),
* Huber = smooth L1 with δ = 1 (Eq. 6).

L_CRD = Σ_{granularity} (w_D·L_D + w_A·L_A), w_D = 1, w_A = 2 (crd §4.1, appendix Table 8), averaged
over the images of the batch. The recipe weight λ_CRD (25 CycleGAN, 2.5 pix2pix) multiplies L_CRD.

Choices where the paper is silent: the patch side scales with resolution as P = round(32·H/256)
(32 at 256², 8 at 64²), at least 2; rows/columns that do not fill a whole patch are left out of the
patch granularity; the teacher relations carry no gradient; the angle is computed anchor-by-anchor in
chunks so memory stays O(N²·D) instead of O(N³·D).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.losses.adversarial import check_gan_mode, generator_loss
from distill.losses.base import LossTerm, register_loss
from distill.losses.context import StepContext

GRANULARITIES = ("column", "row", "patch")


def default_patch_size(height: int, width: int | None = None) -> int:
    """P scaled from the paper's 32 at 256²: round(32·min(H, W)/256), at least 2."""
    side = min(height, width if width is not None else height)
    return max(2, round(32 * side / 256))


def slice_units(x: torch.Tensor, granularity: str, patch: int) -> torch.Tensor:
    """Content units of each image (Eq. 7), flattened: (B, C, H, W) → (B, N, D).

    column: N = W, D = C·H; row: N = H, D = C·W; patch: N = (H//P)·(W//P), D = C·P·P.
    """
    b, c, h, w = x.shape
    if granularity == "column":
        return x.permute(0, 3, 1, 2).reshape(b, w, c * h)
    if granularity == "row":
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w)
    if granularity == "patch":
        if patch > h or patch > w:
            raise ValueError(f"patch size {patch} is larger than the image ({h}x{w})")
        cols = F.unfold(x, kernel_size=patch, stride=patch)  # (B, C·P·P, N)
        return cols.transpose(1, 2)
    raise ValueError(f"unknown granularity {granularity!r}; choose from {', '.join(GRANULARITIES)}")


def count_units(height: int, width: int, patch: int) -> dict[str, int]:
    """Number of units per granularity for an H×W image: {column: W, row: H, patch: (H//P)(W//P)}."""
    return {"column": width, "row": height, "patch": (height // patch) * (width // patch)}


def pairwise_distance(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of each set: (B, N, D) → (B, N, N), zero diagonal."""
    sq = e.pow(2).sum(-1)  # (B, N)
    d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * e @ e.transpose(1, 2)).clamp(min=eps)
    d = d2.sqrt()
    eye = torch.eye(e.shape[1], dtype=torch.bool, device=e.device)
    return d.masked_fill(eye, 0.0)


def distance_relation(e: torch.Tensor) -> torch.Tensor:
    """ψ_D for every pair (Eq. 2): distances divided by μ, the mean non-zero distance per set. (B, N, N)."""
    d = pairwise_distance(e)
    positive = (d > 0).to(d.dtype)
    mu = (d * positive).sum((1, 2)) / positive.sum((1, 2)).clamp(min=1)  # (B,)
    return d / mu.clamp(min=1e-12).view(-1, 1, 1)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_D (Eq. 3): mean Huber(ψ_D(s), ψ_D(t)) over all N² pairs and the batch. Inputs (B, N, D)."""
    with torch.no_grad():
        t = distance_relation(teacher.detach())
    s = distance_relation(student)
    return F.smooth_l1_loss(s, t)


def _angles(e: torch.Tensor, anchors: slice) -> torch.Tensor:
    """ψ_A with vertex j in ``anchors``: (B, n_anchor, N, N), entry [b, j, i, k] = <e_ij, e_kj>."""
    diff = e.unsqueeze(1) - e[:, anchors].unsqueeze(2)  # (B, A, N, D): t_i - t_j
    unit = F.normalize(diff, p=2, dim=-1)
    return unit @ unit.transpose(2, 3)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """L_A (Eq. 5): mean Huber(ψ_A(s), ψ_A(t)) over all N³ triplets and the batch. Inputs (B, N, D).

    Computed ``chunk`` anchors at a time (same value as the dense form).
    """
    b, n, _ = student.shape
    total = student.new_zeros(())
    for start in range(0, n, chunk):
        anchors = slice(start, min(n, start + chunk))
        with torch.no_grad():
            t = _angles(teacher.detach(), anchors)
        s = _angles(student, anchors)
        total = total + F.smooth_l1_loss(s, t, reduction="sum")
    return total / (b * n**3)


def crd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    patch: int | None = None,
    granularities: tuple[str, ...] = GRANULARITIES,
    distance_weight: float = 1.0,
    angle_weight: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_CRD = Σ_g (distance_weight·L_D + angle_weight·L_A) over granularities (Eqs. 8-9).

    ``student`` and ``teacher`` are generator outputs (B, C, H, W). Returns the loss and a dict of the
    detached per-granularity parts (``column/distance`` ...) for logging.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} outputs differ")
    patch = default_patch_size(student.shape[-2], student.shape[-1]) if patch is None else patch
    total = student.new_zeros(())
    parts: dict[str, float] = {}
    for g in granularities:
        us, ut = slice_units(student, g, patch), slice_units(teacher, g, patch)
        dist = rkd_distance(us, ut)
        ang = rkd_angle(us, ut)
        parts[f"{g}/distance"] = float(dist.detach())
        parts[f"{g}/angle"] = float(ang.detach())
        total = total + distance_weight * dist + angle_weight * ang
    return total, parts


class frozen:  # noqa: N801  (used as a context manager: ``with frozen(d_bar): ...``)
    """Context manager: ``requires_grad=False`` on every parameter of ``module``, restored on exit.

    This is the "freezing" half of CRD's updating-freezing teacher discriminator (crd §3.3, Eq. 12,
    sg(D̄)): the student's adversarial loss back-propagates *through* D̄ into the student, but D̄'s own
    weights receive no gradient from that loss.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self._saved: list[tuple[torch.nn.Parameter, bool]] = []

    def __enter__(self) -> torch.nn.Module:
        self._saved = [(p, p.requires_grad) for p in self.module.parameters()]
        for p, _ in self._saved:
            p.requires_grad_(False)
        return self.module

    def __exit__(self, *exc: object) -> None:
        for p, flag in self._saved:
            p.requires_grad_(flag)


@register_loss("crd")
class CRDLoss(LossTerm):
    """``L_CRD`` between G_s(x) and G_t(x) (crd Eqs. 8-9); the recipe weight is λ_CRD (25 / 2.5).

    ``patch``: P (None: scaled from 32 at 256²); ``granularities``: any of column, row, patch;
    ``distance_weight`` / ``angle_weight``: 1 and 2 (RKD's ratio); ``batch_reduction``: ``mean`` over the
    images of the batch, or ``sum`` (the official code's pix2pix setting).
    """

    def __init__(self, patch: int | None = None, granularities: Sequence[str] = GRANULARITIES,
                 distance_weight: float = 1.0, angle_weight: float = 2.0, batch_reduction: str = "mean") -> None:
        super().__init__()
        if batch_reduction not in ("mean", "sum"):
            raise ValueError(f"batch_reduction must be mean or sum, got {batch_reduction!r}")
        self.batch_reduction = batch_reduction
        bad = [g for g in granularities if g not in GRANULARITIES]
        if bad or not granularities:
            raise ValueError(f"granularities must be a non-empty subset of {list(GRANULARITIES)}, got {list(granularities)}")
        self.patch = patch
        self.granularities = tuple(granularities)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        with torch.autocast(ctx.student_out.device.type, enabled=False):
            loss, _ = crd_loss(ctx.student_out.float(), ctx.teacher_out.float(), self.patch, self.granularities,
                               self.distance_weight, self.angle_weight)
        # the official pix2pix code sums the per-image RKD losses over the batch
        return loss * ctx.student_out.shape[0] if self.batch_reduction == "sum" else loss


@register_loss("teacher_adv")
class TeacherAdversarial(LossTerm):
    """The student's adversarial loss against the teacher discriminator D̄ with D̄ frozen (crd §3.3, Eq. 12).

    With ``teacher.mode: online`` and ``teacher.online_discriminator`` the engine trains D̄ from scratch
    with G_t in the teacher step ("updating"); here D̄ only passes gradients to G_s ("freezing",
    sg(D̄)): ``generator_loss(D̄(G_s(x)))``. ``gan_mode`` is D̄'s objective and ``conditional`` whether
    D̄ sees ``cat(x, image)`` (pix2pix); None takes D̄'s own (its ``online_discriminator`` section, or
    what its checkpoint records).
    """

    needs_teacher = False
    reads_teacher_discriminator = True

    def __init__(self, gan_mode: str | None = None, conditional: bool | None = None) -> None:
        super().__init__()
        self.gan_mode = None if gan_mode is None else check_gan_mode(gan_mode)
        self.conditional = conditional

    def forward(self, ctx: StepContext) -> torch.Tensor:
        d_bar = ctx.teacher_discriminator
        if d_bar is None:
            raise ConfigError("loss term 'teacher_adv' needs a teacher discriminator "
                              "(teacher.online_discriminator with teacher.mode: online, or teacher.discriminator)")
        conditional = ctx.teacher_conditional if self.conditional is None else self.conditional
        with frozen(d_bar):
            return generator_loss(d_bar(ctx.d_input(ctx.student_out, conditional)), self.gan_mode or ctx.teacher_gan_mode)
