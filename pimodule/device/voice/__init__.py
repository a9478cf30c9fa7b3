"""The DDSP voice as compiled, allocation-free code: weights read from the shipped ONNX file
(:mod:`.weights`, numpy + onnx), one frame per call in numba (:mod:`.kernel`), onnxruntime as the
reference (:mod:`.verify`). Importing this package does not import numba; importing
:mod:`.kernel` compiles (or loads from the cache) the kernel.
"""

from pimodule.device.voice.onnx_graph import UnsupportedVoice
from pimodule.device.voice.weights import VoiceWeights, read_voice

__all__ = ["UnsupportedVoice", "VoiceWeights", "read_voice"]
