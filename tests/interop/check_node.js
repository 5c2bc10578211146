#!/usr/bin/env node
// Interop check of tickwire's WebSocket service with Node's `ws` package.
//
// usage: NODE_PATH=target/interop-node/node_modules node tests/interop/check_node.js BASE_URL
//        NODE_PATH=... node tests/interop/check_node.js --shutdown BASE_URL
//        e.g. ... node tests/interop/check_node.js http://127.0.0.1:8080/
//
// With --shutdown: connects a subscriber with deflate and one without, prints "ready",
// and asserts that each gets close 1001 when the server is stopped (run.sh sends SIGTERM).
//
// Runs the same checks twice against one running `tickwire serve` (run.sh has the
// config: allow_client_publish = true, max_message_size = 65536): once with
// `perMessageDeflate: true` and once with `perMessageDeflate: false`. Each pass asserts,
// on its own connections and topics:
//
// - the 101's Sec-WebSocket-Extensions (permessage-deflate with server_no_context_takeover
//   only: ws, told `clientNoContextTakeover: false`, compresses with context and would
//   refuse an answer imposing client_no_context_takeover) and `ws.extensions`;
// - `welcome` first, with client_id and heartbeat_interval;
// - subscribe with an id -> ack with that id; 1,000 client publishes of ~2 KB (over ws's
//   compression threshold) from a second connection, acked in order, arrive at the
//   subscriber in order, seq 1..1000, data equal to what was sent; with deflate, the
//   library compressed every publish and inflated every message (counted on its
//   permessage-deflate object) and the server's metrics show wire bytes < uncompressed
//   bytes for those broadcasts; without, wire == uncompressed;
// - unsubscribe of a topic not subscribed -> error not_subscribed (id echoed);
// - a conflated subscription: ack, messages arrive with increasing seq, the newest last
//   (the subscriber paused with ws.pause() while they are broadcast);
// - a message in two frames (compressed with deflate) is answered, a client ping gets
//   its pong, an empty message gets error invalid_json and the session stays;
// - with deflate, `serverMaxWindowBits: 10` gets server_max_window_bits=10 answered, and
//   a message with repeats 3,600 bytes apart arrives compressed and inflates with it;
// - a text frame that is not UTF-8 (ws sends a Buffer as text unchecked) gets 1007;
// - close 1000 from the client is echoed 1000; 100 KB of text over max_message_size
//   gets 1009.
//
// Exit 0 when every check passed, 1 otherwise (the first failed assertion is printed).
'use strict';

const http = require('http');
const util = require('util');
const WebSocket = require('ws');

const STEP_TIMEOUT = 30000; // safety net per step (ms), never a synchronisation
const MESSAGES = 1000;
const CONFLATED = 200;
const CONFLATED_SIZE = 16 * 1024;
const OVERSIZE = 100 * 1024;

function log(msg) {
  console.log('check_node: ' + msg);
}

class CheckFailed extends Error {}

function expect(cond, what, ...details) {
  if (!cond) {
    throw new CheckFailed(what + (details.length ? ': ' + details.map((d) => util.inspect(d, { depth: 4, maxStringLength: 300 })).join(' ') : ''));
  }
}

function metrics(base) {
  return new Promise((resolve, reject) => {
    const req = http.get(new URL('api/metrics', base), { timeout: 10000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('GET /api/metrics timed out')));
    req.on('error', reject);
  });
}

// Polls /api/metrics until cond(metrics) holds (bounded).
async function poll(base, cond, what) {
  const deadline = Date.now() + STEP_TIMEOUT;
  for (;;) {
    const m = await metrics(base);
    if (cond(m)) return m;
    if (Date.now() > deadline) throw new CheckFailed('timed out waiting for ' + what + '; metrics: ' + JSON.stringify(m.websocket));
    await new Promise((r) => setTimeout(r, 20));
  }
}

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed('timed out: ' + what)), STEP_TIMEOUT);
    }),
  ]);
}

