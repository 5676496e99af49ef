// Baseline for the benchmarks: the seed's stack. Bun.serve + bun:sqlite, WAL,
// synchronous=FULL, one transaction (one commit, one fsync) per request, storing what a send
// stores (the message, its delivery row, its event) and answering like the relay.
//   bun bench/bun_server.js PORT DB_PATH
import { Database } from "bun:sqlite";

const port = Number(process.argv[2]);
const db = new Database(process.argv[3], { create: true });
db.exec("PRAGMA journal_mode = WAL");
db.exec("PRAGMA synchronous = FULL");
db.exec(`CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, registered_at INTEGER);
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL,
  target TEXT NOT NULL, subject TEXT, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (agent_id TEXT NOT NULL, message_id INTEGER NOT NULL,
  read_at INTEGER, PRIMARY KEY (agent_id, message_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,
  data TEXT NOT NULL, created_at INTEGER NOT NULL);`);

const agentExists = db.query("SELECT 1 FROM agents WHERE id = ?");
const addAgent = db.query("INSERT OR IGNORE INTO agents (id, registered_at) VALUES (?, ?)");
const addMessage = db.query(
  "INSERT INTO messages (sender, target, subject, body, created_at) VALUES (?, ?, ?, ?, ?)");
const addDelivery = db.query("INSERT INTO deliveries (agent_id, message_id) VALUES (?, ?)");
const addEvent = db.query("INSERT INTO events (type, data, created_at) VALUES (?, ?, ?)");
const inbox = db.query(`SELECT m.*, d.read_at FROM deliveries d JOIN messages m ON m.id = d.message_id
  WHERE d.agent_id = ? AND m.id > ? ORDER BY m.id LIMIT 100`);

const send = db.transaction((data) => {
  const now = Date.now();
  const info = addMessage.run(data.from, data.to, data.subject ?? null, data.body, now);
  const id = Number(info.lastInsertRowid);
  const recipients = [];
  if (data.to !== data.from) {
    addDelivery.run(data.to, id);
    recipients.push(data.to);
  }
  const message = { id, from: data.from, to: data.to, subject: data.subject ?? null,
    body: data.body, createdAt: new Date(now).toISOString() };
  addEvent.run("message.new", JSON.stringify(message), now);
  return { ...message, recipients };
});

function json(payload, status = 200) {
  return new Response(JSON.stringify(payload), {
    status, headers: { "Content-Type": "application/json" } });
}

Bun.serve({
  port,
  hostname: "127.0.0.1",
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/api/messages" && req.method === "POST") {
      let data;
      try { data = await req.json(); } catch { return json({ error: "bad json", code: "invalid_json" }, 400); }
      if (!data || typeof data.body !== "string" || typeof data.to !== "string")
        return json({ error: "missing fields", code: "invalid_request" }, 400);
      if (!agentExists.get(data.to)) return json({ error: "no such agent", code: "not_found" }, 404);
      return json(send(data), 201);
    }
    if (url.pathname === "/api/messages" && req.method === "GET") {
      const rows = inbox.all(url.searchParams.get("for"), Number(url.searchParams.get("since") ?? 0));
      return json({ messages: rows, cursor: rows.length ? rows[rows.length - 1].id : 0 });
    }
    if (url.pathname === "/api/agents" && req.method === "POST") {
      const data = await req.json();
      addAgent.run(data.id, Date.now());
      return json({ id: data.id }, 201);
    }
    return json({ error: "not found", code: "not_found" }, 404);
  },
});
