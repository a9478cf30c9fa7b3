"""The module's I/O layer (no torch here, not even indirectly).

- ``hardware``: the Terminal Tedium as data (hardware/terminal_tedium.toml)
- ``cv``: MCP3208 over SPI → calibrated, smoothed volts for the audio callback
- ``gpio``: trigger inputs, buttons, gate outputs, LED
- ``controller``: the ``Controller`` protocol the daemon implements (and an in-memory one)
- ``osc``: the ``/pimodule/`` OSC server and client (docs/osc.md); ``osc_tool``: its CLI
- ``notify``: systemd READY/WATCHDOG/STATUS
"""
