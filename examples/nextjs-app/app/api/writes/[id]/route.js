import { dbConfigured, query } from "../../../../lib/db.js";

export const dynamic = "force-dynamic";

// GET /api/writes/<id>: the stored row, or 404.
export async function GET(_request, { params }) {
  const { id } = await params;
  if (!dbConfigured()) {
    return Response.json({ error: "database not configured" }, { status: 503 });
  }
  try {
    const { rows } = await query(
      "SELECT id, payload, host, release, created_at FROM webstack_writes WHERE id = $1",
      [id],
    );
    if (rows.length === 0) return Response.json({ error: "not found", id }, { status: 404 });
    return Response.json(rows[0], { headers: { "Cache-Control": "no-store" } });
  } catch (err) {
    return Response.json({ error: `read failed: ${err.message}` }, { status: 503 });
  }
}
