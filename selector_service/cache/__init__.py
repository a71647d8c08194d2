"""The label cache: answers windows from the store, computes only the misses with the SLM, in shared
forward passes (dynamic batching), and stores what was computed."""
