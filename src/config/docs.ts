/**
 * Generates docs/config-reference.md from the zod schemas, so the reference says exactly what
 * the loader accepts. `npx tsx src/config/docs.ts` (or `npm run docs`) rewrites the file; a test
 * fails when the committed file differs from what this renders.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { CROSS_FIELD_RULES } from './cross-checks.ts';
import { clusterFileSchema, PRESET_ROLES, secretsSchema } from './schema.ts';

export const REFERENCE_PATH = fileURLToPath(new URL('../../docs/config-reference.md', import.meta.url));

/** The parts of JSON Schema that z.toJSONSchema emits for our schemas. */
interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
  anyOf?: JsonSchema[];
}

interface Row {
  field: string;
  type: string;
  dflt: string;
  description: string;
}

const code = (s: string) => `\`${s}\``;
// Table cells: a `|` would end the cell and `<name>` would read as an HTML tag.
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Patterns of the schema said in words (an IPv4 regex helps nobody); others are shown as is. */
const PATTERNS: Record<string, string> = {
  '^[a-z][a-z0-9-]{0,30}$': 'name: lower case letters, digits and dashes, starting with a letter, at most 31 characters',
  '^\\/.*': 'string starting with `/`',
};

function typeOf(s: JsonSchema): string {
  if (s.pattern?.startsWith('^(25[0-5]')) return 'IPv4 address, e.g. `10.0.0.11`';
  if (s.enum) return `one of ${s.enum.map((v) => code(String(v))).join(', ')}`;
  if (s.anyOf) return s.anyOf.map(typeOf).join(', or ');
  if (s.type === 'integer' || s.type === 'number') {
    const max = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
    const range = s.minimum !== undefined && max !== undefined ? ` ${s.minimum}–${max}` : s.minimum !== undefined ? ` ≥ ${s.minimum}` : '';
    return `${s.type}${range}`;
  }
  if (s.type === 'string') {
    if (s.format === 'email') return 'e-mail address';
    if (s.pattern) return PATTERNS[s.pattern] ?? `string matching ${code(s.pattern)}`;
    if (s.minLength === 1) return 'non-empty string';
    return s.minLength ? `string, at least ${s.minLength} characters` : 'string';
  }
  if (s.type === 'array' && s.items?.properties) return 'list of entries with the fields below';
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'values'}${s.minItems ? `, at least ${s.minItems}` : ''}`;
  if (s.type === 'object') return typeof s.additionalProperties === 'object' ? 'map: name → the fields below' : s.properties ? 'section' : 'map';
  return s.type ?? 'value';
}

function defaultOf(s: JsonSchema, required: boolean): string {
  if (required) return '**required**';
  if (s.default === undefined) return 'optional';
  if (s.type === 'object') return '(section)';
  return code(JSON.stringify(s.default));
}

/** Every field under `s`, depth first, in schema order. */
function rows(s: JsonSchema, prefix: string): Row[] {
  const out: Row[] = [];
  for (const [key, sub] of Object.entries(s.properties ?? {})) {
    const field = prefix ? `${prefix}.${key}` : key;
    const required = (s.required ?? []).includes(key);
    out.push({ field, type: typeOf(sub), dflt: defaultOf(sub, required), description: sub.description ?? '' });
    out.push(...children(sub, field));
  }
  return out;
}

function children(s: JsonSchema, field: string): Row[] {
  if (s.properties) return rows(s, field);
  if (typeof s.additionalProperties === 'object') return rows(s.additionalProperties, `${field}.<name>`);
  if (s.items?.properties) return rows(s.items, `${field}[]`);
  return [];
}

function table(s: z.ZodType): string[] {
  const json = z.toJSONSchema(s, { io: 'input' }) as JsonSchema;
  return [
    '| field | type | default | description |',
    '|---|---|---|---|',
    ...rows(json, '').map((r) => `| ${code(r.field)} | ${cell(r.type)} | ${cell(r.dflt)} | ${cell(r.description)} |`),
  ];
}

export function renderConfigReference(): string {
  const presets = Object.entries(PRESET_ROLES).flatMap(([topology, machines]) => [
    `- ${code(topology)}: ${Object.entries(machines)
      .map(([name, roles]) => `${code(name)} (${roles.join(', ')})`)
      .join(', ')}`,
  ]);
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs`; do not edit by hand. -->',
    '',
    'Vigil reads two files: the cluster file `vigil.yaml` and the secrets file it names. `vigil validate [FILE]`',
    'checks both and reports every problem with its file, line, field and fix. Examples: `examples/pair.yaml`,',
    '`examples/distributed.yaml`, `examples/vigil.secrets.example.yaml`.',
    '',
    '## vigil.yaml',
    '',
    clusterFileSchema.description ?? '',
    '',
    ...table(clusterFileSchema),
    '',
    '### Presets',
    '',
    'With `topology: pair` or `distributed`, the machines below must be listed under `machines`; their `roles` may be left out and',
    'come from the preset. Other machines, and every machine of `topology: custom`, need `roles`.',
    '',
    ...presets,
    '',
    '### Rules across fields',
    '',
    ...CROSS_FIELD_RULES.map((r) => `- ${r}`),
    '',
    '## The secrets file',
    '',
    secretsSchema.description ?? '',
    'It must be readable and writable by its owner only (`chmod 600`); values that still start with `CHANGE-ME` (the',
    "example file's placeholders) are refused. Put a value in single quotes when it starts with @, %, !, &, *, [, { or a",
    'backquote, or contains ` #` (YAML would read a comment there). No error message ever quotes a value of this file.',
    '',
    ...table(secretsSchema),
    '',
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(REFERENCE_PATH, renderConfigReference());
  process.stdout.write(`wrote ${REFERENCE_PATH}\n`);
}
