"""A process that runs one service (`firewatch serve`, `firewatch demo`) leaves what start-up made
out of the cyclic collector's scans: a full collection then goes over what was made since, not over
the registry, index and detector state (firewatch/service.py, freeze_start_up_heap)."""

from __future__ import annotations

import gc
from pathlib import Path

from core.settings import MqttSettings, Settings
from firewatch.service import Service, freeze_start_up_heap


class Later:
    """An object made after start-up."""


def test_what_start_up_made_is_left_out_of_full_collections_and_what_comes_later_is_not(
    tmp_path: Path,
) -> None:
    svc = Service(Settings(data_dir=tmp_path, mqtt=MqttSettings(url="mqtt://127.0.0.1:9")))
    try:
        before = len(gc.get_objects())
        freeze_start_up_heap()
        later = Later()
        tracked = gc.get_objects()  # every generation the collector scans
        assert not any(o is svc or o is svc.index or o is svc.engine for o in tracked)
        assert any(o is later for o in tracked)
        assert len(tracked) < before / 10
    finally:
        gc.unfreeze()  # this test process goes on making and dropping services
