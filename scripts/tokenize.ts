/**
 * Encode text to token ids or decode ids to text.
 *
 *     deno task tokenize --tokenizer VOCAB --text "Hello" --json   # {"ids": [...]}
 *     deno task tokenize --tokenizer bytes --file notes.txt         # ids, space-separated
 *     deno task tokenize --tokenizer VOCAB --decode 33520,4600      # text
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { loadTokenizer } from "../lib/tokenizer/mod.ts";

const USAGE =
  `Usage: deno task tokenize --tokenizer VOCAB_FILE|bytes (--text T | --file PATH | --decode IDS) [--json]

  --tokenizer  a World vocabulary file (rwkv_vocab_v20230424.txt) or "bytes"
  --text       text to encode
  --file       encode the contents of a UTF-8 text file
  --decode     token ids to decode, separated by commas or spaces ("33520,4600")
  --json       print {"ids": [...]} (encode) or {"text": "..."} (decode)
  -h, --help   show this help`;

const ArgsSchema = z.object({
  tokenizer: z.string({ error: "--tokenizer is required (a vocabulary file path or bytes)" })
    .min(1, { error: "--tokenizer must not be empty" }),
  text: z.string().optional(),
  file: z.string().optional(),
  decode: z.string().optional(),
  json: z.boolean().default(false),
}).refine((a) => [a.text, a.file, a.decode].filter((x) => x !== undefined).length === 1, {
  error: "pass exactly one of --text, --file or --decode",
});

/** Parse "1,2, 3" or "1 2 3" into ids, naming the first bad entry. */
function parseIds(s: string): number[] {
  const parts = s.split(/[\s,]+/).filter((p) => p !== "");
  return parts.map((p) => {
    const v = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(v)) {
      throw new RangeError(`--decode expects non-negative integer ids, got ${JSON.stringify(p)}`);
    }
    return v;
  });
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      tokenizer: { type: "string" },
      text: { type: "string" },
      file: { type: "string" },
      decode: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const { help: _, ...rest } = values;
  const parsed = ArgsSchema.safeParse(rest);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => i.message).join("; "));
  const args = parsed.data;
  const tok = await loadTokenizer(args.tokenizer);
  if (args.decode !== undefined) {
    const text = tok.decode(parseIds(args.decode));
    console.log(args.json ? `{"text": ${JSON.stringify(text)}}` : text);
    return;
  }
  const text = args.text ?? await Deno.readTextFile(args.file!);
  const ids = tok.encode(text);
  console.log(args.json ? `{"ids": [${ids.join(", ")}]}` : ids.join(" "));
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(1);
  }
}