// One connection: its frames as a queue of parsed JSON, its close as a promise, and
// the library's deflate object wrapped to count what it compressed and inflated.
class Conn {
  constructor(url, deflate, role) {
    this.role = role;
    this.frames = [];
    this.waiters = [];
    this.closed = null;
    this.upgradeHeaders = null;
    this.compressedOut = 0;
    this.inflatedIn = 0;
    // With deflate, `clientNoContextTakeover: false`: ws then refuses an answer that
    // imposes client_no_context_takeover, and compresses with context.
    const options = deflate === true ? { clientNoContextTakeover: false } : deflate;
    this.ws = new WebSocket(url, { perMessageDeflate: options, handshakeTimeout: 10000 });
    this.ws.on('upgrade', (res) => {
      this.upgradeHeaders = res.headers;
    });
    this.ws.on('message', (data, isBinary) => {
      let frame;
      try {
        frame = isBinary ? { binary: data } : JSON.parse(data.toString('utf8'));
      } catch (err) {
        frame = { unparsable: data.toString('utf8'), error: String(err) };
      }
      this.frames.push(frame);
      this.wake();
    });
    this.closedPromise = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString('utf8') };
        this.wake();
        resolve(this.closed);
      });
    });
    this.ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
  }

  wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  wrapDeflate() {
    const pmd = this.ws._extensions && this.ws._extensions['permessage-deflate'];
    if (!pmd) return null;
    const compress = pmd.compress.bind(pmd);
    const decompress = pmd.decompress.bind(pmd);
    pmd.compress = (data, fin, cb) => {
      this.compressedOut += 1;
      compress(data, fin, cb);
    };
    pmd.decompress = (data, fin, cb) => {
      if (fin) this.inflatedIn += 1;
      decompress(data, fin, cb);
    };
    return pmd;
  }

  // The next frame, parsed; fails if the connection closed first.
  async next(what) {
    return withTimeout(
      (async () => {
        while (this.frames.length === 0) {
          if (this.closed) throw new CheckFailed(`${this.role}: ${what}: closed with ${this.closed.code} ${this.closed.reason}`);
          if (this.error) throw new CheckFailed(`${this.role}: ${what}: ${this.error}`);
          await new Promise((r) => this.waiters.push(r));
        }
        return this.frames.shift();
      })(),
      `${this.role}: ${what}`,
    );
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }
}

class Pass {
  constructor(base, deflate) {
    this.base = base;
    this.deflate = deflate;
    this.name = 'node/' + (deflate ? 'deflate' : 'plain');
    const u = new URL(base);
    this.wsUrl = `ws://${u.host}/ws`;
    const tag = `${deflate ? 'deflate' : 'plain'}.${process.pid}`;
    this.topic = `interop.node.${tag}.seq`;
    this.conflatedTopic = `interop.node.${tag}.conflated`;
    this.expectedHeartbeat = process.env.INTEROP_HEARTBEAT;
  }

  step(what) {
    log(`${this.name}: ${what}`);
  }

