import { dbConfigured, query } from "../../../lib/db.js";
import { identity } from "../../../lib/checks.js";

export const dynamic = "force-dynamic";

// The form on the home page posts here; answers with a redirect back to it.
export async function POST(request) {
  const form = await request.formData();
  const body = String(form.get("body") ?? "").trim().slice(0, 500);
  if (dbConfigured() && body) {
    await query("INSERT INTO webstack_notes (body, host) VALUES ($1, $2)", [body, identity().host]);
  }
  return new Response(null, { status: 303, headers: { Location: "/" } });
}
