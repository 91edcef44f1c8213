"""docker-compose.yml cannot run here (no Docker engine), so check what can be:
its shape, and that every command it gives our CLI parses."""
import click
import pytest
import yaml

from visionfleet.cli.main import main
from tests.helpers import REPO


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services(compose):
    services = compose["services"]
    assert {"redis", "worker-gpu", "worker-cpu", "flower"} <= set(services)
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    for name in ("worker-gpu", "worker-cpu", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_commands_parse(compose):
    for name in ("worker-gpu", "worker-cpu"):
        args = compose["services"][name]["command"]
        assert args[0] == "worker"
        sub = main.get_command(click.Context(main), args[0])
        sub.make_context(args[0], list(args[1:]))  # raises click.UsageError if wrong


def test_workers_get_the_broker_and_share_one_model_cache(compose):
    for name in ("worker-gpu", "worker-cpu"):
        env = compose["services"][name]["environment"]
        assert env["VISIONFLEET_BROKER_URL"].startswith("redis://redis:6379")
        mount = next(v for v in compose["services"][name]["volumes"] if v.startswith("model-cache:"))
        assert env["VISIONFLEET_MODEL_CACHE"].startswith(mount.split(":")[1] + "/")
    assert "model-cache" in compose["volumes"]
    assert "chown visionfleet /var/cache/visionfleet" in (REPO / "Dockerfile").read_text()


def test_usage_error_would_be_caught():
    sub = main.get_command(click.Context(main), "worker")
    with pytest.raises(click.UsageError):
        sub.make_context("worker", ["--no-such-flag"])


def test_workers_report_ready_through_the_cli_and_prometheus_scrapes_them(compose):
    scraped = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    sd = scraped["scrape_configs"][0]["dns_sd_configs"][0]
    for name in ("worker-gpu", "worker-cpu"):
        service = compose["services"][name]
        check = service["healthcheck"]["test"]
        assert check == ["CMD", "visionfleet", "health", "--ready"]
        sub = main.get_command(click.Context(main), check[2])
        sub.make_context(check[2], check[3:])  # the probe's arguments parse
        assert name in sd["names"] and str(sd["port"]) in service["expose"]
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
