"""What pi-bench counts for fx mode's check: ``python fx_check_run.py MODEL N`` runs a dry- or
reference-conditioned estimator once on a test window at its rate (:func:`check_inputs`) and then
the module's check of that estimate ``N`` times, as fx mode's check thread does
(:func:`pimodule.device.fx.check_thread.make_check`; a fresh one each time, the twins built again). The instructions of one check
are the difference of two counts over the difference of their ``N``.
"""

from __future__ import annotations

import sys


def check_inputs(est) -> tuple:
    """(R, L, the estimate with every effect on) for estimator ``est`` (an ``OnnxEstimator``): L a
    clipped, swelling tone (the wet signal, or the reference), R the tone (its dry source, or the
    input), one window at its rate; every effect on so that every twin is rendered."""
    import numpy as np

    t = np.arange(est.window) / est.sample_rate
    right = 0.25 * np.sin(2 * np.pi * 196 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    left = 0.6 * np.clip(10 * right, -0.5, 0.5)
    active, mode, unit = est.run(left[None].astype(np.float32), right[None].astype(np.float32))
    described = est.describe(active[0], mode[0], unit[0])
    return right, left, {k: {**v, "active": True} for k, v in described.items()}


def main(argv: list[str]) -> int:
    from pimodule.device.fx.check_thread import make_check
    from pimodule.device.fx.mode import checked_estimator

    path, n = argv[0], int(argv[1])
    est = checked_estimator(path)
    if est.conditioning == "blind":
        print(f"{path}: a blind estimator has nothing to check against", file=sys.stderr)
        return 2
    right, left, described = check_inputs(est)
    on = []
    for _ in range(n):
        out = make_check(est.conditioning, est.sample_rate)(right, left, described)
        on = [k for k, v in out.items() if v.get("active")]
    print(f"{est.conditioning} check x{n}, window {est.window / est.sample_rate:.2f} s: on {','.join(on)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
