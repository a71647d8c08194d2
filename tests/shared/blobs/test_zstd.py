"""The reused zstd contexts: the same frames as fresh ones, one context per thread, errors as zstandard's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zstandard

from shared.blobs import zstd


def payloads() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [b"", b"x", rng.integers(0, 7, 5000, dtype=np.uint8).tobytes(), rng.bytes(3000),
            bytes(range(256)) * 40]


def test_reused_contexts_give_the_frames_of_fresh_ones_and_read_them_back() -> None:
    for _ in range(2):  # the second round reuses the contexts the first made
        for data in payloads():
            frame = zstd.compress(data)
            assert frame == zstandard.ZstdCompressor(level=3).compress(data)
            assert zstd.decompress(frame) == data


def test_each_thread_has_its_own_contexts_and_threads_agree() -> None:
    data = payloads()

    def work(i: int) -> tuple[int, int, list[bytes]]:
        frames = [zstd.compress(d) for d in data * 20]
        assert [zstd.decompress(f) for f in frames] == data * 20
        return id(zstd._local.cctx), id(zstd.decompressor()), frames[: len(data)]

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, range(8)))
    assert len({r[2][2] for r in results}) == 1  # the same bytes on every thread
    cctxs = {r[0] for r in results}
    assert 1 <= len(cctxs) <= 4 and cctxs.isdisjoint({id(zstd._local.__dict__.get("cctx"))})


def test_a_damaged_frame_raises_zstandards_error() -> None:
    frame = bytearray(zstd.compress(b"labels" * 100))
    frame[:4] = b"junk"
    with pytest.raises(zstandard.ZstdError):
        zstd.decompress(bytes(frame))
