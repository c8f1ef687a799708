import os from "node:os";
import { dbConfigured, query } from "./db.js";
import { redis, redisConfigured } from "./redis.js";

const TIMEOUT_MS = 2000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function probe(configured, what, fn) {
  if (!configured) return { configured: false, ok: null };
  const start = Date.now();
  try {
    const detail = await withTimeout(fn(), what);
    return { configured: true, ok: true, latency_ms: Date.now() - start, ...detail };
  } catch (err) {
    return { configured: true, ok: false, latency_ms: Date.now() - start, error: err.message };
  }
}

export function checkPostgresql() {
  return probe(dbConfigured(), "postgresql", async () => {
    const { rows } = await query(
      "SELECT pg_is_in_recovery() AS in_recovery, current_setting('server_version') AS version",
    );
    return { in_recovery: rows[0].in_recovery, version: rows[0].version };
  });
}

export function checkRedis() {
  return probe(redisConfigured(), "redis", async () => {
    const client = redis();
    await client.ping();
    const stream = client.stream;
    return { master: stream ? `${stream.remoteAddress}:${stream.remotePort}` : null };
  });
}

export function identity() {
  return {
    app: process.env.APP_NAME || "webstack-example",
    // Set by the inventory (webstack_app_env), not by the stack's wiring.
    environment: process.env.APP_ENVIRONMENT || null,
    release: process.env.RELEASE_ID || "unknown",
    host: os.hostname(),
    pid: process.pid,
    worker: process.env.NODE_APP_INSTANCE ?? null,
  };
}

// Healthy when every configured dependency answers; an unconfigured one is
// reported as such and does not make the app unhealthy.
export async function health() {
  const [postgresql, redisState] = await Promise.all([checkPostgresql(), checkRedis()]);
  const checks = { postgresql, redis: redisState };
  const healthy = Object.values(checks).every((c) => !c.configured || c.ok);
  return {
    healthy,
    body: {
      status: healthy ? "ok" : "unhealthy",
      ...identity(),
      uptime_s: Math.round(process.uptime()),
      checks,
    },
  };
}
