"""The trainer: GRPO, SDAR (gated on-policy self-distillation) and its baselines for Hugging Face causal LMs.

`python -m sdar_agent.train` trains, `python -m sdar_agent.evaluate` evaluates. The flow of one
step, a file per stage: env step (`workers.py`) -> rollout (`rollout.py`, generation in
`generation.py`, prompts in `prompts.py`, answer parsing in `parsing.py`) -> scores and advantages
(`advantages.py`) -> objective (`objective.py`, over the pure losses of `losses.py` and
`distill.py`) -> update (`trainer.py`). Settings: `config.py`; metrics: `tracking.py`.
"""
