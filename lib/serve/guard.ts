/**
 * The server's checks before any work: errors shaped like the OpenAI API's, the Host header
 * (DNS rebinding), the bearer token (compared in constant time), the content type (CSRF from
 * web pages posting `text/plain`), and the body size (read with a cap, 413 past it).
 *
 * @module
 */
import type { z } from "zod";

/** An HTTP error answered as `{error: {message, type, param, code}}`, as OpenAI does. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** A JSON response. */
export const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });

/** The OpenAI-shaped error body of `e`. */
export function errorResponse(e: HttpError): Response {
  const type = e.status >= 500 ? "server_error" : "invalid_request_error";
  const headers: Record<string, string> = e.status === 401
    ? { "www-authenticate": 'Bearer realm="rwkv"' }
    : {};
  return json({ error: { message: e.message, type, param: e.param, code: e.code } }, e.status, {
    ...headers,
  });
}

/** Host names that reach only this machine. */
const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** True when `hostname` (a bind address or a Host header's name) is loopback. */
export function isLoopback(hostname: string): boolean {
  return LOOPBACK.has(hostname.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** The name part of a Host header value (`[::1]:8000` → `[::1]`, `a.b:80` → `a.b`). */
function hostName(header: string): string {
  if (header.startsWith("[")) return header.slice(0, header.indexOf("]") + 1);
  return header.replace(/:\d*$/, "");
}

/**
 * Refuse a Host header that is not a loopback name, so that a page on an attacker's domain
 * re-pointed at 127.0.0.1 (DNS rebinding) cannot talk to the server.
 *
 * @throws {HttpError} 403 naming the header value
 */
export function checkHost(req: Request): void {
  const host = req.headers.get("host") ?? "";
  if (!isLoopback(hostName(host))) {
    throw new HttpError(
      403,
      `Host header ${JSON.stringify(host)} is not a loopback name (localhost, 127.0.0.1, ` +
        `[::1]); the server binds 127.0.0.1 only. To serve other hosts, start it with --host`,
      null,
      "host_not_allowed",
    );
  }
}

const sha256 = async (s: string) =>
  new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));

/**
 * Check `Authorization: Bearer <key>` against `apiKey`: both are hashed (SHA-256) and the
 * digests compared with every byte visited, so timing says nothing about the key.
 *
 * @throws {HttpError} 401, never quoting the token sent
 */
export async function checkApiKey(req: Request, apiKey: string): Promise<void> {
  const auth = req.headers.get("authorization") ?? "";
  const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
  const [a, b] = await Promise.all([sha256(m ? m[1] : ""), sha256(apiKey)]);
  let diff = m ? 0 : 1;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  if (diff !== 0) {
    throw new HttpError(
      401,
      m
        ? "Incorrect API key provided. Send the server's --api-key as `Authorization: Bearer …`"
        : "Missing API key: send `Authorization: Bearer <key>` (the server's --api-key)",
      null,
      "invalid_api_key",
    );
  }
}

/**
 * Read a JSON body: `Content-Type: application/json` required (415), at most `maxBytes`
 * (413, from `Content-Length` or while streaming), then validated with `schema` (400 naming
 * the field).
 */
export async function readJsonBody<S extends z.ZodType>(
  req: Request,
  schema: S,
  maxBytes: number,
): Promise<z.output<S>> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (type !== "application/json") {
    throw new HttpError(
      415,
      `Content-Type must be application/json, got ${JSON.stringify(type || "none")}`,
      null,
      "unsupported_media_type",
    );
  }
  const tooBig = (n: number | string) =>
    new HttpError(
      413,
      `the request body (${n} bytes) is over the ${maxBytes}-byte limit (--max-body-bytes)`,
      null,
      "request_too_large",
    );
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw tooBig(declared);
  const text = await readCapped(req, maxBytes, tooBig);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, "the request body is not valid JSON");
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    const field = i.path.join(".") || "body";
    throw new HttpError(400, `${field}: ${i.message}`, field);
  }
  return r.data;
}

async function readCapped(
  req: Request,
  maxBytes: number,
  tooBig: (n: string) => HttpError,
): Promise<string> {
  if (!req.body) return "";
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooBig(`more than ${maxBytes}`);
    }
    parts.push(value);
  }
  const all = new Uint8Array(n);
  let p = 0;
  for (const x of parts) (all.set(x, p), (p += x.length));
  return new TextDecoder().decode(all);
}
