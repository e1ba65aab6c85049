"""What CUDA devices this process can use, and a check that refuses a CUDA run in seconds when none can.

``device: cuda`` used to start a run whose GPU blocks then waited for a GPU that was not there. The
check here runs before any block: the torch build has CUDA, a device is visible, this build has kernels
for its compute capability, and (when asked) it has the free memory a tile needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.errors import ConfigError

__all__ = ["CudaDevice", "check_cuda", "cuda_devices", "visible_gpu_ids"]


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA device as this process sees it (``index`` counts the visible devices only).

    Attributes
    ----------
    index : int
        Torch's device index (``cuda:index``).
    name : str
        The card, e.g. ``"NVIDIA H100 80GB HBM3"``.
    capability : tuple of 2 int
        Compute capability (major, minor).
    total_bytes, free_bytes : int
        Device memory, in bytes.
    supported : bool
        Whether this torch build has kernels for the capability.
    """

    index: int
    name: str
    capability: tuple[int, int]
    total_bytes: int
    free_bytes: int
    supported: bool

    def describe(self) -> str:
        """One line: index, name, capability, free / total memory in GiB."""
        major, minor = self.capability
        return (f"cuda:{self.index} {self.name} (compute capability {major}.{minor}, "
                f"{self.free_bytes / 2**30:.1f} of {self.total_bytes / 2**30:.1f} GiB free)"
                + ("" if self.supported else " - not supported by this torch build"))


def _supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether kernels for ``capability`` are in ``arch_list`` (``sm_XY`` binaries run on X.Y and later
    minor versions of the same major; ``compute_XY`` PTX is compiled on any later device)."""
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def cuda_devices() -> list[CudaDevice]:
    """The CUDA devices visible to this process (``CUDA_VISIBLE_DEVICES`` applies); empty without CUDA."""
    import torch

    if torch.version.cuda is None or not torch.cuda.is_available():
        return []
    arch_list = torch.cuda.get_arch_list()
    devices = []
    for i in range(torch.cuda.device_count()):
        capability = tuple(int(c) for c in torch.cuda.get_device_capability(i))
        try:
            free, total = torch.cuda.mem_get_info(i)
        except RuntimeError:  # a device torch lists but cannot open (busy, exclusive mode)
            free, total = 0, int(torch.cuda.get_device_properties(i).total_memory)
        devices.append(CudaDevice(i, torch.cuda.get_device_name(i), capability,  # type: ignore[arg-type]
                                  int(total), int(free), _supported(capability, arch_list)))  # type: ignore[arg-type]
    return devices


def visible_gpu_ids() -> list[str]:
    """The ids to give each per-GPU worker as its ``CUDA_VISIBLE_DEVICES``: the entries of this process's
    ``CUDA_VISIBLE_DEVICES`` where set (indices or UUIDs), else ``0 .. n-1``; empty without usable CUDA."""
    usable = [d.index for d in cuda_devices() if d.supported]
    if not usable:
        return []
    listed = [s.strip() for s in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
    return [listed[i] if i < len(listed) else str(i) for i in usable]


def check_cuda(
    device: str, *, what: str = "segment.device", need_bytes: int | None = None, fallback: str | None = None
) -> CudaDevice:
    """Refuse ``device`` (``"cuda"`` or ``"cuda:N"``) unless this process can run on it.

    Parameters
    ----------
    device : str
        The device a setting asks for.
    what : str
        The setting's name, for messages.
    need_bytes : int, optional
        Device memory one task needs (an estimate); refused when the device has less free.
    fallback : str, optional
        The last way out the messages offer (default: ``"or set <what>: cpu"``).

    Returns
    -------
    CudaDevice
        The device that will be used.

    Raises
    ------
    ConfigError
        Without a CUDA build of torch, without a visible device, for an index past the visible
        devices, a compute capability this build has no kernels for, or too little free memory; the
        message names what was found and the way out.
    """
    import torch

    fallback = fallback or f"or set {what}: cpu"
    if torch.version.cuda is None:
        raise ConfigError(
            f"{what} is {device!r} but this torch {torch.__version__} is a CPU-only build; install the CUDA "
            f"build of the same version (on Linux x86-64 PyPI's torch=={torch.__version__.split('+')[0]} "
            f"wheel; or use the Docker image, docker/Dockerfile), {fallback}"
        )
    devices = cuda_devices()
    if not devices:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ConfigError(
            f"{what} is {device!r} but torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA "
            f"device (CUDA_VISIBLE_DEVICES={visible!r}); check the driver with `nvidia-smi` and, in Docker, "
            f"run with `--gpus` (compose: a device reservation), {fallback}"
        )
    _, _, index_text = device.partition(":")
    index = int(index_text) if index_text.isdigit() else 0
    if index >= len(devices):
        listed = "; ".join(d.describe() for d in devices)
        raise ConfigError(f"{what} is {device!r} but only {len(devices)} CUDA device(s) are visible: "
                          f"{listed}; use cuda:0 .. cuda:{len(devices) - 1}")
    chosen = devices[index]
    if not chosen.supported:
        raise ConfigError(
            f"{what} is {device!r}: {chosen.describe()}; this torch build has kernels for "
            f"{', '.join(torch.cuda.get_arch_list())}; install a torch build for this card, {fallback}"
        )
    if need_bytes is not None and chosen.free_bytes < need_bytes:
        raise ConfigError(
            f"{what} is {device!r}: {chosen.describe()}, but one inference tile needs about "
            f"{need_bytes / 2**30:.1f} GiB; set a smaller segment.tile_shape or segment.batch_size: 1, "
            f"free the GPU, {fallback}"
        )
    return chosen
