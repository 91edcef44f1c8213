"""Online requests that name their model: routed to that model's batches on the same worker, within what
the worker allows (VISIONFLEET_MODELS); in this process first, then with real workers, Redis and OSS."""
import hashlib
import io
import json
import threading
import time
import uuid

import numpy as np
import pytest
import redis
from celery import Celery
from PIL import Image

from visionfleet.broker.counters import Counters
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.labeller import LoadSettings
from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.workers.cache import RedisLabelCache
from visionfleet.workers.labeller_pool import MAX_LOADED, LabellerPool
from visionfleet.workers.online import OnlineSettings
from visionfleet.workers.online_models import OnlineModels
from tests.helpers import clean_env, visionfleet, wait_until
from tests.photos import KNOWN, photo_bytes

BUILT_IN = "efficientnet_lite0"


class ClassModel(Model):
    """Says class ``answer`` for every image."""

    def __init__(self, answer: int, max_batch_size: int) -> None:
        self.info = ModelInfo(f"class{answer}", imagenet_class_names(), max_batch_size=max_batch_size,
                              version=str(answer))
        self.answer = answer

    def predict(self, batch: np.ndarray) -> np.ndarray:
        probs = np.full((len(batch), 1000), 1e-4, dtype=np.float32)
        probs[:, self.answer] = 0.9
        return probs


def class1(settings):
    return ClassModel(1, settings.max_batch_size)


def class2(settings):
    return ClassModel(2, settings.max_batch_size)


def class3(settings):
    return ClassModel(3, settings.max_batch_size)


def class4(settings):
    return ClassModel(4, settings.max_batch_size)


def class5(settings):
    return ClassModel(5, settings.max_batch_size)


def same_name_a(settings):
    model = ClassModel(6, settings.max_batch_size)
    model.info.name, model.info.version = "same", None
    return model


def same_name_b(settings):
    model = ClassModel(7, settings.max_batch_size)
    model.info.name, model.info.version = "same", None
    return model


def broken(settings):
    raise RuntimeError("weights truncated at byte 12")


SPECS = [f"tests.test_online_models:class{i}" for i in range(1, 6)]
SAME_NAME = ["tests.test_online_models:same_name_a", "tests.test_online_models:same_name_b"]


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, "PNG")
    return out.getvalue()


def online_models(tmp_path, cache=None) -> tuple[OnlineModels, str]:
    """The online side of a worker whose own model is class1, and a red image it may read."""
    (tmp_path / "red.png").write_bytes(png((250, 10, 10)))
    access = Access(frozenset([*SPECS, *SAME_NAME, "tests.test_online_models:broken"]), (str(tmp_path),), None)
    pool = LabellerPool(RuntimeSettings(max_batch_size=4, threads=1), LoadSettings(io_threads=2), "test")
    service = OnlineModels(pool, SPECS[0], access, OnlineSettings(max_wait_s=0.001, cache=cache is not None),
                           cache, Counters(None, "vf"))
    return service, str(tmp_path / "red.png")


@pytest.fixture
def online(tmp_path):
    service, image = online_models(tmp_path)
    yield service, image
    for loaded in service._services.values():
        loaded.close()


def test_each_named_model_answers_and_the_least_recently_asked_is_unloaded(online):
    service, image = online
    for i, spec in enumerate(SPECS[:MAX_LOADED], 1):
        service.classify(image, model=spec)
    assert service.classify(image, model="tests.test_online_models:broken")["status"] == "error"
    assert list(service._services) == SPECS[:MAX_LOADED]  # a model that failed to load made no room
    for i, spec in enumerate(SPECS, 1):
        record = service.classify(image, model=spec)
        assert (record["status"], record["model"], record["model_version"]) == ("ok", f"class{i}", str(i))
        assert record["labels"][0]["class_id"] == i
        service.classify(image)  # the worker's own (class1) in use all along: it stays loaded
    assert set(service._services) == {SPECS[0], *SPECS[2:]}  # class2 made room for class5
    assert len(service.labellers._loaded) == MAX_LOADED
    assert service.classify(image, model=SPECS[1])["labels"][0]["class_id"] == 2  # loaded again


def test_a_model_that_is_not_allowed_or_fails_to_load_is_an_error_record(online):
    service, image = online
    refused = service.classify(image, model="tests.slow_model:build")
    assert refused["status"] == "error" and refused["labels"] is None
    assert refused["error"] == ("model tests.slow_model:build is not allowed on this worker; "
                                "add it to VISIONFLEET_MODELS")
    assert "tests.slow_model" not in service.labellers._loaded  # refused before anything was imported
    failed = service.classify(image, model="tests.test_online_models:broken")
    assert failed["status"] == "error" and failed["model"] == "tests.test_online_models:broken"
    assert failed["error"] == ("model tests.test_online_models:broken failed to load on this worker: "
                               "RuntimeError: weights truncated at byte 12")
    assert service.classify(image)["status"] == "ok"


