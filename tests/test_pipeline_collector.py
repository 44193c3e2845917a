"""The cyclic collector is held off while a batch is decoded and detected (firewatch/pipeline.py):
the batch's parsed payloads would otherwise be scanned and promoted by its young collections,
bringing on full collections of the whole heap (docs/benchmarks.md)."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.settings import MqttSettings, Settings
from firewatch.service import Service
from ingest.decode import DecodedBatch
from ingest.envelope import Message
from tests.conftest import PROFILES, small_registry
from tests.mqtt_helpers import reading


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = Settings(data_dir=tmp_path, mqtt=MqttSettings(url="mqtt://127.0.0.1:1", client_id="fw-gc"))
    return Service(settings, registry=small_registry(), profiles=PROFILES)


def batch(seq: int, smoke: float = 0.02) -> list[Message]:
    now = time.time()
    return [
        Message(f"fw/v1/s1/smk-1-{i}/telemetry", orjson.dumps(reading(seq, smoke, now)), now, 1, i)
        for i in (1, 2, 3)
    ]


def test_decoding_and_detection_run_with_the_collector_off_and_it_is_on_again_after(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = service.pipeline
    seen: list[tuple[str, bool]] = []
    decode, process = pipeline.decoder.decode, pipeline.engine.process

    def decoding(*args: Any) -> DecodedBatch:
        seen.append(("decode", gc.isenabled()))
        return decode(*args)

    def detecting(b: DecodedBatch) -> Any:
        seen.append(("detect", gc.isenabled()))
        return process(b)

    monkeypatch.setattr(pipeline.decoder, "decode", decoding)
    monkeypatch.setattr(pipeline.engine, "process", detecting)
    assert gc.isenabled()
    decoded = pipeline.detect(batch(1, smoke=0.31))  # a fire: the alarm write runs after
    assert decoded.reading_dev.size == 3
    assert pipeline.transitions > 0
    assert seen == [("decode", False), ("detect", False)]
    assert gc.isenabled()


def test_a_batch_that_fails_leaves_the_collector_on(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = service.pipeline

    def failing(*_args: Any) -> DecodedBatch:
        raise RuntimeError("decoding failed")

    monkeypatch.setattr(pipeline.decoder, "decode", failing)
    with pytest.raises(RuntimeError):
        pipeline.detect(batch(1))
    assert gc.isenabled()
