/**
 * A small JSON Schema check for the OpenAPI test: the keywords src/api/openapi.ts uses (type with
 * 'null', properties, required, additionalProperties, items, enum, const, pattern, minLength,
 * maxLength, format date-time, local $ref). An unknown keyword is an error, so the document cannot
 * use one this check would silently ignore.
 */
type Schema = Record<string, unknown>;

const KNOWN = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'const',
  'pattern',
  'minLength',
  'maxLength',
  'format',
  '$ref',
  'description',
  'default',
]);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Every way `value` breaks `schema`, as `path: problem` lines (none: it validates). */
export function validate(value: unknown, schema: Schema, root: Schema, at = '$'): string[] {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) return [`${at}: the schema uses '${k}', which this check does not know`];
  if (typeof schema.$ref === 'string') {
    const m = /^#\/components\/schemas\/(\w+)$/.exec(schema.$ref);
    const target = m && (root.components as { schemas: Record<string, Schema> }).schemas[m[1]];
    return target ? validate(value, target, root, at) : [`${at}: unresolved $ref ${schema.$ref}`];
  }
  const errors: string[] = [];
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const allowed = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!allowed.includes(t) && !(t === 'integer' && allowed.includes('number'))) return [`${at}: is ${t}, the schema says ${allowed.join(' or ')}`];
  }
  if ('const' in schema && value !== schema.const) errors.push(`${at}: is ${JSON.stringify(value)}, the schema says ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (t === 'string') {
    const s = value as string;
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern).test(s)) errors.push(`${at}: '${s}' does not match ${schema.pattern}`);
    if (typeof schema.minLength === 'number' && s.length < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && s.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s)) errors.push(`${at}: '${s}' is not a date-time`);
  }
  if (t === 'object') {
    const o = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in o)) errors.push(`${at}: '${r}' is required`);
    for (const [k, v] of Object.entries(o)) {
      if (props[k]) errors.push(...validate(v, props[k], root, `${at}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${at}: '${k}' is not in the schema`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object')
        errors.push(...validate(v, schema.additionalProperties as Schema, root, `${at}.${k}`));
    }
  }
  if (t === 'array' && schema.items) (value as unknown[]).forEach((v, i) => errors.push(...validate(v, schema.items as Schema, root, `${at}[${i}]`)));
  return errors;
}