def test_requests_for_a_loaded_model_go_on_while_another_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONFLEET_TEST_LOAD_S", "3")  # tests.slow_model takes that long to load
    service, image = online_models(tmp_path)
    service.access = Access(service.access.models | {"tests.slow_model:build"}, service.access.local_roots, None)
    service.classify(image)  # the worker's own model is loaded
    slow: list[dict] = []
    loading = threading.Thread(target=lambda: slow.append(service.classify(image, model="tests.slow_model:build")))
    loading.start()
    wait_until(service._loading.locked, 5, "the slow model to start loading")
    assert service.classify(image)["labels"][0]["class_id"] == 1 and loading.is_alive()  # did not wait for it
    loading.join(30)
    assert slow[0]["status"] == "ok" and slow[0]["model"] == "slow"


def test_two_models_of_one_name_keep_their_own_cached_labels(tmp_path, redis_url):
    cache = RedisLabelCache(redis.Redis.from_url(redis_url), 60, f"t{uuid.uuid4().hex[:8]}")
    service, image = online_models(tmp_path, cache)
    for _ in range(2):  # the second time from the cache, each model's own
        answers = [service.classify(image, model=spec)["labels"][0]["class_id"] for spec in SAME_NAME]
        assert answers == [6, 7]
    assert cache.get(f"{SAME_NAME[1]}@None:top5:sha256:{hashlib.sha256(png((250, 10, 10))).hexdigest()}")


# With real workers: a tiny TorchScript model of colours beside the built-in model.

COLORS = ["red", "green", "blue"]


