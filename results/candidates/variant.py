"""What every release-candidate script here does last: save a changed form
and θ as a pretrained LO whose metadata carries the source's record
(parameterization, training, meta-validation) under a new description."""
import lopt

RECORD_KEYS = ("parameterization", "training", "meta_validation")


def save_variant(out: str, form, theta, description: str, source: str = "mulo-m",
                 keys: tuple = RECORD_KEYS) -> str:
  meta = lopt.load_metadata(source)
  path = lopt.save_pretrained(out, form, theta, {
      "description": description, **{k: meta[k] for k in keys if k in meta}})
  print(path)
  return path
