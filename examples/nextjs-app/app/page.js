import { dbConfigured, query } from "../lib/db.js";
import { identity } from "../lib/checks.js";
import { redis, redisConfigured } from "../lib/redis.js";

export const dynamic = "force-dynamic";

async function notes() {
  if (!dbConfigured()) return { state: "PostgreSQL is not configured (DATABASE_URL unset)." };
  try {
    const { rows } = await query(
      "SELECT id, body, host, created_at FROM webstack_notes ORDER BY id DESC LIMIT 10",
      [],
      { read: true },
    );
    const { rows: total } = await query("SELECT count(*)::bigint AS n FROM webstack_notes", [], {
      read: true,
    });
    return { rows, total: Number(total[0].n) };
  } catch (err) {
    return { state: `PostgreSQL error: ${err.message}` };
  }
}

async function views() {
  if (!redisConfigured()) return "Redis is not configured (REDIS_SENTINELS unset).";
  try {
    return `Page views counted in Redis: ${await redis().incr("webstack:pageviews")}`;
  } catch (err) {
    return `Redis error: ${err.message}`;
  }
}

export default async function Home() {
  const me = identity();
  const [list, counter] = await Promise.all([notes(), views()]);
  return (
    <main>
      <h1>{me.app}</h1>
      <p>
        Release <code>{me.release}</code> on <code>{me.host}</code> (pid {me.pid}, worker{" "}
        {me.worker ?? "-"})
      </p>
      <p>{counter}</p>
      <h2>Notes</h2>
      {list.state ? (
        <p>{list.state}</p>
      ) : (
        <>
          <p>{list.total} notes in PostgreSQL; the latest:</p>
          <ul>
            {list.rows.map((row) => (
              <li key={row.id}>
                {row.body} <small>({row.host}, {new Date(row.created_at).toISOString()})</small>
              </li>
            ))}
          </ul>
        </>
      )}
      <form method="post" action="/api/notes">
        <input name="body" maxLength={500} required placeholder="Write a note" />
        <button type="submit">Save</button>
      </form>
    </main>
  );
}
