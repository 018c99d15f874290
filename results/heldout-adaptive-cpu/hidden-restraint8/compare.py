"""Ratios of the two 8-seed held-out runs (the evaluate.py commands in README,
"mulo-m with the restraint"): run from the repo root after them;
output: comparison.txt."""
import json, math, numpy as np
a=json.load(open('runs/heldout-mulo-m8/results.json')); b=json.load(open('runs/heldout-hidden-restraint8/results.json'))
rows={}
for r in (a,b):
  for suite,d in r['suites'].items():
    for e in d['tasks']:
      k=f"{e['task']}@{e['num_steps']}"
      for lab,res in e['results'].items():
        rows.setdefault(k,{})[lab+('' if r is a else '_c')]=res
se=lambda res: np.std(res['test_loss_per_seed'], ddof=1)/np.sqrt(len(res['test_loss_per_seed']))
g={'c/m':[], 'm/t0':[], 'c/t0':[], 'm/a':[], 'c/a':[]}
for k,v in rows.items():
  m,t0,ad,c,ad2=(v[x]['test_loss'] for x in ('mulo-m','theta0','adamw','mulo-m+hidden-restraint_c','adamw_c'))
  print(f"{k:42s} m {m:.4f}±{se(v['mulo-m']):.4f} c {c:.4f}±{se(v['mulo-m+hidden-restraint_c']):.4f} t0 {t0:.4f}±{se(v['theta0']):.4f} A {ad:.4f}/{ad2:.4f}±{se(v['adamw']):.4f} | c/m {c/m:.3f} m/a {m/ad:.3f} c/a {c/ad:.3f} m/t0 {m/t0:.3f} c/t0 {c/t0:.3f}")
  for key,val in (('c/m',c/m),('m/t0',m/t0),('c/t0',c/t0),('m/a',m/ad),('c/a',c/ad)): g[key].append(val)
for key,vals in g.items(): print(key, 'geo', round(math.exp(sum(map(math.log,vals))/len(vals)),3), 'wins', sum(x<1 for x in vals), 'max', round(max(vals),3))
for k,v in rows.items():
  print(k, {lab: (round(x['test_accuracy'],4) if x.get('test_accuracy') else None, round(x['final_train_loss'],4), round(x['max_loss_spike'],3), x['num_diverged']) for lab,x in v.items()})
