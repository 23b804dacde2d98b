"""The HTTP server as attackers and crowds meet it (loopback only): bursts, slow clients, bad framing, leaks, CORS.

Each test names the finding of issue 15 it covers (F3 backlog, F4 slow clients, F6 log flooding, F7 leaks,
F9 smuggling). Counts and waits are bounded; no test asserts a latency (``ltgcast bench http`` measures those).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from foundation.clock import wait_until
from ltgcast.httpbench import burst, seed
from serve.api.grids import GridApi
from serve.api.settings import ApiSettings, WebSettings
from serve.api.web import HttpService
from serve.stores.files import FileGridStore
from tests.serve.test_api import seeded_store

GRID = "G19_M1_20240615T201024Z_lightning-v1"


@pytest.fixture
def store(tmp_path: Path) -> FileGridStore:
    return seeded_store(tmp_path / "grids")


def serving(store: FileGridStore, settings: WebSettings | None = None, **api: Any) -> HttpService:
    return HttpService(GridApi(store, ApiSettings(**api)), "127.0.0.1", 0, settings).start()


@pytest.fixture
def server(store: FileGridStore) -> Iterator[HttpService]:
    service = serving(store)
    yield service
    service.stop()


def raw(address: tuple[str, int], request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes (or ``timeout``)."""
    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(request)
        reply = b""
        try:
            while chunk := conn.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
        return reply


# -- F3: a crowd at once ---------------------------------------------------------------------------------------------
def test_f3_a_burst_of_200_connections_is_all_answered(server: HttpService) -> None:
    statuses = burst(server.address, ["/healthz"] * 200)
    assert Counter(statuses) == {200: 200}  # a backlog of 5 left 83 of 200 unconnected for 70 s


def test_f3_under_a_burst_of_renderings_the_health_probe_is_answered(store: FileGridStore) -> None:
    service = serving(store, WebSettings(max_in_flight=32))
    try:
        targets = [f"/v1/grids/{GRID}.png?legend={i % 2}" if i % 2 else f"/v1/grids/{GRID}/contours.geojson"
                   f"?levels=0.{10 + i % 80}" for i in range(200)]  # fmt: skip
        probes: list[int] = []
        result: list[list[int]] = []
        crowd = threading.Thread(target=lambda: result.append(burst(service.address, targets, 60.0)))
        crowd.start()
        while crowd.is_alive():  # a probe every 50 ms while the crowd is served
            probes.append(burst(service.address, ["/healthz"], 5.0)[0])
            time.sleep(0.05)
        crowd.join()
        answered = Counter(result[0])
        assert set(answered) <= {200, 503}, answered  # answered, or refused as busy: never dropped
        assert answered[200] >= 32
        assert probes
        assert all(p == 200 for p in probes), Counter(probes)
    finally:
        service.stop()


# -- F4: slow clients ------------------------------------------------------------------------------------------------
def test_f4_300_slow_clients_hold_no_threads_and_are_cut_off(store: FileGridStore) -> None:
    service = serving(store, WebSettings(header_timeout_s=1.5))
    threads_before = threading.active_count()
    slow: list[socket.socket] = []
    try:
        for _ in range(300):  # each sends half a request and then nothing
            conn = socket.create_connection(service.address, timeout=10)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(conn)
        status = urllib.request.urlopen(f"http://{service.address[0]}:{service.address[1]}/v1/grids/latest?sector=M1",
                                        timeout=10).status  # fmt: skip
        assert status == 200  # others are still served
        assert threading.active_count() <= threads_before + 20  # the stdlib server held 313 threads
        time.sleep(2.0)  # past the header deadline
        cut = 0
        for conn in slow:
            conn.settimeout(5)
            try:
                cut += conn.recv(100) == b""  # closed by the server, without an answer
            except OSError:
                cut += 1
        assert cut == 300
    finally:
        for conn in slow:
            conn.close()
        service.stop()


