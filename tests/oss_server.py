"""A local object store that speaks enough of the OSS dialect for the real oss2 SDK.

moto's S3 server does the storing; ``OssAdapter`` (a WSGI middleware) translates
between OSS and S3 on the wire, because the two protocols differ in small ways
that make oss2 fail or silently misbehave against plain moto:

* auth: ``OSS``/``OSS2``/``OSS4-HMAC-SHA256`` headers become an S3 V4 header.
  moto checks no signatures, so the adapter checks the access key id itself.
* headers: ``x-oss-*`` request headers become ``x-amz-*`` and back on replies
  (oss2 reads ``x-oss-request-id``, ``x-oss-meta-*``...).
* XML: S3 replies carry a namespace oss2 does not expect, and listings lack
  elements oss2 treats as mandatory (``Contents/Type``, v1 ``NextMarker``).
* errors to HEAD requests carry their XML in ``x-oss-err``, as OSS does, so
  oss2 can tell NoSuchBucket from NoSuchKey.

It also injects faults for retry tests: ``POST /__faults__`` with a JSON body
``{"match": "<path substring>", "status": 503, "count": 2, "code": "..."}``
fails the next ``count`` matching requests (status 0: drop the connection);
``DELETE /__faults__`` clears them. The control endpoint needs no auth and
answers ``{"pid": <server pid>, "faults": [<pending faults>]}``.

Run: ``python -m tests.oss_server --port 9000`` (from the repo root; the key id
comes from ``--access-key-id`` or $OSS_TEST_ACCESS_KEY_ID). Tests use
``start_oss_server()``, which runs it as a subprocess on a free port.
"""
import argparse
import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from http.client import responses as HTTP_REASONS
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode
from xml.sax.saxutils import escape

DEFAULT_ACCESS_KEY_ID = "visionfleet-test-id"
DEFAULT_ACCESS_KEY_SECRET = "visionfleet-test-secret"  # never checked: moto verifies no signatures
FAULTS_PATH = "/__faults__"
REPO_ROOT = Path(__file__).resolve().parent.parent
_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy

# Access key id in each OSS auth header form: V1 "OSS id:sig", V2 "OSS2 AccessKeyId:id,...",
# V4 "OSS4-HMAC-SHA256 Credential=id/date/region/oss/aliyun_v4_request,...".
_AUTH_KEY_ID = re.compile(r"^(?:OSS ([^:]+):|OSS2 AccessKeyId:([^,]+)|OSS4-HMAC-SHA256 Credential=([^/]+)/)")
# Signed URLs carry the key id in the query string instead (V1, V2, V4).
_QUERY_KEY_ID = {"OSSAccessKeyId": None, "x-oss-access-key-id": None, "x-oss-credential": "/"}
# Parameters oss2 sends empty that moto would take as real (and invalid) values.
_EMPTY_MEANS_ABSENT = {"prefix", "delimiter", "marker", "continuation-token", "start-after",
                       "key-marker", "upload-id-marker", "part-number-marker", "max-keys"}
_SIGNED_URL_PARAMS = {"OSSAccessKeyId", "Expires", "Signature", "security-token"}
_LIST_V1_PARAMS = {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}
_DEFAULT_FAULT_CODES = {429: "Throttling", 500: "InternalError", 503: "ServiceUnavailable"}


