"""LiLT partition rules: FSDP over the hidden dimension, Megatron tensor parallelism over heads / FFN width, in
both streams. Paths are "/"-joined param paths; stacked layers carry a leading (unsharded) layer axis."""

from jax.sharding import PartitionSpec as P

from common.sharding import STACKED_VECTORS

PARTITION_RULES = (
    (r"embeddings/(word|position|token_type)_embeddings/embedding", P(None, ("fsdp", "tensor"))),  # [V|P|T, H]
    (r"layout_embeddings/\w+_embeddings/embedding", P(None, ("fsdp", "tensor"))),  # small [B2, H/6], [P, Hl]
    (r"layout_embeddings/box_linear_embeddings/kernel", P("fsdp", None)),  # [H, Hl]
    (r"layers/attn/(layout_)?(query|key|value)/kernel", P(None, "fsdp", "tensor")),  # column-parallel
    (r"layers/attn/(layout_)?(query|key|value)/bias", P(None, "tensor")),
    (r"layers/(layout_)?attn_output/dense/kernel", P(None, "tensor", "fsdp")),  # row-parallel
    (r"layers/(layout_)?intermediate/dense/kernel", P(None, "fsdp", "tensor")),
    (r"layers/(layout_)?intermediate/dense/bias", P(None, "tensor")),
    (r"layers/(layout_)?output/dense/kernel", P(None, "tensor", "fsdp")),
    (r"(pooler|classifier)/dense/kernel", P("fsdp", "tensor")),  # [H, H]
    (r"(classifier/out_proj|classifier|qa_outputs)/kernel", P("fsdp", None)),  # [H, labels]
    # norms, row-parallel biases and head biases: replicated
    STACKED_VECTORS,
)
