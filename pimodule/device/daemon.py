"""The module's daemon, wired and run: CV, GPIO, the engine and its audio, the model store and
loader, OSC, flashing, fx mode, sd_notify READY/WATCHDOG for systemd (:func:`build`, :func:`run`).
Its command line is :mod:`pimodule.device.daemon_cli` (``pimodule run``). No torch here or below.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pimodule.core.controls import MODES
from pimodule.core.modelfile import ModelFileError
from pimodule.device import config as config_mod
from pimodule.device import cpus
from pimodule.device.control import DaemonController, PotMapper, SimulatedCV
from pimodule.device.engines import Engines
from pimodule.device.engines import make as make_engines
from pimodule.device.flash_listen import daemon_receivers, daemon_validator
from pimodule.device.fx import mode as fxmode
from pimodule.device.io.cv import MCP3208, Calibration, CVReader, FakeMCP3208, SpidevBus
from pimodule.device.io.gpio import Buttons, FakeGpio, Outputs, RpiGpio, Triggers
from pimodule.device.io.hardware import load_hardware
from pimodule.device.io.notify import Notifier, Watchdog
from pimodule.device.io.osc import OscServer
from pimodule.device.models import ModelLoader
from pimodule.device.store import ModelStore, load_with_fallback

log = logging.getLogger("pimodule.daemon")

CONTROL_LOOP_HZ = 50.0  # pots, watchdog, status log
STATUS_LOG_S = 10.0


def on_a_pi() -> bool:
    return platform.machine() in ("aarch64", "armv7l") and Path("/dev/spidev0.1").exists()


@dataclass
class Daemon:
    """Everything the daemon runs, built by :func:`build` and torn down by :meth:`close`."""

    cfg: config_mod.DaemonConfig
    engine: object
    runner: object
    loader: object
    controller: object
    reader: object
    sim_cv: object | None = None
    pots: object | None = None
    gpio: object | None = None
    osc: object | None = None
    notifier: object | None = None
    buttons: object | None = None
    outputs: object | None = None
    fx: object | None = None  # the effect-estimation thread (fx mode), when an estimator is installed
    flash: list = field(default_factory=list)  # model-file receivers (TCP server, serial listener)
    stop_event: threading.Event = field(default_factory=threading.Event)
    engines: Engines | None = None
    seen_bad_frames: int = 0
    replacing: str = ""  # the bad voice being replaced
    start_notes: list = field(default_factory=list)  # said over OSC once it runs

    def report_error(self, message: str, address: str = "/pimodule/model/load") -> None:
        if self.osc is not None:
            self.osc.notify_error(address, message)

    def on_button(self, event) -> None:
        """Front-panel buttons: 1 = next model, 2 = next mode, 3 = mute on/off (short presses)."""

        if event.kind != "short":
            return
        if event.index == 0:
            names = self.loader.store.list("ddsp")
            if names:
                current = Path(str(getattr(self.engine.latest_session, "path", ""))).stem
                nxt = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
                self.loader.request(nxt)
        elif event.index == 1:
            self.engine.set_mode(MODES[(MODES.index(self.engine.mode) + 1) % len(MODES)])
        elif event.index == 2:
            self.controller.set_mute(not self.controller.mute)
        log.info(
            "button %s: model %s, mode %s, mute %s",
            event.name,
            self.loader.current_name,
            self.engine.mode,
            self.controller.mute,
        )

    def close(self) -> None:
        if self.outputs is not None:
            self.outputs.set_led(False)
        analysis = getattr(self.engine, "analysis", None)
        analysis = analysis if hasattr(analysis, "stop") else None
        for part in (*self.flash, self.osc, self.fx, analysis, self.buttons, self.sim_cv, self.reader, self.loader):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - keep tearing down
                    log.exception("stopping %s failed", type(part).__name__)
        if self.gpio is not None:
            self.gpio.cleanup()
        if self.engines is not None:
            self.engines.close()


def build(
    cfg: config_mod.DaemonConfig,
    *,
    model: str | None = None,
    record_s: float | None = None,
    melody=None,
    sim_input=None,
) -> Daemon:
    """Wire CV, GPIO, engine, model store/loader, audio runner and OSC (nothing started yet but OSC).
    ``sim_input``: what the simulated clock plays into inputs L and R, looped (device rate; mono or
    ``(samples, 2)``)."""

    hw = load_hardware()
    calibrations = {c.name: Calibration.nominal(hw.adc) for c in hw.adc.channels}
    for name, cal in cfg.cv.calibration:
        calibrations[name] = Calibration(cal.scale_v_per_step, cal.offset_v)
    use_spi = cfg.cv.backend == "spi" or (cfg.cv.backend == "auto" and on_a_pi())
    if use_spi:
        chip, gpio = MCP3208(SpidevBus.open(hw.adc)), RpiGpio()
        log.info("CV: MCP3208 on %s; GPIO: RPi.GPIO", hw.adc.spi_device)
    else:
        fake_adc, gpio = FakeMCP3208(), FakeGpio()
        chip = MCP3208(fake_adc)
        log.warning("CV: SIMULATED CV source (a CV melody through a fake MCP3208); GPIO: fake")
    reader = CVReader(chip, hw.adc, cfg.cv.poll_rate_hz, calibrations)
    triggers = Triggers(gpio, hw.gpio)

    audio = cfg.audio
    max_block = max(audio.block_size, 4096)
    engines = make_engines(cfg, reader, triggers, record_s=record_s, max_block=max_block, sim_input=sim_input)
    engine, runner = engines.engine, engines.runner
    store = ModelStore(cfg.models_dir())
    loader = ModelLoader(engine, store)
    controller = DaemonController(engine, loader, runner, cv_snapshot=reader.snapshot, cv_override=reader.override)
    pots = PotMapper(
        engine,
        reader.values,
        [c.name for c in reader.channels],
        cfg.engine.pots,
        volts_range=(hw.adc.volts_at_min, hw.adc.volts_at_max),
        pickup=cfg.engine.pot_pickup,
        ready=lambda: reader.sequence > 0,
    )
    daemon = Daemon(cfg, engine, runner, loader, controller, reader, pots=pots, gpio=gpio, engines=engines)
    loader.on_error = daemon.report_error
    daemon.buttons = Buttons(gpio, hw.gpio, on_event=daemon.on_button)
    daemon.outputs = Outputs(gpio, hw.gpio)
    if not use_spi:
        daemon.sim_cv = SimulatedCV(
            fake_adc,
            hw.adc,
            calibrations,
            clock_s=lambda: engine.n_samples / audio.sample_rate_hz,
            gpio=gpio,
            gate_pin=hw.gpio.trigger_pins[0],
            **({"melody": melody} if melody is not None else {}),
        )
    daemon.fx = fxmode.build(
        cfg,
        engine,
        store,
        max_block,
        publish=lambda msgs: _broadcast(daemon, msgs),
        on_error=lambda message: daemon.report_error(message, "/pimodule/fx/model"),
    )
    if engines.compiled and daemon.fx is not None:
        _share_histories(engine, daemon.fx)
        engine.attach_fx(engine.fx_matcher)
    controller.fx = daemon.fx
    controller.set_gain_db(cfg.engine.gain_db)
    name = model or cfg.models.default
    validator = daemon_validator(engine, kind="ddsp", engine_cost=getattr(engine, "voice_cost", None))
    loader.validate = validator
    if name:
        try:  # the installed file fails now but its previous version plays: roll back, and say so
            path, note = load_with_fallback(store, name, validator)
            loader.mark_validated(path)
            if note:
                log.error("%s", note)
                daemon.start_notes.append(note)
        except ModelFileError as err:
            log.error("%s", err)
    if not loader.load(name):
        log.error("starting without a voice (silence until a model loads): %s", loader.last_error)
    if cfg.osc.enabled:
        daemon.osc = OscServer(controller, cfg.osc.server_config())
        log.info("OSC on %s:%d", cfg.osc.host, daemon.osc.port)
    if cfg.flash.enabled:
        daemon.flash = daemon_receivers(cfg.flash, daemon, lambda msgs: _broadcast(daemon, msgs))
    return daemon


def _share_histories(engine, analyzer) -> None:
    """The compiled engine keeps the inputs' history in its shared block: the fx analyzer reads it
    there (for every estimator it installs) instead of histories the callback would fill."""

    def attach(history, other) -> None:
        analyzer.history = engine.shared_history("L", history.n)
        analyzer.other_history = engine.shared_history("R", other.n) if other is not None else None
        engine.fx_history, engine.fx_other_history = analyzer.history, analyzer.other_history

    analyzer.on_histories = attach
    attach(analyzer.history, analyzer.other_history)


def _broadcast(daemon: Daemon, messages) -> None:
    if daemon.osc is not None:
        for address, args in messages:
            daemon.osc.broadcast(address, *args)


class _Health:
    """The watchdog's question: has the audio callback run since the last ping?"""

    def __init__(self, stats):
        self.stats = stats
        self.last = -1

    def __call__(self) -> bool:
        n = self.stats.n_callbacks
        healthy, self.last = n != self.last, n
        return healthy


