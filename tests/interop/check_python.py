#!/usr/bin/env python3
"""Interop check of tickwire's WebSocket service with Python `websockets` (asyncio API).

usage: python3 tests/interop/check_python.py BASE_URL
       python3 tests/interop/check_python.py --shutdown BASE_URL
       e.g.  python3 tests/interop/check_python.py http://127.0.0.1:8080/

With --shutdown: connects a subscriber with deflate and one without, prints "ready",
and asserts that each gets close 1001 when the server is stopped (run.sh sends SIGTERM).

Runs the same checks twice against one running `tickwire serve` (see run.sh for the
config it needs: allow_client_publish = true, max_message_size = 65536): once with the
library's default compression (it offers permessage-deflate) and once with
compression=None. Each pass asserts, on its own connections and topics:

- the upgrade's Sec-WebSocket-Extensions (permessage-deflate with
  server_no_context_takeover, without client_no_context_takeover, which the library
  does not offer: it compresses with context, which the server must follow), and the
  extension the library activated;
- `welcome` first, with client_id and heartbeat_interval;
- subscribe with an id -> ack with that id; then 1,000 client publishes from a second
  connection (acked in order) arrive at the subscriber in order, seq 1..1000, data equal
  to what was sent; with deflate, every frame each way was compressed (counted on the
  library's extension object) and the server's metrics show wire bytes < uncompressed
  bytes for those broadcasts; without, wire == uncompressed and nothing compressed;
- unsubscribe of a topic not subscribed -> error not_subscribed (id echoed);
- a conflated subscription: ack, messages arrive with increasing seq, the newest last;
- a message in three fragments is answered, a client ping gets its pong, an empty
  message gets error invalid_json and the session stays, a message of exactly
  max_message_size is taken;
- with deflate, a connection offering server_max_window_bits=10 gets it answered, and
  a message with repeats 3,600 bytes apart arrives compressed and inflates with a 10-bit
  window (a server compressing with a larger one would make zlib fail);
- a text frame that is not UTF-8 (the library sends bytes as text unchecked) gets 1007;
- close 1000 from the client is echoed 1000; max_message_size + 1 bytes of text, and
  100 KB, get 1009 (with deflate: small compressed frames that inflate past the limit);
- recovery and snapshots (the server's default history of 100 per topic): the welcome
  and every subscribe ack carry the epoch; a subscriber that saw seq 1..10 and left
  comes back with recover {epoch, seq: 10} and gets exactly 11..30, then the live 31; a
  wrong epoch and a seq the history no longer holds answer recovered false and replay
  nothing; a pattern with positions replays each listed topic and names the one it
  could not recover in "unrecovered"; a snapshot gives the latest of each matching topic
  flagged "snapshot"; a client that reconnects 6 times with recover while a publisher
  keeps publishing sees every seq once, in order.

Exit 0 when every check passed, 1 otherwise (the first failed assertion is printed).
"""

import asyncio
import inspect
import json
import os
import random
import socket
import sys
import time
import urllib.parse
import urllib.request
import zlib

import websockets
from websockets.asyncio.client import ClientConnection as ClientConnectionSend
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

STEP_TIMEOUT = 30.0  # safety net per step, never a synchronisation
MESSAGES = 1000
# The conflated flood: CONFLATED_SIZE-byte messages, enough of them to be twice what the
# kernel may buffer on the server's side of the socket (tcp_wmem's maximum), so that frames
# have to wait in the session and be conflated there while the subscriber does not read.
CONFLATED_SIZE = 32 * 1024


def kernel_send_buffer_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return None


