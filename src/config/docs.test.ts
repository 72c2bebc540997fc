import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { CROSS_FIELD_RULES } from './cross-checks.ts';
import { REFERENCE_PATH, renderConfigReference } from './docs.ts';
import { clusterFileSchema, secretsSchema } from './schema.ts';

test('docs/config-reference.md is what `npm run docs` renders (regenerate it if this fails)', () => {
  assert.equal(readFileSync(REFERENCE_PATH, 'utf8'), renderConfigReference());
});

/** Every field path of a zod schema, walked independently of the JSON Schema the docs use. */
function fields(s: z.core.$ZodType, prefix = ''): string[] {
  const def = s._zod.def as unknown as {
    type: string;
    innerType?: z.core.$ZodType;
    shape?: Record<string, z.core.$ZodType>;
    valueType?: z.core.$ZodType;
    element?: z.core.$ZodType;
  };
  if (def.innerType) return fields(def.innerType, prefix);
  if (def.type === 'object')
    return Object.entries(def.shape ?? {}).flatMap(([k, v]) => {
      const p = prefix ? `${prefix}.${k}` : k;
      return [p, ...fields(v, p)];
    });
  if (def.type === 'record' && def.valueType) return fields(def.valueType, `${prefix}.<name>`);
  if (def.type === 'array' && def.element) return fields(def.element, `${prefix}[]`);
  return [];
}

test('every field of vigil.yaml and of the secrets file is documented, with the cross-field rules', () => {
  const doc = renderConfigReference();
  const all = [...fields(clusterFileSchema), ...fields(secretsSchema)];
  assert.ok(all.length > 40, `walked only ${all.length} fields`);
  for (const f of all) assert.ok(doc.includes(`| \`${f}\` |`), `${f} is missing from the reference`);
  for (const rule of CROSS_FIELD_RULES) assert.ok(doc.includes(rule));
});
