"""The TensorRT backend's buffer, stream and double-buffering code on a real GPU, without TensorRT.

``engine.backends.trt`` allocates pinned and device memory and streams through cuda-python and
hands device addresses to a TensorRT execution context. Here the real CUDA runtime is used and the
execution context is a stand-in that runs a torch kernel on the slot's own stream over those very
addresses (wrapped through ``__cuda_array_interface__``, no copy): ab = (L / 2, −L). What runs is
the backend's own code — allocation, the two slots taking alternate chunks, async copies,
collection, freeing — so a mistake in it (a wrong byte count, a copy on the wrong stream, a buffer
read before its stream is synchronised, a leak) shows as a wrong result or memory not given back.
"""

from __future__ import annotations

import numpy as np


class _DeviceArray:
    """A raw device address seen as a float32 array by ``torch.as_tensor`` (no copy)."""

    def __init__(self, pointer: int, shape: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": "<f4", "data": (int(pointer), False), "version": 3,
        }  # fmt: skip


class StandInContext:
    """What ``_Slot`` needs of an ``IExecutionContext``: input shapes within the profile, tensor
    addresses, and ``execute_async_v3`` computing ab = (L / 2, −L) by :meth:`compute`."""

    def __init__(self, max_batch: int, size: int) -> None:
        self.max_batch, self.size, self.addresses, self.shape = max_batch, size, {}, None

    def set_input_shape(self, name: str, shape) -> bool:
        ok = shape[0] <= self.max_batch and tuple(shape[2:]) == (self.size, self.size)
        self.shape = tuple(shape) if ok else None
        return ok

    def set_tensor_address(self, name: str, pointer: int) -> None:
        self.addresses[name] = pointer

    def execute_async_v3(self, stream: int) -> bool:
        self.compute(self.addresses["L"], self.addresses["ab"], self.shape, stream)
        return True

    def compute(self, L: int, ab: int, shape: tuple[int, ...], stream: int) -> None:
        raise NotImplementedError


class TorchStandInContext(StandInContext):
    """The stand-in on a real GPU: a torch kernel on the slot's own stream."""

    def compute(self, L: int, ab: int, shape: tuple[int, ...], stream: int) -> None:
        import torch

        n, _, h, w = shape
        with torch.cuda.stream(torch.cuda.ExternalStream(int(stream))):
            L_in = torch.as_tensor(_DeviceArray(L, (n, 1, h, w)), device="cuda")
            ab_out = torch.as_tensor(_DeviceArray(ab, (n, 2, h, w)), device="cuda")
            ab_out[:, 0].copy_(L_in[:, 0] / 2)
            ab_out[:, 1].copy_(-L_in[:, 0])


class StandInEngine:
    """What ``_Slot`` needs of an ``ICudaEngine``: contexts of ``context`` type."""

    def __init__(self, max_batch: int, size: int, context: type = TorchStandInContext) -> None:
        self.max_batch, self.size, self.context = max_batch, size, context

    def create_execution_context(self) -> StandInContext:
        return self.context(self.max_batch, self.size)


def run_standin(max_batch: int = 32, size: int = 256, images: int = 200, rounds: int = 3) -> dict:
    """Run the trt backend's slots on the real CUDA runtime with the torch stand-in; check every
    output and that closing gives the device memory back. Returns the facts as a dict."""
    import torch

    from engine.backends import trt as trt_backend

    torch.zeros(1, device="cuda")  # the context torch makes is not the backend's memory
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # torch's cached blocks are not the backend's either: read after
    cudart = trt_backend._cudart()
    free_before = trt_backend._check(cudart.cudaMemGetInfo())[0]
    backend = trt_backend.TrtBackend.__new__(trt_backend.TrtBackend)
    backend.size, backend.max_batch = size, max_batch
    engine = StandInEngine(max_batch, size)
    backend.slots = [trt_backend._Slot(engine, ("L", "ab"), max_batch, size) for _ in range(2)]
    rng = np.random.default_rng(0)
    worst = 0.0
    try:
        for _ in range(rounds):
            L = rng.uniform(0, 100, (images, 1, size, size)).astype(np.float32)
            ab = backend.run(L)
            expected = np.concatenate([L / 2, -L], axis=1)
            worst = max(worst, float(np.abs(ab - expected).max()))
        free_during = trt_backend._check(cudart.cudaMemGetInfo())[0]
    finally:
        backend.close()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # the stand-in's own temporaries
    free_after = trt_backend._check(cudart.cudaMemGetInfo())[0]
    return {
        "images": images * rounds, "max_batch": max_batch, "size": size,
        "max_abs_error": worst, "correct": worst == 0.0,
        "device_mib_held_while_open": (free_before - free_during) / 2**20,
        "device_mib_not_given_back": (free_before - free_after) / 2**20,
    }  # fmt: skip
