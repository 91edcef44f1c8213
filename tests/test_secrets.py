"""Redis over TLS with a password, and secrets that stay secret: after a whole fleet run
(Celery broker, result backend and job state all on ``rediss://``) with a Redis password
and an OSS key secret set, neither appears in any log, status line, record, summary,
metric or Redis value."""
import re
import subprocess
import sys

import pytest
import redis

from tests.helpers import REPO, RedisServer, Workers, stop_process, visionfleet, wait_until
from tests.photos import KNOWN, photo_bytes

pytestmark = pytest.mark.slow  # redis-servers of its own, real workers and the CLI

PASSWORD = "pw-Vf7q2Zr9"


def tls_files(folder):
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    folder.mkdir()

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=visionfleet-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return folder


def test_tls_redis_with_a_password_runs_a_job_and_no_secret_leaks(bucket, fleet_env, oss_server, tmp_path):
    server = RedisServer(tmp_path, password=PASSWORD, tls=tls_files(tmp_path / "tls"))
    assert server.url.startswith("rediss://")
    env = {**fleet_env, "VISIONFLEET_BROKER_URL": server.url}
    secrets = (PASSWORD, oss_server.access_key_secret)
    pool = Workers(env, tmp_path)
    try:
        for name in KNOWN:
            bucket.put_object(f"in/{name}", photo_bytes(name))
        bucket.put_object("in/broken.jpg", b"\xff\xd8 not a jpeg")
        pool.start(1, queues="online,bulk")
        src, out = f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/"
        outputs = [visionfleet("relabel", src, "-o", out, "--wait", env=env, timeout=240)]
        assert outputs[0].returncode == 0, outputs[0].stderr + pool.logs()
        job_id = outputs[0].stdout.split()[-1]
        outputs += [visionfleet("status", job_id, "--json", env=env), visionfleet("stats", "--json", env=env),
                    visionfleet("classify", f"{src}coffee.png", f"oss://{bucket.bucket_name}/nope.jpg",
                                "--timeout", "60", env=env),
                    visionfleet("status", "no-such-job", env={**env, "VISIONFLEET_BROKER_URL":
                                                               server.url.replace(str(server.port), "1")})]
        text = [o.stdout + o.stderr for o in outputs] + [pool.logs(tail=10_000_000)]
        text += [bucket.get_object(o.key).read().decode("utf-8", "replace")
                 for o in _objects(bucket, f"out/{job_id}/")]
        client = redis.Redis.from_url(server.url)
        wait_until(lambda: client.dbsize() > 0, 5, "state in Redis")
        text += [repr(_value(client, key)) for key in client.scan_iter(count=1000)]
        assert "_SUCCESS.json" in "".join(o.key for o in _objects(bucket, f"out/{job_id}/"))
        for secret in secrets:
            leaks = [t[max(0, t.find(secret) - 80): t.find(secret) + 80] for t in text if secret in t]
            assert not leaks, f"secret found: {leaks[:3]}"
        assert "***" in outputs[-1].stderr  # the password was there to hide: it was hidden
    finally:
        pool.stop_all()
        server.stop()


def _objects(bucket, prefix):
    import oss2

    return list(oss2.ObjectIteratorV2(bucket, prefix=prefix))


def _value(client, key):
    kind = client.type(key).decode()
    return {"string": client.get, "hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers, "zset": lambda k: client.zrange(k, 0, -1)}.get(kind, lambda k: kind)(key)


STS_TOKEN = "sts-Tk9xQ2w7Lm4Pz8Rv"


def shown_secrets(text: str, secrets: tuple[str, ...]) -> list[str]:
    """Each secret, and each request signature, found in ``text``, with what surrounds it."""
    found = [text[max(0, i - 80): i + 80] for s in secrets if (i := text.find(s)) >= 0]
    for shape in (r"Signature=(?!\*\*\*)\S{8}", r"OSS [^\s:'\"]+:(?!\*\*\*)[A-Za-z0-9+/=]{8}",
                  r"(?i)security-token['\"]?\s*[:=]\s*['\"]?(?!\*\*\*)\w", r"://[^\s/@:'\"]*:(?!\*\*)[^\s/@'\"]+@",
                  r"(?i)password['\"]?\s*[=:]\s*['\"]?(?!\*\*\*|None|null)\w"):
        found += [text[max(0, m.start() - 80): m.end() + 80] for m in re.finditer(shape, text)]
    return found


@pytest.mark.slow
def test_debug_logs_of_a_worker_and_of_relabel_hold_no_secret(bucket, fleet_env, oss_server, tmp_path):
    """oss2 logs each request's headers and what it signs at DEBUG, kombu and Celery their URLs."""
    server = RedisServer(tmp_path, password=PASSWORD)
    env = {**fleet_env, "VISIONFLEET_BROKER_URL": server.url, "OSS_SESSION_TOKEN": STS_TOKEN,  # :password@
           "VISIONFLEET_STATE_URL": f"redis://127.0.0.1:{server.port}/0?password={PASSWORD}"}
    secrets = (PASSWORD, oss_server.access_key_secret, STS_TOKEN)
    log = tmp_path / "worker.log"
    try:
        for name in KNOWN:
            bucket.put_object(f"in/{name}", photo_bytes(name))
        with open(log, "wb") as out:
            worker = subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker", "--loglevel", "DEBUG"],
                                      env={**env, "VISIONFLEET_THREADS": "1"}, cwd=REPO, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        src, out = f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/"
        result = visionfleet("--loglevel", "DEBUG", "relabel", src, "-o", out, "--wait", env=env, timeout=240)
        assert result.returncode == 0, result.stderr + log.read_text()[-3000:]
        status = visionfleet("--loglevel", "DEBUG", "status", result.stdout.split()[-1], env=env)
        stop_process(worker)
        text = result.stdout + result.stderr + status.stdout + status.stderr + log.read_text(errors="replace")
        assert '"logger": "oss2.http"' in text and '"logger": "kombu' in text  # the libraries did talk
        assert STS_TOKEN not in "".join(o.key for o in _objects(bucket, "out/"))
        leaks = shown_secrets(text, secrets)
        assert not leaks, f"{len(leaks)} secrets found: {leaks[:3]}"
    finally:
        if "worker" in locals():
            stop_process(worker)
        server.stop()
