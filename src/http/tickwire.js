// tickwire.js: the browser client of a tickwire server (served at GET /tickwire.js).
//
// An ES module with no dependencies. It connects to `/ws`, subscribes with per-topic
// callbacks, pings, reconnects with jittered exponential backoff, and on every reconnect
// subscribes again with `recover` from the last `seq` it saw of each topic, asking for a
// `snapshot` of whatever cannot be recovered: after a reconnect the app sees every
// message once, in order, or is told which topics have a hole. (A topic of a pattern that
// was first published while the client was away has no position to recover from: it
// comes as a snapshot of its latest message.)
//
//   import { TickwireClient } from '/tickwire.js';
//   const client = new TickwireClient('ws://127.0.0.1:8080/ws');
//   client.subscribe('market.>', (msg) => console.log(msg.topic, msg.seq, msg.data));
//   client.on('gap', (g) => console.warn('missed', g.topic, g.from, '..', g.to));
//   client.on('recovery', (r) => console.info(r.pattern, r.recovered ? 'recovered' : r.unrecovered));
//
// Events (`client.on(name, fn)`, `client.off(name, fn)`):
//   state     {state, attempt, delay, code, reason}: 'connecting', 'open', 'reconnecting', 'closed'
//   welcome   the server's welcome frame ({client_id, heartbeat_interval, epoch})
//   recovery  {pattern, recovered, unrecovered, epoch}: the ack of a re-subscribe with recover
//   gap       {topic, from, to}: seqs the client did not get (conflated subscriptions skip
//             messages by design, so their gaps are not reported)
//   error     {code, message, id, topic}: an error frame of the server
//   subscription  a Subscription whose `state` changed ('pending', 'ok', 'error')
// `client.rtt` is the last ping's round trip (ms); `client.counts` counts messages, gaps,
// missed messages, dropped duplicates, recoveries, failed recoveries and reconnects.
// The protocol is documented in the rustdoc of `tickwire::websocket::protocol`.

const DEFAULTS = {
  // Reconnect delays: the n-th attempt waits a random time in [d/2, d], d = min(max, min * 2^(n-1)).
  backoffMin: 250,
  backoffMax: 10000,
  // A connection that lived this long (ms) was healthy: the next failure starts the
  // backoff over. (Not at the welcome: a server that closes each connection right after
  // it would be reconnected to in a tight loop.)
  healthyAfter: 10000,
  // Milliseconds without a pong after which the connection is dropped and made again; the
  // pings go every half heartbeat_interval of the server (at most every 15 s).
  pongTimeout: 10000,
  // The WebSocket constructor (a browser's by default; Node's `ws` works too).
  WebSocket: globalThis.WebSocket,
};

/** Whether `topic` matches `pattern` (`*` one token, `>` one or more at the end). */
export function matches(pattern, topic) {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i === p.length - 1 && t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

function isExact(pattern) {
  return !pattern.split('.').some((token) => token === '*' || token === '>');
}

/** One subscription of a client: `unsubscribe()` ends it. */
class Subscription {
  constructor(client, pattern, callback, options) {
    this.client = client;
    this.pattern = pattern;
    this.callback = callback;
    this.options = options;
    this.active = true;
    // 'pending' until the server's ack (again after each reconnect), then 'ok'; 'error'
    // if the server refused it (see the client's 'error' event).
    this.state = 'pending';
  }

  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._unsubscribe(this);
  }
}

