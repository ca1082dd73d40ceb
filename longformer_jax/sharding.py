"""Longformer partition rules: FSDP over the hidden dimension, Megatron tensor parallelism over heads / FFN width.

Paths are "/"-joined param paths; stacked layers carry a leading (unsharded) layer axis.
"""

from jax.sharding import PartitionSpec as P

from common.sharding import STACKED_VECTORS

PARTITION_RULES = (
    # [V|P|T, H]: hidden split; a vocab split makes the gather reshard in full
    (r"embeddings/(word|position|token_type)_embeddings/embedding", P(None, ("fsdp", "tensor"))),
    (r"layers/attn/(query|key|value)(_global)?/kernel", P(None, "fsdp", "tensor")),  # [L, H, H]: column-parallel
    (r"layers/attn/(query|key|value)(_global)?/bias", P(None, "tensor")),
    (r"layers/attn_output/dense/kernel", P(None, "tensor", "fsdp")),  # [L, H, H]: row-parallel
    (r"layers/intermediate/dense/kernel", P(None, "fsdp", "tensor")),  # [L, H, I]
    (r"layers/intermediate/dense/bias", P(None, "tensor")),
    (r"layers/output/dense/kernel", P(None, "tensor", "fsdp")),  # [L, I, H]
    (r"(pooler|lm_head|classifier)/dense/kernel", P("fsdp", "tensor")),  # [H, H]
    (r"lm_head/decoder/kernel", P("fsdp", "tensor")),  # [H, V] (untied only)
    (r"(classifier/out_proj|classifier|qa_outputs)/kernel", P("fsdp", None)),  # [H, labels]
    # norms, row-parallel biases and head biases: replicated
    STACKED_VECTORS,
)
