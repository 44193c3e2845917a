"""Why a message was rejected, as a person reads it: every reject reason has a Chinese label
(alarms/labels.py), shown beside the code the API keeps (`reason_zh`)."""

from __future__ import annotations

from alarms.labels import REJECT_REASON_ZH, reject_reason_zh
from core.domain import RejectReason
from tests.untranslated import Scanner


def test_every_reject_reason_has_a_chinese_label_of_its_own() -> None:
    assert set(REJECT_REASON_ZH) == set(RejectReason)
    labels = [REJECT_REASON_ZH[r] for r in RejectReason]
    assert len(set(labels)) == len(labels)  # no two reasons read the same


def test_the_labels_say_what_went_wrong_in_words() -> None:
    assert reject_reason_zh("bad_json") == "消息不是有效的 JSON"
    assert reject_reason_zh("unknown_device") == "未登记的设备"
    scanner = Scanner()
    for reason in RejectReason:
        assert scanner.findings(reject_reason_zh(reason.value)) == [], reason


def test_a_reason_this_version_does_not_know_reads_as_stored() -> None:
    assert reject_reason_zh("from_a_newer_version") == "from_a_newer_version"