def _fix_xml(body, list_v1=False):
    """Turn moto's S3 XML reply into what oss2 parses: no namespace, OSS's mandatory elements."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return body
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    if root.tag == "ListBucketResult":
        contents = root.findall("Contents")
        for item in contents:  # OSS says how each object was written; oss2 requires it
            ET.SubElement(item, "Type").text = "Multipart" if "-" in item.findtext("ETag", "") else "Normal"
        if list_v1 and root.findtext("IsTruncated") == "true":
            # A v1 page served by moto's v2 listing: the marker is the last name listed.
            decode = unquote if root.findtext("EncodingType") == "url" else str
            names = [item.findtext("Key") for item in contents]
            names += [prefix.findtext("Prefix") for prefix in root.findall("CommonPrefixes")]
            ET.SubElement(root, "NextMarker").text = max(names, key=decode)
    elif root.tag == "ListMultipartUploadsResult":
        for name in ("NextKeyMarker", "NextUploadIdMarker"):  # oss2 requires them, even empty
            if root.find(name) is None:
                ET.SubElement(root, name)
    elif root.tag == "ListAllMyBucketsResult":
        for bucket in root.iter("Bucket"):  # OSS bucket details oss2 requires
            for name, text in (("Location", "oss-cn-hangzhou"), ("StorageClass", "Standard"),
                               ("ExtranetEndpoint", "oss-cn-hangzhou.aliyuncs.com"),
                               ("IntranetEndpoint", "oss-cn-hangzhou-internal.aliyuncs.com")):
                if bucket.find(name) is None:
                    ET.SubElement(bucket, name).text = text
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


class OssAdapter:
    """WSGI middleware: OSS requests in, moto's S3 app behind, OSS replies out."""

    def __init__(self, s3_app, access_key_id=DEFAULT_ACCESS_KEY_ID):
        self.s3_app = s3_app
        self.access_key_id = access_key_id
        self.faults = []  # dicts from POST /__faults__, oldest first
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == FAULTS_PATH:
            return self._control(environ, start_response)
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        key_id = self._key_id(environ, query)
        if key_id is None:
            return self._error(environ, start_response, 403, "AccessDenied", "Anonymous access is forbidden.")
        if key_id != self.access_key_id:
            return self._error(environ, start_response, 403, "InvalidAccessKeyId",
                               "The OSS Access Key Id you provided does not exist in our records.")
        fault = self._take_fault(path)
        if fault is not None:
            if fault["status"] == 0:
                return self._drop_connection(environ, start_response)
            return self._error(environ, start_response, fault["status"], fault["code"], "Injected fault.")

        bucket_path = path.strip("/") != "" and "/" not in path.strip("/")
        list_v1 = method == "GET" and bucket_path and {name for name, _ in query} <= _LIST_V1_PARAMS
        if list_v1:
            # moto's v1 listing repeats every common prefix on every page; its v2 listing
            # is right, and OSS's v1 marker means exactly S3's v2 start-after.
            query = [("start-after" if name == "marker" else name, value) for name, value in query]
            query.append(("list-type", "2"))
        self._to_s3(environ, key_id, query)
        try:
            status, headers, body = self._call_s3(environ)
            if method == "HEAD" and int(status[:3]) >= 400 and not body:
                # moto answers HEAD errors with no body, which leaves oss2 unable to tell
                # NoSuchBucket from NoSuchKey; a GET replay (no side effects) gets the XML.
                body = self._call_s3(dict(environ, REQUEST_METHOD="GET"))[2]
        except Exception as error:  # a moto crash: say what it was rather than an HTML 500 page
            logging.getLogger(__name__).exception("moto failed on %s %s", method, path)
            return self._error(environ, start_response, 500, "InternalError", repr(error))
        return self._to_oss(environ, start_response, status, headers, body, list_v1)

    def _call_s3(self, environ):
        reply = {}

        def capture(status, headers, exc_info=None):
            reply["status"], reply["headers"] = status, headers
            return lambda chunk: None  # moto's Flask app never uses write()

        chunks = self.s3_app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return reply["status"], reply["headers"], body

    # -- requests -------------------------------------------------------

    @staticmethod
    def _key_id(environ, query):
        match = _AUTH_KEY_ID.match(environ.get("HTTP_AUTHORIZATION", ""))
        if match:
            return next(group for group in match.groups() if group)
        for name, value in query:
            if name in _QUERY_KEY_ID:
                separator = _QUERY_KEY_ID[name]
                return value.split(separator)[0] if separator else value
        return None

    @staticmethod
    def _to_s3(environ, key_id, query):
        # A fake S3 V4 header: moto takes the account from it and checks nothing else.
        environ["HTTP_AUTHORIZATION"] = (
            "AWS4-HMAC-SHA256 Credential=%s/20240101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=%s" % (key_id, "0" * 64))
        for name in [name for name in environ if name.startswith("HTTP_X_OSS_")]:
            environ["HTTP_X_AMZ_" + name[len("HTTP_X_OSS_"):]] = environ.pop(name)
        # oss2 sends empty markers (e.g. continuation-token= on a first page), which moto
        # takes as real, invalid ones. Signed-URL parameters mean nothing to moto.
        query = [(name, value) for name, value in query
                 if (value or name not in _EMPTY_MEANS_ABSENT)
                 and name not in _SIGNED_URL_PARAMS and not name.startswith("x-oss-")]
        environ["QUERY_STRING"] = urlencode(query, quote_via=quote)

    # -- replies --------------------------------------------------------

    def _to_oss(self, environ, start_response, status, headers, body, list_v1):
        method, code = environ["REQUEST_METHOD"], int(status[:3])
        headers = [(re.sub("^x-amz-", "x-oss-", name, flags=re.I), value) for name, value in headers]
        names = {name.lower() for name, _ in headers}
        if "x-oss-request-id" not in names:
            headers.append(("x-oss-request-id", uuid.uuid4().hex.upper()))
        etag = next((value for name, value in headers if name.lower() == "etag"), None)
        if method in ("GET", "HEAD") and etag and "x-oss-object-type" not in names:
            # OSS says how an object was written; multipart ETags have a "-N" suffix.
            headers.append(("x-oss-object-type", "Multipart" if "-" in etag else "Normal"))
        if method == "HEAD":
            if code >= 400:  # OSS puts a HEAD's error XML in a header
                headers.append(("x-oss-err", base64.b64encode(body).decode()))
            body = b""  # and HEAD keeps moto's Content-Length: the object's size
        elif (code >= 300 or not (method == "GET" and etag)) and body.lstrip().startswith(b"<"):
            # An API reply; object bytes (a GET with an ETag) pass untouched, XML or not.
            body = _fix_xml(body, list_v1)
            headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _error(self, environ, start_response, status, code, message):
        request_id = uuid.uuid4().hex.upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            "<RequestId>%s</RequestId><HostId>%s</HostId></Error>"
            % (escape(code), escape(message), request_id, escape(environ.get("HTTP_HOST", "")))).encode()
        headers = [("Content-Type", "application/xml"), ("x-oss-request-id", request_id)]
        if environ["REQUEST_METHOD"] == "HEAD":
            headers.append(("x-oss-err", base64.b64encode(body).decode()))
            body = b""
        headers.append(("Content-Length", str(len(body))))
        start_response("%d %s" % (status, HTTP_REASONS.get(status, "Error")), headers)
        return [body]

    # -- fault injection ------------------------------------------------

    def _take_fault(self, path):
        with self.lock:
            for fault in self.faults:
                if fault["match"] in path:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _drop_connection(environ, start_response):
        # Shut the socket under werkzeug: the client sees the connection close with no
        # reply (oss2 raises RequestError); werkzeug's write then fails quietly.
        environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
        start_response("500 Dropped", [("Content-Length", "0")])
        return [b""]

    def _control(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            asked = json.loads(environ["wsgi.input"].read(length) or b"{}")
            status = int(asked.get("status", 503))
            fault = {"match": asked.get("match", ""), "status": status, "count": int(asked.get("count", 1)),
                     "code": asked.get("code") or _DEFAULT_FAULT_CODES.get(status, "InjectedFault")}
            with self.lock:
                self.faults.append(fault)
        elif method == "DELETE":
            with self.lock:
                self.faults.clear()
        with self.lock:  # the pid tells start_oss_server it reached its own process
            body = json.dumps({"pid": os.getpid(), "faults": self.faults}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def make_app(access_key_id=DEFAULT_ACCESS_KEY_ID):
    from moto.server import create_backend_app  # slow import; only the server process needs it

    return OssAdapter(create_backend_app("s3"), access_key_id)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--access-key-id", default=os.environ.get("OSS_TEST_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID))
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    # OSS's minimum part size is 100 KB, S3's 5 MB. moto reads this once, at import.
    os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(100 * 1024))
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    make_server(args.host, args.port, make_app(args.access_key_id), threaded=True).serve_forever()


