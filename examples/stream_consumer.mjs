// A stream subscriber's consumer in Node.js, with no package: only node:net.
//
//   aggregator subscribers add wire --stream --region iran
//   REDIS_URL=redis://127.0.0.1:6379/0 STREAM=aggregator:stream:wire node stream_consumer.mjs
//
// Reads through its own consumer group, acknowledges each entry once handled, and
// first claims back what a dead consumer of the group left unacknowledged.
// Prints each article's id and title. A Redis client library does the same in fewer
// lines; this one shows there is nothing to it but five commands.
import net from "node:net";

const url = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0");
const stream = process.env.STREAM ?? "aggregator:stream:wire";
const group = process.env.GROUP ?? "node";
const me = process.env.CONSUMER ?? `node-${process.pid}`;
const idleMs = process.env.CLAIM_IDLE_MS ?? "60000"; // after this, an entry is abandoned

// --- a minimal RESP client: one command at a time --------------------------------------
const socket = url.protocol === "unix:"
  ? net.createConnection(url.pathname)
  : net.createConnection(Number(url.port || 6379), url.hostname);
let buffer = Buffer.alloc(0);
let waiting = null;
socket.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  if (!waiting) return;
  const parsed = parse(buffer, 0);
  if (parsed) {
    buffer = buffer.subarray(parsed[1]);
    const { resolve, reject } = waiting;
    waiting = null;
    parsed[0] instanceof Error ? reject(parsed[0]) : resolve(parsed[0]);
  }
});

function parse(buf, at) { // [value, next offset], or null until the reply is complete
  const end = buf.indexOf("\r\n", at);
  if (end < 0) return null;
  const type = String.fromCharCode(buf[at]), line = buf.toString("utf8", at + 1, end);
  if (type === "+") return [line, end + 2];
  if (type === "-") return [new Error(line), end + 2];
  if (type === ":") return [Number(line), end + 2];
  if (type === "$") {
    const size = Number(line);
    if (size < 0) return [null, end + 2];
    if (buf.length < end + 2 + size + 2) return null;
    return [buf.toString("utf8", end + 2, end + 2 + size), end + 2 + size + 2];
  }
  if (type === "*") {
    const count = Number(line), items = [];
    let next = end + 2;
    for (let i = 0; i < count; i++) {
      const item = parse(buf, next);
      if (!item) return null;
      items.push(item[0]);
      next = item[1];
    }
    return [count < 0 ? null : items, next];
  }
  throw new Error(`unexpected reply type ${type}`);
}

function call(...args) {
  const parts = args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`);
  return new Promise((resolve, reject) => {
    waiting = { resolve, reject };
    socket.write(`*${args.length}\r\n${parts.join("")}`);
  });
}

// --- the consumer ----------------------------------------------------------------------
function handle([entryId, fields]) {
  const entry = {};
  for (let i = 0; i < fields.length; i += 2) entry[fields[i]] = fields[i + 1];
  const article = JSON.parse(entry.article); // the same payload as the arq job
  console.log(entry.id, article.title); // at least once: be idempotent on the article id
  return call("XACK", stream, group, entryId);
}

const db = url.protocol === "unix:" ? url.searchParams.get("db") : url.pathname.slice(1);
if (db) await call("SELECT", db);
await call("XGROUP", "CREATE", stream, group, "0", "MKSTREAM").catch((error) => {
  if (!String(error.message).startsWith("BUSYGROUP")) throw error; // it exists already
});
process.on("SIGTERM", () => process.exit(0));
let cursor = "0-0";
do { // first, what dead consumers of the group left unacknowledged
  const [next, claimed] = await call("XAUTOCLAIM", stream, group, me, idleMs, cursor);
  for (const entry of claimed) if (entry) await handle(entry);
  cursor = next;
} while (cursor !== "0-0");
for (;;) { // then new entries
  const reply = await call("XREADGROUP", "GROUP", group, me, "COUNT", "100", "BLOCK", "2000",
    "STREAMS", stream, ">");
  for (const [, entries] of reply ?? []) for (const entry of entries) await handle(entry);
}
