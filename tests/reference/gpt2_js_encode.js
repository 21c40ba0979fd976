// Encodes files with the npm package gpt-3-encoder's own JavaScript encoder
// (Encoder.js), for gpt2_js_crosscheck.py, which compares the result with
// the Python oracle gpt2_bpe_ref.py.
//
// usage: node gpt2_js_encode.js PACKAGE_DIR FILE...
//   PACKAGE_DIR holds Encoder.js, encoder.json and vocab.bpe (the unpacked
//   tarball's package/ folder). Prints "# FILE" and then the ids, one a line.
//   Files are read as UTF-8 text, so pass only valid UTF-8.
'use strict';
const fs = require('fs');
const path = require('path');

if (process.argv.length < 4) {
  process.stderr.write('usage: node gpt2_js_encode.js PACKAGE_DIR FILE...\n');
  process.exit(2);
}
const { encode } = require(path.resolve(process.argv[2], 'Encoder.js'));
const out = [];
for (const file of process.argv.slice(3)) {
  out.push('# ' + file);
  for (const id of encode(fs.readFileSync(file, 'utf8'))) out.push(String(id));
}
process.stdout.write(out.join('\n') + '\n');
