"""ONNX Runtime backend: CPU everywhere; TensorRT/CUDA execution providers with ``onnxruntime-gpu``.

With the ``gpu`` extra (``onnxruntime-gpu``, which replaces the CPU package), the session asks for
the TensorRT execution provider (engine and timing caches in the user cache), then CUDA, then the
CPU, and binds the output to the GPU so each batch is copied once each way. Which providers
really loaded is in ``describe()`` and ``engine info``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from engine.backends.options import BackendOptions
from engine.system import available_cores, cache_dir

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def tensorrt_libraries_present() -> bool:
    """Whether TensorRT's libraries can be found: onnxruntime-gpu lists its TensorRT provider
    whether or not they are installed, and a session asking for it without them logs an "EP
    Error" and falls back."""
    import ctypes.util
    import importlib.util

    return bool(
        ctypes.util.find_library("nvinfer")
        or importlib.util.find_spec("tensorrt_libs")
        or importlib.util.find_spec("tensorrt")
    )


def select_providers(
    available: list[str], cache: Path, tensorrt_present: bool | None = None
) -> list:
    """Providers to ask for, best first, with their options (the CPU always last). TensorRT is
    asked for only where its libraries are present (``tensorrt_present``: None = look)."""
    chosen: list = []
    if tensorrt_present is None and "TensorrtExecutionProvider" in available:
        tensorrt_present = tensorrt_libraries_present()
    if "TensorrtExecutionProvider" in available and tensorrt_present:
        chosen.append(
            (
                "TensorrtExecutionProvider",
                {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                },
            )
        )
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {}))
    chosen.append("CPUExecutionProvider")
    return chosen


class OrtBackend:
    """One ONNX Runtime session per run: all optimisations on, intra-op threads = cores."""

    name = "ort"

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed: pip install onnxruntime"
        return None

    def __init__(self, model_path: str, options: BackendOptions | None = None) -> None:
        import onnxruntime as ort

        self.options = options or BackendOptions()
        threads = self.options.threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # ONNX Runtime's warnings are not the user's business
        # Idle ORT threads sleep instead of spinning: the pipeline's decode/encode threads need
        # those cycles (+6% end to end on 2 cores; ORT alone is unchanged).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        available = ort.get_available_providers()
        if self.options.device == "cpu":
            available = ["CPUExecutionProvider"]
        providers = select_providers(available, cache_dir("ort-trt"))
        if len(providers) > 1:
            cache_dir("ort-trt").mkdir(parents=True, exist_ok=True)
            preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu ≥ 1.21: CUDA/cuDNN
            if preload is not None:  # from the nvidia-* wheels, before the first GPU session
                with contextlib.suppress(Exception):
                    preload()
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.fallback = fallback_note(providers, self.session.get_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.on_gpu = self.session.get_providers()[0] in GPU_PROVIDERS

    def run(self, L: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(L, dtype=np.float32)
        if not self.on_gpu:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self.session.io_binding()  # one copy in, one copy out, output kept on the GPU
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def describe(self) -> dict:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "runtime": f"onnxruntime {ort.__version__}",
            "providers": self.session.get_providers(),
            "threads": self.threads,
            **({"fallback": self.fallback} if self.fallback else {}),
            **self.options.describe(),
        }


def fallback_note(asked: list, loaded: list[str]) -> str | None:
    """None when the session runs on the first provider asked for, else which one it fell back to
    (TensorRT → CUDA is not "CPU")."""
    first = asked[0] if isinstance(asked[0], str) else asked[0][0]
    if loaded and loaded[0] == first:
        return None
    return f"asked for {first}, fell back to {loaded[0] if loaded else 'nothing'}"


def working_providers() -> dict[str, str]:
    """Each available provider → "works" or why a session on it fell back (for ``engine info``)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)]
    ).SerializeToString()
    status = {}
    for provider in ort.get_available_providers():
        try:
            fallback = [] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"]
            session = ort.InferenceSession(model, providers=[provider, *fallback])
            loaded = session.get_providers()[0] == provider
            ran_on = session.get_providers()[0]
            status[provider] = (
                "works" if loaded else f"listed, but the session fell back to {ran_on}"
            )
        except Exception as exc:  # a provider whose libraries are missing raises here
            status[provider] = f"fails: {str(exc).splitlines()[0][:120]}"
    return status
