"""TensorRT backend: a cached engine run with the named-tensor API on an NVIDIA GPU.

The plan comes from ``engine.tensorrt.build_engine`` (the user cache, keyed by model, runtime, GPU,
precision and profile; a stale or mismatched plan is rebuilt, one that fails to deserialize is
rebuilt once). Buffers are pinned host memory and device memory from ``cuda-python`` (no torch);
two execution contexts, each with its own stream and buffers, take alternate chunks of a batch so
that one chunk's copies overlap the other's compute.

Not yet run on a GPU in this project (the lent H100/H200 have no TensorRT, and TensorRT for RTX
does not run on them): the no-GPU, no-driver and no-TensorRT paths are tested, and the buffer,
stream and double-buffering code runs in the default tests against a stand-in CUDA runtime and
execution context (``tests/test_trt_slots.py``). Buffers and streams are freed by :meth:`close`
(also on garbage collection); a refused input shape and a plan that does not load are one-line
:class:`~engine.backends.BackendError` messages.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

import numpy as np

from engine.backends import BackendError
from engine.backends.options import BackendOptions


def _cudart():
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


def _check(result):
    """cuda-python calls return (error, values…): raise on error, return the values."""
    cudart = _cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class _Slot:
    """One execution context with its stream and its pinned/device buffers for ``max_batch``."""

    def __init__(self, engine, names: tuple[str, str], max_batch: int, size: int) -> None:
        cudart = _cudart()
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.names = names
        self.shapes = ((max_batch, 1, size, size), (max_batch, 2, size, size))
        self.host, self.device, self._pinned = [], [], []
        for shape in self.shapes:
            nbytes = int(np.prod(shape)) * 4
            pointer = _check(cudart.cudaMallocHost(nbytes))
            self._pinned.append(pointer)
            array = np.ctypeslib.as_array(
                ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape
            )
            self.host.append(array)
            self.device.append(_check(cudart.cudaMalloc(nbytes)))

    def close(self) -> None:
        """Free the pinned and device buffers and the stream (once; later calls do nothing)."""
        if self.stream is None:
            return
        cudart = _cudart()
        self.host = []
        for pointer in self._pinned:
            _check(cudart.cudaFreeHost(pointer))
        for pointer in self.device:
            _check(cudart.cudaFree(pointer))
        _check(cudart.cudaStreamDestroy(self.stream))
        self._pinned, self.device, self.stream = [], [], None

    def submit(self, chunk: np.ndarray) -> None:
        cudart = _cudart()
        n = len(chunk)
        self.n = n
        self.host[0][:n] = chunk
        in_bytes, out_bytes = chunk.nbytes, n * int(np.prod(self.shapes[1][1:])) * 4
        kind = cudart.cudaMemcpyKind
        _check(cudart.cudaMemcpyAsync(self.device[0], self.host[0].ctypes.data, in_bytes,
                                      kind.cudaMemcpyHostToDevice, self.stream))  # fmt: skip
        if not self.context.set_input_shape(self.names[0], chunk.shape):
            raise BackendError(
                f"TensorRT refused input shape {tuple(chunk.shape)} for '{self.names[0]}' "
                f"(the plan's profile takes batches up to {self.shapes[0][0]} of "
                f"{self.shapes[0][2]}x{self.shapes[0][3]})"
            )
        self.context.set_tensor_address(self.names[0], self.device[0])
        self.context.set_tensor_address(self.names[1], self.device[1])
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT could not run the batch (execute_async_v3 failed)")
        _check(cudart.cudaMemcpyAsync(self.host[1].ctypes.data, self.device[1], out_bytes,
                                      kind.cudaMemcpyDeviceToHost, self.stream))  # fmt: skip

    def collect(self) -> np.ndarray:
        _check(_cudart().cudaStreamSynchronize(self.stream))
        return self.host[1][: self.n].copy()


class TrtBackend:
    name = "trt"

    @staticmethod
    def unavailable_reason() -> str | None:
        from engine.tensorrt import TensorRTError, load_runtime

        try:
            load_runtime()
        except TensorRTError as exc:
            return str(exc)
        try:
            cudart = _cudart()
        except ImportError:
            return "cuda-python is not installed: pip install 'colorization-engine[trt]'"
        try:
            count = _check(cudart.cudaGetDeviceCount())
        except RuntimeError as exc:
            return f"no NVIDIA GPU or driver is usable here ({exc})"
        if not count:
            return "no NVIDIA GPU found"
        return None

    def __init__(self, model_path: str, options: BackendOptions | None = None) -> None:
        from engine.models import read_model_config
        from engine.tensorrt import BuildOptions, build_engine, load_runtime

        self.options = options or BackendOptions()
        size = self.options.size or read_model_config(Path(model_path)).input_size
        batch, max_batch = self.options.batch, self.options.max_batch
        self.options = self.options.replace(size=size)
        self.runtime_name, module = load_runtime()
        options = BuildOptions(batch=min(batch, max_batch), max_batch=max_batch, size=size)
        report = build_engine(model_path, None, self.runtime_name, options)
        runtime = module.Runtime(module.Logger(module.Logger.ERROR))
        engine = runtime.deserialize_cuda_engine(report.plan.read_bytes())
        if engine is None:  # corrupt or stale in a way the key did not catch: rebuild once
            report.plan.unlink()
            report = build_engine(model_path, None, self.runtime_name, options)
            engine = runtime.deserialize_cuda_engine(report.plan.read_bytes())
        if engine is None:
            raise BackendError(f"{report.plan}: TensorRT cannot load the plan it just built")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == module.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        self.engine, self.plan, self.max_batch, self.size = engine, report.plan, max_batch, size
        self.slots = [_Slot(engine, (inputs[0], outputs[0]), max_batch, size) for _ in range(2)]
        self.version = module.__version__

    def run(self, L: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(L, np.float32)
        if batch.shape[2:] != (self.size, self.size):
            raise ValueError(f"the engine takes {self.size}² inputs, got {batch.shape[2:]}")
        results, pending = [], None
        for i, start in enumerate(range(0, len(batch), self.max_batch)):
            slot = self.slots[i % 2]
            slot.submit(batch[start : start + self.max_batch])
            if pending is not None:
                results.append(pending.collect())
            pending = slot
        if pending is not None:
            results.append(pending.collect())
        return np.concatenate(results)

    def close(self) -> None:
        """Free both slots' buffers and streams (the backend cannot run afterwards)."""
        for slot in getattr(self, "slots", []):
            slot.close()
        self.slots = []

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at exit the CUDA runtime may be gone already
            self.close()

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "runtime": f"{self.runtime_name} {self.version}",
            "plan": str(self.plan),
            **self.options.describe(),
        }
