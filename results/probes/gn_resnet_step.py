"""unseen_models3's GroupNorm residual CNN (stem conv, 3 pre-activation blocks
of width 32, digits, 1,000 steps, batch 64), where mulo-m reads 1.62x tuned
AdamW's test loss and trains less far (train 0.0042 against 0.0011): mulo-m
with step_mult MULTS (default 0.5 2 4); CANDS=a,b: instead, the candidates
of bn_confirm.CANDIDATES (decay annealed on every matrix, or on the
scale-invariant ones only, or their norms kept by the decay). Run from the
repo root: [CANDS=...] .venv/bin/python results/probes/gn_resnet_step.py [SEEDS] [MULTS...]"""
import os
import sys

mults = [float(m) for m in sys.argv[2:]] or [0.5, 2.0, 4.0]
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "2"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bn_confirm  # noqa: E402
import unseen_models as um  # noqa: E402
import unseen_models3 as um3  # noqa: E402

task = next(t for t in um3.make_tasks() if t["name"] == "gn-resnet")
print(f"gn-resnet, {um.SEEDS} seeds: test loss / test accuracy / train loss / max spike",
      flush=True)
cands = [c for c in os.environ.get("CANDS", "").split(",") if c]
for c in cands:
  make = bn_confirm.pretrained(bn_confirm.CANDIDATES[c])
  print(f"  {c}: {um.fmt(um.evaluate(task, make))}", flush=True)
for m in ([] if cands else mults):
  print(f"  mulo-m step_mult {m:g}: {um.fmt(um.evaluate(task, um.mulo_m_step(m)))}", flush=True)
