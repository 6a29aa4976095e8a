"""The local Convai emulator: Convai's /llm-models and /character calls on a real HTTP server
with a SQLite store (`store`, the state; `app`, the HTTP layer; `faults`, injected failures;
`server`, the process; `process`, starting one from a test or a script). Its web server is the
`[emulator]` extra; `process` needs none of it."""
