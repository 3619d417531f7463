"""The TensorRT backend's own code without TensorRT: a stand-in CUDA runtime and execution context.

The stand-in runtime hands out real host memory for "pinned" and "device" buffers and copies with
memmove; the stand-in context computes ab = (L / 2, −L) from its input address into its output
address. What runs is the backend's code: buffer allocation, the two slots taking alternate
chunks, shapes, copies, collection, freeing, and its one-line errors.
"""

from __future__ import annotations

import ctypes
import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks.trt_standin import StandInContext, StandInEngine
from engine.backends import BackendError
from engine.backends import trt as trt_backend


class FakeRuntime:
    class cudaError_t:  # noqa: N801 (cuda-python's names)
        cudaSuccess = 0  # noqa: N815

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice = 1  # noqa: N815
        cudaMemcpyDeviceToHost = 2  # noqa: N815

    def __init__(self) -> None:
        self.buffers: dict[int, ctypes.Array] = {}
        self.freed: list[int] = []
        self.streams: set[int] = set()
        self.destroyed: list[int] = []

    def _buffer(self, nbytes: int) -> tuple[int, int]:
        buffer = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    def cudaStreamCreate(self):  # noqa: N802
        stream = len(self.streams) + len(self.destroyed) + 1
        self.streams.add(stream)
        return 0, stream

    def cudaMallocHost(self, nbytes):  # noqa: N802
        return self._buffer(nbytes)

    def cudaMalloc(self, nbytes):  # noqa: N802
        return self._buffer(nbytes)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        assert stream in self.streams
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaFreeHost(self, pointer):  # noqa: N802
        self.freed.append(pointer)
        return (0,)

    cudaFree = cudaFreeHost  # noqa: N815

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams.remove(stream)
        self.destroyed.append(stream)
        return (0,)


class HostContext(StandInContext):
    """The stand-in context over the fake runtime's host memory."""

    def compute(self, L: int, ab: int, shape: tuple[int, ...], stream: int) -> None:
        n, _, h, w = shape
        floats = ctypes.POINTER(ctypes.c_float)
        L_in = np.ctypeslib.as_array(ctypes.cast(L, floats), (n, 1, h, w))
        ab_out = np.ctypeslib.as_array(ctypes.cast(ab, floats), (n, 2, h, w))
        ab_out[:, 0], ab_out[:, 1] = L_in[:, 0] / 2, -L_in[:, 0]


@pytest.fixture
def runtime(monkeypatch) -> FakeRuntime:
    fake = FakeRuntime()
    monkeypatch.setattr(trt_backend, "_cudart", lambda: fake)
    return fake


@pytest.fixture
def make_backend(runtime):
    """Backends on the stand-in runtime, closed while it is still the one patched in (so that
    no later garbage collection hands its pointers to a real CUDA runtime)."""
    made = []

    def make(max_batch: int = 3, size: int = 8) -> trt_backend.TrtBackend:
        backend = trt_backend.TrtBackend.__new__(trt_backend.TrtBackend)
        backend.size, backend.max_batch = size, max_batch
        engine = StandInEngine(max_batch, size, HostContext)
        backend.slots = [trt_backend._Slot(engine, ("L", "ab"), max_batch, size) for _ in range(2)]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_alternate_slots_return_every_chunk_in_order(make_backend):
    backend = make_backend()
    L = np.random.default_rng(0).uniform(0, 100, (7, 1, 8, 8)).astype(np.float32)
    ab = backend.run(L)  # chunks of 3, 3, 1 on slots 0, 1, 0
    assert ab.shape == (7, 2, 8, 8)
    np.testing.assert_array_equal(ab[:, 0], L[:, 0] / 2)
    np.testing.assert_array_equal(ab[:, 1], -L[:, 0])
    with pytest.raises(ValueError, match="takes 8² inputs"):
        backend.run(np.zeros((1, 1, 16, 16), np.float32))


def test_close_frees_every_buffer_and_stream_once(runtime, make_backend):
    backend = make_backend()
    allocated = set(runtime.buffers)
    assert len(allocated) == 8 and len(runtime.streams) == 2  # 2 slots × (2 pinned + 2 device)
    backend.close()
    assert sorted(runtime.freed) == sorted(allocated) and not runtime.streams
    backend.close()  # a second close does nothing
    assert len(runtime.freed) == 8 and len(runtime.destroyed) == 2


def test_a_refused_input_shape_is_one_line(make_backend):
    backend = make_backend()
    slot = backend.slots[0]
    slot.context.size = 4  # a profile that does not take what the slot was made for
    with pytest.raises(BackendError, match="refused input shape") as error:
        backend.run(np.zeros((2, 1, 8, 8), np.float32))
    assert "\n" not in str(error.value)


def test_a_plan_that_does_not_load_is_rebuilt_once_then_one_line(runtime, monkeypatch, tmp_path):
    from engine import tensorrt

    plan = tmp_path / "model.plan"
    builds = []

    def build(model, out, runtime_name, options):
        plan.write_bytes(b"not a plan")
        builds.append(options)
        return types.SimpleNamespace(plan=Path(plan))

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data):
            return None

    def logger(level):
        return None

    logger.ERROR = 0
    module = types.SimpleNamespace(Runtime=Runtime, Logger=logger)
    monkeypatch.setattr(tensorrt, "load_runtime", lambda: ("stand-in", module))
    monkeypatch.setattr(tensorrt, "build_engine", build)
    model = str(Path(__file__).parents[1] / "engine/models/seed-general.onnx")
    with pytest.raises(BackendError, match="cannot load the plan it just built") as error:
        trt_backend.TrtBackend(model)
    assert len(builds) == 2 and "\n" not in str(error.value)
