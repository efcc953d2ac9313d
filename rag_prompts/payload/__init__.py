"""The payload guard agents use, framework-neutral: what history fits the payload budget, large tool outputs stored
outside the prompt, models' context windows, and the per-call record and its log."""
