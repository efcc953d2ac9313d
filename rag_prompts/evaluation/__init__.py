"""The eval harness: datasets with gold spans, metrics, the baselines we compare with, and the runner.

The runtime never imports this package; `rag-prompts eval` does."""
