"""Flax (linen) models in μP and standard parameterization (SP).

Conventions (Tensor Programs V, as used by μLO), with fan_in = prod(shape[:-1])
of a flax-layout kernel:

* μP: input and hidden weights ~ N(0, 1/fan_in); the readout is zero-initialized
  and its output is multiplied by ``output_mult / fan_in``; attention logits are
  scaled by 1/d_head; biases and norm offsets are zero.
* SP: every weight ~ N(0, 1/fan_in) (LeCun normal), readout included, with no
  readout multiplier and 1/sqrt(d_head) attention.

Embedding tables ~ N(0, 1) in both (their "fan-in" is a one-hot, so constant
variance is the μP choice, and pre-LayerNorm makes SP insensitive to it).

Layers are named so that ``base.kinds_by_module`` can classify them: the first
layer is ``input`` (or ``embed``/``pos_embed``), the last is ``readout``, and
everything else holding a matrix is hidden.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta_tasks.base import check_choice

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "silu": nn.silu,
}

INPUT_MODULES = ("input", "embed", "pos_embed")
OUTPUT_MODULES = ("readout",)

# N(0, 1/fan_in), exactly Gaussian (lecun_normal is truncated).
fan_in_normal = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  check_choice("activation", name, tuple(ACTIVATIONS))
  return ACTIVATIONS[name]


class Readout(nn.Module):
  """Final linear layer. μP: zero init, output times ``output_mult / fan_in``."""
  features: int
  mup: bool
  output_mult: float = 1.0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.zeros if self.mup else fan_in_normal,
                        (fan_in, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    scale = self.output_mult / fan_in if self.mup else 1.0
    return (x @ kernel) * scale + bias


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, kernel_init=fan_in_normal, bias_init=nn.initializers.zeros,
                  name=name)


class _Classifier(nn.Module):
  width: int
  depth: int
  num_outputs: int
  activation: str = "relu"
  mup: bool = True
  output_mult: float = 1.0


class MLP(_Classifier):
  """``depth`` linear layers: input (in -> width), depth-2 hidden, readout."""

  @nn.compact
  def __call__(self, x):
    act = get_activation(self.activation)
    x = x.reshape(x.shape[0], -1)
    for i in range(self.depth - 1):
      x = act(_dense(self.width, "input" if i == 0 else f"hidden_{i}")(x))
    return Readout(self.num_outputs, self.mup, self.output_mult, name="readout")(x)


class CNN(_Classifier):
  """``depth`` 3x3 conv layers of ``width`` channels, global average pool, readout.

  The first layers use stride 2 until the feature map is 4x4, so 8x8 and 32x32
  inputs both end on a 4x4 map.
  """

  @nn.compact
  def __call__(self, x):
    act = get_activation(self.activation)
    size = x.shape[1]
    for i in range(self.depth):
      stride = 2 if size > 4 else 1
      size = -(-size // stride)
      x = nn.Conv(self.width, (3, 3), strides=stride, padding="SAME",
                  kernel_init=fan_in_normal, bias_init=nn.initializers.zeros,
                  name="input" if i == 0 else f"conv_{i}")(x)
      x = act(x)
    x = x.mean(axis=(1, 2))
    return Readout(self.num_outputs, self.mup, self.output_mult, name="readout")(x)


class CausalSelfAttention(nn.Module):
  """Multi-head causal attention with separate (d, d) q/k/v/out projections.

  Separate plain Dense layers keep every kernel 2-D with fan_in = d, as the
  μP multiplier rule assumes.
  """
  num_heads: int
  mup: bool

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    dh = d // self.num_heads
    q, k, v = (_dense(d, n)(x).reshape(b, t, self.num_heads, dh)
               for n in ("query", "key", "value"))
    # μP: q.k grows like d_head once q and k are correlated, so scale by 1/d_head.
    scale = 1.0 / dh if self.mup else dh ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
    mask = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
    return _dense(d, "out")(out.reshape(b, t, d))


class Block(nn.Module):
  """Pre-LayerNorm transformer block: attention then a 4x MLP, both residual."""
  num_heads: int
  activation: str
  mup: bool

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    x = x + CausalSelfAttention(self.num_heads, self.mup, name="attn")(nn.LayerNorm(name="ln_attn")(x))
    h = _dense(4 * d, "mlp_in")(nn.LayerNorm(name="ln_mlp")(x))
    return x + _dense(d, "mlp_out")(get_activation(self.activation)(h))


class TransformerLM(nn.Module):
  """Decoder-only byte-level LM: token + learned position embeddings, ``depth`` blocks."""
  width: int
  depth: int
  num_heads: int
  seq_len: int
  vocab_size: int = 256
  activation: str = "gelu"
  mup: bool = True
  output_mult: float = 1.0

  @nn.compact
  def __call__(self, tokens):
    embed = self.param("embed", nn.initializers.normal(1.0), (self.vocab_size, self.width))
    pos = self.param("pos_embed", nn.initializers.normal(1.0), (self.seq_len, self.width))
    x = jnp.take(embed, tokens, axis=0) + pos[: tokens.shape[1]]
    for i in range(self.depth):
      x = Block(self.num_heads, self.activation, self.mup, name=f"block_{i}")(x)
    x = nn.LayerNorm(name="ln_final")(x)
    return Readout(self.vocab_size, self.mup, self.output_mult, name="readout")(x)
