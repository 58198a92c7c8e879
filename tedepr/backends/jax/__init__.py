"""The JAX backend: tensorized layers as pure functions over pytrees, models, masks, training, scoring."""