def test_f4_connections_past_the_limit_are_refused_with_503(store: FileGridStore) -> None:
    service = serving(store, WebSettings(max_connections=20))
    try:
        idle = [socket.create_connection(service.address, timeout=10) for _ in range(20)]
        try:
            time.sleep(0.2)
            refused = raw(service.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert refused.startswith(b"HTTP/1.1 503")
            assert b'"code": "busy"' in refused
        finally:
            for conn in idle:
                conn.close()
        time.sleep(0.2)
        again = raw(service.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200")
    finally:
        service.stop()


def test_f4_a_slow_body_is_cut_off_with_408_and_frees_its_slot(store: FileGridStore) -> None:
    service = serving(store, WebSettings(max_in_flight=2, body_timeout_s=1.0))
    try:
        slow = [socket.create_connection(service.address, timeout=10) for _ in range(2)]
        for conn in slow:  # headers promise a body that never comes
            conn.sendall(b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        for conn in slow:
            reply = conn.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            conn.close()
        ok = raw(service.address, b"GET /v1/grids/latest?sector=M1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200")
    finally:
        service.stop()


def test_f4_a_client_that_never_reads_is_cut_off_and_frees_its_slot(store: FileGridStore) -> None:
    service = serving(store, WebSettings(max_in_flight=1, write_timeout_s=1.0))
    try:
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(service.address)
        hog.settimeout(30)
        hog.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 500)  # pipelined (15 MB of answers), never read
        request = b"GET /v1/grids/latest?sector=M1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        # once cut off, the slot is free again
        reply = wait_until(lambda: (r := raw(service.address, request)).startswith(b"HTTP/1.1 200") and r,
                           "the slot of the stalled reader freed", limit_s=30, every_s=0.2)  # fmt: skip
        assert reply.startswith(b"HTTP/1.1 200")
        answers, tail = 0, b""
        try:
            while chunk := hog.recv(1 << 20):
                answers += (tail + chunk).count(b"HTTP/1.1 200")
                tail = chunk[-16:]
        except ConnectionResetError:
            pass
        hog.close()
        assert answers < 500  # the server cut the hog off: the rest of its answers were dropped
    finally:
        service.stop()


# -- F6: malformed framing and hang-ups never flood the log ------------------------------------------------------------
@pytest.mark.parametrize(
    "length",
    ["\u0663".encode(), b"9" * 5000, b"-1", b"1e3", b"0x10"],
    ids=["arabic-indic digit", "5000 digits", "negative", "exponent", "hex"],
)
def test_f6_bad_content_lengths_are_refused_with_400(server: HttpService, length: bytes,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    reply = raw(server.address, b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                + b"\r\n\r\n")  # fmt: skip
    assert reply.startswith(b"HTTP/1.1 400")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["code"] == "bad_request"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a client's mistake"


def test_f6_clients_hanging_up_mid_answer_log_nothing(store: FileGridStore, server: HttpService,
                                                      caplog: pytest.LogCaptureFixture,
                                                      capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    (big,) = seed(store.root, 1, datetime.now(UTC))  # a CONUS grid: its answers outlast a small receive buffer
    for i in range(40):
        conn = socket.socket()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.connect(server.address)
        conn.settimeout(30)
        target = [f"/v1/grids/{big}.nc", f"/v1/grids/{big}.png", f"/v1/grids/{GRID}.nc", "/openapi.json"][i % 4]
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conn.recv(1024 if i % 2 else 1)  # the answer has begun
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # reset mid-answer
    time.sleep(0.5)
    assert raw(server.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy][:3]
    assert "Traceback" not in capfd.readouterr().err  # the stdlib server printed ~10 000 traceback lines


def test_f6_oversized_and_garbled_requests_are_refused(server: HttpService) -> None:
    huge_header = raw(server.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
    assert huge_header.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400"))
    long_target = raw(
        server.address, b"GET /v1/points?lat=1&lon=2&x=" + b"9" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert long_target.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400", b"HTTP/1.1 414"))
    garbled = (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET\r\n\r\n",
        "GET /h\u00e9 HTTP/1.1\r\n\r\n".encode(),
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    )  # a TLS hello, no target, non-ASCII, no colon
    for garbage in garbled:
        began = time.monotonic()
        assert raw(server.address, garbage, timeout=5).startswith(b"HTTP/1.1 400"), (garbage, time.monotonic() - began)
    assert raw(server.address, b"GET / HTTP/9.9\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 505")
    assert raw(server.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )


# -- F9: request smuggling ---------------------------------------------------------------------------------------------
def test_f9_transfer_encoding_beside_content_length_is_refused_and_nothing_is_smuggled(server: HttpService) -> None:
    smuggled = (b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    reply = raw(server.address, smuggled)
    assert reply.startswith(b"HTTP/1.1 400")
    assert reply.count(b"HTTP/1.1 ") == 1  # the tail was not read as a second request
    twice = raw(server.address, b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                b"Content-Length: 7\r\n\r\nGET / x")  # fmt: skip
    assert twice.startswith(b"HTTP/1.1 400")
    assert twice.count(b"HTTP/1.1 ") == 1


def test_f9_a_chunked_body_is_a_body_not_a_second_request(server: HttpService) -> None:
    inner = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    chunked = (b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner))  # fmt: skip
    then = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw(server.address, chunked + then)
    assert reply.startswith(b"HTTP/1.1 403")  # the admin endpoints are off: the POST answered, its body read
    assert reply.count(b"HTTP/1.1 ") == 2  # then the health probe, and nothing for the body's text
    assert b"model slot" not in reply


def test_request_bodies_are_bounded_whatever_their_framing(server: HttpService) -> None:
    over = 64 * 1024 + 1  # one chunk past the limit, and no more: the server has read all that was sent
    reply = raw(server.address, b"POST /v1/admin/models/promote HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"\r\n%x\r\n%s\r\n" % (over, b"a" * over))  # fmt: skip
    assert reply.startswith(b"HTTP/1.1 413")
    declared = raw(
        server.address, b"POST /v1/admin/models/promote HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
    )
    assert declared.startswith(b"HTTP/1.1 413")


# -- F7: leaks -------------------------------------------------------------------------------------------------------
def test_f7_no_banner_and_no_exception_text_in_errors(server: HttpService, monkeypatch: pytest.MonkeyPatch) -> None:
    import serve.api.grids

    def broken(path: Path) -> dict[str, Any]:
        msg = f"a bug, with {path} in its message"
        raise TypeError(msg)  # not a damaged file: a failure nobody foresaw

    monkeypatch.setattr(serve.api.grids, "read_attributes", broken)
    reply = raw(server.address, b"GET /v1/grids/latest?sector=M1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, text = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500")
    assert b"server:" not in head.lower()  # was "Server: ltgcast Python/3.11.7"
    doc = json.loads(text)
    assert doc["code"] == "internal"
    assert doc["reference"].startswith("E")
    assert "HDF5" not in text.decode()
    assert "/" not in doc["error"]


def test_f7_a_corrupt_grid_file_is_skipped_in_listings_and_points(
    store: FileGridStore, server: HttpService, caplog: pytest.LogCaptureFixture
) -> None:
    stored = store.get("G19_M1_20240615T200524Z_lightning-v1")
    assert stored is not None
    stored.path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)  # a broken file where a grid was
    host, port = server.address
    for _ in range(3):
        with urllib.request.urlopen(f"http://{host}:{port}/v1/grids?sector=M1&hours=48", timeout=10) as reply:
            listing = json.loads(reply.read())
    assert [g["grid_id"] for g in listing["grids"]] == ["G19_M1_20240615T200024Z_lightning-v1", GRID]
    assert listing["skipped"] == 1
    lat, lon = _centre(store)
    with urllib.request.urlopen(f"http://{host}:{port}/v1/points?lat={lat}&lon={lon}&hours=48", timeout=10) as reply:
        series = json.loads(reply.read())
    assert (len(series["series"]), series["skipped"]) == (2, 1)
    logged = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(logged) == 1  # once per file, not once per request


def _centre(store: FileGridStore) -> tuple[float, float]:
    from serve.stores.gridfile import read_geometry

    latest = store.latest("M1")
    assert latest is not None
    geometry = read_geometry(latest.path)
    lon, lat = geometry.projection.lonlat(*geometry.scan_angles_of(30, 40))
    return round(float(lat), 4), round(float(lon), 4)


# -- the contract, the docs, CORS --------------------------------------------------------------------------------------
def test_the_contract_and_its_docs_are_served_from_the_service(server: HttpService) -> None:
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/openapi.json", timeout=10) as reply:
        contract = json.loads(reply.read())
    assert contract["openapi"].startswith("3.")
    params = {p["name"]: p["schema"] for p in contract["paths"]["/v1/points"]["get"]["parameters"]}
    assert params["lat"]["minimum"] == -90
    assert params["lat"]["maximum"] == 90
    assert params["hours"]["maximum"] == 48
    assert "bearer" in contract["components"]["securitySchemes"]
    with urllib.request.urlopen(f"http://{host}:{port}/docs", timeout=10) as reply:
        page = reply.read().decode()
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "//cdn" not in page
    with urllib.request.urlopen(f"http://{host}:{port}/docs/assets/swagger-ui-bundle.js", timeout=10) as reply:
        assert reply.status == 200


def test_cors_is_off_by_default_and_read_only_when_on(store: FileGridStore, server: HttpService) -> None:
    origin = {"Origin": "https://viewer.example.org"}
    request = urllib.request.Request(f"http://{server.address[0]}:{server.address[1]}/healthz", headers=origin)
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.headers.get("access-control-allow-origin") is None
    service = serving(store, WebSettings(cors_origins=("https://viewer.example.org",)))
    try:
        base = f"http://{service.address[0]}:{service.address[1]}"
        with urllib.request.urlopen(urllib.request.Request(f"{base}/healthz", headers=origin), timeout=10) as reply:
            assert reply.headers["access-control-allow-origin"] == "https://viewer.example.org"
        preflight = urllib.request.Request(f"{base}/v1/admin/models/promote", method="OPTIONS",
                                           headers={**origin, "Access-Control-Request-Method": "POST"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(preflight, timeout=10)
        refused.value.close()
        assert refused.value.code == 400  # the admin endpoints are never callable cross-origin
    finally:
        service.stop()


def test_upgrade_requests_are_answered_as_http_1_1_and_not_logged(
    server: HttpService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for upgrade in (b"h2c", b"websocket"):
        reply = raw(server.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n"
                                    b"Upgrade: " + upgrade + b"\r\n\r\n")  # fmt: skip
        assert reply.startswith(b"HTTP/1.1 200")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_f7_a_corrupt_newest_grid_gives_way_to_the_one_before(store: FileGridStore, server: HttpService,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    stored = store.get(GRID)
    assert stored is not None
    stored.path.write_bytes(b"not a grid at all")
    host, port = server.address
    for _ in range(3):
        with urllib.request.urlopen(f"http://{host}:{port}/v1/grids/latest?sector=M1", timeout=10) as reply:
            assert json.loads(reply.read())["grid_id"] == "G19_M1_20240615T200524Z_lightning-v1"
    for _ in range(3):
        failed = raw(server.address, f"GET /v1/grids/{GRID}.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())  # fmt: skip
        assert failed.startswith(b"HTTP/1.1 500")
        assert b"not a grid" not in failed
        assert str(stored.path).encode() not in failed
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info]


def test_the_admin_token_is_checked_before_the_body_and_versions_are_strict_integers(store: FileGridStore) -> None:
    off = serving(store)
    on = serving(store, admin_token="t0ken")
    try:
        promote = b"POST /v1/admin/models/promote HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: " \
                  b"application/json\r\n%sContent-Length: %d\r\n\r\n%s"  # fmt: skip
        bad = b'{"version": "x"}'
        assert raw(off.address, promote % (b"", len(bad), bad)).startswith(b"HTTP/1.1 403")
        assert raw(on.address, promote % (b"", len(bad), bad)).startswith(b"HTTP/1.1 401")
        token = b"Authorization: Bearer t0ken\r\n"
        for sloppy in (b'{"version": true}', b'{"version": "3"}', b'{"version": 1.5}', bad):
            assert raw(on.address, promote % (token, len(sloppy), sloppy)).startswith(b"HTTP/1.1 400"), sloppy
    finally:
        off.stop()
        on.stop()


def test_the_georeferenced_routes_are_in_the_contract_with_bounded_parameters(server: HttpService) -> None:
    host, port = server.address
    with urllib.request.urlopen(f"http://{host}:{port}/openapi.json", timeout=10) as reply:
        contract = json.loads(reply.read())
    types = {"/latlon.nc": "application/x-netcdf", "/map.json": "application/json", "/map/ir.png": "image/png",
             "/latlon.tif": "image/tiff; application=geotiff; profile=cloud-optimized",
             "/map/probability.png": "image/png", "/map/value.png": "image/png"}  # fmt: skip
    for suffix, content_type in types.items():
        operation = contract["paths"][f"/v1/grids/{{grid_id}}{suffix}"]["get"]
        params = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert (params["parallax_km"]["minimum"], params["parallax_km"]["maximum"]) == (0, 20)
        assert params["grid_id"]["maxLength"] == 120
        assert content_type in operation["responses"]["200"]["content"]
    contours = {p["name"]: p["schema"] for p in contract["paths"]["/v1/grids/{grid_id}/contours.geojson"]["get"][
        "parameters"]}  # fmt: skip
    assert contours["geometry"]["enum"] == ["polygons", "lines"]
    with urllib.request.urlopen(f"http://{host}:{port}/v1/grids/{GRID}/map.json", timeout=10) as reply:
        doc = json.loads(reply.read())
    with urllib.request.urlopen(f"http://{host}:{port}{doc['layers']['value']}", timeout=10) as reply:
        assert reply.headers["Content-Type"] == "image/png"
    with urllib.request.urlopen(f"http://{host}:{port}/v1/grids/{GRID}/contours.geojson", timeout=10) as reply:
        assert reply.headers["Content-Type"] == "application/geo+json"
        assert json.loads(reply.read())["features"][0]["geometry"]["type"] == "MultiPolygon"
