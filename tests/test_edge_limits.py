"""Hostile requests against a real `ghapp serve` process: bounded answers, flat memory.

Each attack is sent over a raw socket (so the test controls every byte: huge bodies streamed
from a generator, chunked bodies, slow bodies, huge headers), and the process's VmRSS is read
from /proc before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import stat
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ghapp.cli.demo import demo_workflows
from ghapp.simulator.stack import ProcessServer, Stack
from ghapp.web.operator.sessions import SESSION_COOKIE

MIB = 1024 * 1024
# "Within a few MiB": what the attacks below may leave behind in the server's memory.
RSS_SLACK_KIB = 8 * 1024
CHUNK = b"a" * (64 * 1024)


@dataclass
class Served:
    """The stack (simulator, receiver) with ghapp running as a real `ghapp serve` process."""

    stack: Stack
    server: ProcessServer
    db: Path
    report: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def rss_kib(self, field: str = "VmRSS") -> int:
        """The process's resident memory (VmRSS), or its peak so far (VmHWM), KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1))

    def db_bytes(self) -> int:
        """The SQLite database with its write-ahead log."""
        return sum(
            path.stat().st_size
            for path in (self.db, self.db.with_name(self.db.name + "-wal"))
            if path.exists()
        )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    db = tmp_path / "ghapp.db"
    stack = await Stack.start(f"sqlite:///{db}")
    for repository, workflow in demo_workflows().items():
        stack.sim.add_repository(repository, default_branch="main").add_workflow(workflow)
    await stack.stop_ghapp()  # ghapp runs as a real process instead
    server = ProcessServer(stack.settings, str(tmp_path / "serve.log"))
    # A short body deadline (30 s by default), so the 408s come quickly.
    server.env["GHAPP_BODY_TIMEOUT"] = "1"
    try:
        stack.base_url = await server.start()
        stack.sim.webhook_url = stack.base_url + stack.settings.webhook_path
        served = Served(stack, server, db)
        yield served
        if served.report:
            print("\n" + "\n".join(served.report))
    finally:
        await server.stop()
        await stack.close()


@dataclass
class Answer:
    status: int | None  # None: the connection was closed without an answer
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to send
    seconds: float


def endless(total: int) -> Iterator[bytes]:
    """`total` bytes in 64 KiB chunks, never held in memory at once."""
    while total > 0:
        piece = CHUNK if total >= len(CHUNK) else CHUNK[:total]
        total -= len(piece)
        yield piece


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The same pieces in HTTP/1.1 chunked framing."""
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


async def raw(
    served: Served,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Iterable[bytes] = (),
    *,
    timeout: float = 20.0,
    pause: float = 0.0,
) -> Answer:
    """One request over a fresh connection; the body goes out until the server answers."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.server.port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    sent = 0

    async def send() -> None:
        nonlocal sent
        try:
            writer.write(head.encode("latin-1"))
            await writer.drain()
            for piece in body:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
                # drain() does not yield while the socket takes everything: let the reader see
                # an answer as soon as it comes.
                await asyncio.sleep(pause)
        except (ConnectionError, OSError):
            pass

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(timeout):
            status_line = await reader.readline()
            if not status_line:
                return Answer(None, {}, b"", sent, loop.time() - started)
            status = int(status_line.split()[1])
            answer_headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                answer_headers[name.strip().lower()] = value.strip()
            length = int(answer_headers.get("content-length", "0"))
            content = await reader.readexactly(length) if length else b""
            return Answer(status, answer_headers, content, sent, loop.time() - started)
    except (ConnectionError, asyncio.IncompleteReadError):
        return Answer(None, {}, b"", sent, loop.time() - started)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


def bearer(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.stack.settings.orchestrator_token}"}


def signed(served: Served, body: bytes) -> str:
    secret = served.stack.settings.webhook_secret[0].encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def sign_in(served: Served, *, address: str) -> str:
    """A session cookie, signed in from `address` (X-Forwarded-For: uvicorn trusts loopback)."""
    token = served.stack.settings.orchestrator_token or ""
    form = f"token={token}".encode()
    answer = await raw(
        served,
        "POST",
        "/login",
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(form)),
            "X-Forwarded-For": address,
        },
        iter([form]),
    )
    assert answer.status == 303, answer
    cookie = answer.headers["set-cookie"]
    return cookie.split(";", 1)[0].split("=", 1)[1]


