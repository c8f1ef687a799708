import { dbConfigured, query } from "../../../lib/db.js";
import { identity } from "../../../lib/checks.js";
import { writes } from "../../../lib/counters.js";

export const dynamic = "force-dynamic";

const ID = /^[A-Za-z0-9._:-]{1,128}$/;

function error(status, message) {
  return Response.json({ error: message }, { status, headers: { "Cache-Control": "no-store" } });
}

// POST {"id": "<client-chosen unique id>", "payload": "..."}: stores one row.
// Repeating an id is safe (the row is kept once): a client may retry.
export async function POST(request) {
  if (!dbConfigured()) return error(503, "database not configured");
  let body;
  try {
    body = await request.json();
  } catch {
    return error(400, "expected a JSON body");
  }
  const id = String(body?.id ?? "");
  if (!ID.test(id)) return error(400, "id must be 1-128 characters of A-Z a-z 0-9 . _ : -");
  const { release, host } = identity();
  try {
    const result = await query(
      `INSERT INTO webstack_writes (id, payload, host, release) VALUES ($1, $2, $3, $4)
       ON CONFLICT (id) DO NOTHING`,
      [id, body.payload == null ? null : String(body.payload).slice(0, 1000), host, release],
    );
    const inserted = result.rowCount === 1;
    writes[inserted ? "inserted" : "duplicate"] += 1;
    return Response.json({ id, inserted, host, release }, { status: inserted ? 201 : 200 });
  } catch (err) {
    writes.error += 1;
    return error(503, `write failed: ${err.message}`);
  }
}

// GET ?prefix=<p>: how many rows have ids starting with <p> (all rows without
// it). Reads the primary, so a write acknowledged before is always counted.
export async function GET(request) {
  if (!dbConfigured()) return error(503, "database not configured");
  const prefix = new URL(request.url).searchParams.get("prefix") ?? "";
  try {
    const { rows } = await query(
      "SELECT count(*)::bigint AS count FROM webstack_writes WHERE starts_with(id, $1)",
      [prefix],
    );
    return Response.json(
      { prefix, count: Number(rows[0].count) },
      { headers: { "Cache-Control": "no-store" } },
    );
  } catch (err) {
    return error(503, `read failed: ${err.message}`);
  }
}
