// Redis through Sentinel: the client asks the Sentinels for the current
// master and follows a failover by itself.
import Redis from "ioredis";

let client = null;

export function redisConfigured() {
  return Boolean(process.env.REDIS_SENTINELS || process.env.REDIS_URL);
}

export function parseSentinels(value) {
  return value
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      const at = entry.lastIndexOf(":");
      return at > 0
        ? { host: entry.slice(0, at), port: Number(entry.slice(at + 1)) }
        : { host: entry, port: 26379 };
    });
}

export function redis() {
  if (client) return client;
  const common = {
    username: process.env.REDIS_USERNAME || undefined,
    password: process.env.REDIS_PASSWORD || undefined,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  };
  client = process.env.REDIS_SENTINELS
    ? new Redis({
        ...common,
        sentinels: parseSentinels(process.env.REDIS_SENTINELS),
        name: process.env.REDIS_MASTER_NAME || "mymaster",
        role: "master",
        sentinelUsername: process.env.REDIS_SENTINEL_USERNAME || undefined,
        sentinelPassword: process.env.REDIS_SENTINEL_PASSWORD || undefined,
        sentinelRetryStrategy: (times) => Math.min(times * 200, 2000),
      })
    : new Redis(process.env.REDIS_URL, common);
  client.on("error", (err) => console.error("redis:", err.message));
  return client;
}
