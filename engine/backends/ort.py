"""ONNX Runtime backend (CPU execution provider): the default, runs anywhere, no torch."""

from __future__ import annotations

import numpy as np

from engine.system import available_cores


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

    def __init__(self, model_path: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        # Idle ORT threads sleep instead of spinning: the pipeline's decode/encode threads need
        # those cycles (+6% end to end on 2 cores; ORT alone is unchanged).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, L: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(L, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def describe(self) -> dict:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "runtime": f"onnxruntime {ort.__version__}",
            "providers": self.session.get_providers(),
            "threads": self.threads,
        }
