"""Spot notices only where they mean something: the metadata path is polled on Alibaba Cloud ECS
(as the machine's firmware says), nowhere else by default; an explicit URL wins."""
import pytest

from visionfleet.workers.drain import ALIBABA_SPOT_NOTICE_URL, seconds_left, spot_notice_url
from visionfleet.workers.settings import WorkerSettings


def dmi(tmp_path, vendor: str, product: str):
    (tmp_path / "sys_vendor").write_text(vendor + "\n")
    (tmp_path / "product_name").write_text(product + "\n")
    return tmp_path


@pytest.mark.parametrize("value", [None, "auto", "AUTO"])
def test_auto_polls_only_on_alibaba_ecs(tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("VISIONFLEET_SPOT_NOTICE_URL", raising=False)
    else:
        monkeypatch.setenv("VISIONFLEET_SPOT_NOTICE_URL", value)
    url = WorkerSettings.from_env().spot_notice_url
    assert spot_notice_url(url, dmi(tmp_path, "Alibaba Cloud", "Alibaba Cloud ECS")) == ALIBABA_SPOT_NOTICE_URL
    assert spot_notice_url(url, dmi(tmp_path, "QEMU", "Standard PC (Q35 + ICH9, 2009)")) is None
    assert spot_notice_url(url, dmi(tmp_path, "Amazon EC2", "m5.large")) is None
    assert spot_notice_url(url, tmp_path / "no-dmi-here") is None  # containers without /sys/class/dmi, macOS


def test_an_explicit_url_or_off_wins(tmp_path, monkeypatch):
    (tmp_path / "ecs").mkdir()
    (tmp_path / "qemu").mkdir()
    monkeypatch.setenv("VISIONFLEET_SPOT_NOTICE_URL", "http://127.0.0.1:9/notice")
    url = WorkerSettings.from_env().spot_notice_url
    assert spot_notice_url(url, dmi(tmp_path / "qemu", "QEMU", "x")) == "http://127.0.0.1:9/notice"
    monkeypatch.setenv("VISIONFLEET_SPOT_NOTICE_URL", "off")
    url = WorkerSettings.from_env().spot_notice_url
    assert spot_notice_url(url, dmi(tmp_path / "ecs", "Alibaba Cloud", "Alibaba Cloud ECS")) is None


def test_the_time_left_comes_from_the_notice():
    at = 1_795_982_700.0  # 2026-11-29T20:05:00Z
    assert seconds_left("2026-11-29T20:05:00Z", now=at - 300) == pytest.approx(300)
    assert seconds_left("2026-11-29T20:05:00+00:00", now=at) == 0
    assert seconds_left("soon", now=0) is None
