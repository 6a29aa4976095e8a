"""The operator commands: `python -m convai_provider <command>` (also `convai-models`)."""
