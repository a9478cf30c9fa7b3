"""What pi-bench counts for fx mode's check: ``python fx_check_run.py MODEL N`` runs a dry- or
reference-conditioned estimator once on a test window at its rate (L a clipped, swelling tone, R
the tone: wet and dry, or reference and input) and then the module's check of that estimate
``N`` times, as fx mode's check thread does (``SubsetCheck`` with its default search, or
``ReferenceCheck``; a fresh one each time, the twins built again). The instructions of one check
are the difference of two counts over the difference of their ``N``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    import numpy as np

    from pimodule.device.fx.check import SubsetCheck
    from pimodule.device.fx.mode import checked_estimator
    from pimodule.device.fx.style_check import ReferenceCheck

    path, n = argv[0], int(argv[1])
    est = checked_estimator(path)
    if est.conditioning == "blind":
        print(f"{path}: a blind estimator has nothing to check against", file=sys.stderr)
        return 2
    t = np.arange(est.window) / est.sample_rate
    right = 0.25 * np.sin(2 * np.pi * 196 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    left = 0.6 * np.clip(10 * right, -0.5, 0.5)
    active, mode, unit = est.run(left[None].astype(np.float32), right[None].astype(np.float32))
    described = est.describe(active[0], mode[0], unit[0])
    described = {k: {**v, "active": True} for k, v in described.items()}  # every twin rendered
    on = []
    for _ in range(n):
        check = SubsetCheck(est.sample_rate) if est.conditioning == "dry" else ReferenceCheck(est.sample_rate)
        out = check(right, left, described)
        on = [k for k, v in out.items() if v.get("active")]
    print(f"{est.conditioning} check x{n}, window {est.window / est.sample_rate:.2f} s: on {','.join(on)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
