"""Soft-label blobs as the cache stores them: their codec (``labels``), the packed ids (``bitpack``) and the
batch decoder (``label_batch``). Shared, so the client can decode the blobs a by-hash answer carries."""
