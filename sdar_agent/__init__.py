"""The trainer: GRPO and SDAR (gated on-policy self-distillation) for Hugging Face causal LMs.

Built in the trainer issues; `python -m sdar_agent.train` will be the project's main job.
"""
