"""Fine-tuning jobs (``jaxzoo finetune``): data files -> features -> train with evaluation -> the best checkpoint.

- ``data``: reading JSON lines / CSV / Parquet with ``datasets``; errors naming the file, row and field.
- ``task`` / ``tasks``: each task's columns, features, labels and evaluation (``tasks.TASKS``).
- ``batches``: bucketed batches that depend on the step alone (exact resume).
- ``metrics``: accuracy / F1, seqeval entity F1, ROUGE, SQuAD EM / F1.
- ``job``: the training loop, checkpoints, the best model, the export and the reports.

``conversion.finetune.finetune`` loads the checkpoint with the task's head and runs the job.
"""
