/**
 * The bundled entry point of the lab's service manager and its systemctl (bundle.ts):
 *   node lab-init.mjs manager            the daemon of one bare lab machine (manager.ts)
 *   node lab-init.mjs systemctl ARGS...  what `systemctl ARGS` runs on that machine (systemctl.ts)
 */
const [role, ...args] = process.argv.slice(2);
if (role === 'manager') {
  await (await import('./manager.ts')).runManager();
} else if (role === 'systemctl') {
  process.exitCode = await (await import('./systemctl.ts')).systemctl(args);
} else {
  process.stderr.write('usage: lab-init.mjs manager | systemctl ARGS...\n');
  process.exitCode = 2;
}
