"""sigma*, the Gaussian blur equivalent to a whole degradation (docs/method.md section 2).

    sigma*(x, y) = argmin over {0, d, 2d, ..., sigma_max} of  L(sigma) = || G_sigma * x - U(y) ||^2

``sigma_star_spatial`` is the reference; ``sigma_star`` evaluates the same L in the Fourier domain of the
mirror continuation (coarse grid, then each image's best refined by ``REFINE_FACTOR``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, List, Optional

import torch

from data.blur import default_sigma_max, gaussian_blur, kernel_spectrum1d

#: Default fine grid step in pixels (at the image's resolution): pure Gaussian blurs are recovered
#: to well within 0.1 px.
FINE_STEP = 0.01
#: Default number of coarse intervals over [0, sigma_max].
COARSE_INTERVALS = 32
#: Step reduction per refinement level.
REFINE_FACTOR = 4

#: A loss over grid indices: (N, S) long candidates -> (N, S) float64 losses (on the CPU).
GridLoss = Callable[[torch.Tensor], torch.Tensor]


def _check(hq: torch.Tensor, lq_up: torch.Tensor, fine_step: float, name: str) -> None:
    if hq.shape != lq_up.shape or hq.ndim != 4:
        raise ValueError(
            f"{name}: hq {tuple(hq.shape)} and lq_up {tuple(lq_up.shape)} "
            "must be (N, C, H, W) tensors of the same shape"
        )
    if fine_step <= 0:
        raise ValueError(f"{name}: fine_step must be > 0, got {fine_step}")


def grid_search(
    loss: GridLoss, n: int, sigma_max: float, coarse_step: Optional[float], fine_step: float
) -> torch.Tensor:
    """Coarse-to-fine argmin of ``loss`` for ``n`` images (module docstring): (N,) float64 sigmas on the CPU."""
    top = max(1, round(sigma_max / fine_step))  # grid index of sigma_max
    if coarse_step is None:
        coarse_step = sigma_max / COARSE_INTERVALS
    step = min(top, max(1, round(coarse_step / fine_step)))
    coarse = torch.tensor(sorted(set(range(0, top + 1, step)) | {top}), dtype=torch.long)
    cand = coarse.expand(n, -1)
    best_loss, arg = loss(cand).min(dim=1)
    best = cand.gather(1, arg[:, None]).squeeze(1)
    while step > 1:
        new_step = max(1, step // REFINE_FACTOR)
        offsets = torch.tensor([o for o in range(-step + new_step, step, new_step) if o != 0], dtype=torch.long)
        cand = (best[:, None] + offsets).clamp(0, top)
        level_loss, arg = loss(cand).min(dim=1)
        better = level_loss < best_loss
        best = torch.where(better, cand.gather(1, arg[:, None]).squeeze(1), best)
        best_loss = torch.where(better, level_loss, best_loss)
        step = new_step
    return best.double() * fine_step


def _prepare(name: str, hq, lq_up, sigma_max, fine_step):
    _check(hq, lq_up, fine_step, name)
    dtype = torch.promote_types(hq.dtype, torch.float32)
    hq = hq.to(dtype)
    lq_up = lq_up.to(device=hq.device, dtype=dtype)
    if sigma_max is None:
        sigma_max = default_sigma_max(max(hq.shape[-2:]))
    return hq, lq_up, float(sigma_max)


@torch.no_grad()
def sigma_star_spatial(
    hq: torch.Tensor,
    lq_up: torch.Tensor,
    sigma_max: Optional[float] = None,
    coarse_step: Optional[float] = None,
    fine_step: float = FINE_STEP,
) -> torch.Tensor:
    """sigma* per image by blurring ``hq`` per candidate (the reference); hq, lq_up: (N, C, H, W); computes in hq's
    dtype (at least float32); float32 (N,) on hq's device."""
    hq, lq_up, sigma_max = _prepare("sigma_star_spatial", hq, lq_up, sigma_max, fine_step)

    def loss(cand: torch.Tensor) -> torch.Tensor:
        cols = []
        for j in range(cand.shape[1]):
            diff = gaussian_blur(hq, cand[:, j].double() * fine_step) - lq_up
            cols.append(diff.double().pow(2).sum(dim=(1, 2, 3)).cpu())
        return torch.stack(cols, dim=1)

    sigma = grid_search(loss, hq.shape[0], sigma_max, coarse_step, fine_step)
    return sigma.to(device=hq.device, dtype=torch.float32)


