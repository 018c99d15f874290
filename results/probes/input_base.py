"""mulo-m with its input-group base step lowered (θ unchanged): on the wide
plain MLP its input-matrix steps are 5-15x AdamW's (layer_steps.txt). Broad
screen (screen-broad-cpu), 4 seeds, untuned; test loss per task and the
geometric mean of the test-loss ratio to mulo-m.

    cd results/probes && ../../.venv/bin/python input_base.py > input_base.txt
"""
import lopt
from lopt.step_rules import GroupBase
import probe_suites

lo, theta = lopt.load_pretrained("mulo-m")
probe_suites.broad_screen_variants("input base", [   # the first: mulo-m as shipped
    (f"{x:g}", probe_suites.replace_rule(lo, GroupBase, input=x), theta) for x in (1e-3, 3e-4, 1e-4)])