def control_loop(d: Daemon, deadline: float | None) -> None:
    """Pots, watchdog and a status line now and then, until stopped (any non-audio thread)."""
    period = 1.0 / CONTROL_LOOP_HZ
    next_log = time.monotonic() + STATUS_LOG_S
    rt_logged = False
    while not d.stop_event.wait(period):
        if deadline is not None and time.monotonic() >= deadline:
            d.stop_event.set()
            break
        d.pots.poll()
        tick = getattr(d.engine, "tick", None)  # the compiled engine: fx chain, matching, waiting voice
        (tick or d.engine.collect_retired)()
        supervise = getattr(d.runner, "supervise", None)
        message = supervise() if supervise is not None else None
        if message:
            d.report_error(message, "/pimodule/audio")
        _replace_bad_voice(d)
        if not rt_logged and d.runner.rt_status != "not tried":
            rt_logged = True
            log.info("audio thread priority: %s", d.runner.rt_status)
        if time.monotonic() >= next_log:
            next_log += STATUS_LOG_S
            s = d.controller.status()
            log.info(
                "status: cpu %.1f%% p99 %.0f us (wake-up %.0f, work %.0f) late %d (%d at wake-up) xruns %d "
                "model %s mode %s",
                s["cpu_percent"],
                s["callback_p99_us"],
                s["callback_wake_p99_us"],
                s["callback_work_p99_us"],
                s["late_blocks"],
                s["late_at_wake"],
                s["xruns"],
                s["model"],
                s["mode"],
            )


