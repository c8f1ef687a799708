import { checkPostgresql, checkRedis, identity } from "../../../lib/checks.js";
import { writes } from "../../../lib/counters.js";

export const dynamic = "force-dynamic";

function escape(value) {
  return String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

// Prometheus text format. Counters are per worker (label `worker`).
export async function GET() {
  const { release, worker } = identity();
  const labels = `release="${escape(release)}",worker="${escape(worker ?? "0")}"`;
  const memory = process.memoryUsage();
  const [postgresql, redis] = await Promise.all([checkPostgresql(), checkRedis()]);
  const lines = [
    "# HELP webstack_app_info Release served by this worker.",
    "# TYPE webstack_app_info gauge",
    `webstack_app_info{${labels}} 1`,
    "# HELP webstack_app_uptime_seconds Seconds since this worker started.",
    "# TYPE webstack_app_uptime_seconds gauge",
    `webstack_app_uptime_seconds{${labels}} ${process.uptime().toFixed(0)}`,
    "# HELP webstack_app_resident_memory_bytes Resident memory of this worker.",
    "# TYPE webstack_app_resident_memory_bytes gauge",
    `webstack_app_resident_memory_bytes{${labels}} ${memory.rss}`,
    "# HELP webstack_app_heap_used_bytes V8 heap in use by this worker.",
    "# TYPE webstack_app_heap_used_bytes gauge",
    `webstack_app_heap_used_bytes{${labels}} ${memory.heapUsed}`,
    "# HELP webstack_app_dependency_up Configured dependency answers (1) or not (0).",
    "# TYPE webstack_app_dependency_up gauge",
  ];
  for (const [name, state] of Object.entries({ postgresql, redis })) {
    if (state.configured) lines.push(`webstack_app_dependency_up{dependency="${name}"} ${state.ok ? 1 : 0}`);
  }
  lines.push(
    "# HELP webstack_app_writes_total Writes handled by this worker, by result.",
    "# TYPE webstack_app_writes_total counter",
  );
  for (const [result, count] of Object.entries(writes)) {
    lines.push(`webstack_app_writes_total{${labels},result="${result}"} ${count}`);
  }
  return new Response(`${lines.join("\n")}\n`, {
    headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store" },
  });
}
