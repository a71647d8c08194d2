"""The trainer: trains LLMs (and the SLM) on packed datasets, optionally with SLM soft labels."""
