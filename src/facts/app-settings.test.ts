import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fileNameOf,
  keySegments,
  lookupKey,
  parseSettings,
  parseUnitCredentials,
  pathProblem,
  readableCommand,
  stripJsonComments,
  type ParsedSettings,
} from './app-settings.ts';

function parsed(text: string, format: 'json' | 'properties' | 'env' = 'json'): ParsedSettings {
  const r = parseSettings(text, format, '/opt/app/appsettings.json');
  assert.ok(r.ok, r.ok ? '' : r.problem);
  return r.settings;
}

const APPSETTINGS = `{
  // Kestrel's HTTPS endpoint
  "Https": {
    "Port": 8443,
    "_CertificateFilePath": "/etc/app/tls/app.pem",
    "KeyFilePath": "/etc/app/tls/app.key", /* the key */
  },
  "Logging": { "Level": "Warning", },
}
`;

test('JSON as .NET reads it: comments and trailing commas, strings with // and commas untouched', () => {
  const clean = stripJsonComments('{"a": "http://x,}", // c\n "b": [1,2,], /* x\n y */ "c": 1,}');
  assert.deepEqual(JSON.parse(clean), { a: 'http://x,}', b: [1, 2], c: 1 });
  assert.equal(clean.split('\n').length, 3, 'lines kept');
  const bad = parseSettings('{\n  "a": 1\n  "b": 2\n}', 'json', '/x.json');
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.line, 3);
});

test('a nested key by its dotted path (or .NET colons), case-insensitively, with its line', () => {
  const s = parsed(APPSETTINGS);
  assert.deepEqual(lookupKey(s, 'Https.KeyFilePath'), { status: 'found', value: '/etc/app/tls/app.key', line: 6 });
  assert.deepEqual(lookupKey(s, 'https:keyfilepath'), { status: 'found', value: '/etc/app/tls/app.key', line: 6 });
  assert.deepEqual(keySegments('Kestrel:Certificates:Default:Path'), ['Kestrel', 'Certificates', 'Default', 'Path']);
  assert.deepEqual(lookupKey(s, 'Https.Port'), { status: 'not-a-string', line: 4 });
  assert.deepEqual(lookupKey(s, 'Https.Missing'), { status: 'missing' });
  assert.deepEqual(lookupKey(s, 'Nope.KeyFilePath'), { status: 'missing' });
  // The nested key's line, not that of the same name earlier in another section.
  const twice = parsed('{\n  "Logging": { "Path": "/var/log/app" },\n  "Https": {\n    "Path": "/etc/app/app.pem"\n  }\n}');
  assert.deepEqual(lookupKey(twice, 'Https.Path'), { status: 'found', value: '/etc/app/app.pem', line: 4 });
});

test('the seed case: a key disabled by a leading underscore, also on an enclosing object', () => {
  const s = parsed(APPSETTINGS);
  assert.deepEqual(lookupKey(s, 'Https.CertificateFilePath'), { status: 'disabled', how: 'underscore', written: 'Https._CertificateFilePath', line: 5 });
  const outer = parsed('{ "__Https": { "CertificateFilePath": "/a" } }');
  assert.deepEqual(lookupKey(outer, 'Https.CertificateFilePath'), { status: 'disabled', how: 'underscore', written: '__Https', line: 1 });
  assert.deepEqual(lookupKey(parsed('{"_KeyFilePath": "/k"}'), 'KeyFilePath'), { status: 'disabled', how: 'underscore', written: '_KeyFilePath', line: 1 });
});

test('properties and env files: found, disabled by an underscore or a comment, missing', () => {
  const p = parsed('a=1\n_CertificateFilePath=/etc/app/app.pem\n# KeyFilePath=/etc/app/app.key\n', 'properties');
  assert.deepEqual(lookupKey(p, 'CertificateFilePath'), { status: 'disabled', how: 'underscore', written: '_CertificateFilePath', line: 2 });
  assert.deepEqual(lookupKey(p, 'KeyFilePath'), { status: 'disabled', how: 'comment', written: 'KeyFilePath', line: 3 });
  assert.deepEqual(lookupKey(p, 'Other'), { status: 'missing' });
  assert.deepEqual(lookupKey(parsed('k=1\nk=2\n', 'properties'), 'k'), {
    status: 'not-a-string',
    detail: '/opt/app/appsettings.json:2 k: key already set on line 1',
  });
  const e = parsed('export X=1\nTLS_CERT="/etc/app/app.pem"\n', 'env');
  assert.deepEqual(lookupKey(e, 'TLS_CERT'), { status: 'found', value: '/etc/app/app.pem', line: 2 });
});

test("a path in this OS's form: Windows drive, UNC and backslashes, relative, empty", () => {
  assert.equal(pathProblem('/etc/app/app.pem'), null);
  assert.equal(pathProblem('C:\\certs\\app.pem'), 'windows');
  assert.equal(pathProblem('c:/certs/app.pem'), 'windows');
  assert.equal(pathProblem('\\\\server\\share\\app.pem'), 'windows');
  assert.equal(pathProblem('/etc/app\\app.pem'), 'backslash');
  assert.equal(pathProblem('certs/app.pem'), 'relative');
  assert.equal(pathProblem(' '), 'empty');
  assert.equal(fileNameOf('C:\\certs\\app.pem'), 'app.pem');
  assert.equal(fileNameOf('/etc/app/app.key'), 'app.key');
});

test("the service's credentials from systemctl show, and the command that reads with them", () => {
  const all = 'User=\nGroup=\nCapabilityBoundingSet=cap_chown cap_dac_override cap_dac_read_search cap_fowner\n';
  assert.deepEqual(parseUnitCredentials(all), { user: 'root', group: '', bypassesPermissions: true });
  assert.deepEqual(readableCommand(parseUnitCredentials(all), '/k'), ['test', '-r', '/k']);
  const dropped = parseUnitCredentials('User=\nGroup=\nCapabilityBoundingSet=cap_chown cap_fowner\n');
  assert.equal(dropped.bypassesPermissions, false);
  assert.deepEqual(readableCommand(dropped, '/k'), ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', '--', 'test', '-r', '/k']);
  const app = parseUnitCredentials('User=servicedesk\nGroup=sd\nCapabilityBoundingSet=cap_dac_override\n');
  assert.deepEqual(app, { user: 'servicedesk', group: 'sd', bypassesPermissions: false });
  assert.deepEqual(readableCommand(app, '/k'), ['runuser', '-u', 'servicedesk', '-g', 'sd', '--', 'test', '-r', '/k']);
});
