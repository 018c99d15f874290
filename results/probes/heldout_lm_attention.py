"""One-off check of the q/k attention factor on the held-out LM: mulo-m's test loss
on user-lm_pydocs_t64_w64_d2_h4_b32 (1000 steps, seeds 0-2: the held-out suite's
protocol, training.sweep.train_curves) with infer_kinds' attention="sqrt" (now
the default) and "mup" (what it did before). Tuned AdamW's 1.779 is from
results/heldout-adaptive-cpu/mulo-a/report.md (same seeds and protocol).
Run from the repository root: .venv/bin/python results/probes/heldout_lm_attention.py
(2-core CPU, ~10 min); output: results/probes/heldout_lm_attention.txt."""
import jax, numpy as np, lopt
from meta_tasks.user_tasks import PlainTransformerLMTask
from training.sweep import train_curves

task = PlainTransformerLMTask(seq_len=64, width=64, depth=2, num_heads=4, batch_size=32)
lo, theta = lopt.load_pretrained("mulo-m")
shapes = lambda t: jax.eval_shape(t.init, jax.random.PRNGKey(0))
for attention in ("sqrt", "mup"):
  spec = lopt.mup.infer_kinds(shapes(task), shapes(task.narrow_task()), attention=attention)
  c = train_curves(lambda _: lo.as_optax(theta, num_steps=1000, mup=spec), task, 1000, [0, 1, 2])
  print(f"{task.name} attention={attention}: test loss {np.mean(c.test_loss):.4f}, "
        f"train loss {np.mean(c.final_train_loss):.4f}, test accuracy "
        f"{np.mean(c.test_accuracy):.4f}, max spike {np.max(c.max_spike):.2f}", flush=True)
