import { health } from "../../../lib/checks.js";

export const dynamic = "force-dynamic";

// 200 when every configured dependency answers, 503 otherwise. Load
// balancers and the deployment's health gate poll this.
export async function GET() {
  const { healthy, body } = await health();
  return Response.json(body, {
    status: healthy ? 200 : 503,
    headers: { "Cache-Control": "no-store" },
  });
}
