"""Feature arrays as the trainer indexes them: resident on the device, or read per batch.

Small data (synthetic, digits, user feature vectors) lives on the device as one tensor and a
batch is a device-side gather. Large data (spectrograms, frames, clips prepared on disk as
memory-mapped arrays) stays on disk and each batch is read, then moved; the trainer cannot
tell the difference.
"""

from __future__ import annotations

import numpy as np
import torch


class FeatureArray:
    def __init__(self, data: np.ndarray, device: torch.device, resident: bool | None = None):
        if resident is None:
            resident = not isinstance(data, np.memmap)
        self.resident = resident
        self.device = device
        self.shape = tuple(data.shape)
        self.data = torch.as_tensor(np.asarray(data), device=device) if resident else data

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: torch.Tensor | slice) -> torch.Tensor:
        if self.resident:
            return self.data[idx]
        if isinstance(idx, slice):
            part = np.array(self.data[idx])  # a copy: memmaps are read-only
        else:
            rows = idx.detach().cpu().numpy()
            order = np.argsort(rows, kind="stable")  # sorted reads are kinder to the disk
            part = np.empty((len(rows), *self.shape[1:]), dtype=self.data.dtype)
            part[order] = self.data[rows[order]]
        return torch.from_numpy(np.ascontiguousarray(part)).to(self.device, non_blocking=True)
