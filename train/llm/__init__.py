"""IIRG for LLMs: instruction data from the graph, LoRA fine-tuning, constrained generative evaluation."""
