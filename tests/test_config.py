"""MetaTrainConfig's nested LO record (issue 20): presets, JSON, old flat records,
the generated --lo.* flags and the float32 check."""

import importlib.util
import json
import os

import pytest

import lopt
from training import config as config_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli():
  spec = importlib.util.spec_from_file_location(
      "_cli_meta_train_config", os.path.join(REPO_ROOT, "scripts", "meta_train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("preset", ["mulo-m-mix-cpu", "mulo-s-mix-cpu", "sp-lo-mix-cpu"])
def test_the_mix_presets_build_the_shipped_forms(preset):
  shipped = {"mulo-m-mix-cpu": "mulo-r", "mulo-s-mix-cpu": "mulo-s", "sp-lo-mix-cpu": "sp-lo"}
  record = lopt.load_metadata(shipped[preset])["config"]
  assert config_lib.get_preset(preset).lo == lopt.MLPLOpt.from_record(record)


def test_every_preset_round_trips_through_json():
  for name in config_lib.preset_names():
    config = config_lib.get_preset(name)
    data = json.loads(config_lib.dumps(config))
    assert data["lo"]["architecture"] == type(config.lo).__name__
    assert config_lib.config_from_json(data) == config


def test_an_old_flat_config_json_loads_with_a_warning():
  new = config_lib.get_preset("mulo-m-cpu")
  flat = {k: v for k, v in new.to_json().items() if k != "lo"}
  flat.update(lopt="mlp", mup=True, hidden_size=32, hidden_layers=2, step_mult=0.1,
              exp_mult=0.001, raw_ratios=True, adam_init=True, absolute_time=False,
              lr_schedule="cosine", output_norm=False, hidden_step_mult=None,
              lo_weight_decay=0.0, learned_scales=False)
  with pytest.warns(FutureWarning, match="flat form of lopt before issue 20"):
    assert config_lib.config_from_json(flat) == new
  velo = {k: v for k, v in config_lib.get_preset("velo-s").to_json().items() if k != "lo"}
  with pytest.warns(FutureWarning):
    old = config_lib.config_from_json(dict(velo, lopt="velo", mup=False, step_mult=0.001))
  assert old == config_lib.get_preset("velo-s")


def test_nested_flags_set_the_lo_fields(tmp_path):
  cli = _cli()
  args, config = cli._parse(["--preset", "tiny", "--workdir", str(tmp_path),
                             "--lo.hidden_size", "8", "--lo.features.adam", "true",
                             "--lo.step", "Cosine()", "--sigma=0.02"])
  assert config.lo == lopt.MLPLOpt(hidden_size=8, features=lopt.Features(adam=True),
                                   step=(lopt.step_rules.Cosine(),))
  assert config.sigma == 0.02
  _, velo = cli._parse(["--preset", "velo-s", "--workdir", str(tmp_path),
                        "--lo.num_mlps", "4"])
  assert velo.lo == lopt.VeLOpt(mup=False, step_mult=0.001, num_mlps=4)


@pytest.mark.parametrize("field, value", [("outer_lr", 1e308), ("sigma", 1e-50),
                                          ("lo.exp_mult", 3.5e38)])
def test_floats_must_be_float32(field, value):
  with pytest.raises(config_lib.ConfigError, match=f"^{field} must be representable in float32"):
    config_lib.get_preset("tiny", **{field: value})
