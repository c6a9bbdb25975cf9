"""train: evaluation, memorization analysis, baselines and IIRG LoRA fine-tuning (reads from graph)."""