# -- launching it from tests ----------------------------------------------


class OssServer:
    """A running ``tests.oss_server`` subprocess; ``stop()`` (or ``with``) ends it."""

    def __init__(self, process, host, port, access_key_id, access_key_secret, log=None):
        self.process = process
        self.log = log  # the server's stderr, a temporary file
        self.host, self.port = host, port
        self.endpoint = "http://%s:%d" % (host, port)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret

    def inject_fault(self, match, status, count=1, code=None):
        """Fail the next ``count`` requests whose path contains ``match``; status 0 drops the connection."""
        self._control("POST", {"match": match, "status": status, "count": count, "code": code})

    def clear_faults(self):
        self._control("DELETE")

    def _control(self, method, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.endpoint + FAULTS_PATH, data=data, method=method)
        with _LOCAL_OPENER.open(request, timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self, timeout=10):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()

    def is_ready(self):
        """Whether this server process answers HTTP (on its control endpoint: no side effects)."""
        try:
            return self._control("GET")["pid"] == self.process.pid
        except (OSError, ValueError, KeyError, TypeError):  # refused, reset, or another server on the port
            return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _free_port(host):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_oss_server(port=None, host="127.0.0.1", access_key_id=DEFAULT_ACCESS_KEY_ID,
                     access_key_secret=DEFAULT_ACCESS_KEY_SECRET, timeout=30.0):
    """Run the server as a subprocess (on a free port by default); return once it answers HTTP."""
    port = port or _free_port(host)
    log = tempfile.TemporaryFile()  # a file, not a pipe: nobody drains a pipe while tests run
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oss_server", "--host", host, "--port", str(port),
         "--access-key-id", access_key_id],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=log)
    server = OssServer(process, host, port, access_key_id, access_key_secret, log)
    deadline = time.monotonic() + timeout
    while not server.is_ready():
        try:
            process.wait(0.05)  # paces the polling, and ends it at once if the server died
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
            server.stop()
            raise RuntimeError("OSS test server did not answer on %s within %ss" % (server.endpoint, timeout))
        log.seek(0)
        message = "OSS test server exited with %s:\n%s" % (process.returncode, log.read().decode())
        server.stop()
        raise RuntimeError(message)
    return server


if __name__ == "__main__":
    main()
