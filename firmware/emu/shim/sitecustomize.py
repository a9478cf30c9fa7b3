"""pi-check's harness only (firmware/emu/pi_check.py): the real-time budget of model validation
lifted, because emulated time is not a Pi's time.

Under QEMU a voice frame takes 20 to 50 times longer than on the board, so the daemon's
validation ("a frame within 40 % of its period at p99, on this board") refuses every shipped
voice and the module starts silent. With ``PI_CHECK_NO_RT_BUDGET=1`` in the environment and this
directory on ``PYTHONPATH``, :func:`pimodule.device.validate.validate` is wrapped when that module
is first imported: the budget's time shares are multiplied by 1000 and the validation child's
wall-clock and CPU deadlines by 20. Everything else validation checks (the file as data, finite
audio and state, levels, memory) is unchanged, and nothing else is touched. Without the variable
this file does nothing.
"""

import os
import sys

if os.environ.get("PI_CHECK_NO_RT_BUDGET") == "1":
    import importlib.abc
    import importlib.util

    class _LiftRealtimeBudget(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname != "pimodule.device.validate":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            original = spec.loader.exec_module

            def exec_module(module):
                original(module)
                import dataclasses

                real = module.validate

                def validate(path, kind=None, budget=module.ValidationBudget(), **kwargs):
                    lifted = dataclasses.replace(
                        budget,
                        frame_share=budget.frame_share * 1000,
                        fx_share=budget.fx_share * 1000,
                        deadline_s=budget.deadline_s * 20,
                        cpu_s=budget.cpu_s * 20,
                    )
                    return real(path, kind, lifted, **kwargs)

                module.validate = validate
                module.PI_CHECK_BUDGET_LIFTED = True

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _LiftRealtimeBudget())
