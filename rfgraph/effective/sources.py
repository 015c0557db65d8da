"""Where ERF inputs come from: noise, a tensor, a folder of images, or the caller's batches."""

from __future__ import annotations

import itertools
import os
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from .result import IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD, ERFError

__all__ = ["Source", "infer_input_template"]

# -- input sources -----------------------------------------------------------------------------------


def infer_input_template(model: nn.Module) -> tuple[int, int]:
    """(channels, spatial ndim) read from the first convolution of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels, len(m.kernel_size)
    raise ERFError(
        f"cannot tell the input channels and rank of {type(model).__name__} (it has no convolution): "
        "pass input_shape=(1, C, *spatial)"
    )


class Source:
    """Where the inputs come from: noise, a tensor batch, a folder of images or an iterable of batches."""

    def __init__(self, inputs: Any, channels: int, ndim: int, size: Optional[tuple[int, ...]], *,
                 mean, std, seed: int):
        self.channels, self.ndim, self.seed = channels, ndim, seed
        self.mean, self.std = mean, std
        self.fixed: Optional[tuple[int, ...]] = size  # spatial size imposed by the user or the data
        self.count: Optional[int] = None
        self.kind = ""
        self.files: list[str] = []
        self._tensor: Optional[torch.Tensor] = None
        self._iter: Optional[Iterator] = None
        if isinstance(inputs, bool):
            raise ERFError("inputs must be a number of noise samples, a tensor, a folder or an iterable of batches")
        if isinstance(inputs, int):
            if inputs < 1:
                raise ERFError(f"the number of noise inputs must be >= 1, got {inputs}")
            self.kind, self.count = "noise", inputs
        elif isinstance(inputs, torch.Tensor):
            if inputs.dim() < 3 or inputs.shape[0] == 0:
                raise ERFError(f"an input batch needs shape (N, C, *spatial) with N >= 1, got {tuple(inputs.shape)}")
            self.kind, self._tensor, self.count = "tensor", inputs, inputs.shape[0]
            self._check_fixed(tuple(inputs.shape[2:]), "the input tensor")
        elif isinstance(inputs, (str, os.PathLike)):
            folder = os.fspath(inputs)
            if not os.path.isdir(folder):
                raise ERFError(f"image folder {folder!r} does not exist or is not a directory")
            if ndim != 2:
                raise ERFError(f"a folder of images only suits 2-D models; this model's input has {ndim} spatial axes")
            self.files = sorted(
                os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES)
            )
            if not self.files:
                raise ERFError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder!r}")
            self.kind, self.count = "images", len(self.files)
        elif isinstance(inputs, Iterable):
            it = iter(inputs)
            try:
                first = _batch_tensor(next(it))
            except StopIteration:
                raise ERFError("the iterable of input batches is empty") from None
            self.kind, self._iter = "iterable", itertools.chain([first], it)
            self.channels, self.ndim = first.shape[1], first.dim() - 2
            self._check_fixed(tuple(first.shape[2:]), "the input batches")
        else:
            raise ERFError(
                f"inputs must be a number of noise samples, a tensor, a folder or an iterable of batches, "
                f"got {type(inputs).__name__}"
            )

    def _check_fixed(self, spatial: tuple[int, ...], what: str) -> None:
        if self.fixed is not None and len(self.fixed) == 1 and len(spatial) > 1:
            self.fixed = self.fixed * len(spatial)  # an int size given before the rank was known
        if self.fixed is not None and tuple(self.fixed) != spatial:
            raise ERFError(f"size={self.fixed} was asked but {what} has spatial size {spatial}")
        self.fixed = spatial

    def batches(self, spatial: tuple[int, ...], batch_size: int, dtype: torch.dtype,
                device: torch.device) -> Iterator[torch.Tensor]:
        if self.kind == "noise":
            gen = torch.Generator().manual_seed(self.seed)
            for start in range(0, self.count, batch_size):
                n = min(batch_size, self.count - start)
                yield torch.randn((n, self.channels, *spatial), generator=gen, dtype=torch.float64).to(device, dtype)
        elif self.kind == "tensor":
            for start in range(0, self.count, batch_size):
                yield self._tensor[start:start + batch_size].to(device, dtype)
        elif self.kind == "images":
            for start in range(0, self.count, batch_size):
                files = self.files[start:start + batch_size]
                yield torch.stack([self._load(f, spatial) for f in files]).to(device, dtype)
        else:
            for item in self._iter:
                batch = _batch_tensor(item)
                if tuple(batch.shape[2:]) != tuple(spatial):
                    raise ERFError(f"input batches change size: {tuple(batch.shape[2:])} after {tuple(spatial)}")
                yield batch.to(device, dtype)

    def _load(self, path: str, spatial: tuple[int, ...]) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                img = img.resize((spatial[1], spatial[0]), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.float64) / 255.0
        except Exception as exc:  # never skip an image silently
            raise ERFError(f"cannot read image {path!r}: {type(exc).__name__}: {exc}") from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[None], self.channels, axis=0)
        else:
            arr = arr.transpose(2, 0, 1)
        t = torch.from_numpy(arr)
        mean, std = self.mean, self.std
        if mean is None and std is None and self.channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        if mean is not None:
            t = t - torch.tensor(mean, dtype=t.dtype).view(-1, 1, 1)
        if std is not None:
            t = t / torch.tensor(std, dtype=t.dtype).view(-1, 1, 1)
        return t


def _batch_tensor(item: Any) -> torch.Tensor:
    if isinstance(item, (list, tuple)) and item:
        item = item[0]  # (images, labels) from a DataLoader
    if not isinstance(item, torch.Tensor) or item.dim() < 3:
        raise ERFError(f"each input batch must be a tensor (N, C, *spatial), got {type(item).__name__}")
    return item
