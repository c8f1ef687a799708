// PostgreSQL access through PgBouncer (transaction pooling): only unnamed
// statements and no session state (no SET, LISTEN or advisory locks), so any
// server connection can serve any query.
import pg from "pg";

const pools = new Map();
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

export function dbConfigured() {
  return Boolean(process.env.DATABASE_URL);
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
      query_timeout: 5000,
    });
    p.on("error", (err) => console.error("postgresql pool:", err.message));
    pools.set(url, p);
  }
  return pools.get(url);
}

// Primary (read/write) pool.
export function primary() {
  return pool(process.env.DATABASE_URL);
}

// Read pool: DATABASE_READ_URL when set (replicas may lag), else the primary.
export function reader() {
  return pool(process.env.DATABASE_READ_URL || process.env.DATABASE_URL);
}

// Creates the tables once per process. Several workers may race on a fresh
// database: a duplicate-object error from a parallel CREATE is fine.
export function ensureSchema() {
  if (!schemaReady) {
    schemaReady = (async () => {
      for (const statement of SCHEMA) {
        try {
          await primary().query(statement);
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
  return (read ? reader() : primary()).query(text, params);
}
