"""Llama partition rules: FSDP over the hidden dimension, Megatron tensor parallelism over heads / MLP width.

Paths are "/"-joined param paths; stacked layers carry a leading (unsharded) layer axis.
"""

from jax.sharding import PartitionSpec as P

from common.sharding import STACKED_VECTORS

PARTITION_RULES = (
    (r"embed_tokens/embedding", P(None, ("fsdp", "tensor"))),  # [V, H]: hidden split; a vocab split makes the gather reshard in full
    (r"layers/attn/(q_proj|k_proj|v_proj)/kernel", P(None, "fsdp", "tensor")),  # [L, H, heads*D]: column-parallel
    (r"layers/attn/(q_proj|k_proj|v_proj)/bias", P(None, "tensor")),
    (r"layers/attn/o_proj/kernel", P(None, "tensor", "fsdp")),  # [L, heads*D, H]: row-parallel
    (r"layers/mlp/(gate_proj|up_proj)/kernel", P(None, "fsdp", "tensor")),  # [L, H, I]
    (r"layers/mlp/(gate_proj|up_proj)/bias", P(None, "tensor")),
    (r"layers/mlp/down_proj/kernel", P(None, "tensor", "fsdp")),  # [L, I, H]
    (r"lm_head/kernel", P("fsdp", "tensor")),  # [H, V]
    (r"(score|qa_outputs)/kernel", P("fsdp", None)),  # [H, labels]
    # norms, o/down biases and head biases: replicated
    STACKED_VECTORS,
)
