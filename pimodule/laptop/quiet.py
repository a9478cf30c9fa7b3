"""Known-harmless notices of third-party libraries, silenced one by one at the logger that emits
them and by their exact text, so every other warning and error of those libraries still shows.

- torch's ONNX exporter (``torch.onnx._internal.exporter._registration``) logs "torchvision is not
  installed. Skipping torchvision::nms" (and roi_align, roi_pool, deform_conv2d) while it builds
  its operator table: it registers translations for torchvision's operators, which no pimodule
  model uses, and torchvision is not a dependency.
"""

from __future__ import annotations

import logging

NOTICES: tuple[tuple[str, str], ...] = (
    ("torch.onnx._internal.exporter._registration", "torchvision is not installed"),
)


class DropNotice(logging.Filter):
    """Drops the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_onnx_export() -> None:
    """Install the filters (idempotent)."""
    for name, prefix in NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNotice) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(DropNotice(prefix))
