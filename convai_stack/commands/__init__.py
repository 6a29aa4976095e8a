"""The operator commands, built on the library: `convai-models <command>`.

Also `python -m convai_stack`, and `python -m convai_provider` as before they moved here.
"""