async def csrf_of(served: Served, cookie: str) -> str:
    answer = await raw(served, "GET", "/", {"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert answer.status == 200
    match = re.search(rb'name="csrf" value="([^"]+)"', answer.body)
    assert match is not None
    return match.group(1).decode()


async def warm_up(served: Served) -> None:
    """One of each kind of request, so lazily loaded code is in memory before the baseline."""
    await raw(served, "GET", "/", {})
    await served.stack.deploy("acme/shop")
    await raw(served, "GET", "/", bearer(served))
    form = b"csrf=x"
    for _ in range(2):
        await raw(
            served,
            "POST",
            "/ui/deployments/dep_x/resend",
            {**bearer(served), "Content-Length": str(len(form))},
            iter([form]),
        )
    await asyncio.sleep(1.0)


async def test_big_bodies_cost_no_memory(served: Served) -> None:
    await warm_up(served)
    before_db = served.db_bytes()
    before, peak_before = served.rss_kib(), served.rss_kib("VmHWM")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json"}
    attacks: list[tuple[str, str, str, dict[str, str], Iterator[bytes], int]] = [
        # (what, method, path, headers, body, expected status)
        (
            "POST /login 300 MiB, Content-Length",
            "POST",
            "/login",
            {**form, "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            413,
        ),
        (
            "POST /login 300 MiB, chunked",
            "POST",
            "/login",
            {**form, "Transfer-Encoding": "chunked"},
            chunked(endless(300 * MIB)),
            413,
        ),
        (
            "POST /ui/.../resend 300 MiB, no session",
            "POST",
            "/ui/deployments/dep_x/resend",
            {**form, "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            401,
        ),
        (
            "POST /ui/.../redeliver 300 MiB chunked, no session",
            "POST",
            "/ui/deliveries/x/redeliver",
            {**form, "Transfer-Encoding": "chunked"},
            chunked(endless(300 * MIB)),
            401,
        ),
        (
            "POST /logout 300 MiB, no session",
            "POST",
            "/logout",
            {**form, "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            401,
        ),
        (
            "POST /ui/.../resend 300 MiB chunked, bearer token",
            "POST",
            "/ui/deployments/dep_x/resend",
            {**form, **bearer(served), "Transfer-Encoding": "chunked"},
            chunked(endless(300 * MIB)),
            413,
        ),
        (
            "POST /api/v1/deployments 300 MiB, no token",
            "POST",
            "/api/v1/deployments",
            {**json_type, "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            401,
        ),
        (
            "POST /api/v1/deployments 300 MiB chunked, token",
            "POST",
            "/api/v1/deployments",
            {**json_type, **bearer(served), "Transfer-Encoding": "chunked"},
            chunked(endless(300 * MIB)),
            413,
        ),
        (
            "POST /api/v1/deployments 300 MiB, token, Content-Length",
            "POST",
            "/api/v1/deployments",
            {**json_type, **bearer(served), "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            413,
        ),
        (
            "POST /api/v1/repos/acme/shop/deploy-key 300 MiB, no token",
            "POST",
            "/api/v1/repos/acme/shop/deploy-key",
            {"Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            401,
        ),
        (
            "POST webhook 300 MiB, Content-Length",
            "POST",
            served.stack.settings.webhook_path,
            {**json_type, "Content-Length": str(300 * MIB)},
            endless(300 * MIB),
            413,
        ),
    ]
    cookie = await sign_in(served, address="10.0.0.1")
    attacks.append(
        (
            "POST /ui/.../resend 300 MiB chunked, session",
            "POST",
            "/ui/deployments/dep_x/resend",
            {**form, "Cookie": f"{SESSION_COOKIE}={cookie}", "Transfer-Encoding": "chunked"},
            chunked(endless(300 * MIB)),
            413,
        )
    )
    for what, method, path, headers, body, expected in attacks:
        answer = await raw(served, method, path, headers, body)
        assert answer.status == expected, (what, answer)
        # Answered before the body was read (the client stops sending when it sees that).
        assert answer.sent < 32 * MIB, (what, answer.sent)
        served.report.append(
            f"{what}: {answer.status} after {answer.sent // 1024} KiB sent, "
            f"{answer.seconds:.2f} s, VmRSS {served.rss_kib() // 1024} MiB"
        )
    await asyncio.sleep(1.0)
    after, peak = served.rss_kib(), served.rss_kib("VmHWM")
    served.report.append(
        f"VmRSS before {before} KiB, after {after} KiB ({(after - before) / 1024:+.1f} MiB), "
        f"peak (VmHWM) {peak_before} -> {peak} KiB; "
        f"database {before_db} -> {served.db_bytes()} bytes"
    )
    assert after - before < RSS_SLACK_KIB, served.report
    # Not even for a moment: the peak did not grow either.
    assert peak - peak_before < RSS_SLACK_KIB, served.report


async def test_huge_headers_and_forged_floods_are_bounded(served: Served) -> None:
    await warm_up(served)
    # Real deliveries first: a deployment through the process, its webhooks signed by GitHub.
    status, deployment = await served.stack.deploy("acme/shop")
    assert status == 202
    await served.stack.receiver.wait_for(deployment["id"], timeout=30)
    status, listing = await served.stack.get("/api/v1/deliveries?signature=ok&limit=1000")
    real = {d["delivery_id"] for d in listing["deliveries"]}
    assert real
    before_db = served.db_bytes()
    before, peak_before = served.rss_kib(), served.rss_kib("VmHWM")
    hook = served.stack.settings.webhook_path
    forged = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    # Ten webhooks with a 20 MiB header and a bad signature: refused at the head (431).
    for _ in range(10):
        answer = await raw(
            served,
            "POST",
            hook,
            {**forged, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Filler": "f" * (20 * MIB)},
            iter([b"{}"]),
        )
        assert answer.status in (431, None), answer
    served.report.append(
        f"10 x 20 MiB header webhook: {answer.status}, VmRSS {served.rss_kib()} KiB"
    )
    # Headers just under the head's bound reach ghapp: the delivery log keeps 8 KiB of them.
    body = b'{"zen": "forged"}'
    for _ in range(20):
        answer = await raw(
            served,
            "POST",
            hook,
            {
                **forged,
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Filler": "f" * 60_000,
                "Content-Length": str(len(body)),
            },
            iter([body]),
        )
        assert answer.status == 401, answer
    # 1,200 tiny forged deliveries.
    for n in range(1200):
        answer = await raw(
            served,
            "POST",
            hook,
            {**forged, "X-GitHub-Delivery": f"forged-{n}", "Content-Length": str(len(body))},
            iter([body]),
        )
        assert answer.status == 401
    await asyncio.sleep(2.5)  # the log writes in batches, twice a second
    status, listing = await served.stack.get("/api/v1/deliveries?signature=ok&limit=1000")
    assert real <= {d["delivery_id"] for d in listing["deliveries"]}
    status, listing = await served.stack.get("/api/v1/deliveries?signature=bad&limit=1000")
    stored = listing["deliveries"]
    # Their quota (100), and at most one batch written since it was last trimmed.
    assert 0 < len(stored) <= 200
    big = [d for d in stored if d["delivery_id"] and not d["delivery_id"].startswith("forged-")]
    if big:
        status, detail = await served.stack.get(f"/api/v1/deliveries/{big[0]['id']}")
        assert detail["truncated"] and len(json.dumps(detail["headers"])) < 9 * 1024
    after, peak = served.rss_kib(), served.rss_kib("VmHWM")
    served.report.append(
        f"20 x 60 KiB headers + 1,200 forged posts: VmRSS before {before} KiB, after {after} KiB "
        f"({(after - before) / 1024:+.1f} MiB), peak {peak_before} -> {peak} KiB; database "
        f"{before_db} -> {served.db_bytes()} bytes; signed deliveries all kept ({len(real)}), "
        f"{len(stored)} forged rows kept"
    )
    assert after - before < RSS_SLACK_KIB, served.report
    assert peak - peak_before < RSS_SLACK_KIB, served.report
    assert served.db_bytes() - before_db < 8 * MIB


async def test_late_bodies_get_408(served: Served) -> None:
    hook = served.stack.settings.webhook_path
    for what, path, headers in (
        ("API", "/api/v1/deployments", {**bearer(served), "Content-Type": "application/json"}),
        ("sign-in", "/login", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("webhook", hook, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "slow"}),
    ):
        # 100 bytes promised, 10 sent, then nothing: the deadline (1 s here, 30 s by default).
        answer = await raw(
            served, "POST", path, {**headers, "Content-Length": "100"}, iter([b"x" * 10])
        )
        assert answer.status == 408, (what, answer)
        assert 0.9 < answer.seconds < 5, (what, answer.seconds)
        served.report.append(f"{what} body stalled: {answer.status} after {answer.seconds:.1f} s")
    # A body trickling in (one byte every 0.2 s) is cut at the deadline too.
    answer = await raw(
        served,
        "POST",
        "/api/v1/deployments",
        {**bearer(served), "Transfer-Encoding": "chunked"},
        chunked(iter([b"{"] * 100)),
        pause=0.2,
    )
    assert answer.status == 408 and answer.seconds < 5, answer


async def test_sign_in_is_throttled_per_address(served: Served) -> None:
    token = served.stack.settings.orchestrator_token or ""

    async def attempt(value: str, address: str) -> Answer:
        form = f"token={value}".encode()
        return await raw(
            served,
            "POST",
            "/login",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(form)),
                "X-Forwarded-For": address,
            },
            iter([form]),
        )

    for _ in range(10):
        assert (await attempt("wrong", "10.1.1.1")).status == 401
    # The 11th attempt in the minute: 429, even with the right token.
    for value in ("wrong", token):
        answer = await attempt(value, "10.1.1.1")
        assert answer.status == 429, answer
        assert 1 <= int(answer.headers["retry-after"]) <= 60
    # 500 more, quickly: all refused the same way.
    results = [(await attempt(f"guess{n}", "10.1.1.1")).status for n in range(500)]
    assert set(results) == {429}
    # Another address is not affected.
    assert (await attempt(token, "10.2.2.2")).status == 303
    served.report.append("sign-in: 10 x 401, then 502 x 429 (right token too); other address 303")


async def test_sign_out_is_a_post_that_ends_the_session_on_the_server(served: Served) -> None:
    cookie = await sign_in(served, address="10.3.3.3")
    csrf = await csrf_of(served, cookie)
    with_cookie = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    assert (await raw(served, "GET", "/logout", with_cookie)).status == 405
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = b"csrf=wrong"
    answer = await raw(
        served,
        "POST",
        "/logout",
        {**with_cookie, **form_type, "Content-Length": str(len(wrong))},
        iter([wrong]),
    )
    assert answer.status == 303 and answer.headers["location"] == "/?notice=csrf"
    assert (await raw(served, "GET", "/", with_cookie)).status == 200
    # The session opens a deployment's event stream (404: no such deployment, but allowed).
    events = "/api/v1/deployments/dep_x/events"
    assert (await raw(served, "GET", events, with_cookie)).status == 404
    form = f"csrf={csrf}".encode()
    answer = await raw(
        served,
        "POST",
        "/logout",
        {**with_cookie, **form_type, "Content-Length": str(len(form))},
        iter([form]),
    )
    assert answer.status == 303
    # The old cookie, replayed, no longer works: on this server or any replica.
    page = await raw(served, "GET", "/", with_cookie)
    assert page.status == 200 and b'action="/login"' in page.body
    action = await raw(
        served,
        "POST",
        "/ui/deployments/dep_x/resend",
        {**with_cookie, **form_type, "Content-Length": str(len(form))},
        iter([form]),
    )
    assert action.status == 401
    assert (await raw(served, "GET", events, with_cookie)).status == 401


async def test_a_short_webhook_secret_is_served_with_a_warning(tmp_path: Path) -> None:
    stack = await Stack.start(f"sqlite:///{tmp_path / 'ghapp.db'}")
    await stack.stop_ghapp()
    # Mid-rotation: GitHub's long secret and an old short one.
    settings = stack.settings.model_copy(
        update={"webhook_secret": [*stack.settings.webhook_secret, "old-short"]}
    )
    log = tmp_path / "serve.log"
    server = ProcessServer(settings, str(log))
    try:
        await server.start()
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        warnings = [line["msg"] for line in lines if line.get("level") == "warning"]
        wanted = "WEBHOOK_SECRET: 1 of its entries are shorter than 16"
        assert any(msg.startswith(wanted) for msg in warnings), warnings
        assert "old-short" not in log.read_text()
        # The database ghapp created, its WAL files and its followed-runs ring (`-runs`) are
        # the owner's only.
        files = sorted(tmp_path.glob("ghapp.db*"))  # noqa: ASYNC240 - four files
        assert [path.name for path in files] == [
            "ghapp.db", "ghapp.db-runs", "ghapp.db-shm", "ghapp.db-wal"
        ]
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files), files
    finally:
        await server.stop()
        await stack.close()
