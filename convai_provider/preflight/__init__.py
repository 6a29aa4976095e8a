"""The endpoint preflight: whether an OpenAI-compatible endpoint is fit to register."""
