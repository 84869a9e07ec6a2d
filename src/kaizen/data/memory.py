"""How much memory the training images may take on the device, and training images that stay on the host.

`data.max_memory` is a byte count or a string like "2GB" / "512MiB"; unset, it is half the device's free
memory (CUDA: `torch.cuda.mem_get_info`; CPU: MemAvailable of /proc/meminfo, else the free physical pages).
The other half is left for the model, its activations, the validation and test images and the float batches.
When the training images (as stored: uint8 or float32) do not fit, they stay where they are on the host (the
memory-mapped cache of an image folder) and `HostImages.stream` gathers each batch there, one batch ahead in
a thread, pinned for CUDA, and moves it to the device.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from kaizen.sizes import parse_bytes

FREE_SHARE = 0.5  # of the device's free memory, when data.max_memory is unset


def memory_budget(max_memory: int | str | None, device: torch.device) -> int:
    """Return the bytes the training images may take on `device`: data.max_memory or a share of its free memory."""
    if max_memory is not None:
        return parse_bytes(max_memory)
    return int(free_bytes(device) * FREE_SHARE)


def free_bytes(device: torch.device) -> int:
    """Bytes free on `device` now: CUDA's free memory, else the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return _host_available()


def _host_available() -> int:
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


CHUNK_BYTES = 4 * 2**20  # mapped file pages held at a time while copying rows out of a memory-mapped array
FAULT_AROUND_BYTES = 64 * 2**10  # what one page fault of a file mapping may map (Linux fault_around_bytes)


def take_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return `array[rows]` as a new array in memory.

    From a memory-mapped array (np.memmap), a few rows at a time, handing the mapped pages back to the kernel
    after each step (madvise DONTNEED: they stay in the page cache), so reading the file does not make it
    resident in this process on top of the copy. The steps are small because each page fault also maps the
    cached pages around it (the kernel's fault-around, 64 KiB), whatever the read-ahead advice: 1,365 scattered
    rows of 3 KiB mapped all 59 MiB of a cache file, 64 rows at a time the process stayed within 10 MiB of
    the copy (measured on the data_scale benchmark's cache).
    """
    mapping = getattr(array, "_mmap", None)  # np.memmap's mmap.mmap, shared by its slices
    if mapping is None or not hasattr(mapping, "madvise"):
        return array[rows]
    taken = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    row_bytes = int(np.prod(array.shape[1:])) * array.itemsize
    step = max(1, CHUNK_BYTES // max(row_bytes, FAULT_AROUND_BYTES))
    for start in range(0, len(rows), step):
        taken[start : start + step] = array[rows[start : start + step]]
        mapping.madvise(mmap.MADV_DONTNEED)
    return taken


@dataclass
class HostImages:
    """Training images left on the host: `rows` of `array` (often a memory-mapped .npy), in training order."""

    array: np.ndarray
    rows: np.ndarray

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """Return the images at positions `index` of the training split, as a CPU tensor in that order."""
        return torch.from_numpy(take_rows(self.array, self.rows[index.cpu().numpy()]))

    def take(self, index: torch.Tensor) -> HostImages:
        """The training examples at `index`, in that order (still on the host)."""
        return HostImages(self.array, self.rows[index.cpu().numpy()])

    def stream(self, indices: Sequence[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
        """Yield the images of each index batch on `device`, the next batch gathered in a thread meanwhile."""
        pin = device.type == "cuda"

        def load(index: torch.Tensor) -> torch.Tensor:
            batch = self.gather(index)
            return batch.pin_memory() if pin else batch

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaizen-prefetch") as pool:
            ahead = pool.submit(load, indices[0]) if len(indices) else None
            for step in range(len(indices)):
                batch = ahead.result()
                if step + 1 < len(indices):
                    ahead = pool.submit(load, indices[step + 1])
                yield batch.to(device, non_blocking=pin)
