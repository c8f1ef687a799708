// PostgreSQL access through PgBouncer (transaction pooling): only unnamed
// statements and no session state (no SET, LISTEN or advisory locks), so any
// server connection can serve any query.
//
// DATABASE_URL may name several PgBouncer hosts, libpq style:
//   postgres://app:secret@db1:6432,db2:6432/app?sslmode=require
// Every PgBouncer points at the current primary, so any of them serves. A
// query that fails because its PgBouncer went away (restart, reboot, network)
// is sent again through the next host; statements here are safe to repeat
// (writes carry a client id and ON CONFLICT DO NOTHING).
import pg from "pg";

const pools = new Map();
const preferred = new Map();
let schemaReady = null;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS webstack_writes (
     id text PRIMARY KEY,
     payload text,
     host text,
     release text,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  `CREATE TABLE IF NOT EXISTS webstack_notes (
     id bigserial PRIMARY KEY,
     body text NOT NULL,
     host text,
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
];

// Errors after which another PgBouncer (or the same one a moment later) may
// succeed: the connection could not be made or was cut, or the server is
// shutting down / not accepting connections yet.
const RETRY_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPIPE",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
]);
const RETRY_MESSAGES = [
  /Connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /server closed the connection/i,
  /no more connections allowed/i,
  /server login has been failing/i,
  /pgbouncer cannot connect to server/i,
  /query_wait_timeout/i,
  /database .* is paused/i,
];
const RETRY_BUDGET_MS = Number(process.env.DATABASE_RETRY_MS || 20000);

export function retryable(err) {
  if (!err) return false;
  if (RETRY_CODES.has(err.code)) return true;
  return RETRY_MESSAGES.some((re) => re.test(err.message || ""));
}

// "postgres://u:p@h1:1,h2:2/db?x" -> ["postgres://u:p@h1:1/db?x", "postgres://u:p@h2:2/db?x"]
export function splitHosts(url) {
  const match = /^([a-z]+:\/\/)(?:([^@/]*)@)?([^/?#]*)(.*)$/i.exec(url || "");
  if (!match) return [url];
  const [, scheme, auth, hosts, rest] = match;
  const list = hosts.split(",").filter(Boolean);
  if (list.length < 2) return [url];
  return list.map((h) => `${scheme}${auth != null ? `${auth}@` : ""}${h}${rest}`);
}

function pool(url) {
  if (!pools.has(url)) {
    const p = new pg.Pool({
      connectionString: url,
      max: Number(process.env.DATABASE_POOL_MAX || 5),
      connectionTimeoutMillis: 3000,
      idleTimeoutMillis: 10000,
      // Client-side timeout: PgBouncer refuses unknown startup parameters
      // such as statement_timeout.
      query_timeout: Number(process.env.DATABASE_QUERY_TIMEOUT_MS || 15000),
    });
    p.on("error", (err) => console.error("postgresql pool:", err.message));
    pools.set(url, p);
  }
  return pools.get(url);
}

export function dbConfigured() {
  return Boolean(process.env.DATABASE_URL);
}

// Reads go to the read-only pools first and fall back to the primary's when
// those cannot serve (a replica restarting); writes go to the primary's.
function targets(read) {
  const primaryUrls = splitHosts(process.env.DATABASE_URL);
  if (!read || !process.env.DATABASE_READ_URL) return primaryUrls;
  return [...new Set([...splitHosts(process.env.DATABASE_READ_URL), ...primaryUrls])];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Runs one statement, moving to the next host on a retryable error until the
// retry budget is spent. The host that last worked is tried first next time.
async function run(text, params, read) {
  const urls = targets(read);
  const key = urls.join(" ");
  const deadline = Date.now() + RETRY_BUDGET_MS;
  let index = preferred.get(key) ?? 0;
  for (let attempt = 0; ; attempt += 1) {
    const url = urls[index % urls.length];
    try {
      const result = await pool(url).query(text, params);
      preferred.set(key, index % urls.length);
      return result;
    } catch (err) {
      if (!retryable(err) || Date.now() >= deadline) throw err;
      console.error(`postgresql: ${err.message}; trying ${urls.length > 1 ? "the next host" : "again"}`);
      index += 1;
      // After a full round over every host, wait a little before the next.
      if (index % urls.length === 0) await sleep(Math.min(250 * (attempt + 1), 1000));
    }
  }
}

// Creates the tables once per process. Several workers may race on a fresh
// database: a duplicate-object error from a parallel CREATE is fine.
export function ensureSchema() {
  if (!schemaReady) {
    schemaReady = (async () => {
      for (const statement of SCHEMA) {
        try {
          await run(statement, [], false);
        } catch (err) {
          if (!["23505", "42P07"].includes(err.code)) throw err;
        }
      }
    })().catch((err) => {
      schemaReady = null;
      throw err;
    });
  }
  return schemaReady;
}

export async function query(text, params, { read = false } = {}) {
  await ensureSchema();
  return run(text, params, read);
}