  async open(role, deflateOptions) {
    const c = new Conn(this.wsUrl, this.deflate ? deflateOptions || true : false, role);
    await withTimeout(c.opened, role + ': open');
    const header = c.upgradeHeaders && c.upgradeHeaders['sec-websocket-extensions'];
    if (this.deflate) {
      expect(header, role + ': no Sec-WebSocket-Extensions in the 101 answer to a deflate offer', c.upgradeHeaders);
      const params = header.split(';').map((p) => p.trim().toLowerCase());
      expect(params[0] === 'permessage-deflate', role + ': answer is not permessage-deflate', header);
      expect(params.includes('server_no_context_takeover'), role + ': no server_no_context_takeover', header);
      expect(!params.includes('client_no_context_takeover'), role + ': client_no_context_takeover answered unasked', header);
      expect(c.ws.extensions === 'permessage-deflate', role + ': ws.extensions', c.ws.extensions);
      const pmd = c.wrapDeflate();
      expect(pmd && pmd.params.server_no_context_takeover === true && !pmd.params.client_no_context_takeover,
        role + ': the library: server without context, client with', pmd && pmd.params);
    } else {
      expect(header === undefined, role + ': Sec-WebSocket-Extensions answered without an offer', header);
      expect(c.ws.extensions === '', role + ': ws.extensions without an offer', c.ws.extensions);
    }
    const welcome = await c.next('welcome');
    expect(welcome.type === 'welcome', role + ': first frame is not welcome', welcome);
    expect(typeof welcome.client_id === 'string' && welcome.client_id.length > 0, role + ': welcome without client_id', welcome);
    expect(typeof welcome.heartbeat_interval === 'number' && welcome.heartbeat_interval > 0, role + ': welcome without a positive heartbeat_interval', welcome);
    if (this.expectedHeartbeat !== undefined) {
      expect(welcome.heartbeat_interval === Number(this.expectedHeartbeat), role + ': heartbeat_interval is not the config\'s', welcome.heartbeat_interval);
    }
    return c;
  }

  payload(n, pad) {
    return {
      n,
      check: this.name,
      text: 'caf\u00e9 \u20ac \u{1F600} "quoted" back\\slash \n\t end',
      numbers: [0, -1, 2 ** 53 - 1, 0.1, -2.5e-7, 1e300],
      flags: [true, false, null],
      nested: { a: { b: [1, { c: 'd' }] }, empty: {}, list: [] },
      pad,
    };
  }

  // Sends every publish, then reads the acks, which come in order.
  async publishAll(pub, topic, datas, prefix) {
    datas.forEach((data, i) => pub.send({ type: 'publish', topic, data, id: `${prefix}-${i}` }));
    for (let i = 0; i < datas.length; i++) {
      const ack = await pub.next('publish ack ' + i);
      expect(util.isDeepStrictEqual(ack, { type: 'ack', id: `${prefix}-${i}` }), `publish ${i}: not its ack`, ack);
    }
  }

  async run() {
    const t0 = Date.now();
    const m0 = (await metrics(this.base)).websocket;

    this.step('connect subscriber and publisher');
    const sub = await this.open('subscriber');
    const pub = await this.open('publisher');
    if (this.deflate) await poll(this.base, (m) => m.websocket.compressed_sessions >= 2, 'compressed_sessions >= 2');

    this.step('subscribe with an id');
    sub.send({ type: 'subscribe', topic: this.topic, id: 'sub-1' });
    const ack = await sub.next('subscribe ack');
    expect(ack.type === 'ack' && ack.id === 'sub-1', 'subscribe: not its ack', ack);

    this.step(`${MESSAGES} publishes of ~2 KB from the second connection, in order at the subscriber`);
    const letters = 'abcdefghij';
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed;
    };
    const datas = [];
    for (let i = 0; i < MESSAGES; i++) {
      let pad = '';
      for (let j = 0; j < 2000; j++) pad += letters[rand() % 10];
      datas.push(this.payload(i + 1, pad));
    }
    const tPub = Date.now();
    const receive = async () => {
      for (let i = 0; i < MESSAGES; i++) {
        const msg = await sub.next('message ' + (i + 1));
        expect(msg.type === 'message', `expected message ${i + 1}`, msg);
        expect(msg.topic === this.topic, `message ${i + 1}: topic`, msg.topic);
        expect(msg.seq === i + 1, `message ${i + 1}: seq`, msg.seq);
        expect(typeof msg.timestamp === 'string', `message ${i + 1}: no timestamp`, msg);
        expect(util.isDeepStrictEqual(msg.data, datas[i]), `message ${i + 1}: data did not round-trip`, msg.data, datas[i]);
      }
    };
    await Promise.all([this.publishAll(pub, this.topic, datas, 'p'), receive()]);
    const elapsed = (Date.now() - tPub) / 1000;
    const m1 = (await metrics(this.base)).websocket;
    const wire = m1.wire_bytes_sent - m0.wire_bytes_sent;
    const plain = m1.uncompressed_bytes_sent - m0.uncompressed_bytes_sent;
    log(`${this.name}: ${MESSAGES} messages in ${elapsed.toFixed(2)} s; server broadcast bytes: wire ${wire}, uncompressed ${plain} (${((100 * wire) / Math.max(plain, 1)).toFixed(1)}%)`);
    expect(plain > MESSAGES * 2000, 'uncompressed_bytes_sent grew by less than the messages', plain);
    if (this.deflate) {
      log(`${this.name}: library: publisher compressed ${pub.compressedOut} messages, subscriber inflated ${sub.inflatedIn}`);
      expect(wire < plain, 'wire_bytes_sent is not below uncompressed_bytes_sent with deflate', wire, plain);
      expect(pub.compressedOut >= MESSAGES, 'the publisher did not compress its publishes', pub.compressedOut);
      expect(sub.inflatedIn >= MESSAGES, 'the subscriber did not receive the 2 KB messages compressed', sub.inflatedIn);
    } else {
      expect(wire === plain, 'wire bytes differ from uncompressed bytes without deflate', wire, plain);
    }

