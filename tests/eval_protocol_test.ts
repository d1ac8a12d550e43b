/**
 * The evaluation protocol (docs/MATH.md §9) without a GPU: rendered prompts character for character,
 * acc_norm, WinoGrande's partial scoring, GSM8K answer extraction, the CSV parser, loaders and
 * their errors, statistics.
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { fixture, hasFixtures } from "./_helpers.ts";
import { CsvError, parseCsv } from "../lib/eval/csv.ts";
import {
  DataError,
  parseArc,
  parseGsm8k,
  parseLambada,
  parseWinogrande,
} from "../lib/eval/data.ts";
import { parseMmluCsv } from "../lib/eval/mmlu.ts";
import {
  arcRequest,
  GSM8K_STOP,
  gsm8kPrefix,
  gsm8kRequest,
  lambadaRequest,
  mmluPrefix,
  mmluRequest,
  winograndeRequest,
} from "../lib/eval/prompts.ts";
import {
  exactMatch,
  extractFlexible,
  extractStrict,
  mcnemarExact,
  meanStderr,
  normPrediction,
} from "../lib/eval/metrics.ts";
import { prepareTask } from "../lib/eval/tasks.ts";
import type { RowScore } from "../lib/eval/scorer.ts";

const DATA = fixture("data");

Deno.test({
  name: "ARC prompt: fixture item, llm-foundry and Hugging Face layouts render the same",
  ignore: !hasFixtures,
  async fn() {
    const [item] = parseArc(
      (await Deno.readTextFile(`${DATA}/llm-foundry/arc_challenge.jsonl`)).split("\n")[0],
      "arc_challenge.jsonl",
    );
    const req = arcRequest(item);
    assertEquals(req.prefix, "");
    assertEquals(
      req.contexts[0],
      "Question: An astronomer observes that a planet rotates faster after a meteorite impact. " +
        "Which is the most likely effect of this increase in rotation?\nAnswer:",
    );
    assertEquals(req.continuations, [
      " Planetary density will decrease.",
      " Planetary years will become longer.",
      " Planetary days will become shorter.",
      " Planetary gravity will become stronger.",
    ]);
    assertEquals(item.gold, 2);
    const hf = parseArc(
      JSON.stringify({
        question: item.question,
        choices: { text: item.choices, label: ["A", "B", "C", "D"] },
        answerKey: "C",
      }),
      "hf.jsonl",
    )[0];
    assertEquals(arcRequest(hf), req);
    assertEquals(hf.gold, 2);
  },
});

Deno.test({
  name: "WinoGrande prompt: two contexts, one shared continuation; original layout agrees",
  ignore: !hasFixtures,
  async fn() {
    const [item] = parseWinogrande(
      (await Deno.readTextFile(`${DATA}/llm-foundry/winogrande.jsonl`)).split("\n")[0],
      "winogrande.jsonl",
    );
    const req = winograndeRequest(item);
    assertEquals(req.contexts, [
      "Sarah was a much better surgeon than Maria so Sarah",
      "Sarah was a much better surgeon than Maria so Maria",
    ]);
    assertEquals(req.continuations, [
      " always got the easier cases.",
      " always got the easier cases.",
    ]);
    const orig = parseWinogrande(
      JSON.stringify({
        sentence: "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        option1: "Sarah",
        option2: "Maria",
        answer: "2",
      }),
      "wino.jsonl",
    )[0];
    assertEquals(winograndeRequest(orig), req);
    assertEquals(orig.gold, item.gold);
  },
});

Deno.test({
  name: "LAMBADA prompt: context, then ' ' + last word; original {text} layout agrees",
  ignore: !hasFixtures,
  async fn() {
    const item = parseLambada(
      (await Deno.readTextFile(`${DATA}/llm-foundry/lambada_openai.jsonl`)).split("\n")[1],
      "lambada.jsonl",
    )[0];
    const req = lambadaRequest(item);
    assertEquals(req.continuations, [" Shane"]);
    assert(req.contexts[0].endsWith('"I can make it there on my own,'));
    const orig = parseLambada(JSON.stringify({ text: "a b  c end" }), "l.jsonl")[0];
    assertEquals(lambadaRequest(orig), {
      prefix: "",
      contexts: ["a b  c"],
      continuations: [" end"],
    });
  },
});

Deno.test("MMLU prompt: header, 5 shots from dev, question, ' A'…' D'", () => {
  const dev = parseMmluCsv(
    [1, 2, 3, 4, 5].map((i) => `Q${i}?,a${i},b${i},c${i},d${i},${"ABCDA"[i - 1]}`).join("\n"),
    "high_school_math_dev.csv",
    "high_school_math",
  );
  const [test] = parseMmluCsv('" What, now?\n",x,"y ""q""",z,w,B\n', "t_test.csv", "t");
  const req = mmluRequest(test, mmluPrefix("high_school_math", dev));
  assertEquals(
    req.prefix + req.contexts[0],
    "The following are multiple choice questions (with answers) about high school math.\n\n" +
      "Q1?\nA. a1\nB. b1\nC. c1\nD. d1\nAnswer: A\n\n" +
      "Q2?\nA. a2\nB. b2\nC. c2\nD. d2\nAnswer: B\n\n" +
      "Q3?\nA. a3\nB. b3\nC. c3\nD. d3\nAnswer: C\n\n" +
      "Q4?\nA. a4\nB. b4\nC. c4\nD. d4\nAnswer: D\n\n" +
      "Q5?\nA. a5\nB. b5\nC. c5\nD. d5\nAnswer: A\n\n" +
      'What, now?\nA. x\nB. y "q"\nC. z\nD. w\nAnswer:',
  );
  assertEquals(req.continuations, [" A", " B", " C", " D"]);
  assertEquals(test.gold, 1);
});

Deno.test("GSM8K prompt: 5 shots 'Question: …\\nAnswer: …', then the question", () => {
  const rows = [1, 2, 3, 4, 5, 6].map((i) =>
    JSON.stringify({ question: `q${i}?`, answer: `w${i}\n#### ${i}` })
  ).join("\n");
  const items = parseGsm8k(rows, "train.jsonl");
  const req = gsm8kRequest(items[5], gsm8kPrefix(items.slice(0, 5)));
  assertEquals(
    req.prefix + req.context,
    "Question: q1?\nAnswer: w1\n#### 1\n\nQuestion: q2?\nAnswer: w2\n#### 2\n\n" +
      "Question: q3?\nAnswer: w3\n#### 3\n\nQuestion: q4?\nAnswer: w4\n#### 4\n\n" +
      "Question: q5?\nAnswer: w5\n#### 5\n\nQuestion: q6?\nAnswer:",
  );
  assertEquals(req.stop, GSM8K_STOP);
  assertEquals(GSM8K_STOP, ["\n\n", "Question:"]);
  assertEquals(items[5].target, "6");
});

Deno.test("acc_norm divides by the choice's character length (no delimiter space)", () => {
  // acc picks -4 (choice 0); per character: -4/2 = -2 vs -6/4 = -1.5 → choice 1.
  assertEquals(normPrediction([-4, -6], [" ab", " abcd"]), 1);
  // code points, not UTF-16 units: "é😀" is 2 characters.
  assertEquals(normPrediction([-2.1, -3], [" é😀", " abc"]), 1);
  assertEquals(normPrediction([-1.9, -3], [" é😀", " abc"]), 0);
});

Deno.test("WinoGrande picks the context under which the shared continuation scores higher", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/winogrande.jsonl`,
    JSON.stringify({ sentence: "A _ b.", option1: "x", option2: "y", answer: "2" }) + "\n",
  );
  const task = await prepareTask("winogrande", { dataDir: dir });
  const item = task.items[0];
  assert(item.kind === "loglik");
  const rows = (a: number, b: number): RowScore[] => [
    { loglik: a, greedy: false, tokens: 3 },
    { loglik: b, greedy: false, tokens: 3 },
  ];
  assertEquals(item.judge(rows(-5, -3)).metrics.acc, 1);
  assertEquals(item.judge(rows(-3, -5)).metrics.acc, 0);
  assertEquals(item.request.contexts, ["A x", "A y"]);
  assertEquals(item.request.continuations, [" b.", " b."]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("GSM8K extraction: strict ####, flexible last number, normalisation", () => {
  assertEquals(extractStrict("so 1,000 + 234\n#### 1,234"), "1234");
  assert(exactMatch(extractStrict("#### 1,234"), "1234"));
  assertEquals(extractStrict("The answer is 5"), null);
  assertEquals(extractFlexible("It costs $5."), "5");
  assert(exactMatch(extractFlexible("It costs $5."), "5"));
  assertEquals(extractStrict("#### -7"), "-7");
  assertEquals(extractFlexible("from 3 down to -12"), "-12");
  assertEquals(extractStrict("#### 2.5"), "2.5");
  assertEquals(extractFlexible("about 0.75 of it"), "0.75");
  assert(!exactMatch(extractStrict("#### 2.50"), "2.5")); // string match, as the harness does
  assertEquals(extractFlexible("no digits here"), null);
  assert(!exactMatch(null, "3"));
  assertEquals(extractFlexible("48/2 = 24 clips, then 1,200."), "1200");
});

Deno.test("CSV: quotes, doubled quotes, embedded newlines and commas, CRLF, BOM, line numbers", () => {
  const rows = parseCsv('\ufeffa,"b,c"\r\n"multi\nline","say ""hi"""\n\nx,,\nlast,"q"');
  assertEquals(rows.map((r) => r.fields), [
    ["a", "b,c"],
    ["multi\nline", 'say "hi"'],
    ["x", "", ""],
    ["last", "q"],
  ]);
  assertEquals(rows.map((r) => r.line), [1, 2, 5, 6]);
  assertEquals(parseCsv('a"b,c\n')[0].fields, ['a"b', "c"]);
  assertThrows(() => parseCsv('a,"open\nnever closed', "f.csv"), CsvError, "f.csv:1");
  assertThrows(() => parseCsv('a,"b"c\n', "f.csv"), CsvError, "after a closing quote");
});

Deno.test("loaders: malformed rows name file:line and the reason", () => {
  assertThrows(
    () => parseArc('{"query":"Q","choices":["a","b"],"gold":1}\n{bad', "arc.jsonl"),
    DataError,
    "arc.jsonl:2: not valid JSON",
  );
  assertThrows(
    () => parseArc('{"query":"Q","choices":["a","b"],"gold":5}', "arc.jsonl"),
    DataError,
    "gold is beyond the last choice",
  );
  assertThrows(
    () =>
      parseArc(
        '{"question":"Q","choices":{"text":["a","b"],"label":["A","B"]},"answerKey":"E"}',
        "a.jsonl",
      ),
    DataError,
    "answerKey is not one of choices.label",
  );
  assertThrows(
    () =>
      parseWinogrande(
        '{"sentence":"no blank","option1":"a","option2":"b","answer":"1"}',
        "w.jsonl",
      ),
    DataError,
    "w.jsonl:1",
  );
  assertThrows(
    () =>
      parseWinogrande('{"sentence":"a _ b","option1":"a","option2":"b","answer":""}', "w.jsonl"),
    DataError,
    'answer must be "1" or "2"',
  );
  assertThrows(() => parseGsm8k('{"question":"q","answer":"42"}', "g.jsonl"), DataError, "####");
  assertThrows(() => parseMmluCsv("q,a,b,c,d,E\n", "m_dev.csv", "m"), DataError, "m_dev.csv:1");
  assertThrows(() => parseMmluCsv("q,a,b,c\n", "m_dev.csv", "m"), DataError, "6 fields");
  assertThrows(() => parseArc("\n\n", "empty.jsonl"), DataError, "no rows");
});

Deno.test({
  name: "fixture data loads: counts, MMLU subjects and 5 dev shots, GSM8K seeded shots",
  ignore: !hasFixtures,
  async fn() {
    const arc = await prepareTask("arc_challenge", { dataDir: DATA });
    assertEquals(arc.items.length, 1172);
    const mmlu = await prepareTask("mmlu", { dataDir: DATA, subjects: ["anatomy"], limit: 3 });
    assertEquals(mmlu.items.length, 3);
    assertEquals([mmlu.nShot, mmlu.split], [5, "test"]);
    const it = mmlu.items[0];
    assert(it.kind === "loglik");
    assert(
      it.request.prefix.startsWith(
        "The following are multiple choice questions (with answers) about anatomy.\n\nWhat is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\n",
      ),
    );
    assertEquals(it.request.prefix.split("\nAnswer: ").length, 6);
    const g1 = await prepareTask("gsm8k", { dataDir: DATA, limit: 2, seed: 7 });
    const g2 = await prepareTask("gsm8k", { dataDir: DATA, limit: 2, seed: 7 });
    assertEquals(g1.items[0].request.prefix, g2.items[0].request.prefix);
    assertEquals(g1.items[0].request.prefix, g1.items[1].request.prefix);
    assertEquals(g1.items[0].request.prefix.split("Question: ").length, 6);
  },
});

Deno.test("statistics: stderr = sample std / √n; McNemar's exact p", () => {
  const s = meanStderr([1, 0, 1, 1]);
  assertEquals(s.mean, 0.75);
  assert(Math.abs(s.stderr - Math.sqrt(0.25 / 4)) < 1e-12);
  const m = mcnemarExact([1, 1, 0, 0, 1], [0, 0, 0, 1, 1]);
  assertEquals([m.aOnly, m.bOnly], [2, 1]);
  assert(Math.abs(m.p - 1) < 1e-12); // 2·P(X ≤ 1 | n=3) = 2·4/8 = 1
  assertEquals(mcnemarExact([1, 0], [1, 0]).p, 1);
});
