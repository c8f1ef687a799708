// Per-worker counters for /api/metrics (each PM2 worker counts its own;
// the `worker` label tells them apart).
export const writes = { inserted: 0, duplicate: 0, error: 0 };