    this.step('unsubscribe of a topic not subscribed');
    sub.send({ type: 'unsubscribe', topic: this.topic + '.never', id: 'u-1' });
    const err = await sub.next('unsubscribe error');
    expect(err.type === 'error' && err.code === 'not_subscribed' && err.id === 'u-1', 'unsubscribe of a topic not subscribed', err);
    sub.send({ type: 'unsubscribe', topic: this.topic, id: 'u-2' });
    const uack = await sub.next('unsubscribe ack');
    expect(uack.type === 'ack' && uack.id === 'u-2', 'unsubscribe: not its ack', uack);

    await this.conflated(pub);
    await this.framesAndLimits(pub);
    if (this.deflate) await this.smallWindow(pub);

    this.step('close 1000 from the client, echoed');
    for (const c of [sub, pub]) {
      c.ws.close(1000, 'done');
      const closed = await withTimeout(c.closedPromise, c.role + ': close');
      expect(closed.code === 1000, c.role + ": the server's close is not 1000", closed);
    }

    await this.invalidUtf8();
    await this.oversize();
    const m2 = await poll(this.base, (m) => m.websocket.oversize_messages >= m0.oversize_messages + 1, 'oversize_messages to count the 1009');
    log(`${this.name}: passed in ${((Date.now() - t0) / 1000).toFixed(1)} s (oversize_messages +${m2.websocket.oversize_messages - m0.oversize_messages})`);
  }

  async conflated(pub) {
    this.step(`a conflated subscription ("conflate": true), the subscriber paused while ${CONFLATED} arrive`);
    const con = await this.open('conflated subscriber');
    con.send({ type: 'subscribe', topic: this.conflatedTopic, id: 'c-1', conflate: true });
    const ack = await con.next('conflated subscribe ack');
    expect(ack.type === 'ack' && ack.id === 'c-1', 'conflated subscribe: not its ack', ack);
    con.ws.pause();
    const datas = [];
    for (let i = 0; i < CONFLATED; i++) {
      let pad = '';
      while (pad.length < CONFLATED_SIZE) pad += Math.floor(Math.random() * 2 ** 52).toString(16);
      datas.push(this.payload(i + 1, pad));
    }
    const before = await metrics(this.base);
    await this.publishAll(pub, this.conflatedTopic, datas, 'c');
    await poll(this.base, (m) => m.message_queue.total_messages_processed >= before.message_queue.total_messages_processed + CONFLATED,
      'the MessageQueue to hand all conflated publishes to the bridge');
    con.ws.resume();
    const seqs = [];
    for (;;) {
      const msg = await con.next('conflated message');
      expect(msg.type === 'message' && msg.topic === this.conflatedTopic, 'conflated: not a message', msg);
      const seq = msg.seq;
      expect(Number.isInteger(seq) && (seqs.length === 0 || seq > seqs[seqs.length - 1]), 'conflated: seq not increasing', seqs.slice(-3), seq);
      expect(util.isDeepStrictEqual(msg.data, datas[seq - 1]), `conflated: data of seq ${seq} is not the ${seq}-th publish`);
      seqs.push(seq);
      if (seq === CONFLATED) break;
      expect(seq < CONFLATED, 'conflated: seq past the last publish', seq);
    }
    const after = await metrics(this.base);
    expect(after.websocket.slow_consumers === before.websocket.slow_consumers, 'conflated: a slow-consumer close was counted');
    log(`${this.name}: conflated: ${seqs.length} of ${CONFLATED} messages of ${CONFLATED_SIZE / 1024} KiB arrived (${CONFLATED - seqs.length} replaced while waiting), seq increasing, the newest last`);
    con.ws.close(1000);
    const closed = await withTimeout(con.closedPromise, 'conflated subscriber: close');
    expect(closed.code === 1000, 'conflated subscriber: close echo', closed);
  }

  async framesAndLimits(pub) {
    this.step('a fragmented message, a client ping, an empty message');
    const text = JSON.stringify({ type: 'ping', id: 'frag' });
    // Two frames of one message; with deflate, compressed (compress: true forces it
    // whatever the size).
    pub.ws.send(text.slice(0, 7), { fin: false, compress: this.deflate });
    pub.ws.send(text.slice(7), { fin: true, compress: this.deflate });
    const pong = await pub.next('pong of a fragmented ping');
    expect(util.isDeepStrictEqual(pong, { type: 'pong', id: 'frag' }), 'fragmented ping: not its pong', pong);
    const gotPong = new Promise((resolve) => pub.ws.once('pong', (data) => resolve(data.toString('utf8'))));
    pub.ws.ping('interop');
    const echoed = await withTimeout(gotPong, 'pong of a client ping');
    expect(echoed === 'interop', 'ping: the pong does not echo its payload', echoed);
    pub.ws.send('', { compress: this.deflate });
    const err = await pub.next('error of an empty message');
    expect(err.type === 'error' && err.code === 'invalid_json', 'empty message: not invalid_json', err);
  }

  async smallWindow(pub) {
    this.step('serverMaxWindowBits: 10 offered: answered, and used for what the server sends');
    const small = await this.open('small-window subscriber', { serverMaxWindowBits: 10 });
    const header = small.upgradeHeaders['sec-websocket-extensions'];
    expect(/server_max_window_bits=10/.test(header.replace(/ /g, '')), 'server_max_window_bits=10 not answered', header);
    const topic = this.topic + '.window10';
    small.send({ type: 'subscribe', topic, id: 'w' });
    const ack = await small.next('small-window subscribe ack');
    expect(ack.type === 'ack' && ack.id === 'w', 'small-window subscribe: not its ack', ack);
    // Repeats 3,600 bytes apart: out of a 10-bit window's reach; ws inflates with 10 bits.
    let block = '';
    for (let i = 0; i < 600; i++) block += String.fromCharCode(97 + Math.floor(Math.random() * 26));
    let digits = '';
    for (let i = 0; i < 3000; i++) digits += String(Math.floor(Math.random() * 10));
    const data = { t: (block + digits + block).repeat(3) };
    await this.publishAll(pub, topic, [data], 'w');
    const msg = await small.next('small-window message');
    expect(util.isDeepStrictEqual(msg.data, data), 'small-window message did not round-trip', msg.seq);
    expect(small.inflatedIn >= 1, 'small-window message was not compressed');
    small.ws.close(1000);
    const closed = await withTimeout(small.closedPromise, 'small-window subscriber: close');
    expect(closed.code === 1000, 'small-window subscriber: close echo', closed);
  }

  async invalidUtf8() {
    this.step('a text message that is not UTF-8 (a lone 0xff byte)');
    const bad = await this.open('invalid UTF-8 client');
    // ws sends a Buffer as text with binary: false, without checking it.
    bad.ws.send(Buffer.from('{"type":"ping","id":"\xff"}', 'latin1'), { binary: false, compress: this.deflate });
    const closed = await withTimeout(bad.closedPromise, 'invalid UTF-8 client: close');
    expect(bad.frames.length === 0, 'invalid UTF-8: frames before the close', bad.frames.slice(0, 3));
    expect(closed.code === 1007, 'invalid UTF-8: close is not 1007', closed);
    log(`${this.name}: invalid UTF-8: closed with ${closed.code} '${closed.reason}'`);
  }

  async oversize() {
    this.step(`${OVERSIZE} bytes of text over max_message_size`);
    const big = await this.open('oversize client');
    big.send({ type: 'publish', topic: 'interop.node.oversize', data: { blob: 'a'.repeat(OVERSIZE) } });
    const closed = await withTimeout(big.closedPromise, 'oversize client: close');
    expect(big.frames.length === 0, 'oversize: frames before the close', big.frames.slice(0, 3));
    expect(closed.code === 1009, 'oversize: close code is not 1009', closed);
    log(`${this.name}: oversize message closed with ${closed.code} '${closed.reason}'`);
  }
}