_WMEM = kernel_send_buffer_max()
CONFLATED = max(100, 2 * (_WMEM or 4 * 1024 * 1024) // CONFLATED_SIZE + 50)
OVERSIZE = 100 * 1024
MAX_MESSAGE_SIZE = int(os.environ.get("INTEROP_MAX_MESSAGE_SIZE", "65536"))  # the config's
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print("check_python: " + msg, flush=True)


class CheckFailed(Exception):
    pass


def expect(cond, what, *details):
    if not cond:
        raise CheckFailed(what + ("" if not details else ": " + " ".join(repr(d) for d in details)))


def metrics(base):
    with OPENER.open(urllib.parse.urljoin(base, "api/metrics"), timeout=10) as resp:
        return json.loads(resp.read())


def poll(base, cond, what, timeout=STEP_TIMEOUT):
    """Polls /api/metrics until cond(metrics) holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(base)
        if cond(m):
            return m
        if time.monotonic() > deadline:
            raise CheckFailed("timed out waiting for " + what + "; metrics: " + json.dumps(m["websocket"]))
        time.sleep(0.02)


class Counting:
    """Wraps the library's permessage-deflate extension object to count the data frames
    that went out compressed and came in compressed (RSV1 set)."""

    def __init__(self, ws):
        self.sent_compressed = 0
        self.received_compressed = 0
        self.received_plain = 0
        self.received_wire = 0  # payload bytes of the compressed frames received
        self.received_inflated = 0  # the same, inflated
        self.ext = None
        for ext in ws.protocol.extensions:
            if ext.name == "permessage-deflate":
                self.ext = ext
        if self.ext is None:
            return
        encode, decode = self.ext.encode, self.ext.decode

        def counting_encode(frame):
            out = encode(frame)
            if out.rsv1:
                self.sent_compressed += 1
            return out

        def counting_decode(frame, **kw):
            compressed = frame.opcode.name in ("TEXT", "BINARY") and frame.rsv1
            if frame.opcode.name in ("TEXT", "BINARY"):
                if compressed:
                    self.received_compressed += 1
                    self.received_wire += len(frame.data)
                else:
                    self.received_plain += 1
            out = decode(frame, **kw)
            if compressed:
                self.received_inflated += len(out.data)
            return out

        self.ext.encode = counting_encode
        self.ext.decode = counting_decode


class Pass:
    def __init__(self, base, deflate):
        self.base = base
        self.deflate = deflate
        self.name = "python/" + ("deflate" if deflate else "plain")
        parsed = urllib.parse.urlparse(base)
        self.ws_url = "ws://%s/ws" % parsed.netloc
        tag = "%s.%d" % ("deflate" if deflate else "plain", os.getpid())
        self.topic = "interop.python.%s.seq" % tag
        self.conflated_topic = "interop.python.%s.conflated" % tag
        self.expected_heartbeat = os.environ.get("INTEROP_HEARTBEAT")
        self.kwargs = {"compression": "deflate" if deflate else None, "open_timeout": 10, "close_timeout": 10}
        if "proxy" in inspect.signature(connect.__init__).parameters:
            self.kwargs["proxy"] = None  # loopback only, whatever the environment says

    def step(self, what):
        log("%s: %s" % (self.name, what))

    async def open(self, role, **extra):
        kwargs = dict(self.kwargs)
        kwargs.update(extra)
        ws = await asyncio.wait_for(connect(self.ws_url, **kwargs), STEP_TIMEOUT)
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        names = [ext.name for ext in ws.protocol.extensions]
        if self.deflate:
            expect(header is not None, role + ": no Sec-WebSocket-Extensions in the 101 answer to a deflate offer")
            params = [p.strip().lower() for p in header.split(";")]
            expect(params[0] == "permessage-deflate", role + ": answer is not permessage-deflate", header)
            expect("server_no_context_takeover" in params, role + ": no server_no_context_takeover", header)
            # Not offered by the library's default, so not answered: the client keeps its
            # context, and its session inflates with an inflater of its own.
            expect("client_no_context_takeover" not in params, role + ": client_no_context_takeover answered unasked", header)
            expect(names == ["permessage-deflate"], role + ": the library did not activate permessage-deflate", names)
            ext = ws.protocol.extensions[0]
            expect(ext.remote_no_context_takeover and not ext.local_no_context_takeover,
                   role + ": the library's extension: server without context, client with", repr(ext))
        else:
            expect(header is None, role + ": Sec-WebSocket-Extensions answered without an offer", header)
            expect(names == [], role + ": extensions active without an offer", names)
        counting = Counting(ws)
        welcome = await self.recv_json(ws, role + " welcome")
        expect(welcome.get("type") == "welcome", role + ": first frame is not welcome", welcome)
        expect(isinstance(welcome.get("client_id"), str) and welcome["client_id"], role + ": welcome without client_id", welcome)
        hb = welcome.get("heartbeat_interval")
        expect(isinstance(hb, (int, float)) and not isinstance(hb, bool) and hb > 0,
               role + ": welcome without a positive heartbeat_interval", welcome)
        if self.expected_heartbeat is not None:
            expect(float(hb) == float(self.expected_heartbeat), role + ": heartbeat_interval is not the config's", hb)
        return ws, counting, welcome

    @staticmethod
    async def recv_json(ws, what):
        raw = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        expect(isinstance(raw, str), what + ": a binary frame", raw[:100])
        return json.loads(raw)

    @staticmethod
    def zlib_ratio(msg):
        """What zlib's level 1 makes of a message like this one (for comparison only)."""
        text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        return (len(c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)) - 4) / len(text)

    def payload(self, n, pad):
        return {
            "n": n,
            "check": self.name,
            "text": "caf\u00e9 \u20ac \U0001F600 \"quoted\" back\\slash \n\t end",
            "numbers": [0, -1, 2**53 + 1, 2**63 - 1, 0.1, -2.5e-7, 1e300],
            "flags": [True, False, None],
            "nested": {"a": {"b": [1, {"c": "d"}]}, "empty": {}, "list": []},
            "pad": pad,
        }

    async def publish_all(self, pub, topic, datas, id_prefix):
        """Sends every publish, then reads the acks, which come in order."""
        for i, data in enumerate(datas):
            await pub.send(json.dumps({"type": "publish", "topic": topic, "data": data, "id": "%s-%d" % (id_prefix, i)}))
        for i in range(len(datas)):
            ack = await self.recv_json(pub, "publish ack")
            expect(ack == {"type": "ack", "id": "%s-%d" % (id_prefix, i)}, "publish %d: not its ack" % i, ack)

    async def run(self):
        t0 = time.monotonic()
        m0 = metrics(self.base)
        ws0 = m0["websocket"]

        self.step("connect subscriber and publisher")
        sub, sub_count, _ = await self.open("subscriber")
        pub, pub_count, _ = await self.open("publisher")
        if self.deflate:
            poll(self.base, lambda m: m["websocket"]["compressed_sessions"] >= 2, "compressed_sessions >= 2")

        self.step("subscribe with an id")
        await sub.send(json.dumps({"type": "subscribe", "topic": self.topic, "id": "sub-1"}))
        ack = await self.recv_json(sub, "subscribe ack")
        expect(ack.get("type") == "ack" and ack.get("id") == "sub-1", "subscribe: not its ack", ack)

        self.step("%d publishes of ~2 KB from the second connection, in order at the subscriber" % MESSAGES)
        rng = random.Random(7)
        datas = [self.payload(i + 1, "".join(rng.choice("abcdefghij") for _ in range(2000))) for i in range(MESSAGES)]
        t_pub = time.monotonic()

        async def receive():
            for i in range(MESSAGES):
                msg = await self.recv_json(sub, "message %d" % (i + 1))
                expect(msg.get("type") == "message", "expected message %d" % (i + 1), msg)
                expect(msg.get("topic") == self.topic, "message %d: topic" % (i + 1), msg.get("topic"))
                expect(msg.get("seq") == i + 1, "message %d: seq" % (i + 1), msg.get("seq"))
                expect(isinstance(msg.get("timestamp"), str), "message %d: no timestamp" % (i + 1), msg)
                expect(msg.get("data") == datas[i], "message %d: data did not round-trip" % (i + 1),
                       msg.get("data"), datas[i])
                self.last_message = msg

        await asyncio.gather(self.publish_all(pub, self.topic, datas, "p"), receive())
        elapsed = time.monotonic() - t_pub
        m1 = metrics(self.base)
        ws1 = m1["websocket"]
        wire = ws1["wire_bytes_sent"] - ws0["wire_bytes_sent"]
        plain = ws1["uncompressed_bytes_sent"] - ws0["uncompressed_bytes_sent"]
        log("%s: %d messages in %.2f s; server broadcast bytes: wire %d, uncompressed %d (%.1f%%)"
            % (self.name, MESSAGES, elapsed, wire, plain, 100.0 * wire / max(plain, 1)))
        if self.deflate:
            log("%s: library frames: publisher sent %d compressed; subscriber got %d compressed (%d bytes, "
                "%d inflated: %.1f%%; Python's zlib at level 1 makes %.1f%% of the same) and %d uncompressed"
                % (self.name, pub_count.sent_compressed, sub_count.received_compressed, sub_count.received_wire,
                   sub_count.received_inflated, 100.0 * sub_count.received_wire / max(sub_count.received_inflated, 1),
                   100.0 * self.zlib_ratio(self.last_message), sub_count.received_plain))
        expect(plain > MESSAGES * 2000, "uncompressed_bytes_sent grew by less than the messages", plain)
        if self.deflate:
            expect(wire < plain, "wire_bytes_sent is not below uncompressed_bytes_sent with deflate", wire, plain)
            expect(pub_count.sent_compressed >= MESSAGES, "the publisher did not compress its publishes",
                   pub_count.sent_compressed)
            expect(sub_count.received_compressed >= MESSAGES,
                   "the subscriber did not receive the 2 KB messages compressed (RSV1)", sub_count.received_compressed)
        else:
            expect(wire == plain, "wire bytes differ from uncompressed bytes without deflate", wire, plain)
            expect(sub_count.ext is None and pub_count.ext is None, "a deflate extension without an offer")

        self.step("unsubscribe of a topic not subscribed")
        await sub.send(json.dumps({"type": "unsubscribe", "topic": self.topic + ".never", "id": "u-1"}))
        err = await self.recv_json(sub, "unsubscribe error")
        expect(err.get("type") == "error" and err.get("code") == "not_subscribed" and err.get("id") == "u-1",
               "unsubscribe of a topic not subscribed", err)
        await sub.send(json.dumps({"type": "unsubscribe", "topic": self.topic, "id": "u-2"}))
        ack = await self.recv_json(sub, "unsubscribe ack")
        expect(ack.get("type") == "ack" and ack.get("id") == "u-2", "unsubscribe: not its ack", ack)

        await self.conflated(pub)
        await self.recovery(pub)
        await self.frames_and_limits(pub)
        if self.deflate:
            await self.small_window(pub)

        self.step("close 1000 from the client, echoed")
        for role, ws in (("subscriber", sub), ("publisher", pub)):
            await asyncio.wait_for(ws.close(1000, "done"), STEP_TIMEOUT)
            expect(ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1000, role + ": close sent")
            rcvd = ws.protocol.close_rcvd
            expect(rcvd is not None, role + ": no close frame from the server")
            expect(rcvd.code == 1000, role + ": the server's close is not 1000", rcvd.code, rcvd.reason)
            expect(ws.close_code == 1000, role + ": close_code", ws.close_code)
            expect(ws.protocol.close_rcvd_then_sent is False, role + ": the server closed first")

        await self.invalid_utf8()
        await self.oversize()
        m2 = poll(self.base, lambda m: m["websocket"]["oversize_messages"] >= ws0["oversize_messages"] + 2,
                  "oversize_messages to count the 1009")
        log("%s: passed in %.1f s (oversize_messages +%d)"
            % (self.name, time.monotonic() - t0, m2["websocket"]["oversize_messages"] - ws0["oversize_messages"]))

    async def watched(self, pub, watcher, topic, count, start):
        """Publishes `count` messages on `topic` and reads them at `watcher` (subscribed to
        it): once it has them, the server's history has them. Returns their seqs."""
        seqs = []

        async def read():
            while len(seqs) < count:
                msg = await self.recv_json(watcher, "watched message")
                expect(msg.get("type") == "message" and msg.get("topic") == topic, "watcher: not a message of " + topic, msg)
                seqs.append(msg["seq"])

        await asyncio.gather(self.publish_all(pub, topic, [{"n": start + i} for i in range(count)], "r"), read())
        expect(seqs == list(range(seqs[0], seqs[0] + count)), "watcher: seqs not consecutive", seqs)
        return seqs

    async def expect_messages(self, ws, topic, seqs, what, snapshot=False):
        for seq in seqs:
            msg = await self.recv_json(ws, what)
            expect(msg.get("type") == "message" and msg.get("topic") == topic and msg.get("seq") == seq,
                   "%s: expected %s seq %d" % (what, topic, seq), msg)
            expect(bool(msg.get("snapshot")) == snapshot, what + ": snapshot flag", msg)

    async def subscribe(self, ws, frame, what):
        await ws.send(json.dumps(dict(frame, type="subscribe")))
        ack = await self.recv_json(ws, what + " ack")
        expect(ack.get("type") == "ack", what + ": not an ack", ack)
        return ack

    async def recovery(self, pub):
        topic = self.topic + ".recover"
        self.step("recovery after a reconnect: missed messages exactly, then live")
        watcher, _, welcome = await self.open("watcher")
        epoch = welcome.get("epoch")
        expect(isinstance(epoch, str) and epoch, "welcome without an epoch", welcome)
        ack = await self.subscribe(watcher, {"topic": topic, "id": "w"}, "watcher subscribe")
        expect(ack == {"type": "ack", "id": "w", "epoch": epoch, "seq": 0}, "exact subscribe ack: epoch and seq 0", ack)
        first, _, _ = await self.open("leaving subscriber")
        await self.subscribe(first, {"topic": topic}, "leaving subscriber")
        await self.watched(pub, watcher, topic, 10, 1)
        await self.expect_messages(first, topic, range(1, 11), "leaving subscriber")
        await first.close(1000)
        await self.watched(pub, watcher, topic, 20, 11)
        back, _, welcome = await self.open("returning subscriber")
        expect(welcome.get("epoch") == epoch, "the epoch changed without a restart", welcome)
        ack = await self.subscribe(back, {"topic": topic, "id": "b", "recover": {"epoch": epoch, "seq": 10}}, "recover")
        expect(ack == {"type": "ack", "id": "b", "epoch": epoch, "seq": 30, "recovered": True}, "recover ack", ack)
        await self.expect_messages(back, topic, range(11, 31), "replay")
        await self.watched(pub, watcher, topic, 1, 31)
        await self.expect_messages(back, topic, [31], "live after the replay")

        self.step("recovery refused: another epoch, a seq past the history (100 kept)")
        other, _, _ = await self.open("wrong epoch")
        ack = await self.subscribe(other, {"topic": topic, "recover": {"epoch": epoch + "x", "seq": 30}}, "wrong epoch")
        expect(ack.get("recovered") is False and ack.get("seq") == 31, "wrong epoch: recovered", ack)
        await self.watched(pub, watcher, topic, 1, 32)
        await self.expect_messages(other, topic, [32], "wrong epoch: live, nothing replayed")
        await other.close(1000)
        await self.watched(pub, watcher, topic, 100, 33)  # up to 132: 33..132 kept
        far, _, _ = await self.open("too far back")
        ack = await self.subscribe(far, {"topic": topic, "recover": {"epoch": epoch, "seq": 31}}, "too far back")
        expect(ack.get("recovered") is False, "recovery from 31 with 33..132 kept", ack)
        ack = await self.subscribe(far, {"topic": topic, "id": "again", "recover": {"epoch": epoch, "seq": 32}}, "just in")
        expect(ack.get("recovered") is True and ack.get("seq") == 132, "recovery from 32 with 33..132 kept", ack)
        await self.expect_messages(far, topic, range(33, 133), "replay of the whole history")
        await far.close(1000)

        self.step("a pattern with positions, and a snapshot")
        a, b = self.topic + ".p.a", self.topic + ".p.b"
        await self.subscribe(watcher, {"topic": self.topic + ".p.*"}, "watcher pattern")
        await self.watched(pub, watcher, a, 3, 1)
        await self.watched(pub, watcher, b, 2, 1)
        pat, _, _ = await self.open("pattern")
        ack = await self.subscribe(pat, {"topic": self.topic + ".p.*", "id": "p",
                                         "recover": {"epoch": epoch, "positions": {a: 1, b: 5}}}, "pattern recover")
        expect(ack == {"type": "ack", "id": "p", "epoch": epoch, "recovered": False, "unrecovered": [b]},
               "pattern recover ack (b at 5 is ahead of the server's 2)", ack)
        await self.expect_messages(pat, a, [2, 3], "pattern replay of a")
        await pat.close(1000)
        snap, _, _ = await self.open("snapshot")
        ack = await self.subscribe(snap, {"topic": self.topic + ".p.*", "snapshot": True}, "snapshot")
        await self.expect_messages(snap, a, [3], "snapshot of a", snapshot=True)
        await self.expect_messages(snap, b, [2], "snapshot of b", snapshot=True)
        await snap.close(1000)

        self.step("reconnects with recover while a publisher keeps publishing")
        live_topic = self.topic + ".live"
        total = 600
        ack = await self.subscribe(watcher, {"topic": live_topic}, "watcher live")
        progress = {"last": 0}

        async def publisher():
            # Never more than 60 ahead of the reader: the history keeps 100 per topic.
            for start in range(0, total, 20):
                while start - progress["last"] > 40:
                    await asyncio.sleep(0.002)
                await self.publish_all(pub, live_topic, [{"n": i} for i in range(start, start + 20)], "l%d" % start)

        publishing = asyncio.ensure_future(publisher())
        # The watcher reads all along: a client that stops reading stops reading the pong
        # of its own keepalive ping too, and the library closes it (1011) after 20 s.
        watching = asyncio.ensure_future(self.expect_messages(watcher, live_topic, range(1, total + 1), "watcher live"))
        last, reconnects = 0, 0
        while last < total:
            ws, _, _ = await self.open("reconnecting")
            ack = await self.subscribe(ws, {"topic": live_topic, "recover": {"epoch": epoch, "seq": last}}, "reconnect")
            expect(ack.get("recovered") is True, "reconnect %d: recovered" % reconnects, ack)
            until = min(last + 100, total)
            while last < until:
                msg = await self.recv_json(ws, "reconnect %d" % reconnects)
                expect(msg.get("seq") == last + 1, "reconnect %d: after %d" % (reconnects, last), msg)
                last = progress["last"] = msg["seq"]
            await ws.close(1000)
            reconnects += 1
        await publishing
        log("%s: %d reconnects with recover, every seq once, in order" % (self.name, reconnects))
        await watching
        await watcher.close(1000)

    async def conflated(self, pub):
        self.step("a conflated subscription (\"conflate\": true), the subscriber not reading while %d arrive" % CONFLATED)
        # Its own connection, with a small receive buffer so the server's frames have to wait
        # for the socket while the subscriber does not read, and max_queue small, so the
        # library stops reading soon.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        parsed = urllib.parse.urlparse(self.ws_url)
        raw.settimeout(10)
        raw.connect((parsed.hostname, parsed.port))
        raw.settimeout(None)
        raw.setblocking(False)
        kwargs = {"sock": raw, "max_queue": 2}
        con, _, _ = await self.open("conflated subscriber", **kwargs)
        await con.send(json.dumps({"type": "subscribe", "topic": self.conflated_topic, "id": "c-1", "conflate": True}))
        ack = await self.recv_json(con, "conflated subscribe ack")
        expect(ack.get("type") == "ack" and ack.get("id") == "c-1", "conflated subscribe: not its ack", ack)

        rng = random.Random(11)
        # Incompressible, so that deflate does not shrink them into the socket buffers.
        datas = [self.payload(i + 1, "%x" % rng.getrandbits(CONFLATED_SIZE * 4)) for i in range(CONFLATED)]
        before = metrics(self.base)
        processed0 = before["message_queue"]["total_messages_processed"]
        await self.publish_all(pub, self.conflated_topic, datas, "c")
        # Every broadcast done (the bridge handled them all) before the subscriber reads.
        poll(self.base, lambda m: m["message_queue"]["total_messages_processed"] >= processed0 + CONFLATED,
             "the MessageQueue to hand all conflated publishes to the bridge")
        seqs = []
        while True:
            msg = await self.recv_json(con, "conflated message")
            expect(msg.get("type") == "message" and msg.get("topic") == self.conflated_topic, "conflated: not a message", msg)
            seq = msg.get("seq")
            expect(isinstance(seq, int) and (not seqs or seq > seqs[-1]), "conflated: seq not increasing", seqs[-3:], seq)
            expect(msg.get("data") == datas[seq - 1], "conflated: data of seq %d is not the %d-th publish" % (seq, seq))
            seqs.append(seq)
            if seq == CONFLATED:
                break
            expect(seq < CONFLATED, "conflated: seq past the last publish", seq)
        after = metrics(self.base)
        expect(after["websocket"]["slow_consumers"] == before["websocket"]["slow_consumers"],
               "conflated: a slow-consumer close was counted")
        log("%s: conflated: %d of %d messages of %d KiB arrived (%d replaced while waiting), seq increasing, "
            "the newest last, no slow-consumer close" % (self.name, len(seqs), CONFLATED, CONFLATED_SIZE // 1024,
                                                        CONFLATED - len(seqs)))
        if _WMEM is not None:
            # More than the kernel can hold was sent while the client did not read: if none
            # was replaced, the session queued them all, which conflation must not do.
            expect(len(seqs) < CONFLATED, "conflated: nothing was conflated although %d bytes waited"
                   % (CONFLATED * CONFLATED_SIZE))
        await asyncio.wait_for(con.close(1000), STEP_TIMEOUT)
        expect(con.close_code == 1000, "conflated subscriber: close echo", con.close_code)

    def exact_publish(self, size, topic, id_):
        """A publish frame of exactly `size` bytes of UTF-8 text."""
        frame = {"type": "publish", "topic": topic, "data": {"pad": ""}, "id": id_}
        frame["data"]["pad"] = "a" * (size - len(json.dumps(frame, separators=(",", ":"))))
        text = json.dumps(frame, separators=(",", ":"))
        assert len(text.encode()) == size
        return text

    async def frames_and_limits(self, pub):
        self.step("a fragmented message, a client ping, an empty message, a message of exactly max_message_size")
        text = json.dumps({"type": "ping", "id": "frag"})
        await pub.send([text[:5], text[5:12], text[12:]])  # three frames, one message
        pong = await self.recv_json(pub, "pong of a fragmented ping")
        expect(pong == {"type": "pong", "id": "frag"}, "fragmented ping: not its pong", pong)
        waiter = await pub.ping(b"interop")
        await asyncio.wait_for(waiter, STEP_TIMEOUT)
        await pub.send("")
        err = await self.recv_json(pub, "error of an empty message")
        expect(err.get("type") == "error" and err.get("code") == "invalid_json", "empty message: not invalid_json", err)
        await pub.send(self.exact_publish(MAX_MESSAGE_SIZE, self.topic + ".limit", "limit"))
        ack = await self.recv_json(pub, "ack of a publish of exactly max_message_size")
        expect(ack == {"type": "ack", "id": "limit"}, "a message of exactly max_message_size was not taken", ack)

    async def small_window(self, pub):
        self.step("server_max_window_bits=10 offered: answered, and used for what the server sends")
        factory = ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True)
        small, counting, _ = await self.open("small-window subscriber", extensions=[factory], compression=None)
        header = small.response.headers.get("Sec-WebSocket-Extensions")
        expect("server_max_window_bits=10" in header.replace(" ", ""), "server_max_window_bits=10 not answered", header)
        topic = self.topic + ".window10"
        await small.send(json.dumps({"type": "subscribe", "topic": topic, "id": "w"}))
        ack = await self.recv_json(small, "small-window subscribe ack")
        expect(ack.get("type") == "ack" and ack.get("id") == "w", "small-window subscribe: not its ack", ack)
        # Repeats 3,600 bytes apart: a 15-bit window would reach them, a 10-bit one cannot,
        # and the library inflates with 10 bits (zlib fails on a distance too far back).
        rng = random.Random(3)
        block = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(600))
        digits = "".join(rng.choice("0123456789") for _ in range(3000))
        data = {"t": (block + digits + block) * 3}
        await self.publish_all(pub, topic, [data], "w")
        msg = await self.recv_json(small, "small-window message")
        expect(msg.get("data") == data, "small-window message did not round-trip", msg.get("seq"))
        expect(counting.received_compressed >= 1, "small-window message was not compressed")
        await asyncio.wait_for(small.close(1000), STEP_TIMEOUT)
        log("%s: window 10: a %d-byte message arrived compressed to %d bytes and inflated with a 10-bit window"
            % (self.name, counting.received_inflated, counting.received_wire))

    async def invalid_utf8(self):
        if "text" not in inspect.signature(ClientConnectionSend.send).parameters:
            log("%s: this websockets cannot send bytes as text: invalid UTF-8 not checked" % self.name)
            return
        self.step("a text message that is not UTF-8 (a lone 0xff byte)")
        bad, _, _ = await self.open("invalid UTF-8 client")
        await bad.send(b'{"type":"ping","id":"\xff"}', text=True)  # websockets does not check
        try:
            got = await asyncio.wait_for(bad.recv(), STEP_TIMEOUT)
            raise CheckFailed("invalid UTF-8: a frame instead of the close: %r" % (got[:200],))
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            expect(rcvd is not None and rcvd.code == 1007, "invalid UTF-8: close is not 1007", rcvd)
            log("%s: invalid UTF-8: closed with %d %r" % (self.name, rcvd.code, rcvd.reason))

    async def oversize(self):
        for size, blob in ((MAX_MESSAGE_SIZE + 1, None), (OVERSIZE, "a" * OVERSIZE)):
            self.step("%d bytes of text, over max_message_size (%d)" % (size, MAX_MESSAGE_SIZE))
            big, _, _ = await self.open("oversize client")
            if blob is None:
                text = self.exact_publish(size, "interop.python.oversize", "over")
            else:
                text = json.dumps({"type": "publish", "topic": "interop.python.oversize", "data": {"blob": blob}})
            try:
                await asyncio.wait_for(big.send(text), STEP_TIMEOUT)
            except ConnectionClosed:
                pass  # the server may close before the library finished sending
            try:
                while True:
                    got = await asyncio.wait_for(big.recv(), STEP_TIMEOUT)
                    raise CheckFailed("oversize: a frame instead of the close: %r" % (got[:200],))
            except ConnectionClosed as closed:
                rcvd = closed.rcvd
                expect(rcvd is not None, "oversize: no close frame from the server", repr(closed))
                expect(rcvd.code == 1009, "oversize: close code is not 1009", rcvd.code, rcvd.reason)
                log("%s: %d bytes: closed with %d %r" % (self.name, size, rcvd.code, rcvd.reason))


