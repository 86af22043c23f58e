"""Training stages: the SFT loop (sft, packing, engine), GRPO (grpo, rewards, hf_trainer), the
model a stage starts from (load), precision and memory, and the saved weights (stages)."""