def _multiplicity(n: int, device) -> torch.Tensor:
    """How often each of n samples (or DCT-I frequencies) occurs in one period: 1 at both ends, 2 inside."""
    m = torch.full((n,), 2.0, dtype=torch.float64, device=device)
    m[0] = m[-1] = 1.0
    return m


@lru_cache(maxsize=8)
def _dct1_matrix(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) float32 D[f, i] = m_i cos(pi f i / (n - 1)): the DFT of the period-(2n - 2) mirror continuation
    of a length-n signal at frequencies 0..n-1 (real, since that continuation is even)."""
    f = torch.arange(n, dtype=torch.float64, device=device)
    return (torch.cos(torch.pi * f[:, None] * f[None, :] / (n - 1)) * _multiplicity(n, device)).float()


class BlurFit:
    """L(sigma) = ||G_sigma * x - y||^2 of a batch from spectra computed once (module docstring): :meth:`loss`.
    Spectra and the cancelling sums of squares are kept in float64."""

    def __init__(self, hq: torch.Tensor, lq_up: torch.Tensor):
        _, _, h, w = hq.shape
        if h < 2 or w < 2:
            raise ValueError(f"sigma_star: images must be at least 2 x 2, got {h} x {w}")
        self.device = hq.device
        self.ph, self.pw = 2 * h - 2, 2 * w - 2
        d_h, d_w = _dct1_matrix(h, self.device), _dct1_matrix(w, self.device)
        fx32 = d_h @ hq.float() @ d_w.T
        fx, fy = fx32.double(), (d_h @ lq_up.float() @ d_w.T).double()
        self.m_h, self.m_w = _multiplicity(h, self.device), _multiplicity(w, self.device)
        weight = self.m_h[:, None] * self.m_w[None, :]
        self.a = fx.pow(2).sum(1) * weight  # (N, H, W): sum over the period of |X|^2, folded onto 0..n-1
        self.b = (fx * fy).sum(1) * weight
        self.c = (fy.pow(2).sum(1) * weight).sum(dim=(1, 2))  # period sum of |Y|^2
        n_img, c = fx32.shape[:2]
        self.rows = fx32.permute(0, 2, 1, 3).reshape(n_img, h, c * w)  # for sums over H (top, bottom)
        self.cols = fx32.reshape(n_img, c * h, w)  # for sums over W (left, right)
        self.alt_h, self.alt_w = self._alternating(h), self._alternating(w)
        # the border lines of U(y) in the DCT-I domain along the line: rows (N, 2, C, W), columns (N, 2, C, H)
        self.y_rows = torch.einsum("kh,nchw->nkcw", self._end_weights(2), fy)
        self.y_cols = torch.einsum("kw,nchw->nkch", self._end_weights(3), fy)

    def _alternating(self, n: int) -> torch.Tensor:
        return (-1.0) ** torch.arange(n, dtype=torch.float64, device=self.device)

    def _end_weights(self, axis: int) -> torch.Tensor:
        """(2, n): the inverse DCT-I along ``axis`` (2: H, 3: W) taken at its first and last sample,
        (1/P) m_f and (1/P) m_f (-1)^f."""
        m, alt, period = (self.m_h, self.alt_h, self.ph) if axis == 2 else (self.m_w, self.alt_w, self.pw)
        return torch.stack([m, m * alt]) / period

    def _spectra(self, sigmas: List[float], length: int) -> torch.Tensor:
        return torch.stack([kernel_spectrum1d(s, length, self.device, torch.float64) for s in sigmas])

    def _border(self, gh: torch.Tensor, gw: torch.Tensor):
        """Sum of d^2 over the four border lines and over the four corners, (N, S) each (module docstring).

        Row 0 of G_sigma * x has the DCT-I g_w * sum_f1 (1/P_h) m_f1 g_h X (row H-1: with (-1)^f1), and
        likewise for the columns. A line's residual r is known by its DCT-I R (length n, period P):
        sum_j m_j r_j^2 = (1/P) sum_f m_f R_f^2 (Parseval), its ends r_0, r_(n-1) are
        (1/P) sum_f m_f (+-1)^f R_f, and sum_j r_j^2 = (sum_j m_j r_j^2 + r_0^2 + r_(n-1)^2) / 2."""
        n, s = gh.shape[:2]
        c = self.y_rows.shape[2]
        ends_h, ends_w = self._end_weights(2), self._end_weights(3)
        w_rows = (gh[:, None] * ends_h[None, :, None]).reshape(n, 2 * s, -1).float()  # (N, 2S, H)
        w_cols = (gw[:, None] * ends_w[None, :, None]).reshape(n, 2 * s, -1).float()
        rows = (w_rows @ self.rows).double().view(n, 2, s, c, -1) * gw[:, None, :, None]
        cols = (self.cols @ w_cols.transpose(1, 2)).double().view(n, c, -1, 2, s).permute(0, 3, 4, 1, 2)
        cols = cols * gh[:, None, :, None]
        lines = corners = 0.0
        for resid, ends, is_row in (
            (rows - self.y_rows[:, :, None], ends_w, True),
            (cols - self.y_cols[:, :, None], ends_h, False),
        ):
            weighted = (resid.pow(2) * ends[0]).sum(-1)  # (1/P) sum_f m_f R_f^2
            first, last = resid @ ends[0], resid @ ends[1]
            lines = lines + ((weighted + first.pow(2) + last.pow(2)) / 2.0).sum(dim=(1, 3))
            if is_row:  # each corner once: the ends of the top and bottom rows
                corners = corners + (first.pow(2) + last.pow(2)).sum(dim=(1, 3))
        return lines, corners

    def loss(self, sigmas: torch.Tensor) -> torch.Tensor:
        """(N, S) float64 L of image n at sigma[n, s] (pixels), on the CPU."""
        n, s = sigmas.shape
        h, w = self.m_h.numel(), self.m_w.numel()
        sig = sigmas.double().flatten().tolist()
        gh = self._spectra(sig, self.ph).view(n, s, self.ph)[..., :h]
        gw = self._spectra(sig, self.pw).view(n, s, self.pw)[..., :w]
        quad = (torch.einsum("nsp,npq->nsq", gh * gh, self.a) * gw * gw).sum(-1)
        cross = (torch.einsum("nsp,npq->nsq", gh, self.b) * gw).sum(-1)
        per = (quad - 2.0 * cross + self.c[:, None]) / (self.ph * self.pw)
        lines, corners = self._border(gh, gw)
        return (per / 4.0 + 0.5 * lines - 0.25 * corners).cpu()


@torch.no_grad()
def sigma_star(
    hq: torch.Tensor,
    lq_up: torch.Tensor,
    sigma_max: Optional[float] = None,
    coarse_step: Optional[float] = None,
    fine_step: float = FINE_STEP,
) -> torch.Tensor:
    """sigma* per image, L evaluated in the Fourier domain (module docstring); same arguments and result as
    :func:`sigma_star_spatial`, on hq's device (:class:`BlurFit`: float32 spectra, float64 sums). Images must
    be at least 2 x 2."""
    hq, lq_up, sigma_max = _prepare("sigma_star", hq, lq_up, sigma_max, fine_step)
    fit = BlurFit(hq, lq_up)
    sigma = grid_search(lambda cand: fit.loss(cand * fine_step), hq.shape[0], sigma_max, coarse_step, fine_step)
    return sigma.to(device=hq.device, dtype=torch.float32)
