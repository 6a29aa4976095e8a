"""Checks every product applies to what comes in: bounded HTTP calls, capped documents,
checked numbers and URLs, keys kept out of messages, server text quoted safely, validation
errors in words."""
