"""XLM partition rules: FSDP over the model dimension, Megatron tensor parallelism over heads and the feed-forward
width. Paths are "/"-joined param paths; stacked layers carry a leading (unsharded) layer axis."""

from jax.sharding import PartitionSpec as P

from common.sharding import STACKED_VECTORS

PARTITION_RULES = (
    (r"(embeddings|position_embeddings|lang_embeddings)/embedding", P(None, ("fsdp", "tensor"))),  # [V|P|langs, D]
    (r"layers/attn/(q_lin|k_lin|v_lin)/kernel", P(None, "fsdp", "tensor")),  # column-parallel
    (r"layers/attn/(q_lin|k_lin|v_lin)/bias", P(None, "tensor")),
    (r"layers/attn/out_lin/kernel", P(None, "tensor", "fsdp")),  # row-parallel
    (r"layers/ffn/lin1/kernel", P(None, "fsdp", "tensor")),
    (r"layers/ffn/lin1/bias", P(None, "tensor")),
    (r"layers/ffn/lin2/kernel", P(None, "tensor", "fsdp")),
    (r"pred_layer/weight", P(None, ("fsdp", "tensor"))),  # an untied LM head [V, D]
    (r"qa_outputs/(end_logits|answer_class)/dense_0/kernel", P("fsdp", "tensor")),  # [2D, D]
    (r"(sequence_summary/summary|classifier|qa_outputs)/kernel", P("fsdp", None)),  # [D, labels]
    (r"qa_outputs/\w+/dense(_\d)?/kernel", P("fsdp", None)),  # the SQuAD head's other projections [D|2D, D|1]
    (r"logits_proj/kernel", P("fsdp", None)),  # multiple choice [labels, 1]: split when labels divide
    # norms and biases: replicated
    STACKED_VECTORS,
)
