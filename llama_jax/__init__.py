"""Llama (HF ``LlamaModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     ``init_params`` and one pure function per HF head (rope, GQA, the KV cache for generation)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (tokenizer.json: byte-level BPE or SentencePiece-style), pretrain.py (the `jaxzoo train` job)
Outside the package: conversion/llama.py is the family's two-way HF name table, and one block of
conversion/registry.py declares its heads (HF class, head function, backbone prefix, generation hooks).
"""
