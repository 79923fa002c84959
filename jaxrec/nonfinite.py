"""Non-finite parameters, losses and metrics stop the run with one clear line.

The training loop checks the parameters and the validation metrics after every
validation, *before* the step can be selected as best or checkpointed, so a
diverged model never becomes the result (evaluation also ranks NaN scores as
misses, see evaluate.py). The message says what is non-finite, which step,
what is known about the cause (the content embeddings are checked: if they are
finite, training diverged; if not, the embedding cache is suspect), and how to
rerun: the same workdir only resumes the same config, so a lower learning
rate needs --overwrite or a new --workdir.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

from jaxrec.errors import JaxrecError


@jax.jit
def _leaves_finite(tree) -> jnp.ndarray:
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)])


def first_non_finite(tree) -> str | None:
  """Key path of the first leaf holding a NaN or inf, or None if all are finite."""
  ok = jax.device_get(_leaves_finite(tree))
  if ok.all():
    return None
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
  return paths[int((~ok).argmax())]


def diverged(what: str, step: int, config: ml_collections.ConfigDict, content) -> JaxrecError:
  """The one-line error for a NaN/inf `what` at `step`; `content` is the content table or None."""
  if content is None:
    cause = "The ID model reads no content embeddings, so training diverged"
  elif bool(jnp.all(jnp.isfinite(content))):
    cause = "The content embeddings are finite, so training diverged"
  else:
    return JaxrecError(
        f"{what} at step {step}; nothing from this step was checkpointed or selected as best. "
        "The content embeddings hold NaN/inf: delete the cached embeddings (in $JAXREC_CACHE or "
        "config.ceg.cache_dir) and rerun with --overwrite or a new --workdir")
  return JaxrecError(
      f"{what} at step {step}; nothing from this step was checkpointed or selected as best. "
      f"{cause}: lower config.train.learning_rate (now {config.train.learning_rate:g}) or set "
      f"config.train.grad_clip (now {config.train.grad_clip:g}), and rerun with --overwrite or a "
      "new --workdir (a workdir resumes only its own config)")


def check_validation(params, metrics: dict[str, float], step: int,
                     config: ml_collections.ConfigDict, content) -> None:
  """Raises (one line) if the parameters or validation metrics at `step` are not finite."""
  bad = first_non_finite(params)
  if bad is not None:
    raise diverged(f"parameters became NaN/inf (first: params{bad})", step, config, content)
  bad_metrics = [k for k, v in metrics.items() if not math.isfinite(v)]
  if bad_metrics:
    raise diverged(f"validation {', '.join(bad_metrics)} not finite", step, config, content)
