from pathlib import Path

EXPORT = Path(__file__).resolve().parents[3] / "export"
SHIPPED_VOICES = ("violin", "flute", "violin-small", "flute-small", "violin-int8")