// --shutdown: a subscriber with deflate and one without stay connected until the server
// stops; each must get the server's close 1001 (going away).
async function shutdownClients(base) {
  let failures = 0;
  const clients = [];
  for (const deflate of [true, false]) {
    const p = new Pass(base, deflate);
    const c = await p.open(p.name + ' shutdown client');
    c.send({ type: 'subscribe', topic: 'interop.node.shutdown', id: 's' });
    const ack = await c.next('shutdown subscribe ack');
    expect(ack.type === 'ack' && ack.id === 's', 'shutdown client: not its ack', ack);
    clients.push([p.name, c]);
  }
  console.log('ready'); // run.sh sends SIGTERM to the server once it reads this
  for (const [name, c] of clients) {
    let timer;
    const closed = await Promise.race([
      c.closedPromise,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), 60000);
      }),
    ]);
    clearTimeout(timer);
    if (closed && closed.code === 1001) {
      log(`${name}: the server stopped with close ${closed.code} '${closed.reason}'`);
    } else {
      failures += 1;
      log(`${name}: FAILED: the server's close on shutdown is ${JSON.stringify(closed)}, not 1001`);
    }
    if (c.frames.length) log(`${name}: frames while waiting for the close: ${JSON.stringify(c.frames.slice(0, 3))}`);
  }
  return failures === 0 ? 0 : 1;
}

async function main() {
  if (process.argv[2] === '--shutdown') {
    try {
      return await shutdownClients(process.argv[3]);
    } catch (err) {
      log(`shutdown clients: FAILED: ${err instanceof CheckFailed ? err.message : err.stack || err}`);
      return 1;
    }
  }
  const base = process.argv[2];
  if (!base) {
    process.stderr.write('usage: check_node.js BASE_URL\n');
    return 2;
  }
  const version = require('ws/package.json').version;
  log(`ws ${version}, Node ${process.version}`);
  let failures = 0;
  for (const deflate of [true, false]) {
    const p = new Pass(base, deflate);
    try {
      await p.run();
    } catch (err) {
      failures += 1;
      log(`${p.name}: FAILED: ${err instanceof CheckFailed ? err.message : err.stack || err}`);
    }
  }
  console.log(`node ws: ${2 - failures} passed, ${failures} failed`);
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
