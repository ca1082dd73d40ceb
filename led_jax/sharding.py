"""LED partition rules: Longformer's for the encoder layers, BART-style Megatron rules for the decoder.

Paths are "/"-joined param paths; stacked layers carry a leading (unsharded) layer axis.
"""

from jax.sharding import PartitionSpec as P

from common.sharding import STACKED_VECTORS

PARTITION_RULES = (
    (r"shared/embedding|(encoder|decoder)/embed_positions/embedding", P(None, ("fsdp", "tensor"))),  # [V|P, H]
    (r"encoder/layers/attn/(query|key|value)(_global)?/kernel", P(None, "fsdp", "tensor")),  # column-parallel
    (r"encoder/layers/attn/(query|key|value)(_global)?/bias", P(None, "tensor")),
    (r"encoder/layers/attn_output/dense/kernel", P(None, "tensor", "fsdp")),  # row-parallel
    (r"encoder/layers/intermediate/dense/kernel", P(None, "fsdp", "tensor")),
    (r"encoder/layers/intermediate/dense/bias", P(None, "tensor")),
    (r"encoder/layers/output/dense/kernel", P(None, "tensor", "fsdp")),
    (r"decoder/layers/(self|cross)_attn/(q|k|v)_proj/kernel", P(None, "fsdp", "tensor")),
    (r"decoder/layers/(self|cross)_attn/(q|k|v)_proj/bias", P(None, "tensor")),
    (r"decoder/layers/(self|cross)_attn/out_proj/kernel", P(None, "tensor", "fsdp")),
    (r"decoder/layers/fc1/kernel", P(None, "fsdp", "tensor")),
    (r"decoder/layers/fc1/bias", P(None, "tensor")),
    (r"decoder/layers/fc2/kernel", P(None, "tensor", "fsdp")),
    (r"lm_head/kernel", P("fsdp", "tensor")),  # [H, V] (untied only)
    (r"classification_head/dense/kernel", P("fsdp", "tensor")),
    (r"(classification_head/out_proj|qa_outputs)/kernel", P("fsdp", None)),
    # norms, row-parallel biases, final_logits_bias and head biases: replicated
    STACKED_VECTORS,
)
