"""Local stand-ins for the notification providers, for tests and benches (loopback only).

Each one checks signatures exactly as the provider documents them, answers with the
provider's success or error JSON, can be told to fail, and records what it received.
"""