export class TickwireClient {
  /**
   * @param {string} url  the server's /ws URL; default: `ws(s)://<this page's host>/ws`
   * @param {object} options  see DEFAULTS above; `token` is sent as `?token=`
   */
  constructor(url, options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.options.WebSocket = options.WebSocket || DEFAULTS.WebSocket;
    if (!this.options.WebSocket) throw new Error('tickwire.js: no WebSocket here: pass options.WebSocket');
    this.url = url || defaultUrl();
    if (this.options.token) {
      this.url += (this.url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(this.options.token);
    }
    this.state = 'connecting';
    this.clientId = null;
    this.epoch = null;        // the server's, from the welcome
    this.positionsEpoch = null; // the epoch the positions below are in
    this.positions = new Map(); // topic -> last seq seen
    this.subscriptions = new Set();
    this.listeners = new Map();
    this.pending = new Map(); // request id -> {resolve, reject, subscription}
    this.nextId = 1;
    this.attempt = 0;
    this.welcomes = 0;
    this.openedAt = null;
    this.counts = { messages: 0, gaps: 0, missed: 0, duplicates: 0, recoveries: 0, failedRecoveries: 0, reconnects: 0 };
    this.heartbeat = 30;
    this.rtt = null;
    this.ws = null;
    this.closedByApp = false;
    this._connect();
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
    return this;
  }

  /**
   * Subscribes to a topic or pattern; `callback(message)` gets each message of a matching
   * topic ({topic, data, seq, timestamp, snapshot}). Options: `conflate`, `snapshot`.
   * The subscription lasts across reconnects until `unsubscribe()`.
   */
  subscribe(pattern, callback, options = {}) {
    const sub = new Subscription(this, pattern, callback, { conflate: !!options.conflate, snapshot: !!options.snapshot });
    this.subscriptions.add(sub);
    if (this.state === 'open') this._sendSubscribe(sub, false);
    return sub;
  }

  /** Publishes into the server's MessageQueue (where the server allows it); resolves on the ack. */
  publish(topic, data, priority) {
    const frame = { type: 'publish', topic, data };
    if (priority !== undefined) frame.priority = priority;
    return this._request(frame);
  }

  /** Resolves with the round trip in milliseconds. */
  ping() {
    const start = now();
    return this._request({ type: 'ping' }).then(() => {
      this.rtt = now() - start;
      return this.rtt;
    });
  }

  /** Closes the connection for good (no reconnect). */
  close() {
    this.closedByApp = true;
    clearTimeout(this.retryTimer);
    this._stopPing();
    if (this.ws) this.ws.close(1000);
    this._setState('closed', {});
  }

  // ---------------------------------------------------------------- internals

  _emit(event, value) {
    for (const fn of this.listeners.get(event) || []) {
      try { fn(value); } catch (e) { report(e); }
    }
  }

  _setState(state, info) {
    this.state = state;
    this._emit('state', { state, attempt: this.attempt, ...info });
  }

  _connect() {
    this.attempt++;
    this._setState('connecting', {});
    let ws;
    try {
      ws = new this.options.WebSocket(this.url);
    } catch (e) {
      this._lost(1006, String(e && e.message || e));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => { if (this.ws === ws) this._onFrame(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws) this._lost(ev.code, ev.reason); };
    ws.onerror = () => { /* onclose follows */ };
  }

  _lost(code, reason) {
    this.ws = null;
    this._stopPing();
    if (this.openedAt !== null && now() - this.openedAt >= this.options.healthyAfter) this.attempt = 1;
    this.openedAt = null;
    for (const [, request] of this.pending) request.reject?.(new Error('connection lost'));
    this.pending.clear();
    if (this.closedByApp) return;
    const ceiling = Math.min(this.options.backoffMax, this.options.backoffMin * 2 ** Math.min(Math.max(this.attempt - 1, 0), 16));
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this._setState('reconnecting', { code, reason, delay });
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _onFrame(data) {
    if (typeof data !== 'string') data = String(data);
    let frame;
    try { frame = JSON.parse(data); } catch (e) { return; }
    switch (frame.type) {
      case 'message': return this._onMessage(frame);
      case 'welcome': return this._onWelcome(frame);
      case 'ack': return this._answered(frame, true);
      case 'pong': return this._answered(frame, true);
      case 'error': return this._answered(frame, false);
      default: return undefined;
    }
  }

  _onWelcome(frame) {
    this.clientId = frame.client_id;
    this.epoch = frame.epoch;
    if (frame.heartbeat_interval > 0) this.heartbeat = frame.heartbeat_interval;
    if (this.welcomes++ > 0) this.counts.reconnects++;
    this.openedAt = now();
    // The subscriptions made before now; one the app makes in a listener below is sent
    // by subscribe() itself.
    const subs = [...this.subscriptions];
    this._setState('open', {});
    this._emit('welcome', frame);
    for (const sub of subs) this._sendSubscribe(sub, true);
    if (this.positionsEpoch !== null && frame.epoch !== this.positionsEpoch) {
      // Another sequence space (the server restarted): the re-subscribes just sent ask
      // with the old epoch and are answered "not recovered", with snapshots; every
      // position starts again from what comes now.
      this.positions.clear();
      this.positionsEpoch = frame.epoch;
    }
    this._startPing();
  }

  _sendSubscribe(sub, resume) {
    const frame = { type: 'subscribe', topic: sub.pattern };
    if (sub.options.conflate) frame.conflate = true;
    const epoch = this.positionsEpoch;
    let recovering = false;
    if (resume && epoch !== null) {
      if (isExact(sub.pattern)) {
        frame.recover = { epoch, seq: this.positions.get(sub.pattern) || 0 };
      } else {
        const positions = {};
        for (const [topic, seq] of this.positions) if (matches(sub.pattern, topic)) positions[topic] = seq;
        frame.recover = { epoch, positions };
      }
      recovering = true;
    }
    // A snapshot where asked for, and after a reconnect for what cannot be recovered.
    if (sub.options.snapshot || recovering) frame.snapshot = true;
    this._subscriptionState(sub, 'pending');
    this._request(frame, sub).then(
      () => this._subscriptionState(sub, 'ok'),
      (e) => { if (e.code) this._subscriptionState(sub, 'error'); },
    );
  }

  _subscriptionState(sub, state) {
    if (sub.state === state) return;
    sub.state = state;
    this._emit('subscription', sub);
  }

  _unsubscribe(sub) {
    this.subscriptions.delete(sub);
    // The server knows one subscription per pattern: another object may still hold it.
    const shared = [...this.subscriptions].some((s) => s.pattern === sub.pattern);
    if (this.state === 'open' && !shared) {
      this._request({ type: 'unsubscribe', topic: sub.pattern }).catch(() => {});
    }
    // Forget the positions no other subscription covers.
    for (const topic of [...this.positions.keys()]) {
      if (![...this.subscriptions].some((s) => matches(s.pattern, topic))) this.positions.delete(topic);
    }
  }

  _request(frame, subscription) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) {
        reject(new Error('not connected'));
        return;
      }
      const id = 't' + this.nextId++;
      this.pending.set(id, { resolve, reject, subscription, frame });
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _answered(frame, ok) {
    const request = this.pending.get(frame.id);
    if (!request) {
      if (!ok) this._emit('error', { code: frame.code, message: frame.message, id: frame.id });
      return;
    }
    this.pending.delete(frame.id);
    if (!ok) {
      this._emit('error', { code: frame.code, message: frame.message, id: frame.id, topic: request.frame.topic });
      request.reject(Object.assign(new Error(frame.message), { code: frame.code }));
      return;
    }
    if (request.frame.type === 'subscribe') this._subscribed(request, frame);
    request.resolve(frame);
  }

  /** The ack of a subscribe: positions start there, and a recovery is reported. */
  _subscribed(request, ack) {
    const { frame } = request;
    if (frame.recover) {
      if (ack.recovered) this.counts.recoveries++;
      else this.counts.failedRecoveries++;
      const unrecovered = ack.recovered ? [] :
        (isExact(frame.topic) ? [frame.topic] : (ack.unrecovered || []));
      // What was not recovered starts again from what comes now (a snapshot or live);
      // after an epoch change, every position was dropped at the welcome already.
      if (frame.recover.epoch === this.positionsEpoch) {
        for (const topic of unrecovered) this.positions.delete(topic);
      }
      this._emit('recovery', { pattern: frame.topic, recovered: !!ack.recovered, unrecovered, epoch: ack.epoch });
    }
    if (this.positionsEpoch === null && ack.epoch) this.positionsEpoch = ack.epoch;
    if (isExact(frame.topic) && typeof ack.seq === 'number' && !this.positions.has(frame.topic)) {
      // Live messages follow this seq (a replay, if any, comes first and moves it on; a
      // snapshot is this seq's message, delivered all the same).
      this.positions.set(frame.topic, ack.seq);
    }
  }

  _onMessage(frame) {
    const topic = frame.topic;
    const seq = frame.seq;
    const last = this.positions.get(topic);
    const subs = [...this.subscriptions].filter((s) => matches(s.pattern, topic));
    if (subs.length === 0) return; // in flight after an unsubscribe
    if (typeof seq === 'number') {
      if (last !== undefined && seq <= last && !frame.snapshot) {
        this.counts.duplicates++;
        return; // seen already
      }
      const conflated = subs.length > 0 && subs.every((s) => s.options.conflate);
      if (last !== undefined && seq > last + 1 && !frame.snapshot && !conflated) {
        this.counts.gaps++;
        this.counts.missed += seq - last - 1;
        this._emit('gap', { topic, from: last + 1, to: seq - 1 });
      }
      if (last === undefined || seq > last) this.positions.set(topic, seq);
    }
    this.counts.messages++;
    const message = { topic, data: frame.data, seq, timestamp: frame.timestamp, snapshot: !!frame.snapshot };
    for (const sub of subs) {
      try { sub.callback(message); } catch (e) { report(e); }
    }
  }

  _startPing() {
    this._stopPing();
    const every = Math.max(1, Math.min(15, this.heartbeat / 2)) * 1000;
    const tick = () => {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) return;
      let answered = false;
      this.ping().then(() => { answered = true; }, () => {});
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (!answered && this.ws === ws) {
          // Gone quiet: drop it and connect again (no close handshake to wait for).
          ws.onclose = ws.onmessage = null;
          try {
            if (typeof ws.terminate === 'function') ws.terminate(); // Node's `ws`
            else ws.close(4001, 'pong timeout');
          } catch (e) { /* ignore */ }
          this._lost(1006, 'no pong');
        }
      }, this.options.pongTimeout);
    };
    this.pingTimer = setInterval(tick, every);
    // A first round trip soon, so that `rtt` is known early.
    this.firstPing = setTimeout(tick, 300);
  }

  _stopPing() {
    clearTimeout(this.firstPing);
    clearTimeout(this.pongTimer);
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }
}

function now() {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

/** An exception of an app's callback: reported, without stopping the client. */
function report(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else console.error(e);
}

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc) throw new Error('tickwire.js: give the server URL (no page location here)');
  const proto = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  // Relative to the page, so it works where the HTTP surface is mounted under a prefix.
  return proto + '//' + loc.host + loc.pathname.replace(/[^/]*$/, '') + 'ws';
}
