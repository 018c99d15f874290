"""mulo-m with its decoupled weight-decay coefficient raised (θ unchanged).
Why: with its step multiplier tuned on the broad screen's small tables,
mulo-m picks x5.6 and stops memorizing (diabetes: train loss 0.43, test
0.64 against 1.33 untuned); the multiplier scales the decay with the step.
Is the decay alone enough? Broad screen (screen-broad-cpu), 4 seeds,
untuned; test loss per task and the geometric mean of the ratio to mulo-m.

    cd results/probes && ../../.venv/bin/python decay_coef.py > decay_coef.txt
"""
import lopt
from lopt.step_rules import WeightDecay
import probe_suites

lo, theta = lopt.load_pretrained("mulo-m")
probe_suites.broad_screen_variants("decay coef", [   # the first: mulo-m as shipped
    (f"{x:g}", probe_suites.replace_rule(lo, WeightDecay, coef=x), theta) for x in (0.1, 0.5)])