async def shutdown_clients(base):
    """--shutdown: a subscriber with deflate and one without stay connected until the
    server stops; each must get the server's close 1001 (going away)."""
    failures = 0
    clients = []
    for deflate in (True, False):
        p = Pass(base, deflate)
        ws, _, _ = await p.open(p.name + " shutdown client")
        await ws.send(json.dumps({"type": "subscribe", "topic": "interop.python.shutdown", "id": "s"}))
        ack = await p.recv_json(ws, "shutdown subscribe ack")
        expect(ack.get("type") == "ack" and ack.get("id") == "s", "shutdown client: not its ack", ack)
        clients.append((p.name, ws))
    print("ready", flush=True)  # run.sh sends SIGTERM to the server once it reads this
    for name, ws in clients:
        try:
            while True:
                got = await asyncio.wait_for(ws.recv(), 60)
                log("%s: a frame while waiting for the close: %r" % (name, got[:200]))
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            if rcvd is not None and rcvd.code == 1001:
                log("%s: the server stopped with close %d %r" % (name, rcvd.code, rcvd.reason))
            else:
                failures += 1
                log("%s: FAILED: the server's close on shutdown is %r, not 1001" % (name, rcvd))
        except asyncio.TimeoutError:
            failures += 1
            log("%s: FAILED: no close within 60 s of being ready" % name)
    return failures


async def main_async(base):
    failures = 0
    for deflate in (True, False):
        p = Pass(base, deflate)
        try:
            await p.run()
        except CheckFailed as err:
            failures += 1
            log("%s: FAILED: %s" % (p.name, err))
        except (ConnectionClosed, OSError, asyncio.TimeoutError) as err:
            failures += 1
            log("%s: FAILED: %s: %s" % (p.name, type(err).__name__, err))
    return failures


def main(argv):
    if len(argv) == 3 and argv[1] == "--shutdown":
        try:
            failures = asyncio.run(shutdown_clients(argv[2]))
        except (CheckFailed, ConnectionClosed, OSError, asyncio.TimeoutError) as err:
            log("shutdown clients: FAILED: %s: %s" % (type(err).__name__, err))
            failures = 1
        return 0 if failures == 0 else 1
    if len(argv) != 2:
        sys.stderr.write("usage: %s [--shutdown] BASE_URL\n" % os.path.basename(argv[0]))
        return 2
    log("websockets %s, Python %s" % (websockets.__version__, sys.version.split()[0]))
    failures = asyncio.run(main_async(argv[1]))
    passes = 2 - failures
    print("python websockets: %d passed, %d failed" % (passes, failures), flush=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
