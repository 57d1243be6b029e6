// Writes debian/copyright (machine-readable format 1.0) for the staged tree: Odyssey itself, then
// one paragraph per bundled npm package, from the license its package.json declares.
// Usage: node copyright.mjs <staged /usr/lib/odyssey> <output file>
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

const [libDir, output] = process.argv.slice(2);
if (!libDir || !output) throw new Error('usage: copyright.mjs <staged /usr/lib/odyssey> <output file>');

/** Every node_modules dir of the tree outside another one: the root's and a workspace's own. */
async function modulesDirs(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    if (entry.name === 'node_modules') found.push(path);
    else if (entry.name !== 'dist') found.push(...(await modulesDirs(path)));
  }
  return found;
}

/** Package directories below node_modules, scoped ones included; workspace links are ours. */
async function packages(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.isSymbolicLink()) continue;
    const path = join(dir, entry.name);
    if (entry.name.startsWith('@')) found.push(...(await packages(path)));
    else if (entry.isDirectory()) {
      found.push(path);
      const nested = join(path, 'node_modules');
      found.push(...(await packages(nested).catch(() => [])));
    }
  }
  return found;
}

const licenses = new Set();
const paragraphs = [];
const all = [];
for (const modules of await modulesDirs(libDir)) all.push(...(await packages(modules)));
for (const dir of all.sort()) {
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
  const license = typeof pkg.license === 'string' ? pkg.license : 'UNKNOWN';
  const author = typeof pkg.author === 'string' ? pkg.author : (pkg.author?.name ?? 'its authors');
  licenses.add(license);
  paragraphs.push(
    [
      `Files: usr/lib/odyssey/${relative(libDir, dir)}/*`,
      `Copyright: ${author} (npm package ${pkg.name} ${pkg.version}; see its license file)`,
      `License: ${license}`,
    ].join('\n'),
  );
}

const TEXTS = {
  MIT: [
    'Permission is hereby granted, free of charge, to any person obtaining a copy of this software',
    'and associated documentation files (the "Software"), to deal in the Software without',
    'restriction, including without limitation the rights to use, copy, modify, merge, publish,',
    'distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the',
    'Software is furnished to do so, subject to the following conditions:',
    '.',
    'The above copyright notice and this permission notice shall be included in all copies or',
    'substantial portions of the Software.',
    '.',
    'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING',
    'BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND',
    'NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,',
    'DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,',
    'OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.',
  ],
  ISC: [
    'Permission to use, copy, modify, and/or distribute this software for any purpose with or',
    'without fee is hereby granted, provided that the above copyright notice and this permission',
    'notice appear in all copies.',
    '.',
    'THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS',
    'SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE',
    'AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES',
    'WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT,',
    'NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR',
    'PERFORMANCE OF THIS SOFTWARE.',
  ],
  'Apache-2.0': ['On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.'],
};
const standalone = [...licenses].sort().map((license) => {
  const text = TEXTS[license] ?? ['The text is in the license file shipped with the package.'];
  return [`License: ${license}`, ...text.map((line) => ` ${line}`)].join('\n');
});

const header = [
  'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
  'Upstream-Name: odyssey',
  'Comment: The JavaScript under usr/lib/odyssey is built from the Odyssey repository; the',
  ' packages under usr/lib/odyssey/node_modules are bundled from npm, unmodified.',
].join('\n');
const own = [
  'Files: *',
  `Copyright: ${new Date(Number(process.env.SOURCE_DATE_EPOCH ?? Date.now() / 1000) * 1000).getUTCFullYear()} the Odyssey developers`,
  'License: Odyssey-undeclared',
].join('\n');
const ownText = [
  'License: Odyssey-undeclared',
  ' The Odyssey project has not declared a license for its own code yet.',
].join('\n');
await writeFile(output, `${[header, own, ...paragraphs, ownText, ...standalone].join('\n\n')}\n`);