def _replace_bad_voice(d: Daemon) -> None:
    """A voice whose output or state turned non-finite while playing is silenced by the callback;
    here it is replaced by the last good voice, and the module says so."""
    bad = getattr(d.engine, "n_bad_frames", 0)
    if bad <= d.seen_bad_frames:
        return
    d.seen_bad_frames = bad
    session = d.engine.session
    name = Path(session.path).stem if session is not None else "?"  # its name in the store
    if d.replacing == name:
        return  # already going back; the callback keeps it silent meanwhile
    d.replacing = name
    previous = d.loader.previous_good(name)
    message = f"voice {name!r} went non-finite while playing; " + (
        f"back to {previous!r}" if previous else "silenced (no earlier voice to go back to)"
    )
    log.error("%s", message)
    d.report_error(message)
    if previous:
        d.loader.request(previous)


def run(d: Daemon, *, offline: bool, duration_s: float | None) -> str:
    """Start everything, play until the duration ends or a signal arrives; returns the backend."""
    if d.sim_cv is not None:  # the simulated jacks and pots hold their values before the first read
        d.sim_cv.start()
    d.reader.start()
    d.loader.start()
    d.buttons.start()
    if d.fx is not None:
        d.fx.start()
    d.engine.analysis.start()  # transfer mode's f0/loudness analysis, off the audio thread
    if d.osc is not None:
        d.osc.start()
    for note in d.start_notes:
        d.report_error(note)
    for part in d.flash:
        part.start()
    stream = None
    if not offline:
        plan = cpus.plan_or_none(d.cfg.audio.cpus)
        log.info("CPUs: %s", plan.describe())
        try:
            stream = d.runner.open_stream(
                device=d.cfg.audio.device,
                block_size=d.cfg.audio.block_size,
                n_input_channels=d.cfg.audio.n_input_channels,
                latency=d.cfg.audio.latency,
                cpus=plan.audio_arg(),
            )
        except Exception as err:  # noqa: BLE001 - PortAudio raises several kinds
            log.warning("no audio device could be opened (%s): running OFFLINE on a simulated clock", err)

    d.notifier = Notifier()
    watchdog = Watchdog(d.notifier, is_healthy=_Health(d.runner.stats))
    if stream is not None:
        try:
            stream.start()
        except OSError as err:  # the audio process could not open the device
            log.warning("no audio device could be opened (%s): running OFFLINE on a simulated clock", err)
            stream = None
    deadline = None if duration_s is None else time.monotonic() + duration_s
    if stream is not None:
        log.info(
            "playing on %s at %d Hz, block %s",
            d.runner.backend,
            d.cfg.audio.sample_rate_hz,
            d.cfg.audio.block_size or "host's",
        )
        _ready(d, watchdog)
        try:
            control_loop(d, deadline)
        finally:
            d.notifier.stopping()
            watchdog.stop()
            stream.stop()
            stream.close()
    else:
        log.warning(
            "OFFLINE: simulated clock, %d Hz, block %d (no audio device in use)",
            d.cfg.audio.sample_rate_hz,
            d.cfg.audio.block_size or 128,
        )
        _ready(d, watchdog)
        worker = threading.Thread(target=control_loop, args=(d, None), name="pimodule-control", daemon=True)
        worker.start()
        try:
            if d.engines is not None and d.engines.compiled:
                kwargs = {"separate_process": True}  # the input is in the block already
            else:
                kwargs = {"input_signal": d.engines.sim_input} if d.engines is not None else {}
            d.runner.run_offline(
                duration_s if duration_s is not None else float("inf"),
                block_size=d.cfg.audio.block_size or 128,
                should_stop=d.stop_event.is_set,
                **kwargs,
            )
        finally:
            d.stop_event.set()
            worker.join(2.0)
            d.notifier.stopping()
            watchdog.stop()
    return d.runner.backend


def _ready(d: Daemon, watchdog) -> None:
    d.outputs.set_led(True)
    model = d.loader.current_name or "no model"
    d.notifier.ready(f"{model}, {d.engine.mode} mode, on {d.runner.backend}")
    watchdog.start()
