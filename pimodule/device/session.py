"""A streaming DDSP model file under onnxruntime, with the runtime owning its state. No torch.

onnxruntime never sees a path: :func:`open_model` reads the file through
:mod:`pimodule.device.modelcheck` (bounded; no external data, standard operators, shapes and
metadata within budget) and hands onnxruntime the checked bytes.

``process_frame`` is the real-time path: one onnxruntime run per model block, inputs and state
bound once to preallocated numpy buffers (IOBinding over OrtValues that share their memory), the
state ping-ponging between two buffer sets, the audio copied into the caller's buffer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from pimodule.core import modelfile
from pimodule.core.modelfile import ModelFileError, ModelInfo
from pimodule.device import modelcheck

FRAME_INPUTS = ("f0_hz", "loudness_db", "controls")
MAX_MODEL_BYTES = modelcheck.DEFAULT_BUDGET.max_file_bytes
_ORT_TYPES = {"float32": "tensor(float)", "float64": "tensor(double)", "int64": "tensor(int64)"}


def session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def open_model(path: str | Path) -> tuple[ort.InferenceSession, ModelInfo]:
    """Check an ONNX model file as data, load the checked bytes into onnxruntime and parse its
    pimodule metadata (ModelFileError on any problem)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    data, checked = modelcheck.load_checked(path)  # ModelFileError: refused before any loading
    try:
        sess = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises several private exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load it ({type(err).__name__}: {err})") from err
    info = modelfile.parse_metadata(sess.get_modelmeta().custom_metadata_map, str(path))
    return sess, info


class ModelSession:
    """One loaded DDSP voice with its state, controls and preallocated real-time buffers."""

    def __init__(self, path: str | Path, *, expect_kind: str | None = "ddsp"):
        self.path = Path(path)
        self._sess, self.info = open_model(path)
        if expect_kind is not None and self.info.kind != expect_kind:
            raise ModelFileError(f"{path}: a {self.info.kind!r} model, expected {expect_kind!r}")
        self._check_signature()
        block = self.info.block_size
        self.controls = self.info.controls.defaults()  # float32, physical units
        self._f0 = np.zeros((1, 1), np.float32)
        self._loudness = np.zeros((1, 1), np.float32)
        self._controls_in = self.controls.reshape(1, -1)  # a view: writes to controls are seen
        self._audio = np.zeros((1, block), np.float32)
        self._state = [self.info.initial_state(), self.info.initial_state()]
        self._bindings = [self._bind(0, 1), self._bind(1, 0)]
        self._parity = 0

    @staticmethod
    def peek_kind(path: str | Path) -> str | None:
        """The kind a model file declares (read as data, never opened by onnxruntime), or None if
        it is not an acceptable pimodule model file."""
        try:
            return modelcheck.check_file(path).info.kind
        except ModelFileError:
            return None

    # -- setup ---------------------------------------------------------------------------------
    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self._sess.get_inputs()}
        outputs = {o.name: o for o in self._sess.get_outputs()}
        want_in = list(FRAME_INPUTS) + [s.name for s in self.info.state]
        want_out = ["audio"] + [s.name + modelfile.NEXT_SUFFIX for s in self.info.state]
        if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
            raise ModelFileError(
                f"{self.path}: inputs/outputs {sorted(inputs)} -> {sorted(outputs)} do not match the "
                f"metadata's state {[s.name for s in self.info.state]}"
            )
        for spec in self.info.state:
            node = inputs[spec.name]
            if node.type != _ORT_TYPES.get(spec.dtype) or list(node.shape) != list(spec.shape):
                raise ModelFileError(
                    f"{self.path}: state {spec.name} is {node.type}{node.shape} in the graph but "
                    f"{spec.dtype}{list(spec.shape)} in the metadata"
                )
        n_controls = inputs["controls"].shape[-1]
        if n_controls != len(self.info.controls):
            raise ModelFileError(
                f"{self.path}: graph takes {n_controls} controls, spec lists {len(self.info.controls)}"
            )

    def _bind(self, src: int, dst: int) -> ort.IOBinding:
        binding = self._sess.io_binding()
        for name, arr in (("f0_hz", self._f0), ("loudness_db", self._loudness), ("controls", self._controls_in)):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr))
        binding.bind_ortvalue_output("audio", ort.OrtValue.ortvalue_from_numpy(self._audio))
        for spec in self.info.state:
            binding.bind_ortvalue_input(spec.name, ort.OrtValue.ortvalue_from_numpy(self._state[src][spec.name]))
            binding.bind_ortvalue_output(
                spec.name + modelfile.NEXT_SUFFIX, ort.OrtValue.ortvalue_from_numpy(self._state[dst][spec.name])
            )
        return binding

    # -- controls and state --------------------------------------------------------------------
    def set_control(self, name: str, value: float) -> float:
        """Clamp to the spec and hand it to the audio thread (one float store); returns the value used."""
        value = self.info.controls[name].clamp(value)
        self.controls[self.info.controls.index(name)] = value
        return value

    def reset(self) -> None:
        for buffers in self._state:
            for spec in self.info.state:
                buffers[spec.name].fill(spec.init)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state (a live view; copy it to keep it)."""
        return self._state[self._parity]

    # -- running -------------------------------------------------------------------------------
    def process_frame(self, f0_hz: float, loudness_db: float, out: np.ndarray) -> None:
        """Real time: one frame in, ``block_size`` samples written into ``out``."""
        self._f0[0, 0] = f0_hz
        self._loudness[0, 0] = loudness_db
        self._sess.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        np.copyto(out, self._audio[0])

    def process(self, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
        """Offline: any number of frames, continuing from the current state."""
        f0_hz = np.asarray(f0_hz, np.float32).reshape(-1)
        loudness_db = np.asarray(loudness_db, np.float32).reshape(-1)
        if f0_hz.shape != loudness_db.shape:
            raise ValueError(f"f0_hz {f0_hz.shape} and loudness_db {loudness_db.shape} differ in length")
        block = self.info.block_size
        out = np.zeros(len(f0_hz) * block, np.float32)
        for i in range(len(f0_hz)):
            self.process_frame(float(f0_hz[i]), float(loudness_db[i]), out[i * block : (i + 1) * block])
        return out

    def warm(self, n_frames: int = 32) -> None:
        """Run a few frames (sweeping pitch and level); refuse a model that outputs NaN/inf."""
        f0 = np.geomspace(55.0, 1760.0, n_frames)
        loudness = np.linspace(-80.0, 0.0, n_frames)
        audio = self.process(f0, loudness)
        self.reset()
        if not np.all(np.isfinite(audio)):
            raise ModelFileError(f"{self.path}: the model outputs NaN or inf")
        if np.max(np.abs(audio)) > 100.0:
            raise ModelFileError(f"{self.path}: the model's output is implausibly loud ({np.max(np.abs(audio)):.1f})")
