"""Other tools' formats: exports for TRL, hosted finetuning and lm-eval, and scoring
completions made elsewhere. Nothing here imports the orchestrator."""
