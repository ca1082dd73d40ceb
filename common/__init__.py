"""Building blocks every family uses; a family package imports from here and never from another family.

Model pieces
    layers          dense / embedding / norms / activations / dropout, sharding-aware matmul and gather
    rope            rotary position embeddings (every HF rope type)
    attention_impls the attention choice ("reference" | "blocked" | "pallas" | "auto"): the three kinds of
                    attention site, what each runs, and the one resolver
    attention       dense masked attention and causal self-attention (dense or the causal kernel)
    longformer_attention   sliding-window + global attention (reference, blocked O(T·w), Pallas kernels)
    longformer_stack       the Longformer layer stack shared by Longformer and LED's encoder
    roberta         RoBERTa embeddings, positions from pads, pooler (Longformer, LiLT's text stream)
    heads           the heads shared across families (RoBERTa/BART classification head, span head)
    kernels/        the Pallas block-sparse flash-attention kernels (TPU Mosaic and GPU launchers)
    remat, outputs, losses   activation checkpointing policies, output pytrees with HF names, HF's losses
Runtime
    family          Family / Head: a family declared once as data (backbone, heads, input checks, generation
                    hooks, partition rules); the one prepare -> backbone -> head path every head runs
                    (run_head) and the generated public head functions
    config          ZooConfig: the frozen, hashable config base (HF config.json round trip, runtime fields)
    model           Model: config + params + one bound head (HeadSpec); validated, jitted calls and generate
    validation      input checks at the API boundary (on the host, or on the devices for device arrays)
    generation, beam_search   HF-identical greedy / sampling / beam search in one jitted loop
    sharding        meshes (Auto or Explicit axes), partition rules that fail loudly, activation constraints
    train, checkpoint, data   optax train step (any head, any mesh), Orbax checkpoints, LM data
    pipelines/      task pipelines (text -> answers as transformers' pipelines), batched in bounded shapes
Files and text
    files           reading JSON / text files with errors naming the file, line and field
    tokenization, roberta_tokenizer   tokenizer helpers and RoBERTa's byte-level BPE (Longformer, LED, LiLT)
    extras          optional dependencies (the "xlm" and "plots" extras) with errors naming the extra
"""
