// Build the dashboard into ../static: app.js (one ES module bundle, minified), app.css,
// index.html, THIRD_PARTY_LICENSES.txt (the license of every bundled npm package).
// `npm ci && npm run build` (or `make dashboard` at the repository root).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'static');
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: { app: join(here, 'src', 'main.js') },
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  legalComments: 'none',
  outdir: out,
  metafile: true,
  logLevel: 'warning',
});
await build({
  entryPoints: { app: join(here, 'src', 'app.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));

// the npm packages the bundle holds, with their license texts
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
const texts = [...packages].sort().map((name) => {
  const dir = join(here, 'node_modules', name);
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  let license = '';
  for (const file of ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license']) {
    try {
      license = readFileSync(join(dir, file), 'utf8');
      break;
    } catch {
      // try the next name
    }
  }
  if (!license) throw new Error(`${name}: no license file in ${dir}`);
  return `${name} ${meta.version} (${meta.license})\n${meta.homepage || ''}\n\n${license.trim()}\n`;
});
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'),
  'Third-party software bundled into app.js of the memori dashboard\n' +
  '=================================================================\n\n' +
  texts.join('\n' + '-'.repeat(72) + '\n\n'));
console.log(`built ${out}: app.js bundles ${[...packages].sort().join(', ') || 'no package'}`);
