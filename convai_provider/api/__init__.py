"""The Convai client: the wire format, the typed client, and the account the providers use.

What is Convai's lives here: its field names (`wire`), its errors, its retry policy, its built-in
models. Nothing here imports Pulumi.
"""
