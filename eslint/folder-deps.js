/**
 * ESLint rule `vigil/folder-deps`: an import from one folder of src/ into another must be allowed
 * by eslint/deps.js. Checks static imports, `export ... from`, and `import()` of a literal path;
 * type-only imports count too (a type pulls its folder's vocabulary in as much as a value does).
 */
import { dirname, join, relative, sep } from 'node:path';
import { ALLOWED } from './deps.js';

/** 'src/agent/daemon.ts' -> ['agent', 'agent/daemon.ts']; null outside src/ or for a file directly in it. */
function place(rel) {
  const parts = rel.split(sep);
  if (parts[0] !== 'src' || parts.length < 3) return null;
  return { folder: parts[1], file: parts.slice(1).join('/') };
}

export const folderDeps = {
  meta: {
    type: 'problem',
    docs: { description: 'imports across folders of src/ follow the declared dependency direction (eslint/deps.js)' },
    schema: [],
    messages: {
      forbidden:
        '{{from}}/ must not import {{to}} (eslint/deps.js allows {{from}}/ to import: {{allowed}}). Move the shared part down a layer, or pass it in from the caller.',
      unknown: '{{from}}/ is not in eslint/deps.js: add the folder with the folders it may import.',
    },
  },
  create(context) {
    const root = context.cwd;
    const rel = relative(root, context.filename);
    const me = place(rel);
    if (!me || rel.endsWith('.test.ts')) return {};
    const allowed = ALLOWED[me.folder];
    const check = (node, source) => {
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      const target = place(relative(root, join(dirname(context.filename), source)));
      if (!target || target.folder === me.folder) return;
      if (!allowed) return context.report({ node, messageId: 'unknown', data: { from: me.folder } });
      if (allowed.includes(target.folder) || allowed.includes(target.file)) return;
      context.report({ node, messageId: 'forbidden', data: { from: me.folder, to: target.file, allowed: allowed.join(', ') || 'nothing' } });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};

export default { meta: { name: 'vigil' }, rules: { 'folder-deps': folderDeps } };