@pytest.fixture
def colors_model(tmp_path) -> str:
    """``torchscript:PATH`` of a model whose logits are the mean of each normalised channel: a red
    image is "red", a blue one "blue" (class names from VISIONFLEET_LABELS)."""
    import torch

    class Colors(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 10

    path = tmp_path / "colors.pt"
    torch.jit.trace(Colors().eval(), torch.zeros(1, 3, 224, 224)).save(str(path))
    (tmp_path / "colors.txt").write_text("\n".join(COLORS) + "\n")
    return f"torchscript:{path}"


@pytest.fixture
def colors_worker(workers, client, colors_model, tmp_path, bucket):
    """An online worker whose own model is the built-in one, that also allows the colours model."""
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a TorchScript archive")
    (proc,) = workers.start(1, queues="online", VISIONFLEET_ONLINE_MAX_WAIT_MS="200",
                            VISIONFLEET_MODELS=f"{colors_model},torchscript:{broken}",
                            VISIONFLEET_LABELS=str(tmp_path / "colors.txt"))
    wait_until(lambda: proc.poll() is not None or client.backlog() == 0, 30, "the online worker")
    # Its own model is loaded before it takes requests: this one says the worker is up.
    first = client.classify(put(bucket, "warm.png", photo_bytes("coffee.png")), timeout=60)
    assert first["status"] == "ok", workers.logs()
    return proc


def put(bucket, name: str, data: bytes) -> str:
    bucket.put_object(name, data)
    return f"oss://{bucket.bucket_name}/{name}"


@pytest.mark.slow
def test_requests_naming_the_built_in_model_or_another_allowed_one_are_served_side_by_side(
        bucket, client, colors_model, colors_worker):
    chelsea, coffee = (put(bucket, f"a/{n}", photo_bytes(n)) for n in ("chelsea.png", "coffee.png"))
    red, blue = put(bucket, "a/red.png", png((250, 10, 10))), put(bucket, "a/blue.png", png((10, 10, 250)))
    named = client.classify(chelsea, timeout=60, model=BUILT_IN)
    assert named["status"] == "ok" and named["model"] == BUILT_IN and "model_version" in named
    assert named["labels"][0]["class_id"] in KNOWN["chelsea.png"]
    started = time.monotonic()
    colour = client.classify(red, timeout=60, model=colors_model)  # loads the second model
    first_s, started = time.monotonic() - started, time.monotonic()
    client.classify(blue, timeout=60, model=colors_model)
    print(f"\nsecond model: first request {first_s:.2f}s (its load), the next {time.monotonic() - started:.3f}s")
    assert colour["status"] == "ok" and colour["model"] == "colors" and "model_version" in colour, colour
    assert colour["labels"][0]["label"] == "red" and len(colour["labels"]) == 3
    # Both models at once, interleaved: each request is answered by the model it named.
    asked = [(chelsea, None), (red, colors_model), (coffee, BUILT_IN), (blue, colors_model)] * 4
    pending = [client.submit(uri, model) for uri, model in asked]
    records = [result.get(timeout=60) for result in pending]
    assert [r["uri"] for r in records] == [uri for uri, _ in asked]
    want = {chelsea: KNOWN["chelsea.png"], coffee: KNOWN["coffee.png"]}
    for (uri, model), record in zip(asked, records):
        assert record["status"] == "ok", record
        if model == colors_model:
            assert record["model"] == "colors" and record["labels"][0]["label"] == uri.rsplit("/", 1)[1][:-4]
        else:
            assert record["model"] == BUILT_IN and record["labels"][0]["class_id"] in want[uri]


@pytest.mark.slow
def test_a_model_not_allowed_or_failing_to_load_is_the_callers_error_record(bucket, client, tmp_path,
                                                                            colors_worker):
    uri = put(bucket, "b/coffee.png", photo_bytes("coffee.png"))
    elsewhere = "torchscript:/srv/models/other.pt"
    refused = client.classify(uri, timeout=60, model=elsewhere)
    assert refused["status"] == "error" and refused["labels"] is None and refused["model"] == elsewhere
    assert refused["error"] == f"model {elsewhere} is not allowed on this worker; add it to VISIONFLEET_MODELS"
    failed = client.classify(uri, timeout=60, model=f"torchscript:{tmp_path / 'broken.pt'}")
    assert failed["status"] == "error" and failed["labels"] is None
    assert failed["error"].startswith(f"model torchscript:{tmp_path / 'broken.pt'} failed to load on this worker: ")
    assert client.classify(uri, timeout=60)["status"] == "ok" and colors_worker.poll() is None  # still serving


@pytest.mark.slow
def test_cli_and_a_plain_celery_client_name_a_model(bucket, fleet_env, colors_model, colors_worker):
    red, blue = put(bucket, "c/red.png", png((250, 10, 10))), put(bucket, "c/blue.png", png((10, 10, 250)))
    result = visionfleet("classify", "--model", colors_model, red, blue, "--timeout", "60", env=fleet_env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["model"], r["labels"][0]["label"]) for r in records] == [("colors", "red"), ("colors", "blue")]
    url = fleet_env["VISIONFLEET_BROKER_URL"]
    plain = Celery(broker=url, backend=url)  # the keyword any Celery client can send
    record = plain.send_task("visionfleet.classify", args=[blue], kwargs={"model": colors_model},
                             queue="online").get(timeout=60)
    assert record["model"] == "colors" and record["labels"][0]["label"] == "blue"
    unknown = visionfleet("classify", "--model", "efficientnet_lite", red, env=fleet_env)
    assert unknown.returncode == 2 and "did you mean efficientnet_lite0?" in unknown.stderr


@pytest.mark.slow
def test_embedded_classify_loads_the_named_model_here(tmp_path, colors_model):
    (tmp_path / "blue.png").write_bytes(png((10, 10, 250)))
    env = {**clean_env(), "VISIONFLEET_HOME": str(tmp_path / "home"), "VISIONFLEET_LABELS": str(tmp_path / "colors.txt")}
    result = visionfleet("classify", "--model", colors_model, str(tmp_path / "blue.png"), env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "colors" and record["labels"][0]["label"] == "blue"


@pytest.mark.slow
def test_an_online_request_names_an_onnx_package(bucket, client, fleet_env, workers, tmp_path):
    from tests.model_packages import write_package

    package = str(write_package(tmp_path / "colors"))  # model.onnx and model.json: name colors, version 3
    (proc,) = workers.start(1, queues="online", VISIONFLEET_MODELS=package)
    red, blue = put(bucket, "p/red.png", png((250, 10, 10))), put(bucket, "p/blue.png", png((10, 10, 250)))
    record = client.classify(red, timeout=60, model=package)
    assert (record["status"], record["model"], record["model_version"]) == ("ok", "colors", "3"), record
    assert [label["label"] for label in record["labels"]] == ["red", "green", "blue"]
    # From a shell, by the path relative to where it is typed: the workers are sent the absolute one.
    result = visionfleet("classify", "--model", "./colors/model.onnx", blue, "--timeout", "60", env=fleet_env,
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["labels"][0]["label"] == "blue" and proc.poll() is None
