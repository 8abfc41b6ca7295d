"""Training-time augmentation on batched tensors: random crop after padding, and horizontal flip.

A data set that comes with a standard augmentation (CIFAR-10's pad-4 crop and flip) carries it as
`hwsearch.data.Dataset.augment`; the training loops apply it to each training batch instead of the
recipe's generic random shift. Everything runs on whole batches with one torch generator, so a run
is repeatable under its seed and needs no torchvision (whose wheel does not import beside CPU torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropFlip:
    """Random crop of the image size from the image padded on every side, then a flip with probability 1/2."""

    padding_share: float = 0.125        # 4 pixels at 32x32, as the CIFAR literature pads
    fill: tuple[float, ...] = ()        # border value per channel; () pads with 0
    flip: bool = True

    def padding(self, size: int) -> int:
        """Pixels of padding on each side for images of ``size`` x ``size``."""
        return max(0, round(self.padding_share * size))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augmented copy of the (N, C, H, W) batch ``x``; randomness drawn from ``gen`` only."""
        return crop_flip(x, self.padding(x.shape[-1]), gen, self.fill, self.flip)


def crop_flip(x: torch.Tensor, padding: int, gen: torch.Generator, fill: tuple[float, ...] = (),
              flip: bool = True) -> torch.Tensor:
    """Each image of ``x`` cropped at a random offset from its ``padding``-padded copy, then maybe mirrored."""
    n, c, h, w = x.shape
    if padding > 0:
        if fill:
            if len(fill) != c:
                raise ValueError(f"fill has {len(fill)} values for {c} channels")
            # Pad with each channel's own value (black, in standardised units) rather than 0.
            padded = torch.empty(n, c, h + 2 * padding, w + 2 * padding, dtype=x.dtype, device=x.device)
            padded[:] = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
            padded[:, :, padding:padding + h, padding:padding + w] = x
        else:
            padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(mirror, x.flip(-1), x)
    return x


__all__ = ["CropFlip", "crop_flip"]
